// The app imports the project's TypeScript client from its build output
// (client/javascript/dist, `make js-build`), outside this folder: Metro only
// bundles files under its watch folders, so it gets that one as well.
const path = require("node:path");
const { getDefaultConfig } = require("expo/metro-config");

const config = getDefaultConfig(__dirname);
config.watchFolders = [path.resolve(__dirname, "../../client/javascript/dist")];
// Babel's helpers in that compiled client resolve from this folder's node_modules.
config.resolver.nodeModulesPaths = [path.resolve(__dirname, "node_modules")];
module.exports = config;
