// Every way a request can end gives back what admission reserved, on both stores: a client
// that leaves mid-stream, an upstream that cannot be reached, and a request that a later
// scope refuses (nothing may stay reserved in the earlier ones: in Redis, one Lua script
// checks all scopes before reserving any).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { ADMIN_TOKEN, admin, flushPrefix } from './admission-support.js';
import { freePort } from '../helpers/net.js';
import { eventually } from '../helpers/wait.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-release:`;
const ONE_CENT = { model: 'm', max_tokens: 10 };

interface ScopeRow {
  scope: string;
  name: string;
  concurrency?: { in_use: number };
  tpm?: { used: number };
  budget?: { reserved_usd: number; spend_usd: number };
}

describe.each(['memory', 'redis'] as const)('reservations are released (%s store)', (store) => {
  let gw: TestGateway;

  beforeAll(async () => {
    const deadPort = await freePort();
    gw = await startGateway(`
admin_token: ${ADMIN_TOKEN}
state: { store: ${store}, redis_url: "${REDIS_URL}", redis_prefix: "${PREFIX}${store}:", on_store_error: closed }
retries: { max: 0, backoff_ms: 0 }
backends:
  sim: { type: simulator, ttft_ms: 2, tpot_ms: 1, output_tokens: 16 }
  dead: { base_url: "http://127.0.0.1:${deadPort}/v1", connect_timeout_ms: 1000 }
models:
  m:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 0, output_per_mtok: 1000 }
  broken:
    deployments: [{ backend: dead }]
    pricing: { input_per_mtok: 0, output_per_mtok: 1000 }
keys:
  - { key: k-release, name: release, limits: { concurrency: 2, tpm: 100000 }, budget: { usd: 5, period: month } }
  - { key: k-later, name: later, team: capped, limits: { concurrency: 5, tpm: 100000 }, budget: { usd: 5, period: week } }
teams:
  capped: { limits: { rpm: 2 } }
`);
  });

  afterAll(async () => {
    await gw?.close();
    if (store === 'redis') await flushPrefix(REDIS_URL, PREFIX);
  });

  async function scopeOf(scope: string, name: string): Promise<ScopeRow> {
    const r = await admin<{ scopes: ScopeRow[] }>(gw.url, 'limits');
    expect(r.status).toBe(200);
    return r.body.scopes.find((s) => s.scope === scope && s.name === name)!;
  }

  it('a client that leaves mid-stream frees its budget reservation and concurrency slot', async () => {
    const c = openaiClient(gw, 'k-release');
    const stream = await c.chat.completions.create(
      { model: 'm', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-sim-tpot-ms': '300' } },
    );
    const during = await scopeOf('key', 'release');
    expect(during.concurrency!.in_use).toBe(1);
    expect(during.budget!.reserved_usd).toBe(0.01);
    for await (const _chunk of stream) break; // first chunk, then leave
    await eventually(async () => {
      const after = await scopeOf('key', 'release');
      expect(after.concurrency!.in_use).toBe(0);
      expect(after.budget!.reserved_usd).toBe(0);
    });
    await gw.waitForLog((l) => l.msg === 'request' && l.status === 499);
  });

  it('an upstream that fails frees its reservation; its tokens settle to the real (zero) count', async () => {
    const c = openaiClient(gw, 'k-release');
    const before = await scopeOf('key', 'release');
    const err = await c.chat.completions
      .create({ model: 'broken', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBeGreaterThanOrEqual(502);
    await eventually(async () => {
      const after = await scopeOf('key', 'release');
      expect(after.concurrency!.in_use).toBe(0);
      expect(after.budget).toMatchObject({ reserved_usd: 0, spend_usd: before.budget!.spend_usd });
      expect(after.tpm!.used).toBe(before.tpm!.used);
    });
  });

  it('a request refused by a later scope (team rpm) holds nothing in the earlier one (key)', async () => {
    const c = openaiClient(gw, 'k-later');
    for (let i = 0; i < 2; i++) await c.chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] });
    await eventually(async () => expect((await scopeOf('key', 'later')).budget!.reserved_usd).toBe(0));
    const mid = await scopeOf('key', 'later');
    const err = await c.chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as Error).message).toContain("team 'capped'");
    const after = await scopeOf('key', 'later');
    expect(after.concurrency!.in_use).toBe(0);
    expect(after.budget).toMatchObject({ reserved_usd: 0, spend_usd: 0.02 });
    expect(after.tpm!.used).toBe(mid.tpm!.used);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_rate_limited_total', { scope: 'team', limit: 'rpm' })).toBe(1);
  });
});
