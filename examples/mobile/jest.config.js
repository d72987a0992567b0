// Two projects: the app under jest-expo (React Native's test renderer, React
// Native Testing Library) and its web export in Chromium (plain Node).
// Both talk to a real `cloud-ws local` that each test file starts.
module.exports = {
  testTimeout: 120_000,
  projects: [
    {
      displayName: "app",
      preset: "jest-expo",
      testEnvironment: "<rootDir>/test/support/environment.js",
      // Babel's helpers in the compiled client (client/javascript/dist) resolve from here.
      modulePaths: ["<rootDir>/node_modules"],
      testMatch: ["<rootDir>/test/**/*.test.tsx"],
    },
    {
      displayName: "web",
      testEnvironment: "node",
      modulePaths: ["<rootDir>/node_modules"],
      testMatch: ["<rootDir>/test/**/*.web.test.ts"],
      transform: { "^.+\\.(js|ts|tsx)$": "babel-jest" },
    },
  ],
};
