// The Insights engine fed directly (as settle feeds it), on a fake clock: incidents open on
// a persistent anomaly with a hint and resolve when the signal is back, the webhook batches,
// chaos ends by itself, and memory per model stays fixed over 100k requests.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parsePolicies } from '../../src/config/load.js';
import { Insights, type Observation } from '../../src/insights/index.js';
import { Chaos, type ChaosClock } from '../../src/insights/chaos.js';
import { BatchNotifier } from '../../src/insights/notifier.js';
import { Metrics } from '../../src/telemetry/metrics.js';

const POLICY = `
backends:
  a: { base_url: "http://127.0.0.1:9/v1" }
  b: { base_url: "http://127.0.0.1:9/v1" }
models:
  m1:
    deployments: [{ backend: a }, { backend: b }]
    pricing: { input_per_mtok: 10, output_per_mtok: 30 }
    fallbacks: [m2]
  m2:
    deployments: [{ backend: a }]
    pricing: { input_per_mtok: 0.1, output_per_mtok: 0.4 }
insights:
  drift: { window: 200 }
  anomaly: { window: 100, z: 3 }
  webhook: http://127.0.0.1:9/hook
  notify: { batch_ms: 1000 }
`;

function setup(extra: Partial<{ post: (url: string, body: string) => Promise<number> }> = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) logs.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  let now = Date.UTC(2026, 0, 5, 10, 0, 0);
  const metrics = new Metrics({ defaultMetrics: false });
  const posts: string[] = [];
  const insights = new Insights(metrics, pino({ base: null }, sink), {
    now: () => now,
    post: extra.post ?? (async (_u, body) => (posts.push(body), 200)),
  });
  insights.configure(parsePolicies(POLICY, 't.yaml'));
  const body = { model: 'm1', messages: [{ role: 'user', content: 'hi' }] };
  let seq = 0;
  /** One settled request as settle would hand it over. */
  const request = (
    o: {
      model?: string;
      backend?: string;
      status?: number;
      ttft?: number;
      tpot?: number;
      out?: number;
      code?: string;
      distinct?: boolean;
    } = {},
  ) => {
    const raw = Buffer.from(JSON.stringify({ ...body, n: o.distinct === false ? -1 : seq++ }));
    const ri = insights.begin(body, raw)!;
    const rec: Observation = {
      endpoint: 'chat/completions',
      routed: true,
      backend: o.backend ?? 'a',
      status: o.status ?? 200,
      receivedAt: 0,
      endedAt: (o.ttft ?? 5) + 50,
      tokens: { input: 10, output: o.out ?? 20 },
      finishReason: 'stop',
      error: o.code ? { code: o.code } : undefined,
    };
    ri.settled(rec, o.model ?? 'm1', 0.0001, o.ttft ?? 5, o.tpot ?? 2);
    now += 100;
  };
  return { insights, metrics, logs, posts, request, advance: (ms: number) => (now += ms) };
}

describe('anomalies and incidents', () => {
  it('a TTFT jump 5 → 400 ms on one backend opens one incident with a hint, and it resolves once TTFT is back', async () => {
    const { insights, metrics, logs, request } = setup();
    for (let i = 0; i < 100; i++) request({ ttft: 5 + (i % 3), backend: i % 2 ? 'a' : 'b' });
    const before = insights.report() as { anomalies: Record<string, Record<string, { score: number }>> };
    expect(before.anomalies.m1!.ttft!.score).toBeLessThan(0.3);
    // Backend b turns slow; a stays fast.
    for (let i = 0; i < 20; i++) request({ ttft: i % 2 ? 5 : 400, backend: i % 2 ? 'a' : 'b' });
    for (let i = 0; i < 10; i++) request({ ttft: 400, backend: 'b' });
    const during = insights.report() as {
      anomalies: Record<string, Record<string, { score: number }>>;
      incidents: Array<Record<string, unknown>>;
    };
    expect(during.anomalies.m1!.ttft!.score).toBeGreaterThanOrEqual(0.5);
    const ttftIncidents = during.incidents.filter((i) => i.kind === 'ttft');
    expect(ttftIncidents).toHaveLength(1);
    const inc = ttftIncidents[0]!;
    expect(inc).toMatchObject({ model: 'm1', backend: 'b', resolved_at: null });
    expect(['critical', 'high']).toContain(inc.severity);
    expect(inc.hint).toMatch(/only backend 'b'/);
    expect(inc.hint).toMatch(/TPOT stayed normal/);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/llm_gateway_incident_open\{model="m1",kind="ttft"\} 1/);
    expect(text).toMatch(/llm_gateway_incidents_total\{kind="ttft",severity="(critical|high)"\} 1/);
    expect(logs.some((l) => l.msg === 'incident opened' && l.model === 'm1')).toBe(true);

    for (let i = 0; i < 10; i++) request({ ttft: 5, backend: 'a' });
    const after = insights.report() as { incidents: Array<Record<string, unknown>> };
    expect(after.incidents.filter((i) => i.kind === 'ttft')).toHaveLength(1);
    expect(after.incidents.find((i) => i.kind === 'ttft')!.resolved_at).not.toBeNull();
    expect(await metrics.registry.metrics()).toMatch(/llm_gateway_incident_open\{model="m1",kind="ttft"\} 0/);
  });

  it('an error-rate incident names the error reasons and a recent policy reload', () => {
    const { insights, request } = setup();
    for (let i = 0; i < 200; i++) request({});
    insights.configure(parsePolicies(POLICY, 't.yaml'), true);
    for (let i = 0; i < 100; i++) request({ status: i % 2 ? 504 : 200, code: i % 2 ? 'upstream_timeout' : undefined });
    const r = insights.report() as { incidents: Array<{ kind: string; hint: string }> };
    const inc = r.incidents.find((i) => i.kind === 'error_rate');
    expect(inc).toBeDefined();
    expect(inc!.hint).toMatch(/timeout ×\d+/);
    expect(inc!.hint).toMatch(/policy reload/);
  });
});

