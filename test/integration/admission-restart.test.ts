// The memory store keeps spend across a crash: a gateway killed with SIGKILL (no close, no
// final flush) and started again on the same state file still has the spend it had written
// by its last flush, which is at most one state.flush_interval_ms old.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, batch, budgetOf, simModelYaml } from './admission-support.js';
import { openaiClient } from '../helpers/gateway.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-restart-'));
const policies = join(dir, 'policies.yaml');
const stateFile = join(dir, 'state', 'spend.json');
const FLUSH_MS = 200;
const live: GatewayProcess[] = [];

beforeAll(() => {
  requireBuild();
  writeFileSync(
    policies,
    `
admin_token: ${ADMIN_TOKEN}
state: { store: memory, file: "${stateFile}", flush_interval_ms: ${FLUSH_MS} }
${simModelYaml(2, 0)}
keys:
  - { key: k-dollar, name: dollar, budget: { usd: 1, period: month } }
`,
  );
});

afterAll(async () => {
  await Promise.all(live.map((g) => g.stop('SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, memory store across a crash', () => {
  it(
    'SIGKILL after a flush interval loses no spend; the restarted gateway enforces the rest of the budget',
    { timeout: 120_000 },
    async () => {
      const first = await spawnGateway(policies);
      live.push(first);
      const r1 = await batch([openaiClient(first, 'k-dollar')], 30, { model: 'm', max_tokens: 10 });
      expect(r1.ok).toBe(30);
      expect(await budgetOf(first.url, 'key', 'dollar')).toMatchObject({ spend_usd: 0.3 });
      await new Promise((r) => setTimeout(r, FLUSH_MS * 3)); // > one flush interval
      await first.stop('SIGKILL');
      const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { budgets: Record<string, { spent_nano: number }> };
      expect(saved.budgets['key:dollar']!.spent_nano).toBe(300_000_000);
      expect(existsSync(`${stateFile}.${first.child.pid}.tmp`)).toBe(false);

      const second = await spawnGateway(policies);
      live.push(second);
      expect(await budgetOf(second.url, 'key', 'dollar')).toMatchObject({ spend_usd: 0.3, reserved_usd: 0 });
      const r2 = await batch([openaiClient(second, 'k-dollar')], 100, { model: 'm', max_tokens: 10 });
      expect(r2.ok).toBe(70);
      expect(r2.quota).toBe(30);
      expect(await budgetOf(second.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 });
      // A graceful stop writes the file one last time.
      await second.stop('SIGTERM');
      const last = JSON.parse(readFileSync(stateFile, 'utf8')) as { budgets: Record<string, { spent_nano: number }> };
      expect(last.budgets['key:dollar']!.spent_nano).toBe(1_000_000_000);
    },
  );
});
