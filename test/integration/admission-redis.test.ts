// Three gateway processes (node dist/main.js) share one Redis: a limit or a budget holds for
// the fleet exactly, because every check-and-reserve is one Lua script. Each run uses its
// own key prefix and deletes only its own keys.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, admin, batch, budgetOf, flushPrefix, simModelYaml } from './admission-support.js';
import { openaiClient } from '../helpers/gateway.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}:`;
const dir = mkdtempSync(join(tmpdir(), 'admission-redis-'));
const gateways: GatewayProcess[] = [];
const ONE_CENT = { model: 'm', max_tokens: 10 };

beforeAll(async () => {
  requireBuild();
  const file = join(dir, 'policies.yaml');
  writeFileSync(
    file,
    `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${REDIS_URL}", redis_prefix: "${PREFIX}", on_store_error: closed }
${simModelYaml(5, 1)}
keys:
  - { key: k-rpm, name: rpm100, limits: { rpm: 100 } }
  - { key: k-dollar, name: dollar, budget: { usd: 1, period: day } }
`,
  );
  gateways.push(...(await Promise.all([1, 2, 3].map(() => spawnGateway(file)))));
}, 60_000); // three cold gateway starts; slow beside the cluster test in npm test

afterAll(async () => {
  for (const g of gateways) for (const l of g.lines) if ((l.level as number) >= 40) console.log(JSON.stringify(l));
  await Promise.all(gateways.map((g) => g.stop()));
  await flushPrefix(REDIS_URL, PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, redis store, three gateways', () => {
  it('rpm 100 shared by three gateways under 300 concurrent requests admits exactly 100', async () => {
    const r = await batch(gateways.map((g) => openaiClient(g, 'k-rpm')), 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.rateLimited).toBe(200);
    const limits = await admin<{ scopes: Array<{ name: string; rpm: { used: number } }> }>(gateways[1]!.url, 'limits');
    expect(limits.body.scopes.find((s) => s.name === 'rpm100')!.rpm.used).toBe(100);
  });

  it('a $1.00 budget shared by three gateways under 300 concurrent $0.01 requests admits exactly 100, spend = $1.00', async () => {
    const r = await batch(gateways.map((g) => openaiClient(g, 'k-dollar')), 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.quota).toBe(200);
    for (const g of gateways) expect(await budgetOf(g.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 });
  });
});
