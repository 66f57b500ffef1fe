// Admission on the memory store, one in-process gateway on a real socket, the openai SDK
// as the client: exact rpm and budget under concurrency, the 429 shapes the SDK acts on,
// budget alerts (log, metric, gauge, webhook), headers, admin API. (Releases on every
// failure path: admission-release.test.ts, for both stores.)
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { ADMIN_TOKEN, admin, batch, budgetOf, simModelYaml } from './admission-support.js';
import { eventually } from '../helpers/wait.js';

let gw: TestGateway;
let hook: Server;
const hookBodies: Array<Record<string, unknown>> = [];

// Pricing: output $1000 / Mtok, input free; max_tokens 10 → worst case == real cost == $0.01.
const ONE_CENT = { model: 'm', max_tokens: 10 };

beforeAll(async () => {
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hookBodies.push(JSON.parse(body) as Record<string, unknown>);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookPort = (hook.address() as { port: number }).port;
  gw = await startGateway(`
admin_token: ${ADMIN_TOKEN}
budget_webhook: http://127.0.0.1:${hookPort}/alerts
${simModelYaml(5, 1)}
keys:
  - { key: k-rpm, name: rpm100, limits: { rpm: 100 } }
  - { key: k-dollar, name: dollar, budget: { usd: 1, period: day } }
  - { key: k-later, name: later, team: capped, limits: { concurrency: 5, tpm: 100000 }, budget: { usd: 5, period: week } }
  - { key: k-free, name: free }
teams:
  capped: { limits: { rpm: 2 } }
`);
});

afterAll(async () => {
  await gw?.close();
  await new Promise<void>((r) => hook?.close(() => r()));
});

