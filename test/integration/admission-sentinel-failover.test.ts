// redis+sentinel:// across a failover: a private master with one replica and a real Redis
// Sentinel (started here). The master is killed; the sentinel promotes the replica; the
// gateway, asking the sentinel again, carries on against the new master with the spend it had
// (replicated before the kill: see docs/redis.md for what asynchronous replication means).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  carriesOnAfterFailover,
  FAILOVER_KEY_YAML,
  privateRedis,
  type RedisServer,
  simModelYaml,
  spendBeforeFailover,
} from './admission-support.js';
import { freePort } from '../helpers/net.js';
import { requireBuild, spawnGateway, startRedisServer, type GatewayProcess, type Started } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-sentinel-failover-'));
let master: RedisServer | undefined;
let replica: Started | undefined;
let replicaPort = 0;
let sentinel: Started | undefined;
let gateway: GatewayProcess | undefined;

async function withRedis<T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

beforeAll(async () => {
  requireBuild();
  mkdirSync(join(dir, 'master'));
  mkdirSync(join(dir, 'replica'));
  master = await privateRedis(join(dir, 'master'));
  await master.start();
  replicaPort = await freePort();
  replica = await startRedisServer([
    '--port',
    String(replicaPort),
    '--bind',
    '127.0.0.1',
    '--replicaof',
    '127.0.0.1',
    String(master.port),
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    join(dir, 'replica'),
  ]);
  await eventually(
    async () => expect(await withRedis(replicaPort, (c) => c.info('replication'))).toContain('master_link_status:up'),
    10_000,
    100,
  );
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  // One sentinel (quorum 1) that calls a master down after 1 s without an answer.
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor gwmaster 127.0.0.1 ${master.port} 1`,
      'sentinel down-after-milliseconds gwmaster 1000',
      'sentinel failover-timeout gwmaster 5000',
      '',
    ].join('\n'),
  );
  sentinel = await startRedisServer([conf, '--sentinel'], '+monitor master gwmaster');
  const file = join(dir, 'policies.yaml');
  writeFileSync(
    file,
    `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "redis+sentinel://127.0.0.1:${port}/gwmaster", redis_timeout_ms: 1000, on_store_error: closed }
${simModelYaml(5, 1)}
${FAILOVER_KEY_YAML}
`,
  );
  gateway = await spawnGateway(file);
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await sentinel?.stop('SIGKILL');
  await replica?.stop('SIGKILL');
  await master?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('admission through Redis Sentinel across a failover', () => {
  it('carries on against the promoted replica, with the spend it had', async () => {
    await spendBeforeFailover(gateway!);
    // The spend is on the replica before the master dies (replication is asynchronous).
    expect(await withRedis(master!.port, (c) => c.call('WAIT', '1', '5000'))).toBe(1);
    await master!.kill();

    // The sentinel calls the master down after 1 s and promotes the replica; meanwhile 503s.
    await carriesOnAfterFailover(gateway!);
    // It is the replica that serves now.
    expect(await withRedis(replicaPort, (c) => c.call('ROLE'))).toEqual(expect.arrayContaining(['master']));
  }, 60_000);
});
