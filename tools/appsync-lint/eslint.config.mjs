// `make lint` runs this from the repository root:
//   tools/appsync-lint/node_modules/.bin/eslint -c tools/appsync-lint/eslint.config.mjs
import js from '@eslint/js';
import appsync from '@aws-appsync/eslint-plugin';

const files = ['pulumi_component/resolvers/*.js'];

export default [
  { ...js.configs.recommended, files },
  { ...appsync.configs.recommended, files },
  {
    files,
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
      // Filled in by pulumi_component/appsync.py (their types: placeholders.d.ts).
      globals: Object.fromEntries(
        ['__SUBSCRIBE_GROUPS__', '__ACCESS_POLICY__', '__DEFAULT_LIMIT__', '__MAX_LIMIT__', '__ROW_EVENTS__', '__MAX_FILTERS__', '__INITIAL__'].map(
          (name) => [name, 'readonly'],
        ),
      ),
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
];
