// React Native's test environment, with Node's own fetch kept as `nodeFetch`:
// importing `expo` installs its native fetch as the global one, which has no
// native side under jest. The tests talk to the real local stack with Node's.
const ReactNativeEnvironment = require("@react-native/jest-preset/jest/react-native-env.js");

module.exports = class AppTestEnvironment extends ReactNativeEnvironment {
  constructor(config, context) {
    super(config, context);
    this.global.nodeFetch = this.global.fetch;
  }
};
