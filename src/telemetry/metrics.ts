// Prometheus metrics. Names and labels are a contract (docs/architecture.md, deploy/metric-names.txt).
// Labels only ever carry bounded values: configured model/backend/team names, status codes,
// fixed enums. Never request ids or keys: prom-client renders the whole scrape synchronously
// on the event loop that also pumps the streams, so series count is latency.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterFamily, GaugeFamily, HistogramFamily, type CounterSeries, type GaugeSeries, type HistogramSeries } from './series.js';

/**
 * The per-request series of one (model, backend), resolved once. A request touches up to nine
 * series; prom-client would hash and validate the label set on each update, even through a
 * cached child, so these are lean series (series.ts) whose updates are plain arithmetic.
 */
export class ModelSeries {
  private readonly byStatus = new Map<number, CounterSeries>();
  private readonly byStream: [HistogramSeries | undefined, HistogramSeries | undefined] = [undefined, undefined];
  readonly ttft: HistogramSeries;
  readonly tpot: HistogramSeries;
  readonly input: CounterSeries;
  readonly output: CounterSeries;
  readonly cachedInput: CounterSeries;
  readonly reasoning: CounterSeries;
  readonly cacheWriteInput: CounterSeries;

  constructor(
    private readonly m: Metrics,
    private readonly model: string,
    private readonly backend: string,
  ) {
    // Resolving a series does not expose it: it shows from its first update, as before.
    this.ttft = m.ttft.child(model, backend);
    this.tpot = m.tpot.child(model, backend);
    this.input = m.tokens.child(model, backend, 'input');
    this.output = m.tokens.child(model, backend, 'output');
    this.cachedInput = m.tokens.child(model, backend, 'cached_input');
    this.reasoning = m.tokens.child(model, backend, 'reasoning');
    this.cacheWriteInput = m.tokens.child(model, backend, 'cache_write_input');
  }

  requests(status: number): CounterSeries {
    let c = this.byStatus.get(status);
    if (!c) this.byStatus.set(status, (c = this.m.requests.child(this.model, this.backend, String(status))));
    return c;
  }

  duration(stream: boolean): HistogramSeries {
    const i = stream ? 1 : 0;
    return (this.byStream[i] ??= this.m.duration.child(this.model, this.backend, String(stream)));
  }
}

// Bucket boundaries follow vLLM's and the OpenTelemetry GenAI conventions, stretched to cover
// the ranges the issue asks for (TTFT 10 ms..60 s, TPOT 1 ms..1 s).
export const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60];
export const TPOT_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1,
];
/** The gateway's own added time: fine steps from 50 us to 10 ms, where it lives, then coarse. */
export const OVERHEAD_BUCKETS = [
  0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
  0.25, 1,
];
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

/** What the pool gauges read of a backend (structurally, upstream's Backend). */
export interface UpstreamPoolView {
  readonly name: string;
  readonly pool: { readonly stats: { readonly connected: number; readonly free: number; readonly pending: number } };
}

export class Metrics {
  readonly registry = new Registry();

