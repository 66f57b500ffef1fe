// Issue [3]: a backend degrades under steady load, its breaker opens, the fallback model on a
// healthy backend serves (the apps don't notice), and after the backend heals, probes close
// the breaker and traffic returns. Seen from the client (the official SDK) and from /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture, metricValue, type TestGateway } from '../helpers/gateway.js';

interface Result {
  ok: boolean;
  /** x-gateway-model: the model that answered. */
  model?: string;
  startedAt: number;
  error?: unknown;
}

/** `n` streamed requests over `concurrency` clients in a loop; every stream is read to its end. */
async function load(client: OpenAI, n: number, concurrency: number): Promise<Result[]> {
  const results: Result[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const startedAt = performance.now();
        try {
          const { data, response } = await client.chat.completions
            .create({ model: 'primary', stream: true, messages: [{ role: 'user', content: 'hi' }] })
            .withResponse();
          let chunks = 0;
          for await (const _ of data) chunks++;
          expect(chunks).toBeGreaterThan(0);
          results.push({ ok: true, model: response.headers.get('x-gateway-model') ?? undefined, startedAt });
        } catch (error) {
          results.push({ ok: false, startedAt, error });
        }
      }
    }),
  );
  return results;
}

async function scrape(gw: TestGateway): Promise<string> {
  const res = await fetch(`${gw.url}/metrics`);
  return res.text();
}

