// ESLint flat config: typescript-eslint's type-checked rules (no floating promises) and the rxjs rules.
import js from '@eslint/js';
import rxjsX from 'eslint-plugin-rxjs-x';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '**/*.js', '**/*.mjs', 'docs/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  rxjsX.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's describe/it return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'rxjs-x/no-ignored-subscription': 'error',
      'rxjs-x/no-unsafe-takeuntil': 'error',
    },
  },
  {
    files: ['spec/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      // Tests subscribe and keep the Subscription in a variable the test tears down itself.
      'rxjs-x/no-ignored-subscription': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