describe('memory', () => {
  it('stays fixed per model over 100k requests', () => {
    const { insights, request } = setup();
    for (let i = 0; i < 10_000; i++)
      request({ ttft: 5 + (i % 50), out: 10 + (i % 90), backend: i % 3 ? 'a' : 'b', model: i % 2 ? 'm1' : 'm2' });
    const at10k = insights.footprint();
    for (let i = 0; i < 90_000; i++)
      request({ ttft: 5 + (i % 50), out: 10 + (i % 90), backend: i % 3 ? 'a' : 'b', model: i % 2 ? 'm1' : 'm2' });
    const at100k = insights.footprint();
    expect(at100k).toEqual(at10k);
    expect(at100k.models).toBe(2);
    // An unknown model name mints no state.
    request({ model: 'not-configured' });
    expect(insights.footprint().models).toBe(2);
  });
});

describe('recommendations', () => {
  it('identical prompts, a cheaper fallback for short answers, peak hours', () => {
    const { insights, request } = setup();
    for (let i = 0; i < 100; i++) request({ distinct: i % 4 !== 0 });
    const r = insights.report() as {
      recommendations: Array<{ kind: string; model?: string; estimated_saving_usd: number | null; evidence: Record<string, unknown> }>;
    };
    const cache = r.recommendations.find((x) => x.kind === 'exact_cache');
    expect(cache?.evidence.identical).toBe(24); // the first of the 25 identical ones is new
    const cheaper = r.recommendations.find((x) => x.kind === 'cheaper_model');
    expect(cheaper).toMatchObject({ model: 'm1', evidence: { fallback: 'm2' } });
    expect(cheaper!.estimated_saving_usd).toBeGreaterThan(0);
    expect(r.recommendations.some((x) => x.kind === 'peak_hours')).toBe(true);
  });

  it('a budget on track to run out', () => {
    const { insights } = setup();
    const start = Date.UTC(2026, 0, 5);
    const r = insights.report([
      {
        scope: 'team',
        name: 'ml',
        period: 'day',
        period_start: new Date(start).toISOString(),
        resets_at: new Date(start + 86_400_000).toISOString(),
        limit_usd: 10,
        spend_usd: 8,
      },
    ]) as { recommendations: Array<{ kind: string; evidence: Record<string, unknown> }> };
    const b = r.recommendations.find((x) => x.kind === 'budget_runs_out');
    // 10:00 UTC: 8 USD spent in 10 h → 10 USD at 12:30.
    expect(b?.evidence.runs_out_at).toBe('2026-01-05T12:30:00.000Z');
  });
});

describe('webhook', () => {
  it('batches events into one POST per window, retries a failed POST, and bounds its queue', async () => {
    const bodies: string[] = [];
    let fail = 1;
    const n = new BatchNotifier(
      { url: 'http://x', batch_ms: 20, retries: 3, backoff_ms: 5, timeout_ms: 1000, queue: 3 },
      undefined,
      async (_u, body) => {
        bodies.push(body);
        return fail-- > 0 ? 500 : 200;
      },
    );
    for (let i = 0; i < 5; i++) n.push({ i });
    expect(n.dropped).toBe(2);
    await new Promise((r) => setTimeout(r, 200));
    // One batch: sent twice (a 500, then accepted), carrying the 3 newest events.
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toBe(bodies[1]);
    expect((JSON.parse(bodies[1]!) as { events: Array<{ i: number }> }).events.map((e) => e.i)).toEqual([2, 3, 4]);
    expect(n.sent).toBe(1);
    n.close();
  });
});

