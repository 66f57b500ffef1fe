// state.redis_url: redis+sentinel://...: the gateway asks a real Redis Sentinel (started
// here, beside a private master) for the master and enforces its limits there.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, batch, privateRedis, type RedisServer, simModelYaml } from './admission-support.js';
import { openaiClient } from '../helpers/gateway.js';
import { freePort } from '../helpers/net.js';
import { requireBuild, spawnGateway, startRedisServer, type GatewayProcess, type Started } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-sentinel-'));
let master: RedisServer | undefined;
let sentinel: Started | undefined;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  requireBuild();
  master = await privateRedis(dir);
  await master.start();
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor gwmaster 127.0.0.1 ${master.port} 1\n`);
  sentinel = await startRedisServer([conf, '--sentinel'], '+monitor master gwmaster');
  const file = join(dir, 'policies.yaml');
  writeFileSync(
    file,
    `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "redis+sentinel://127.0.0.1:${port}/gwmaster", redis_timeout_ms: 10000, on_store_error: closed }
${simModelYaml(5, 1)}
keys:
  - { key: k-rpm, name: rpm10, limits: { rpm: 10 } }
`,
  );
  gateway = await spawnGateway(file);
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await sentinel?.stop('SIGKILL');
  await master?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('admission through Redis Sentinel', () => {
  it('finds the master through the sentinel: rpm 10 under 30 concurrent requests admits exactly 10, counted on that master', async () => {
    const r = await batch([openaiClient(gateway!, 'k-rpm')], 30, { model: 'm', max_tokens: 10 });
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(10);
    expect(r.rateLimited).toBe(20);
    const { Redis } = await import('ioredis');
    const c = new Redis(master!.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await c.hget('llmgw:key:rpm10:rpm:b', 's')).toBe('10');
    } finally {
      c.disconnect();
    }
  });
});
