// Redis goes away mid-run and comes back, without any gateway restart. The test runs its
// own redis-server on its own port: SAVE + SIGKILL stops it, a new redis-server on the same
// port and directory brings the data back (as a Redis with persistence would).
//   on_store_error: open    keeps serving from local limits; spend made meanwhile reaches
//                           Redis once it is back; a settle that failed is replayed.
//   on_store_error: closed  answers 503 (OpenAI-shaped) and /readyz 503 while Redis is down.
// Either way nothing stays reserved: reserved_usd returns to exactly 0, spend is exact.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { ADMIN_TOKEN, admin, budgetOf, privateRedis, type RedisServer, simModelYaml } from './admission-support.js';
import { eventually } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'admission-outage-'));
let redis: RedisServer;
let open: TestGateway;
let closed: TestGateway;

const policy = (url: string, prefix: string, mode: 'open' | 'closed') => `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${url}", redis_prefix: "${prefix}", on_store_error: ${mode} }
${simModelYaml(2, 0)}
keys:
  - { key: k, name: app, limits: { rpm: 1000, concurrency: 10 }, budget: { usd: 10, period: day } }
`;

const ask = (c: OpenAI, headers: Record<string, string> = {}) =>
  c.chat.completions.create({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }, { headers });

beforeAll(async () => {
  redis = await privateRedis(dir);
  await redis.start();
  open = await startGateway(policy(redis.url, 'o:', 'open'));
  closed = await startGateway(policy(redis.url, 'c:', 'closed'));
});

afterAll(async () => {
  await open?.close();
  await closed?.close();
  await redis?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('admission when Redis goes away and comes back', () => {
  it('open keeps serving on local limits, closed answers 503 and not-ready; both recover; nothing leaks', async () => {
    const co = openaiClient(open, 'k');
    const cc = openaiClient(closed, 'k');
    for (let i = 0; i < 5; i++) await ask(co);
    await ask(cc);
    // Settles reach Redis after the response ended, group-committed: wait for them, exactly.
    await eventually(async () => expect(await budgetOf(open.url, 'key', 'app')).toMatchObject({ spend_usd: 0.05, reserved_usd: 0 }), 5_000);

    // A stream admitted through Redis that is still running when Redis dies: its settle fails
    // and must be replayed once Redis is back.
    const stream = await co.chat.completions.create(
      { model: 'm', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-sim-tpot-ms': '60' } },
    );
    await redis.kill();

    let chunks = 0;
    for await (const _ of stream) chunks++;
    expect(chunks).toBeGreaterThan(1);
    for (let i = 0; i < 5; i++) await ask(co); // served from local limits
    const down = await ask(cc).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(OpenAI.APIError);
    expect((down as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((down as InstanceType<typeof OpenAI.APIError>).code).toBe('store_unavailable');
    expect((await fetch(`${closed.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${open.url}/readyz`)).status).toBe(200);
    expect((await admin(open.url, 'spend')).status).toBe(503);
    expect(metricValue(await open.metricsText(), 'llm_gateway_store_errors_total', { store: 'redis', op: 'admit' })).toBeGreaterThanOrEqual(
      5,
    );

    const m = await open.metricsText();
    expect(metricValue(m, 'llm_gateway_store_errors_total', { store: 'redis', op: 'settle' })).toBe(1); // the stream's
    expect(metricValue(m, 'llm_gateway_store_errors_total', { store: 'redis', op: 'reconcile' })).toBe(5); // fallback spend, queued
    // What waits for the store is visible while it is down.
    expect(metricValue(m, 'llm_gateway_store_pending_operations')).toBeGreaterThanOrEqual(1);

    await redis.start();
    await eventually(async () => expect((await fetch(`${closed.url}/readyz`)).status).toBe(200), 5_000);
    await ask(cc);
    // 5 before + the stream (replayed settle) + 5 on the fallback (added to Redis) = $0.11.
    await eventually(async () => expect(await budgetOf(open.url, 'key', 'app')).toMatchObject({ spend_usd: 0.11, reserved_usd: 0 }), 5_000);
    for (let i = 0; i < 2; i++) await ask(co);
    const spend = await admin<{ degraded: boolean; pending_ops: number }>(open.url, 'spend');
    expect(spend.body).toMatchObject({ degraded: false, pending_ops: 0 });
    expect(metricValue(await open.metricsText(), 'llm_gateway_store_pending_operations')).toBe(0);
    await eventually(async () => expect(await budgetOf(open.url, 'key', 'app')).toMatchObject({ spend_usd: 0.13, reserved_usd: 0 }), 5_000);
    await eventually(
      async () => expect(await budgetOf(closed.url, 'key', 'app')).toMatchObject({ spend_usd: 0.02, reserved_usd: 0 }),
      5_000,
    );
    const limits = await admin<{ scopes: Array<{ name: string; concurrency: { in_use: number } }> }>(open.url, 'limits');
    expect(limits.body.scopes.find((s) => s.name === 'app')!.concurrency.in_use).toBe(0);
  });
});
