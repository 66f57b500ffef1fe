// Lint: typescript-eslint's type-checked rules on src/ (the shipped code), the untyped
// recommended set on tests, bench and scripts. Import cycles are checked on the built output
// by scripts/check-cycles.mjs: that is the runtime graph (type-only imports are gone there).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const unused = ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test-output/', 'bench/results/', '.scratch/', 'data/'] },
  {
    files: ['src/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { '@typescript-eslint/no-unused-vars': unused },
  },
  {
    files: ['test/**/*.ts', 'test/**/*.mjs', 'bench/**/*.{js,mjs}', 'scripts/**/*.mjs', '*.js'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: { globals: { ...globals.node } },
    // Tests read arbitrary JSON answers; `any` there is the honest type.
    rules: { '@typescript-eslint/no-unused-vars': unused, '@typescript-eslint/no-explicit-any': 'off' },
  },
);
