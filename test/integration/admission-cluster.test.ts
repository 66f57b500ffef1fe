// Three gateway processes share one Redis Cluster of three masters that this test starts
// itself: the admission keys carry one hash tag, so each admit (all scopes) is still one
// script on one node and the fleet's limits hold exactly, as on a single Redis.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, admin, batch, budgetOf, privateCluster, type RedisCluster, simModelYaml } from './admission-support.js';
import { openaiClient } from '../helpers/gateway.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-cluster-'));
const gateways: GatewayProcess[] = [];
const ONE_CENT = { model: 'm', max_tokens: 10 };
let cluster: RedisCluster | undefined;

beforeAll(async () => {
  requireBuild();
  cluster = await privateCluster(dir);
  const file = join(dir, 'policies.yaml');
  writeFileSync(
    file,
    `
admin_token: ${ADMIN_TOKEN}
# A generous command timeout: this test is about exactness, not about a busy machine's latency.
state: { store: redis, redis_url: "${cluster.url}", redis_prefix: "llmgw:", redis_timeout_ms: 10000, on_store_error: closed }
${simModelYaml(5, 1)}
keys:
  - { key: k-rpm, name: rpm100, team: t1, limits: { rpm: 100 } }
  - { key: k-dollar, name: dollar, team: t1, budget: { usd: 1, period: day } }
teams:
  t1: { limits: { rpm: 100000, concurrency: 1000 }, budget: { usd: 1000, period: day } }
`,
  );
  gateways.push(...(await Promise.all([1, 2, 3].map(() => spawnGateway(file)))));
}, 60_000);

afterAll(async () => {
  for (const g of gateways) for (const l of g.lines) if ((l.level as number) >= 40) console.log(JSON.stringify(l));
  await Promise.all(gateways.map((g) => g.stop()));
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, Redis Cluster of three masters, three gateways', () => {
  it('rpm 100 shared by three gateways under 300 concurrent requests admits exactly 100', async () => {
    const r = await batch(gateways.map((g) => openaiClient(g, 'k-rpm')), 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.rateLimited).toBe(200);
    const limits = await admin<{ scopes: Array<{ name: string; rpm: { used: number } }> }>(gateways[1]!.url, 'limits');
    expect(limits.body.scopes.find((s) => s.name === 'rpm100')!.rpm.used).toBe(100);
  });

  it('a $1.00 budget shared by three gateways under 300 concurrent $0.01 requests admits exactly 100, spend = $1.00, nothing left reserved', async () => {
    const r = await batch(gateways.map((g) => openaiClient(g, 'k-dollar')), 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.quota).toBe(200);
    for (const g of gateways) expect(await budgetOf(g.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 });
  });

  it('every admission key lives in the one slot of the {llmgw:} hash tag', async () => {
    const c = new Cluster(cluster!.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      await new Promise<void>((resolve, reject) => {
        c.once('ready', resolve);
        c.once('error', reject);
      });
      const keys: string[] = [];
      for (const node of c.nodes('master')) {
        let cursor = '0';
        do {
          const [next, found] = await node.scan(cursor, 'COUNT', 1000);
          cursor = next;
          keys.push(...found);
        } while (cursor !== '0');
      }
      expect(keys.length).toBeGreaterThan(0);
      for (const k of keys) expect(k.startsWith('{llmgw:}')).toBe(true);
    } finally {
      c.disconnect();
    }
  });
});
