// Insights on live traffic: a real gateway in front of simulators whose behaviour changes at
// run time (refusal rate, output-length distribution, TTFT), the openai SDK as client.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture, metricValue } from '../helpers/gateway.js';

// Bounds, not speeds: each test takes seconds on an idle machine; a busy one gets room.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 60_000 });

const TOKEN = 'insights-admin';
let sims: Record<'refuser' | 'drifty' | 'steady' | 'lat', Simulator>;
let gw: GatewayFixture;
let client: OpenAI;
let hook: Server;
const hookBodies: Array<{ events: Array<{ event: string; incident: { model: string; kind: string } }> }> = [];

beforeAll(async () => {
  const [refuser, drifty, steady, lat] = await Promise.all([
    startSimulator({ ttftMs: 0, tpotMs: 0, outputTokens: 8, refusalRate: 0.3 }),
    // Seeded: the same lengths every run, so the unchanged model's PSI (sampling noise of
    // about χ²₉/250 for two windows of 500) is not left to chance.
    startSimulator({ ttftMs: 0, tpotMs: 0, outputTokens: 20, outputTokensSd: 4, seed: 1 }),
    startSimulator({ ttftMs: 0, tpotMs: 0, outputTokens: 20, outputTokensSd: 4, seed: 2 }),
    startSimulator({ ttftMs: 5, tpotMs: 0, outputTokens: 4 }),
  ]);
  sims = { refuser, drifty, steady, lat };
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hookBodies.push(JSON.parse(body) as (typeof hookBodies)[number]);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  gw = await withGateway(
    `
admin_token: ${TOKEN}
backends:
${Object.entries(sims)
  .map(([n, s]) => `  ${n}: { base_url: "${s.url}" }`)
  .join('\n')}
models:
${Object.keys(sims)
  .map((n) => `  ${n}: { deployments: [{ backend: ${n} }] }`)
  .join('\n')}
retries: { max: 0 }
insights:
  drift: { window: 500 }
  anomaly: { window: 100, z: 3 }
  webhook: ${hookUrl}
  notify: { batch_ms: 200 }
`,
    { apiKey: 'k' },
  );
  client = gw.openai;
});

afterAll(async () => {
  await gw?.close();
  await Promise.all(Object.values(sims ?? {}).map((s) => s.close()));
  await new Promise((r) => hook?.close(r));
});

const ask = (model: string, stream = false) =>
  stream
    ? client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true }).then(async (s) => {
        for await (const _ of s);
      })
    : client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });

/** n requests, `conc` at a time. */
async function burst(n: number, conc: number, one: () => Promise<unknown>): Promise<void> {
  let left = n;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (left-- > 0) await one();
    }),
  );
}

