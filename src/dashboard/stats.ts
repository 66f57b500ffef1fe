// GET /admin/stats: a JSON snapshot computed only from the metrics in the gateway's registry
// (the same numbers /metrics exposes), so it is coupled to no other stage. Everything is
// cumulative since the gateway started; rates (requests/s, error rate) and windowed
// quantiles are the difference of two snapshots, which the dashboard page computes.
import type { MetricValue } from 'prom-client';
import { OVERHEAD_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS, type Metrics } from '../telemetry/metrics.js';

/** A histogram summed over a model's backends, with its quantiles estimated from the buckets. */
export interface HistogramStats {
  count: number;
  sum: number;
  /** Estimated from the buckets as Prometheus' histogram_quantile does; null with no observations. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Finite upper bounds (seconds). */
  le: number[];
  /** Cumulative counts, one per bound plus a last one for +Inf (= count). */
  cumulative: number[];
}

export interface ModelStats {
  model: string;
  /** Every answered request (llm_gateway_requests_total), by the model the client asked for. */
  requests: number;
  /** Status >= 500: the gateway or its upstreams failed. */
  errors: number;
  /** Status 429: refused by a rate limit or a budget (admission), or the upstream's own 429. */
  limited: number;
  /** Status 499: the client left before the answer ended. */
  client_closed: number;
  by_status: Record<string, number>;
  active: number;
  /** Seconds; by the model that served the request (streamed requests only). */
  ttft: HistogramStats;
  tpot: HistogramStats;
  /** Seconds the gateway itself added (llm_gateway_overhead_seconds), by the model that served. */
  overhead: HistogramStats;
  tokens: { input: number; output: number; cached_input: number; reasoning: number; cache_write_input: number };
  cost_usd: number;
  circuits: CircuitStats[];
}

export type CircuitStateName = 'closed' | 'half_open' | 'open';
export interface CircuitStats {
  model: string;
  backend: string;
  state: CircuitStateName;
}

export interface BudgetStats {
  scope: string;
  name: string;
  spend_usd: number;
  limit_usd: number | null;
  /** spend / limit, null without a limit. */
  used: number | null;
}

export interface Stats {
  /** When this snapshot was taken, ms since the epoch. */
  ts: number;
  totals: { requests: number; errors: number; limited: number; client_closed: number; active: number; cost_usd: number };
  /** llm_gateway_overhead_seconds over every model: the time the gateway itself adds. */
  overhead: HistogramStats;
  models: ModelStats[];
  budgets: BudgetStats[];
  circuits: CircuitStats[];
  rate_limited: Array<{ scope: string; limit: string; count: number }>;
}

/**
 * The q-quantile of a cumulative histogram, as Prometheus' histogram_quantile: find the bucket
 * holding the rank q*count and interpolate linearly inside it (the first bucket starts at 0);
 * a rank in the +Inf bucket answers the highest finite bound. null without observations.
 * (The dashboard page carries a copy of this function for its windowed quantiles.)
 */
export function histogramQuantile(q: number, le: readonly number[], cumulative: readonly number[]): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (!(total > 0) || le.length === 0) return null;
  const rank = q * total;
  let i = 0;
  while (i < le.length && cumulative[i]! < rank) i++;
  if (i === le.length) return le[le.length - 1]!;
  const start = i === 0 ? 0 : le[i - 1]!;
  const below = i === 0 ? 0 : cumulative[i - 1]!;
  const inBucket = cumulative[i]! - below;
  if (!(inBucket > 0)) return le[i]!;
  return start + ((le[i]! - start) * (rank - below)) / inBucket;
}

const STATE: Record<number, CircuitStateName> = { 0: 'closed', 1: 'half_open', 2: 'open' };
const SCOPE_ORDER = ['global', 'team', 'user', 'key', 'model'];

type Values = MetricValue<string>[];
const label = (v: { labels: Partial<Record<string, string | number>> }, name: string): string => String(v.labels[name] ?? '');

// Both prom-client metrics and the lean families of series.ts.
async function values(metric: { get(): Promise<{ values: Values }> }): Promise<Values> {
  return (await metric.get()).values;
}

/** Sums one histogram's series by model: buckets, sum and count. */
function histogramsByModel(vals: Values, bounds: readonly number[]): Map<string, { sum: number; cumulative: number[] }> {
  const out = new Map<string, { sum: number; cumulative: number[] }>();
  const index = new Map(bounds.map((b, i) => [b, i]));
  const of = (model: string) => {
    let h = out.get(model);
    if (!h) out.set(model, (h = { sum: 0, cumulative: new Array<number>(bounds.length + 1).fill(0) }));
    return h;
  };
  for (const v of vals) {
    const name = (v as { metricName?: string }).metricName ?? '';
    const h = of(label(v, 'model'));
    if (name.endsWith('_sum')) h.sum += v.value;
    else if (name.endsWith('_bucket')) {
      const le = v.labels.le;
      const i = le === '+Inf' ? bounds.length : index.get(Number(le));
      if (i !== undefined) h.cumulative[i]! += v.value;
    }
  }
  return out;
}

function histogramStats(h: { sum: number; cumulative: number[] } | undefined, bounds: readonly number[]): HistogramStats {
  const cumulative = h?.cumulative ?? new Array<number>(bounds.length + 1).fill(0);
  return {
    count: cumulative[bounds.length]!,
    sum: h?.sum ?? 0,
    p50: histogramQuantile(0.5, bounds, cumulative),
    p95: histogramQuantile(0.95, bounds, cumulative),
    p99: histogramQuantile(0.99, bounds, cumulative),
    le: [...bounds],
    cumulative,
  };
}