async function admin(gw: TestGateway, method: 'GET' | 'POST', path: string, body?: unknown) {
  const res = await fetch(`${gw.url}/admin/${path}`, {
    method,
    headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('failover: breaker opens on a degraded backend, fallback serves, traffic returns after healing', () => {
  let A: Simulator;
  let B: Simulator;
  let gw: GatewayFixture;
  let client: OpenAI;

  beforeAll(async () => {
    const sim = { ttftMs: 2, tpotMs: 1, outputTokens: 4 };
    A = await startSimulator(sim);
    B = await startSimulator(sim);
    gw = await withGateway(
      `
admin_token: admin-secret
backends:
  A: { type: openai, base_url: "${A.url}" }
  B: { type: openai, base_url: "${B.url}" }
models:
  primary:
    deployments: [{ backend: A, model: a-model }]
    fallbacks: [backup]
  backup:
    deployments: [{ backend: B, model: b-model }]
circuit_breaker: { window_s: 2, min_requests: 10, error_rate: 0.5, cooldown_s: 0.5, max_cooldown_s: 1.5, half_open_probes: 3 }
retries: { max: 1, backoff_ms: 5, max_backoff_ms: 20 }
`,
      { apiKey: 'x' },
    );
    client = gw.openai;
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([A?.close(), B?.close()]);
  });

  it('opens A within its window, serves ≥ 99% from the fallback, closes again once A heals', { timeout: 120_000 }, async () => {
    // ---- A degrades: 60% of its answers are 500s.
    A.configure({ fault: { kind: 'status', status: 500, rate: 0.6 } });
    const degraded = await load(client, 600, 20);
    const opened = await gw.waitForLog((l) => l.msg === 'circuit breaker opened' && l.backend === 'A', 100);
    const openedAt = (opened.time as number) - Date.now() + performance.now(); // pino time is wall clock
    // Judged by count, not by the clock (a busy machine stretches time, not counts): with
    // min_requests 10 and 20 clients, the breaker opens once the first outcomes are in.
    expect(degraded.filter((r) => r.startedAt < openedAt).length).toBeLessThan(100);
    expect(opened).toMatchObject({ model: 'primary', from: 'closed', to: 'open', level: 40 });
    expect(opened.error_rate as number).toBeGreaterThanOrEqual(0.5);
    expect(opened.cooldown_s).toBe(0.5);

    // From the client's side: every request got a whole answer (retry or fallback hid A's 500s).
    const after = degraded.filter((r) => r.startedAt > openedAt);
    expect(after.length).toBeGreaterThan(300);
    const okAfter = after.filter((r) => r.ok).length / after.length;
    expect(okAfter).toBeGreaterThanOrEqual(0.99);
    const failures = degraded.filter((r) => !r.ok);
    expect(failures, String(failures[0]?.error)).toHaveLength(0);
    // Served by B: only half-open probes reached A after the opening.
    const byBackup = after.filter((r) => r.model === 'backup').length / after.length;
    expect(byBackup).toBeGreaterThan(0.9);

    let text = await scrape(gw);
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'primary', to: 'backup', reason: 'circuit_open' })).toBeGreaterThan(
      100,
    );
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'primary', to: 'backup', reason: 'upstream_error' })).toBeGreaterThan(
      0,
    );
    expect(metricValue(text, 'llm_gateway_upstream_errors_total', { backend: 'A', reason: 'status_5xx' })).toBeGreaterThan(5);
    expect(metricValue(text, 'llm_gateway_retries_total', { model: 'primary', backend: 'A', reason: 'status_5xx' })).toBeGreaterThan(0);
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'backup', backend: 'B' })).toBe(0);
    // Open (2), or half-open (1) if a cooldown just ran out: not closed while A still fails.
    const { body: view } = await admin(gw, 'GET', 'circuits');
    const a = (view.circuits as Array<Record<string, unknown>>).find((c) => c.backend === 'A')!;
    expect(['open', 'half_open']).toContain(a.state);
    expect(a).toMatchObject({ model: 'primary', upstream_model: 'a-model', forced: false, local_errors: 0 });
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'primary', backend: 'A' })).toBeGreaterThanOrEqual(1);

    // ---- A heals: keep the load on until probes close its breaker.
    A.configure({ fault: null });
    const healStart = gw.logs.length;
    for (let i = 0; i < 40 && !gw.logs.slice(healStart).some((l) => l.msg === 'circuit breaker closed' && l.backend === 'A'); i++) {
      const batch = await load(client, 40, 10);
      expect(batch.every((r) => r.ok)).toBe(true);
    }
    const closed = gw.logs.slice(healStart).find((l) => l.msg === 'circuit breaker closed' && l.backend === 'A');
    expect(closed).toMatchObject({ from: 'half_open', to: 'closed', reason: 'probes_succeeded' });
    const back = await load(client, 200, 20);
    expect(back.every((r) => r.ok)).toBe(true);
    expect(back.filter((r) => r.model === 'primary').length).toBe(200);
    text = await scrape(gw);
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'primary', backend: 'A' })).toBe(0);
    expect(gw.logs.some((l) => l.msg === 'circuit breaker half-open' && l.backend === 'A' && l.level === 30)).toBe(true);
  });

  it('ops can force a breaker open and closed through /admin/circuits', { timeout: 120_000 }, async () => {
    const beforeA = A.stats.requests;
    let r = await admin(gw, 'POST', 'circuits/primary/A', { state: 'open' });
    expect(r.status).toBe(200);
    expect((r.body.circuits as Array<Record<string, unknown>>)[0]).toMatchObject({ state: 'open', forced: true, next_probe_in_s: null });
    const held = await load(client, 40, 5);
    expect(held.every((x) => x.ok && x.model === 'backup')).toBe(true);
    expect(A.stats.requests).toBe(beforeA); // held open: not even probes

    r = await admin(gw, 'POST', 'circuits/primary/A', { state: 'closed' });
    expect((r.body.circuits as Array<Record<string, unknown>>)[0]).toMatchObject({ state: 'closed', forced: false, requests: 0 });
    const again = await load(client, 20, 5);
    expect(again.every((x) => x.ok && x.model === 'primary')).toBe(true);

    expect((await admin(gw, 'POST', 'circuits/primary/Z', { state: 'open' })).status).toBe(404);
    expect((await admin(gw, 'POST', 'circuits/primary/A', { state: 'ajar' })).status).toBe(400);
  });
});