async function admin(method: 'GET' | 'POST', path: string, body?: unknown, token = TOKEN): Promise<{ status: number; json: any }> {
  const res = await fetch(`${gw.url}/admin/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('quality signals', () => {
  it('counts refusals exactly, streamed or not', async () => {
    await burst(60, 6, () => ask('refuser', true));
    await burst(40, 6, () => ask('refuser', false));
    const refusals = sims.refuser.stats.refusals;
    expect(refusals).toBeGreaterThan(0);
    expect(refusals).toBeLessThan(100);
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_quality_signals_total', { model: 'refuser', signal: 'refusal' })).toBe(refusals);
    const { json } = await admin('GET', 'insights');
    expect(json.quality.refuser.counts.refusal).toBe(refusals);
    expect(json.quality.refuser.scored).toBe(100);
    expect(json.quality.refuser.rates.refusal).toBeCloseTo(refusals / 100, 6);
  });
});

describe('drift', () => {
  it('an output-length shift N(20,4) → N(60,8) gives PSI > 0.2; an unchanged model stays < 0.1', async () => {
    // A reference window for both, then a second window: shifted for one, unchanged for the other.
    await burst(500, 16, () => Promise.all([ask('drifty'), ask('steady')]));
    sims.drifty.configure({ outputTokens: 60, outputTokensSd: 8 });
    await burst(500, 16, () => Promise.all([ask('drifty'), ask('steady')]));
    const text = await gw.metricsText();
    const shifted = metricValue(text, 'llm_gateway_drift_psi', { model: 'drifty', feature: 'output_tokens' })!;
    const same = metricValue(text, 'llm_gateway_drift_psi', { model: 'steady', feature: 'output_tokens' })!;
    expect(shifted).toBeGreaterThan(0.2);
    expect(same).toBeLessThan(0.1);
    expect(metricValue(text, 'llm_gateway_drift_ks_pvalue', { model: 'drifty', feature: 'output_tokens' })).toBeLessThan(0.05);
    const { json } = await admin('GET', 'insights');
    expect(json.drift.drifty.output_tokens.level).toBe('severe');
    expect(json.drift.steady.output_tokens.level).toBe('stable');
    expect(json.drift.drifty.composite_level).toBe('high');

    const pinned = await admin('POST', 'insights/baseline', { model: 'steady' });
    expect(pinned.status).toBe(200);
    expect(pinned.json.pinned.length).toBeGreaterThan(0);
    expect((await admin('POST', 'insights/baseline', { model: 'nope' })).status).toBe(400);
    expect((await admin('POST', 'insights/baseline', {}, 'wrong')).status).toBe(401);
    // 2,000 requests: seconds on an idle machine, generous room on a busy one.
  }, 180_000);
});

describe('anomalies and incidents', () => {
  it('a TTFT jump 5 → 400 ms raises the score, opens one incident naming the model with a hint, and resolves it once back', async () => {
    await burst(30, 3, () => ask('lat', true));
    sims.lat.configure({ ttftMs: 400 });
    await burst(10, 10, () => ask('lat', true));
    const during = await admin('GET', 'insights');
    expect(during.json.anomalies.lat.ttft.score).toBeGreaterThanOrEqual(0.5);
    const open = during.json.incidents.filter((i: { model: string; kind: string }) => i.model === 'lat' && i.kind === 'ttft');
    expect(open).toHaveLength(1);
    expect(open[0].resolved_at).toBeNull();
    expect(open[0].hint).toMatch(/TTFT/);
    // The anomalous points' mean stands far above the baseline (a busy machine adds its own slow points).
    expect(open[0].evidence.recent_mean).toBeGreaterThan(open[0].evidence.baseline_mean + 100);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_incident_open', { model: 'lat', kind: 'ttft' })).toBe(1);

    sims.lat.configure({ ttftMs: 5 });
    // Back to normal: resolved after persist_of (10) normal points; a busy machine's odd slow
    // request only delays it, so allow up to 100.
    let resolved: string | null = null;
    for (let i = 0; i < 100 && !resolved; i += 10) {
      await burst(10, 2, () => ask('lat', true));
      const { json } = await admin('GET', 'insights');
      resolved = json.incidents.find((x: { id: string }) => x.id === open[0].id).resolved_at;
    }
    expect(resolved).not.toBeNull();
    expect(metricValue(await gw.metricsText(), 'llm_gateway_incident_open', { model: 'lat', kind: 'ttft' })).toBe(0);

    // The webhook got both events, batched (one POST per 200 ms window).
    await gw.gw.stages().insights.flush();
    const deadline = Date.now() + 5000;
    const events = () => hookBodies.flatMap((b) => b.events).filter((e) => e.incident.model === 'lat' && e.incident.kind === 'ttft');
    while (events().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(events().map((e) => e.event)).toEqual(['incident_opened', 'incident_resolved']);

    // An operator may accept the current level as the new normal.
    expect((await admin('POST', 'insights/baseline', { model: 'lat', anomalies: 'yes' })).status).toBe(400);
    const accepted = await admin('POST', 'insights/baseline', { model: 'lat', anomalies: true });
    expect(accepted.status).toBe(200);
    expect(accepted.json.anomalies.reset).toEqual(['lat']);
  });
});

describe('chaos', () => {
  it('injects errors on a model for a bounded time, then ends by itself', async () => {
    expect((await admin('POST', 'chaos', { model: 'nope' })).status).toBe(400);
    expect((await admin('POST', 'chaos', { model: 'lat', kind: 'error', duration_s: 0.5 })).status).toBe(200);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_chaos_active')).toBe(1);
    // The injected status (default 503) is what the client gets once routing gives up.
    await expect(ask('lat')).rejects.toMatchObject({ status: 503 });
    // Ends by itself: poll for up to 20× its duration.
    const deadline = Date.now() + 10_000;
    while ((await admin('GET', 'chaos')).json.chaos.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await admin('GET', 'chaos')).json.chaos).toEqual([]);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_chaos_active')).toBe(0);
    await expect(ask('lat')).resolves.toBeDefined();
  });
});
