// A Redis Cluster of three masters with a replica each, started by the test, and one gateway.
// The master that holds the admission keys' slot is killed; its replica takes over; the
// gateway finds the new master by itself and carries on, with the spend it had (replicated
// before the kill: see docs/redis.md for what asynchronous replication means otherwise).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  carriesOnAfterFailover,
  FAILOVER_KEY_YAML,
  privateCluster,
  type RedisCluster,
  simModelYaml,
  spendBeforeFailover,
} from './admission-support.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-failover-'));
let cluster: RedisCluster | undefined;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  requireBuild();
  // A node is judged failed after 1 s unreachable: the replica takes over within a few.
  cluster = await privateCluster(dir, { replicas: 1, nodeTimeoutMs: 1_000 });
  const file = join(dir, 'policies.yaml');
  writeFileSync(
    file,
    `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${cluster.url}", redis_prefix: "llmgw:", redis_timeout_ms: 1000, on_store_error: closed }
${simModelYaml(5, 1)}
${FAILOVER_KEY_YAML}
`,
  );
  gateway = await spawnGateway(file);
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The port of the master that serves the slot of the admission keys' hash tag, and its replica's (-1: none). */
async function slotOwner(c: Cluster): Promise<{ master: number; replica: number }> {
  const slot = Number(await c.call('CLUSTER', 'KEYSLOT', '{llmgw:}'));
  const lines = String(await c.call('CLUSTER', 'NODES'))
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
  const master = lines.find(
    (f) =>
      f[2]!.includes('master') &&
      f.slice(8).some((r) => {
        const [a, b] = r.split('-').map(Number);
        return slot >= a! && slot <= (b ?? a)!;
      }),
  )!;
  const replica = lines.find((f) => f[3] === master[0]);
  const port = (f: string[]) => Number(f[1]!.split('@')[0]!.split(':')[1]);
  return { master: port(master), replica: replica ? port(replica) : -1 };
}

describe('admission on a Redis Cluster whose master fails over', () => {
  it('carries on against the promoted replica, with the spend it had', async () => {
    await spendBeforeFailover(gateway!);

    const c = new Cluster(cluster!.ports.map((port) => ({ host: '127.0.0.1', port })));
    let owner: { master: number; replica: number };
    try {
      owner = await slotOwner(c);
      expect(owner.replica).toBeGreaterThan(0);
      // The spend is on the replica before the master dies (replication is asynchronous).
      const node = c.nodes('master').find((n) => n.options.port === owner.master)!;
      expect(Number(await node.call('WAIT', '1', '5000'))).toBe(1);
    } finally {
      c.disconnect();
    }
    await cluster!.kill(owner.master);

    // While the replica is being promoted the store is unreachable (on_store_error: closed → 503).
    await carriesOnAfterFailover(gateway!);
    // It is the replica that serves now.
    const c2 = new Cluster([{ host: '127.0.0.1', port: owner.replica }]);
    try {
      expect((await slotOwner(c2)).master).toBe(owner.replica);
    } finally {
      c2.disconnect();
    }
  });
});