const sumBy = (vals: Values, key: string): Map<string, number> => {
  const m = new Map<string, number>();
  for (const v of vals) m.set(label(v, key), (m.get(label(v, key)) ?? 0) + v.value);
  return m;
};

/** One snapshot. `configured` lists the policy's models first, so they show before any traffic. */
export async function computeStats(metrics: Metrics, configured: readonly string[] = [], now = Date.now()): Promise<Stats> {
  const [requests, ttftV, tpotV, tokensV, costV, activeV, spendV, limitV, circuitV, limitedV, overheadV] = await Promise.all([
    values(metrics.requests),
    values(metrics.ttft),
    values(metrics.tpot),
    values(metrics.tokens),
    values(metrics.cost),
    values(metrics.active),
    values(metrics.budgetSpend),
    values(metrics.budgetLimit),
    values(metrics.circuitState),
    values(metrics.rateLimited),
    values(metrics.overhead),
  ]);
  const ttftBounds = TTFT_BUCKETS;
  const tpotBounds = TPOT_BUCKETS;
  const ttft = histogramsByModel(ttftV, ttftBounds);
  const tpot = histogramsByModel(tpotV, tpotBounds);
  const overhead = histogramsByModel(overheadV, OVERHEAD_BUCKETS);
  const overheadAll = { sum: 0, cumulative: new Array<number>(OVERHEAD_BUCKETS.length + 1).fill(0) };
  for (const h of overhead.values()) {
    overheadAll.sum += h.sum;
    h.cumulative.forEach((c, i) => (overheadAll.cumulative[i]! += c));
  }
  const cost = sumBy(costV, 'model');
  const active = sumBy(activeV, 'model');

  const circuits: CircuitStats[] = circuitV
    .map((v) => ({ model: label(v, 'model'), backend: label(v, 'backend'), state: STATE[v.value] ?? 'open' }))
    .sort((a, b) => a.model.localeCompare(b.model) || a.backend.localeCompare(b.backend));

  const names: string[] = [...configured];
  const seen = new Set(names);
  const add = (m: string) => {
    if (m && !seen.has(m)) {
      seen.add(m);
      names.push(m);
    }
  };
  for (const vals of [requests, ttftV, tokensV, costV, activeV]) for (const v of vals) add(label(v, 'model'));
  for (const c of circuits) add(c.model);

  const models = names.map((model): ModelStats => {
    const by_status: Record<string, number> = {};
    let total = 0;
    let errors = 0;
    let limited = 0;
    let closed = 0;
    for (const v of requests) {
      if (label(v, 'model') !== model) continue;
      const status = label(v, 'status');
      const code = Number(status);
      by_status[status] = (by_status[status] ?? 0) + v.value;
      total += v.value;
      if (code >= 500) errors += v.value;
      else if (code === 429) limited += v.value;
      else if (code === 499) closed += v.value;
    }
    const tokens = { input: 0, output: 0, cached_input: 0, reasoning: 0, cache_write_input: 0 };
    for (const v of tokensV) {
      const type = label(v, 'type');
      if (label(v, 'model') === model && type in tokens) tokens[type as keyof typeof tokens] += v.value;
    }
    return {
      model,
      requests: total,
      errors,
      limited,
      client_closed: closed,
      by_status,
      active: active.get(model) ?? 0,
      ttft: histogramStats(ttft.get(model), ttftBounds),
      tpot: histogramStats(tpot.get(model), tpotBounds),
      overhead: histogramStats(overhead.get(model), OVERHEAD_BUCKETS),
      tokens,
      cost_usd: cost.get(model) ?? 0,
      circuits: circuits.filter((c) => c.model === model),
    };
  });

  const budgets = new Map<string, BudgetStats>();
  const budget = (v: { labels: Partial<Record<string, string | number>> }) => {
    const scope = label(v, 'scope');
    const name = label(v, 'name');
    const key = `${scope}\u0000${name}`;
    let b = budgets.get(key);
    if (!b) budgets.set(key, (b = { scope, name, spend_usd: 0, limit_usd: null, used: null }));
    return b;
  };
  for (const v of spendV) budget(v).spend_usd = v.value;
  for (const v of limitV) budget(v).limit_usd = v.value;
  for (const b of budgets.values()) b.used = b.limit_usd && b.limit_usd > 0 ? b.spend_usd / b.limit_usd : null;
  const rank = (s: string) => (SCOPE_ORDER.includes(s) ? SCOPE_ORDER.indexOf(s) : SCOPE_ORDER.length);

  const sum = (f: (m: ModelStats) => number) => models.reduce((a, m) => a + f(m), 0);
  return {
    ts: now,
    totals: {
      requests: sum((m) => m.requests),
      errors: sum((m) => m.errors),
      limited: sum((m) => m.limited),
      client_closed: sum((m) => m.client_closed),
      active: sum((m) => m.active),
      cost_usd: sum((m) => m.cost_usd),
    },
    overhead: histogramStats(overheadAll, OVERHEAD_BUCKETS),
    models,
    budgets: [...budgets.values()].sort(
      (a, b) => rank(a.scope) - rank(b.scope) || a.scope.localeCompare(b.scope) || a.name.localeCompare(b.name),
    ),
    circuits,
    rate_limited: limitedV.map((v) => ({ scope: label(v, 'scope'), limit: label(v, 'limit'), count: v.value })),
  };
}
