// The V8 flags the gateway sets for itself (src/util/gc.ts): concurrent marking off unless the
// node command line names it, and set before any other module of the CLI is evaluated.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gcFlags } from '../../src/util/gc.js';

describe('gcFlags', () => {
  it('turns concurrent marking off by default', () => {
    expect(gcFlags([])).toEqual(['--no-concurrent-marking']);
    expect(gcFlags(['--max-old-space-size=512', '--enable-source-maps'])).toEqual(['--no-concurrent-marking']);
  });

  it('leaves it as the node command line says, in either spelling', () => {
    for (const argv of [['--concurrent-marking'], ['--no-concurrent-marking'], ['--concurrent_marking'], ['--no_concurrent_marking']])
      expect(gcFlags(argv)).toEqual([]);
    expect(gcFlags(['--concurrent-marking-max-worker-num=1'])).toEqual(['--no-concurrent-marking']);
  });

  it('is the first module the CLI evaluates', () => {
    const main = readFileSync(new URL('../../src/main.ts', import.meta.url), 'utf8');
    const imports = main.split('\n').filter((l) => l.startsWith('import '));
    expect(imports[0]).toBe("import './util/gc.js';");
  });
});
