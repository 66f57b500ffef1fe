// Leased quota through a Redis outage (on_store_error: open), without a gateway restart. The
// test runs its own redis-server with an fsynced append-only file, so a SIGKILL loses nothing
// Redis acknowledged. While Redis is away the gateway admits against the leases it holds
// until their second ends, then against local limits; the lease flushes and the fallback's
// spend wait and are written once Redis is back. Afterwards the spend is exact to the cent,
// and no lease slot or budget slice is left held.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { openaiClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { ADMIN_TOKEN, admin, budgetOf, privateRedis, type RedisServer, simModelYaml } from './admission-support.js';
import { eventually } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-leased-outage-'));
const PREFIX = 'lo:';
let redis: RedisServer;
let gateway: TestGateway;

beforeAll(async () => {
  redis = await privateRedis(dir, { aof: true });
  await redis.start();
  gateway = await startGateway(`
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${redis.url}", redis_prefix: "${PREFIX}", on_store_error: open, leased_quota: true }
${simModelYaml(2, 0)}
keys:
  - { key: k, name: app, limits: { rpm: 100000, concurrency: 100 }, budget: { usd: 10, period: day } }
`);
});

afterAll(async () => {
  await gateway?.close();
  await redis?.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** One $0.01 chat completion (10 output tokens at $1,000 per Mtok). */
const ask = (c: OpenAI) => c.chat.completions.create({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });

async function raw<T>(fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

describe('leased quota when Redis goes away and comes back', () => {
  it('serves throughout; once Redis is back the spend is exact and every slot and slice is back', async () => {
    const c = openaiClient(gateway, 'k');
    let served = 0;
    // Busy enough for leases: bursts of 30 at once.
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 30 }, () => ask(c)));
      served += 30;
    }
    expect((await raw((r) => r.keys(`${PREFIX}lease:*`))).length).toBeGreaterThan(0);

    // Streams in flight when Redis dies: their settles (against a lease or by script) must land later.
    const streams = await Promise.all(
      Array.from({ length: 5 }, () =>
        c.chat.completions.create(
          { model: 'm', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'x' }] },
          { headers: { 'x-sim-tpot-ms': '60' } },
        ),
      ),
    );
    await redis.kill();
    for (const s of streams) for await (const _ of s);
    served += 5;
    // While Redis is down: against the leases until their second ends, then local limits.
    for (let round = 0; round < 2; round++) {
      await Promise.all(Array.from({ length: 10 }, () => ask(c)));
      served += 10;
      await new Promise((r) => setTimeout(r, 600));
    }

    await redis.start();
    await eventually(async () => expect((await admin<{ degraded: boolean }>(gateway.url, 'spend')).body.degraded).toBe(false), 10_000);
    const dollars = served / 100;
    await eventually(
      async () => expect(await budgetOf(gateway.url, 'key', 'app')).toMatchObject({ spend_usd: dollars, reserved_usd: 0 }),
      10_000,
      100,
    );
    // No lease left anything held: no slot member, no budget slice.
    const held = await raw(async (r) => ({
      slots: await r.zrange(`${PREFIX}key:app:conc`, 0, -1),
      budget: await r.zrange(`${PREFIX}key:app:reserved`, 0, -1),
    }));
    expect(held).toEqual({ slots: [], budget: [] });
  }, 60_000);
});
