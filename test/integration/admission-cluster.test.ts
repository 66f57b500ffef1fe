// Three gateway processes share one Redis Cluster of three masters that this test starts
// itself: the admission keys carry one hash tag, so each admit (all scopes) is still one
// script on one node and the fleet's limits hold exactly, as on a single Redis. A second
// fleet does the same with quota leases (their state hashes under the same tag).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  fleetKeysYaml,
  leasedLimitTests,
  privateCluster,
  type RedisCluster,
  sharedLimitTests,
  simModelYaml,
  startFleet,
  stopFleet,
} from './admission-support.js';
import { requireBuild, type GatewayProcess } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-cluster-'));
const gateways: GatewayProcess[] = [];
const leasing: GatewayProcess[] = [];
let cluster: RedisCluster | undefined;

const policies = (prefix: string, leased: boolean) => `
admin_token: ${ADMIN_TOKEN}
# A generous command timeout: this test is about exactness, not about a busy machine's latency.
state: { store: redis, redis_url: "${cluster!.url}", redis_prefix: "${prefix}", redis_timeout_ms: 10000, on_store_error: closed, leased_quota: ${leased} }
${simModelYaml(5, 1)}
${fleetKeysYaml('t1')}
teams:
  t1: { limits: { rpm: 100000, concurrency: 1000 }, budget: { usd: 1000, period: day } }
`;

beforeAll(async () => {
  requireBuild();
  cluster = await privateCluster(dir);
  gateways.push(...(await startFleet(dir, policies('llmgw:', false))));
}, 60_000);

afterAll(async () => {
  await stopFleet(gateways);
  await stopFleet(leasing);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, Redis Cluster of three masters, three gateways', () => {
  sharedLimitTests(() => gateways);

  describe('with quota leases', () => {
    beforeAll(async () => {
      leasing.push(...(await startFleet(dir, policies('llmgw-leased:', true))));
    }, 60_000);
    leasedLimitTests(() => leasing);
  });

  it("every admission key lives in the one slot of its fleet's hash tag, quota leases' too", async () => {
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
      for (const k of keys) expect(k.startsWith('{llmgw:}') || k.startsWith('{llmgw-leased:}'), k).toBe(true);
      expect(keys.some((k) => k.startsWith('{llmgw-leased:}lease:'))).toBe(true);
    } finally {
      c.disconnect();
    }
  });
});
