// The per-request series are lean (src/telemetry/series.ts), not prom-client children: their
// exposition must stay exactly what prom-client rendered, since names, labels and buckets are
// a contract with dashboards and alerts.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { computeStats } from '../../src/dashboard/stats.js';
import { DURATION_BUCKETS, Metrics, TTFT_BUCKETS } from '../../src/telemetry/metrics.js';

const lines = (text: string, name: string) => text.split('\n').filter((l) => l.startsWith(name));
/** One metric's block (HELP, TYPE, samples) from a scrape. */
const block = (text: string, name: string) =>
  text
    .split('\n\n')
    .find((b) => b.startsWith(`# HELP ${name} `))!
    .trim();

describe('per-request metrics', () => {
  it('renders a histogram series as cumulative buckets, sum and count', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const s = m.series('gpt', 'openai');
    // 0.01 sits exactly on a bound (le is inclusive); 400 is above the last one.
    for (const v of [0.004, 0.01, 0.3, 0.3, 400]) s.duration(false).observe(v);

    const text = await m.registry.metrics();
    const name = 'llm_gateway_request_duration_seconds';
    const labels = 'model="gpt",backend="openai",stream="false"';
    const cumulative = [1, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4];
    expect(lines(text, name)).toEqual([
      ...DURATION_BUCKETS.map((le, i) => `${name}_bucket{le="${le}",${labels}} ${cumulative[i]}`),
      `${name}_bucket{le="+Inf",${labels}} 5`,
      `${name}_sum{${labels}} ${0.004 + 0.01 + 0.3 + 0.3 + 400}`,
      `${name}_count{${labels}} 5`,
    ]);
    expect(text).toContain(
      `# HELP ${name} Time from receiving the request to its last byte leaving toward the client.\n# TYPE ${name} histogram\n`,
    );
  });

  it('shows an update made after a scrape on the next scrape', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const s = m.series('gpt', 'openai');
    s.requests(200).inc();
    s.ttft.observe(0.2);
    const labels = { model: 'gpt', backend: 'openai' };
    const first = await m.registry.metrics();
    expect(lines(first, 'llm_gateway_requests_total{')).toEqual([
      'llm_gateway_requests_total{model="gpt",backend="openai",status="200"} 1',
    ]);
    expect(lines(first, 'llm_gateway_time_to_first_token_seconds_count')).toEqual([
      'llm_gateway_time_to_first_token_seconds_count{model="gpt",backend="openai"} 1',
    ]);

    s.requests(200).inc();
    s.requests(499).inc();
    s.ttft.observe(0.3);
    m.activeFor('gpt').inc();
    const second = await m.registry.metrics();
    expect(lines(second, 'llm_gateway_requests_total{')).toEqual([
      'llm_gateway_requests_total{model="gpt",backend="openai",status="200"} 2',
      'llm_gateway_requests_total{model="gpt",backend="openai",status="499"} 1',
    ]);
    expect(lines(second, 'llm_gateway_time_to_first_token_seconds_count')).toEqual([
      'llm_gateway_time_to_first_token_seconds_count{model="gpt",backend="openai"} 2',
    ]);
    expect(lines(second, 'llm_gateway_active_requests{')).toEqual(['llm_gateway_active_requests{model="gpt"} 1']);
    expect(m.series(labels.model, labels.backend)).toBe(s);
  });

  it('exposes a series from its first update only, as prom-client did', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const s = m.series('gpt', 'openai');
    m.activeFor('gpt');
    m.costFor('gpt', 'team');
    s.reasoning.inc(0); // an update of 0 still creates the series
    const text = await m.registry.metrics();
    expect(lines(text, 'llm_gateway_tokens_total{')).toEqual(['llm_gateway_tokens_total{model="gpt",backend="openai",type="reasoning"} 0']);
    for (const name of ['llm_gateway_active_requests{', 'llm_gateway_cost_usd_total{', 'llm_gateway_time_to_first_token_seconds_']) {
      expect(lines(text, name)).toEqual([]);
    }
    expect(block(text, 'llm_gateway_cost_usd_total')).toBe(
      '# HELP llm_gateway_cost_usd_total Cost in USD at the pricing of the model that served the request.\n# TYPE llm_gateway_cost_usd_total counter',
    );
  });

  it('renders byte for byte what prom-client renders for the same updates', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const ref = new Registry();
    const ttft = new Histogram({
      name: 'llm_gateway_time_to_first_token_seconds',
      help: m.ttft.help,
      labelNames: ['model', 'backend'],
      buckets: TTFT_BUCKETS,
      registers: [ref],
    });
    const tokens = new Counter({
      name: 'llm_gateway_tokens_total',
      help: m.tokens.help,
      labelNames: ['model', 'backend', 'type'],
      registers: [ref],
    });
    const active = new Gauge({ name: 'llm_gateway_active_requests', help: m.active.help, labelNames: ['model'], registers: [ref] });
    const values = [0, 1e-9, 0.01, 0.0100001, 0.07, 0.333, 1, 7.5, 59.99, 60, 61, 1e6];
    for (const [model, backend] of [
      ['a', 'x'],
      ['we"ird\\n', 'y'],
      ['a', 'z'],
    ] as const) {
      const s = m.series(model, backend);
      for (const v of values) {
        s.ttft.observe(v);
        ttft.observe({ model, backend }, v);
      }
      s.output.inc(7.25);
      tokens.inc({ model, backend, type: 'output' }, 7.25);
      s.input.inc(3);
      tokens.inc({ model, backend, type: 'input' }, 3);
      m.activeFor(model).inc(2);
      m.activeFor(model).dec();
      active.inc({ model }, 2);
      active.dec({ model });
    }
    const ours = await m.registry.metrics();
    const theirs = await ref.metrics();
    for (const name of ['llm_gateway_time_to_first_token_seconds', 'llm_gateway_tokens_total', 'llm_gateway_active_requests']) {
      expect(block(ours, name)).toBe(block(theirs, name));
    }
    // get() (what the dashboard reads) merges le into the series labels, as prom-client's.
    const strip = (v: object) => Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'exemplar'));
    expect((await m.ttft.get()).values).toEqual((await ttft.get()).values.map(strip));
    expect((await m.tokens.get()).values).toEqual((await tokens.get()).values);
  });

  it('feeds the dashboard stats', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const s = m.series('gpt', 'openai');
    s.requests(200).inc();
    s.requests(503).inc();
    s.ttft.observe(0.02);
    s.ttft.observe(0.04);
    s.output.inc(10);
    m.costFor('gpt', 'none').inc(0.5);
    const stats = await computeStats(m, [], 0);
    const gpt = stats.models.find((x) => x.model === 'gpt')!;
    expect(gpt).toMatchObject({ requests: 2, errors: 1, cost_usd: 0.5, tokens: { output: 10 } });
    expect(gpt.ttft.count).toBe(2);
    expect(gpt.ttft.sum).toBeCloseTo(0.06);
    expect(gpt.ttft.cumulative.slice(0, 3)).toEqual([0, 1, 2]);
  });

  it('rejects values prom-client rejects', () => {
    const s = new Metrics({ defaultMetrics: false }).series('gpt', 'openai');
    expect(() => s.input.inc(-1)).toThrow('not possible to decrease');
    expect(() => s.input.inc(Infinity)).toThrow(TypeError);
    expect(() => s.ttft.observe(NaN)).toThrow(TypeError);
  });
});
