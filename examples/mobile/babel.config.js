// Expo's preset, for Metro and for jest-expo alike; it also compiles the
// project's client (client/javascript/dist), which is outside this folder.
module.exports = function config(api) {
  api.cache(true);
  return { presets: ["babel-preset-expo"] };
};