  readonly requests = new CounterFamily(
    this.registry,
    'llm_gateway_requests_total',
    'Requests answered, by the model the client asked for, the backend that served it and HTTP status (499: client left).',
    ['model', 'backend', 'status'],
  );
  readonly duration = new HistogramFamily(
    this.registry,
    'llm_gateway_request_duration_seconds',
    'Time from receiving the request to its last byte leaving toward the client.',
    ['model', 'backend', 'stream'],
    DURATION_BUCKETS,
  );
  readonly ttft = new HistogramFamily(
    this.registry,
    'llm_gateway_time_to_first_token_seconds',
    'Time from receiving the request to the first content token leaving toward the client (streamed requests).',
    ['model', 'backend'],
    TTFT_BUCKETS,
  );
  readonly tpot = new HistogramFamily(
    this.registry,
    'llm_gateway_time_per_output_token_seconds',
    '(last token - first token) / (output tokens - 1), one observation per streamed request.',
    ['model', 'backend'],
    TPOT_BUCKETS,
  );
  readonly tokens = new CounterFamily(
    this.registry,
    'llm_gateway_tokens_total',
    'Tokens by type: input (the whole prompt), output, cached_input and cache_write_input (parts of input), reasoning (part of output).',
    ['model', 'backend', 'type'],
  );
  readonly cost = new CounterFamily(
    this.registry,
    'llm_gateway_cost_usd_total',
    'Cost in USD at the pricing of the model that served the request.',
    ['model', 'team'],
  );
  readonly active = new GaugeFamily(this.registry, 'llm_gateway_active_requests', 'Requests in flight.', ['model']);
  readonly rateLimited = new Counter({
    name: 'llm_gateway_rate_limited_total',
    help: 'Requests refused by admission, by the scope that refused and the limit (rpm, tpm, concurrency, budget).',
    labelNames: ['scope', 'limit'] as const,
    registers: [this.registry],
  });
  /**
   * Writers of pending budget-spend values, run when the gauge is read (scrape, dashboard):
   * admission records the latest spend per budget in a Map on every settle and the gauge is
   * set only when someone looks (setting a labelled gauge hashes its labels).
   */
  readonly budgetSpendWriters = new Set<() => void>();
  readonly budgetSpend = new Gauge({
    name: 'llm_gateway_budget_spend_usd',
    help: 'Spend in the current budget period.',
    labelNames: ['scope', 'name'] as const,
    registers: [this.registry],
    collect: () => {
      for (const write of this.budgetSpendWriters) write();
    },
  });
  readonly budgetLimit = new Gauge({
    name: 'llm_gateway_budget_limit_usd',
    help: 'Budget limit of the current period.',
    labelNames: ['scope', 'name'] as const,
    registers: [this.registry],
  });
  readonly budgetAlerts = new Counter({
    name: 'llm_gateway_budget_alerts_total',
    help: 'Budget thresholds crossed (each fires once per period).',
    labelNames: ['scope', 'threshold'] as const,
    registers: [this.registry],
  });
  readonly circuitState = new Gauge({
    name: 'llm_gateway_circuit_state',
    help: 'Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.',
    labelNames: ['model', 'backend'] as const,
    registers: [this.registry],
  });
  readonly fallbacks = new Counter({
    name: 'llm_gateway_fallbacks_total',
    help: 'Requests moved to a fallback model.',
    labelNames: ['from', 'to', 'reason'] as const,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'llm_gateway_upstream_errors_total',
    help: 'Upstream failures by reason: connect, timeout, reset, status_5xx, status_429, mid_stream, ...',
    labelNames: ['backend', 'reason'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'llm_gateway_retries_total',
    help: 'Upstream attempts retried.',
    labelNames: ['model', 'backend', 'reason'] as const,
    registers: [this.registry],
  });
  /**
   * The upstream pools to report, read at scrape time (the gateway points it at its current
   * backends): queue and connection counts cost nothing per request, only per scrape.
   */
  upstreamPools: () => Iterable<UpstreamPoolView> = () => [];
  readonly upstreamPending = new Gauge({
    name: 'llm_gateway_upstream_pending',
    help: 'Requests waiting for a connection to their backend (queued over pool_size, or while their connection opens).',
    labelNames: ['backend'] as const,
    registers: [this.registry],
    collect: () => {
      this.upstreamPending.reset();
      for (const b of this.upstreamPools()) this.upstreamPending.set({ backend: b.name }, b.pool.stats.pending);
    },
  });
  readonly upstreamConnections = new Gauge({
    name: 'llm_gateway_upstream_connections',
    help: 'Connections to each backend by state: open (connected), busy (carrying a request or stream).',
    labelNames: ['backend', 'state'] as const,
    registers: [this.registry],
    collect: () => {
      const g = this.upstreamConnections;
      g.reset();
      for (const b of this.upstreamPools()) {
        const st = b.pool.stats;
        g.set({ backend: b.name, state: 'open' }, st.connected);
        g.set({ backend: b.name, state: 'busy' }, st.connected - st.free);
      }
    },
  });
  /** Set by admission when it uses the redis store: operations queued for it, read at scrape time. */
  storePendingOps: (() => number) | undefined = undefined;
  readonly storePending: Gauge = new Gauge({
    name: 'llm_gateway_store_pending_operations',
    help: 'Settles and releases waiting for the redis state store (down or slow); past 100000 the oldest is dropped and its lease frees it.',
    registers: [this.registry],
    collect: (): void => this.storePending.set(this.storePendingOps?.() ?? 0),
  });
  readonly storeErrors = new Counter({
    name: 'llm_gateway_store_errors_total',
    help: 'Errors talking to the shared state store.',
    labelNames: ['store', 'op'] as const,
    registers: [this.registry],
  });
  readonly overhead = new HistogramFamily(
    this.registry,
    'llm_gateway_overhead_seconds',
    'Time the gateway itself adds to a request served at the first attempt: request received -> upstream request sent, plus upstream first byte -> client first byte (non-streamed: upstream body complete -> response written).',
    ['model', 'stream'],
    OVERHEAD_BUCKETS,
  );
  readonly traceSpansDropped = new Counter({
    name: 'llm_gateway_trace_spans_dropped_total',
    help: 'Spans not exported, by reason: queue_full (the batch queue was full, e.g. collector unreachable), export_failed.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly policyReloads = new Counter({
    name: 'llm_gateway_policy_reloads_total',
    help: 'Policy reloads by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly clientErrors = new Counter({
    name: 'llm_gateway_client_errors_total',
    help: 'Requests node:http refused before the gateway saw them, by reason: request_timeout (slow head), header_overflow (over 16 KiB), bad_request (unparsable).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'llm_gateway_connections_refused_total',
    help: 'Client connections refused at accept because server.max_connections were open.',
    registers: [this.registry],
  });

  // Traffic intelligence (src/insights/). Labels: configured model names and fixed enums only.
  readonly qualitySignals = new CounterFamily(
    this.registry,
    'llm_gateway_quality_signals_total',
    'Responses showing a quality signal: refusal, repetition, truncated, content_filter, empty, invalid_json, pii.',
    ['model', 'signal'],
  );
  readonly driftPsi = new GaugeFamily(
    this.registry,
    'llm_gateway_drift_psi',
    'Population Stability Index of the last drift window against the reference (< 0.1 stable, > 0.2 severe).',
    ['model', 'feature'],
  );
  readonly driftKsPvalue = new GaugeFamily(
    this.registry,
    'llm_gateway_drift_ks_pvalue',
    'Two-sample Kolmogorov-Smirnov p-value of the last drift window against the reference (< 0.05: drifted).',
    ['model', 'feature'],
  );
  readonly anomalyScore = new GaugeFamily(
    this.registry,
    'llm_gateway_anomaly_score',
    'Anomaly score min(z/6, 1) of ttft, tpot, duration and error_rate against their rolling baseline, averaged over the last points.',
    ['model', 'signal'],
  );
  readonly incidents = new Counter({
    name: 'llm_gateway_incidents_total',
    help: 'Incidents opened, by kind (the anomalous signal) and severity.',
    labelNames: ['kind', 'severity'] as const,
    registers: [this.registry],
  });
  readonly incidentOpen = new GaugeFamily(this.registry, 'llm_gateway_incident_open', 'Incidents open now (1) per model and kind.', [
    'model',
    'kind',
  ]);
  readonly chaosActive = new Gauge({
    name: 'llm_gateway_chaos_active',
    help: 'Chaos injections active now (POST /admin/chaos).',
    registers: [this.registry],
  });

  // Nested maps: a composite string key would be built (and hashed) on every request.
  private readonly seriesCache = new Map<string, Map<string, ModelSeries>>();
  private readonly activeCache = new Map<string, GaugeSeries>();
  private readonly costCache = new Map<string, Map<string, CounterSeries>>();
  private readonly overheadCache = new Map<string, [HistogramSeries | undefined, HistogramSeries | undefined]>();

  /** The cached series of (model, backend); both are bounded, configured names. */
  series(model: string, backend: string): ModelSeries {
    let byBackend = this.seriesCache.get(model);
    if (!byBackend) this.seriesCache.set(model, (byBackend = new Map<string, ModelSeries>()));
    let s = byBackend.get(backend);
    if (!s) byBackend.set(backend, (s = new ModelSeries(this, model, backend)));
    return s;
  }

  activeFor(model: string): GaugeSeries {
    let g = this.activeCache.get(model);
    if (!g) this.activeCache.set(model, (g = this.active.child(model)));
    return g;
  }

  overheadFor(model: string, stream: boolean): HistogramSeries {
    let pair = this.overheadCache.get(model);
    if (!pair) this.overheadCache.set(model, (pair = [undefined, undefined]));
    const i = stream ? 1 : 0;
    return (pair[i] ??= this.overhead.child(model, String(stream)));
  }

  costFor(model: string, team: string): CounterSeries {
    let byTeam = this.costCache.get(model);
    if (!byTeam) this.costCache.set(model, (byTeam = new Map<string, CounterSeries>()));
    let c = byTeam.get(team);
    if (!c) byTeam.set(team, (c = this.cost.child(model, team)));
    return c;
  }

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: 'llm_gateway_' });
      dropTotalGauges(this.registry);
    }
    // Both series exist from the start: increase() over a series that first appears with the
    // first failure reads 0, and the reload-failed alert would miss it.
    for (const result of ['success', 'failure']) this.policyReloads.inc({ result }, 0);
    for (const reason of ['queue_full', 'export_failed']) this.traceSpansDropped.inc({ reason }, 0);
  }
}

/**
 * prom-client's default metrics include gauges named `*_total` (nodejs_active_handles_total,
 * _requests_total, _resources_total): `_total` is reserved for counters, so `promtool check
 * metrics` fails the whole page on them. Each is the sum of its per-type gauge
 * (`nodejs_active_handles{type}` ...), so nothing is lost: `sum(llm_gateway_nodejs_active_handles)`.
 */
function dropTotalGauges(registry: Registry): void {
  for (const m of registry.getMetricsAsArray()) {
    const { name, type } = m as unknown as { name: string; type: string };
    if (type === 'gauge' && name.endsWith('_total')) registry.removeSingleMetric(name);
  }
}
