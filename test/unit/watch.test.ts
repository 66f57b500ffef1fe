import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchPolicies } from '../../src/config/watch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchPolicies', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('reacts to the policy file and kubelet ..data swaps, not to other files in the directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'llmgw-watch-'));
    dirs.push(dir);
    const file = join(dir, 'policies.yaml');
    writeFileSync(file, 'a: 1\n');
    let events = 0;
    const w = watchPolicies(file, () => events++, { debounceMs: 20, pollMs: 3_600_000 });
    try {
      await sleep(50);
      for (let i = 0; i < 5; i++) {
        writeFileSync(join(dir, 'gateway.log'), `line ${i}\n`, { flag: 'a' });
        await sleep(10);
      }
      await sleep(150);
      expect(events).toBe(0);
      writeFileSync(file, 'a: 2\n');
      await sleep(150);
      expect(events).toBe(1);
      writeFileSync(join(dir, '..data_tmp'), 'x');
      await sleep(150);
      expect(events).toBe(2);
    } finally {
      w.close();
    }
  });
});