describe('chaos', () => {
  it('ends by itself (fake clock), and validates what it is given', () => {
    let now = 0;
    const timers: Array<{ at: number; fn: () => void }> = [];
    const clock: ChaosClock = {
      now: () => now,
      setTimeout: (fn, ms) => (timers.push({ at: now + ms, fn }), undefined),
      clearTimeout: () => {},
    };
    const active: number[] = [];
    const chaos = new Chaos((n) => active.push(n), clock);
    const known = { models: new Set(['m1']), backends: new Set(['a']) };
    const rule = chaos.start({ model: 'm1' }, known);
    expect(rule).toMatchObject({ kind: 'latency', latency_ms: 500 }); // the defaults: 500 ms for 5 min
    expect(Date.parse(rule.ends_at) - Date.parse(rule.started_at)).toBe(300_000);
    expect(chaos.decide('m1', 'a')).toEqual({ delayMs: 500, status: 503 });
    expect(chaos.decide('m2', 'a')).toBeUndefined();
    chaos.start({ backend: 'a', kind: 'error', duration_s: 60 }, known);
    expect(chaos.decide('m1', 'a')).toEqual({ delayMs: 500, fail: 'error', status: 503 });
    now = 60_000;
    expect(chaos.decide('m1', 'a')).toEqual({ delayMs: 500, status: 503 });
    now = 300_000;
    expect(chaos.decide('m1', 'a')).toBeUndefined();
    expect(chaos.active).toBe(0);
    expect(active.at(-1)).toBe(0);
    expect(() => chaos.start({}, known)).toThrow(/model/);
    expect(() => chaos.start({ model: 'nope' }, known)).toThrow(/Unknown model/);
    expect(() => chaos.start({ model: 'm1', duration_s: 1e9 }, known)).toThrow(/duration_s/);
    expect(() => chaos.start({ model: 'm1', kind: 'explode' }, known)).toThrow(/kind/);
  });
});

describe('reconfiguration', () => {
  it('a reload that changes the anomaly settings ends open incidents; removing insights turns it off', async () => {
    const { insights, metrics, request } = setup();
    for (let i = 0; i < 30; i++) request({ ttft: 5 });
    for (let i = 0; i < 10; i++) request({ ttft: 400 });
    expect(insights.openIncidents().map((i) => i.kind)).toContain('ttft');
    insights.configure(parsePolicies(POLICY.replace('anomaly: { window: 100, z: 3 }', 'anomaly: { window: 50, z: 4 }'), 't.yaml'), true);
    expect(insights.openIncidents()).toHaveLength(0);
    expect(await metrics.registry.metrics()).toMatch(/llm_gateway_incident_open\{model="m1",kind="ttft"\} 0/);
    insights.configure(parsePolicies(POLICY.replace(/insights:[\s\S]*$/, ''), 't.yaml'), true);
    expect(insights.enabled).toBe(false);
    expect(insights.begin({}, Buffer.from('{}'))).toBeUndefined();
    expect(insights.footprint().models).toBe(0);
  });
});

describe('config', () => {
  it('refuses bad insights settings with their path', () => {
    expect(() => parsePolicies(POLICY.replace('drift: { window: 200 }', 'drift: { window: 5 }'), 't.yaml')).toThrow(
      /insights\.drift\.window/,
    );
    expect(() => parsePolicies(POLICY.replace('drift: { window: 200 }', 'quality: { sample: 2 }'), 't.yaml')).toThrow(
      /insights\.quality\.sample/,
    );
    expect(() => parsePolicies(POLICY.replace('webhook: http://127.0.0.1:9/hook', 'webhook: ftp://x'), 't.yaml')).toThrow(
      /insights\.webhook/,
    );
    expect(() => parsePolicies(POLICY.replace('drift: { window: 200 }', 'drfit: {}'), 't.yaml')).toThrow(/drfit/);
  });
});

describe('a new normal', () => {
  it('a lasting shift keeps its incident open until an operator resets the anomaly baselines', async () => {
    const { insights, metrics, request } = setup();
    for (let i = 0; i < 30; i++) request({ ttft: 5 });
    for (let i = 0; i < 50; i++) request({ ttft: 400 });
    expect(insights.openIncidents().map((i) => i.kind)).toContain('ttft');
    const { reset } = insights.resetAnomalies('m1');
    expect(reset).toEqual(['m1']);
    expect(insights.openIncidents()).toHaveLength(0);
    // 400 ms is the baseline now: no incident reopens.
    for (let i = 0; i < 50; i++) request({ ttft: 400 + (i % 5) });
    expect(insights.openIncidents()).toHaveLength(0);
    expect(await metrics.registry.metrics()).toMatch(/llm_gateway_incident_open\{model="m1",kind="ttft"\} 0/);
  });
});