interface ScopeRow {
  scope: string;
  name: string;
  rpm?: { limit: number; used: number; remaining: number };
}
describe('admission, memory store', () => {
  it('rpm 100 under 300 concurrent requests admits exactly 100; the 429s are the SDK shape with an honest retry-after', async () => {
    const c = openaiClient(gw, 'k-rpm');
    const started = performance.now();
    const r = await batch([c], 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.rateLimited).toBe(200);

    const err = await c.chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.status).toBe(429);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.message).toContain("key 'rpm100'");
    // The window opened moments ago: it admits again 60 s after its oldest request, rounded up
    // to the end of that request's 1 s bucket (so up to 61 s from now, never less than 60 s
    // after the oldest request).
    const retryAfter = Number(e.headers?.get('retry-after'));
    const retryAfterMs = Number(e.headers?.get('retry-after-ms'));
    // On a busy machine the burst itself takes seconds: the window's oldest request is at most
    // that long ago.
    const elapsedS = (performance.now() - started) / 1000;
    expect(retryAfter).toBeGreaterThanOrEqual(Math.min(50, Math.floor(60 - elapsedS) - 1));
    expect(retryAfter).toBeLessThanOrEqual(61);
    expect(Math.ceil(retryAfterMs / 1000)).toBe(retryAfter);
    expect(e.headers?.get('x-ratelimit-limit-requests')).toBe('100');
    expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(metricValue(await gw.metricsText(), 'llm_gateway_rate_limited_total', { scope: 'key', limit: 'rpm' })).toBe(201);
  });

  it('a $1.00 budget under 300 concurrent $0.01 requests admits exactly 100 and never overspends; alerts fire once', async () => {
    const r = await batch([openaiClient(gw, 'k-dollar')], 300, ONE_CENT);
    expect(r.other.map((e) => String(e))).toEqual([]);
    expect(r.ok).toBe(100);
    expect(r.quota).toBe(200);
    const b = await budgetOf(gw.url, 'key', 'dollar');
    expect(b).toMatchObject({ spend_usd: 1, reserved_usd: 0, limit_usd: 1 });

    const m = await gw.metricsText();
    for (const th of ['0.7', '0.8', '0.95', '1'])
      expect(metricValue(m, 'llm_gateway_budget_alerts_total', { scope: 'key', threshold: th })).toBe(1);
    expect(metricValue(m, 'llm_gateway_budget_spend_usd', { scope: 'key', name: 'dollar' })).toBe(1);
    expect(metricValue(m, 'llm_gateway_budget_limit_usd', { scope: 'key', name: 'dollar' })).toBe(1);
    expect(metricValue(m, 'llm_gateway_rate_limited_total', { scope: 'key', limit: 'budget' })).toBe(200);
    const alerts = gw.logs.filter((l) => l.msg === 'budget threshold crossed' && l.name === 'dollar');
    expect(alerts.map((l) => l.threshold)).toEqual([0.7, 0.8, 0.95, 1]);
    expect(alerts[0]).toMatchObject({ level: 40, scope: 'key', spend: expect.any(Number), limit: 1 });
    await eventually(async () => expect(hookBodies.filter((h) => h.name === 'dollar')).toHaveLength(4));
    expect(hookBodies[0]).toMatchObject({ event: 'budget_alert', scope: 'key', name: 'dollar', limit_usd: 1 });
  });

  it('a spent budget answers insufficient_quota with x-should-retry: false, and the SDK does not retry it', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const c = openaiClient(gw, 'k-dollar', { maxRetries: 2, fetch: counting });
    const err = await c.chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe('insufficient_quota');
    expect(e.type).toBe('insufficient_quota');
    expect(e.headers?.get('x-should-retry')).toBe('false');
    expect(e.message).toContain("key 'dollar'");
    expect(calls).toBe(1);
  });

  it('budget reset through the admin API lets the key spend again', async () => {
    const bad = await admin(gw.url, 'budgets/reset', { scope: 'key', name: 'nope' });
    expect(bad.status).toBe(404);
    const r = await admin(gw.url, 'budgets/reset', { scope: 'key', name: 'dollar' });
    expect(r).toMatchObject({ status: 200, body: { ok: true, scope: 'key', name: 'dollar', period: 'day', previous_spend_usd: 1 } });
    await openaiClient(gw, 'k-dollar').chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] });
    expect(await budgetOf(gw.url, 'key', 'dollar')).toMatchObject({ spend_usd: 0.01, reserved_usd: 0 });
  });

  it('admitted responses carry x-ratelimit-* of the tightest scope where limits apply, none where they do not', async () => {
    // k-later: key tpm 100000, team rpm 2.
    const ok = await openaiClient(gw, 'k-later')
      .chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] })
      .withResponse();
    const h = ok.response.headers;
    expect(h.get('x-ratelimit-limit-requests')).toBe('2');
    expect(h.get('x-ratelimit-remaining-requests')).toBe('1');
    expect(h.get('x-ratelimit-limit-tokens')).toBe('100000');
    const remaining = Number(h.get('x-ratelimit-remaining-tokens'));
    expect(remaining).toBeLessThanOrEqual(100000 - 10);
    expect(remaining).toBeGreaterThan(100000 - 100);
    const free = await openaiClient(gw, 'k-free')
      .chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'x' }] })
      .withResponse();
    expect(free.response.headers.get('x-ratelimit-limit-tokens')).toBeNull();
    expect(free.response.headers.get('x-ratelimit-limit-requests')).toBeNull();
  });

  it('GET /admin/spend and /admin/limits describe every scope', async () => {
    const spend = await admin<{ store: string; budgets: Array<Record<string, unknown>> }>(gw.url, 'spend');
    expect(spend.body.store).toBe('memory');
    expect(spend.body.budgets.map((b) => `${b.scope}:${b.name}`).sort()).toEqual(['key:dollar', 'key:later']);
    const week = spend.body.budgets.find((b) => b.name === 'later')!;
    expect(new Date(week.period_start as string).getUTCDay()).toBe(1); // ISO week: Monday
    const limits = await admin<{ scopes: ScopeRow[] }>(gw.url, 'limits');
    expect(limits.body.scopes.find((s) => s.scope === 'team' && s.name === 'capped')).toMatchObject({
      rpm: { limit: 2, used: 1, remaining: 1 },
    });
    const unauth = await fetch(`${gw.url}/admin/spend`);
    expect(unauth.status).toBe(401);
  });
});
