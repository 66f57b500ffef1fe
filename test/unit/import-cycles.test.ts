// The built code has no static import cycle (issue: "no runtime import cycle in dist/").
// dist/ is built by `pretest`; the checker itself is proved on a small tree with a known cycle.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs script without types
import { findCycles } from '../../scripts/check-cycles.mjs';

const find = findCycles as (dir: string) => string[][];
const tmp = mkdtempSync(join(tmpdir(), 'cycles-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('import cycles', () => {
  it('finds a cycle through a sub-folder and ignores dynamic imports', () => {
    mkdirSync(join(tmp, 'sub'));
    writeFileSync(join(tmp, 'a.js'), "import { b } from './sub/b.js';\nexport const a = 1;\n");
    writeFileSync(join(tmp, 'sub/b.js'), "export {\n  c as b,\n} from '../c.js';\n");
    writeFileSync(join(tmp, 'c.js'), "import './a.js';\nexport const c = 2;\n");
    writeFileSync(join(tmp, 'd.js'), "import { a } from './a.js';\nexport const d = () => import('./d2.js');\n");
    writeFileSync(join(tmp, 'd2.js'), "import { d } from './d.js';\n");
    expect(find(tmp)).toEqual([['a.js', 'c.js', 'sub/b.js']]);
  });

  it('dist/ has none', () => {
    expect(find(join(import.meta.dirname, '../../dist'))).toEqual([]);
  });
});
