// Prometheus metrics. Names and labels are a contract (DESIGN.md, deploy/metric-names.txt).
// Labels only ever carry bounded values: configured model/backend/team names, status codes,
// fixed enums. Never request ids or keys: prom-client renders the whole scrape synchronously
// on the event loop that also pumps the streams, so series count is latency.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type CounterChild = ReturnType<Counter['labels']>;
type HistogramChild = ReturnType<Histogram['labels']>;
type GaugeChild = ReturnType<Gauge['labels']>;

/**
 * The per-request series of one (model, backend), resolved once. prom-client hashes a label
 * set on every inc/observe; a request touches up to nine series, so settling paid for nine
 * hashes (sorting and joining label values) per request. Children are cached here instead,
 * behind one Map lookup. Safe because these series are never removed.
 */
export class ModelSeries {
  private readonly byStatus = new Map<number, CounterChild>();
  private readonly byStream: [HistogramChild | undefined, HistogramChild | undefined] = [undefined, undefined];
  readonly ttft: HistogramChild;
  readonly tpot: HistogramChild;
  readonly input: CounterChild;
  readonly output: CounterChild;
  readonly cachedInput: CounterChild;
  readonly reasoning: CounterChild;

  constructor(
    private readonly m: Metrics,
    private readonly model: string,
    private readonly backend: string,
  ) {
    const labels = { model, backend };
    this.ttft = m.ttft.labels(labels);
    this.tpot = m.tpot.labels(labels);
    this.input = m.tokens.labels({ ...labels, type: 'input' });
    this.output = m.tokens.labels({ ...labels, type: 'output' });
    this.cachedInput = m.tokens.labels({ ...labels, type: 'cached_input' });
    this.reasoning = m.tokens.labels({ ...labels, type: 'reasoning' });
  }

  requests(status: number): CounterChild {
    let c = this.byStatus.get(status);
    if (!c) this.byStatus.set(status, (c = this.m.requests.labels({ model: this.model, backend: this.backend, status: String(status) })));
    return c;
  }

  duration(stream: boolean): HistogramChild {
    const i = stream ? 1 : 0;
    return (this.byStream[i] ??= this.m.duration.labels({ model: this.model, backend: this.backend, stream: String(stream) }));
  }
}

// Bucket boundaries follow vLLM's and the OpenTelemetry GenAI conventions, stretched to cover
// the ranges the issue asks for (TTFT 10 ms..60 s, TPOT 1 ms..1 s).
export const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60];
export const TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1];
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

export class Metrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'llm_gateway_requests_total',
    help: 'Requests answered, by the model the client asked for, the backend that served it and HTTP status (499: client left).',
    labelNames: ['model', 'backend', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'llm_gateway_request_duration_seconds',
    help: 'Time from receiving the request to its last byte leaving toward the client.',
    labelNames: ['model', 'backend', 'stream'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly ttft = new Histogram({
    name: 'llm_gateway_time_to_first_token_seconds',
    help: 'Time from receiving the request to the first content token leaving toward the client (streamed requests).',
    labelNames: ['model', 'backend'] as const,
    buckets: TTFT_BUCKETS,
    registers: [this.registry],
  });
  readonly tpot = new Histogram({
    name: 'llm_gateway_time_per_output_token_seconds',
    help: '(last token - first token) / (output tokens - 1), one observation per streamed request.',
    labelNames: ['model', 'backend'] as const,
    buckets: TPOT_BUCKETS,
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'llm_gateway_tokens_total',
    help: 'Tokens by type: input, output, cached_input, reasoning.',
    labelNames: ['model', 'backend', 'type'] as const,
    registers: [this.registry],
  });
  readonly cost = new Counter({
    name: 'llm_gateway_cost_usd_total',
    help: 'Cost in USD at the pricing of the model that served the request.',
    labelNames: ['model', 'team'] as const,
    registers: [this.registry],
  });
  readonly active = new Gauge({
    name: 'llm_gateway_active_requests',
    help: 'Requests in flight.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'llm_gateway_rate_limited_total',
    help: 'Requests refused by admission, by the scope that refused and the limit (rpm, tpm, concurrency, budget).',
    labelNames: ['scope', 'limit'] as const,
    registers: [this.registry],
  });
  readonly budgetSpend = new Gauge({
    name: 'llm_gateway_budget_spend_usd',
    help: 'Spend in the current budget period.',
    labelNames: ['scope', 'name'] as const,
    registers: [this.registry],
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
  readonly storeErrors = new Counter({
    name: 'llm_gateway_store_errors_total',
    help: 'Errors talking to the shared state store.',
    labelNames: ['store', 'op'] as const,
    registers: [this.registry],
  });
  readonly policyReloads = new Counter({
    name: 'llm_gateway_policy_reloads_total',
    help: 'Policy reloads by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  private readonly seriesCache = new Map<string, ModelSeries>();
  private readonly activeCache = new Map<string, GaugeChild>();
  private readonly costCache = new Map<string, CounterChild>();

  /** The cached series of (model, backend); both are bounded, configured names. */
  series(model: string, backend: string): ModelSeries {
    const k = `${model}\u0000${backend}`;
    let s = this.seriesCache.get(k);
    if (!s) this.seriesCache.set(k, (s = new ModelSeries(this, model, backend)));
    return s;
  }

  activeFor(model: string): GaugeChild {
    let g = this.activeCache.get(model);
    if (!g) this.activeCache.set(model, (g = this.active.labels({ model })));
    return g;
  }

  costFor(model: string, team: string): CounterChild {
    const k = `${model}\u0000${team}`;
    let c = this.costCache.get(k);
    if (!c) this.costCache.set(k, (c = this.cost.labels({ model, team })));
    return c;
  }

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'llm_gateway_' });
    // Both series exist from the start: increase() over a series that first appears with the
    // first failure reads 0, and the reload-failed alert would miss it.
    for (const result of ['success', 'failure']) this.policyReloads.inc({ result }, 0);
  }
}
