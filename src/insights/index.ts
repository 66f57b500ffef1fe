// Traffic intelligence: quality signals, drift, anomalies and incidents, SLA figures, cost
// recommendations and chaos, computed from live traffic beside the hot path. Settle hands
// over each finished request once (RequestInsight.settled); nothing here runs per chunk.
// The forwarder only pushes chunk references into a bounded OutputSlice for the sampled
// responses. State is fixed-size per configured model (see each module); models are the
// policy's own names, so memory and metric series stay bounded whatever the traffic.
//
// One Insights lives as long as the gateway: a policy reload reconfigures it, keeping its
// state where the settings it depends on did not change.
import type { InsightsConfig, Policies } from '../config/schema.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import type { CounterSeries, GaugeSeries } from '../telemetry/series.js';
import { Detector, SIGNALS, severityOf, type Signal } from './anomaly.js';
import { Chaos, type ChaosClock } from './chaos.js';
import { FEATURES, FeatureDrift, type DriftResult, type Feature } from './drift.js';
import { ERROR_REASONS, MAX_KEPT, buildHint, errorReason, isLoud, worse, type Incident } from './incidents.js';
import { BatchNotifier, type Post } from './notifier.js';
import { extractText, scoreText, wantsJson, type PiiKind } from './quality.js';
import { SlaTracker } from './sla.js';
import { OutputSlice } from './slice.js';
import { PromptSketch, hashPrompt } from './prompts.js';
import { recommend, type BudgetFact, type ModelUsage } from './recommend.js';

export { Chaos } from './chaos.js';
export type { ChaosHook, ChaosDecision } from './chaos.js';
export type { BudgetFact } from './recommend.js';

export const QUALITY_SIGNALS = ['refusal', 'repetition', 'truncated', 'content_filter', 'empty', 'invalid_json', 'pii'] as const;
export type QualitySignal = (typeof QUALITY_SIGNALS)[number];

/** Requests per error-rate point: the anomaly detector sees error rates, not single errors. */
const ERROR_GROUP = 10;
/** Recent error reasons kept per model, for hints. */
const REASONS_KEPT = 64;
/** A policy reload this recent is named in a hint. */
const RELOAD_HINT_MS = 10 * 60_000;

/** What insights reads of a settled request (settle's RequestRecord has these fields). */
export interface Observation {
  endpoint: string;
  routed?: boolean;
  backend?: string;
  status: number;
  receivedAt: number;
  endedAt: number;
  tokens?: { input: number; output: number };
  finishReason?: string;
  error?: { code: string };
}

export interface CircuitFact {
  model: string;
  backend: string;
  state: string;
  openings: number;
}

export interface InsightsOptions {
  /** Wall clock, epoch ms (SLA minutes, incident times, budgets). */
  now?: () => number;
  random?: () => number;
  /** How the webhook POSTs (tests). */
  post?: Post;
  chaosClock?: ChaosClock;
}

/** Per request: made when the request starts (only when insights is on), finished by settle. */
export class RequestInsight {
  constructor(
    private readonly owner: Insights,
    /** The bounded raw bytes of the response, for a sampled one. */
    readonly slice: OutputSlice | undefined,
    readonly wantJson: boolean,
    readonly repeatPrompt: boolean,
  ) {}

  /** Settle's one call, with what it computed: served model, cost and latencies (ms). */
  settled(rec: Observation, servedModel: string, costUsd: number, ttftMs: number | undefined, tpotMs: number | undefined): void {
    this.owner.observe(rec, this, servedModel, costUsd, ttftMs, tpotMs);
  }
}

class ModelState {
  readonly quality: Record<QualitySignal, number> = {
    refusal: 0,
    repetition: 0,
    truncated: 0,
    content_filter: 0,
    empty: 0,
    invalid_json: 0,
    pii: 0,
  };
  readonly pii: Record<PiiKind, number> = { email: 0, card: 0, phone: 0 };
  responses = 0;
  scored = 0;
  readonly drift: Record<Feature, FeatureDrift>;
  detectors: Record<Signal, Detector>;
  readonly open: Partial<Record<Signal, Incident>> = {};
  readonly sla = new SlaTracker();
  readonly reasons = new Uint8Array(REASONS_KEPT);
  reasonsAt = 0;
  reasonsFilled = 0;
  errN = 0;
  errBad = 0;
  readonly usage: ModelUsage = { requests: 0, ok: 0, costUsd: 0, inputTokens: 0, outputTokens: 0, hashed: 0, repeats: 0 };
  // Metric series, resolved once.
  readonly qualitySeries: Record<QualitySignal, CounterSeries>;
  readonly psiSeries: Record<Feature, GaugeSeries>;
  readonly ksSeries: Record<Feature, GaugeSeries>;
  readonly scoreSeries: Record<Signal, GaugeSeries>;
  readonly openSeries: Record<Signal, GaugeSeries>;

  constructor(
    readonly name: string,
    cfg: InsightsConfig,
    metrics: Metrics,
    random: (() => number) | undefined,
  ) {
    const per = <K extends string, V>(keys: readonly K[], f: (k: K) => V) => Object.fromEntries(keys.map((k) => [k, f(k)])) as Record<K, V>;
    this.drift = per(FEATURES, () => new FeatureDrift(cfg.drift.window, cfg.drift.buckets, random));
    this.detectors = per(SIGNALS, (s) => new Detector(s, cfg.anomaly));
    this.qualitySeries = per(QUALITY_SIGNALS, (s) => metrics.qualitySignals.child(name, s));
    this.psiSeries = per(FEATURES, (f) => metrics.driftPsi.child(name, f));
    this.ksSeries = per(FEATURES, (f) => metrics.driftKsPvalue.child(name, f));
    this.scoreSeries = per(SIGNALS, (s) => metrics.anomalyScore.child(name, s));
    this.openSeries = per(SIGNALS, (s) => metrics.incidentOpen.child(name, s));
  }

  count(signal: QualitySignal): void {
    this.quality[signal]++;
    this.qualitySeries[signal].inc();
  }

  pushReason(r: number): void {
    this.reasons[this.reasonsAt] = r;
    this.reasonsAt = (this.reasonsAt + 1) % REASONS_KEPT;
    if (this.reasonsFilled < REASONS_KEPT) this.reasonsFilled++;
  }

  reasonCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < this.reasonsFilled; i++) {
      const r = ERROR_REASONS[this.reasons[i]!]!;
      out[r] = (out[r] ?? 0) + 1;
    }
    return out;
  }
}

export class Insights {
  private cfg: InsightsConfig | undefined;
  private readonly models = new Map<string, ModelState>();
  private configured = new Set<string>();
  private backendNames = new Set<string>();
  private pricing = new Map<string, { input: number; output: number; fallbacks: string[] }>();
  private readonly backendIdx = new Map<string, number>();
  private readonly backendList: string[] = [];
  private readonly prompts = new PromptSketch();
  private readonly hours = new Float64Array(24);
  private readonly history: Incident[] = [];
  private incidentSeq = 0;
  private lastReloadAt: number | undefined;
  private notifier: BatchNotifier | undefined;
  readonly chaos: Chaos;
  private readonly now: () => number;
  private readonly random: () => number;
  /** Breaker states, for hints (wired by the gateway). */
  circuits: () => CircuitFact[] = () => [];

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly opts: InsightsOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.chaos = new Chaos((n) => metrics.chaosActive.set(n), opts.chaosClock);
    // Read on scrape, so a rule that ended by itself shows 0 even before its timer ran.
    metrics.chaosActive.set(0);
  }

  get enabled(): boolean {
    return this.cfg !== undefined;
  }

  /** Applies a policy (at start and on every reload). State survives unless the settings it depends on changed. */
  configure(policies: Policies, reload = false): void {
    if (reload) this.lastReloadAt = this.now();
    const prev = this.cfg;
    const cfg = policies.insights;
    this.configured = new Set(Object.keys(policies.models));
    this.backendNames = new Set(Object.keys(policies.backends));
    this.pricing = new Map(
      Object.entries(policies.models).map(([n, m]) => [
        n,
        { input: m.pricing.input_per_mtok, output: m.pricing.output_per_mtok, fallbacks: m.fallbacks },
      ]),
    );
    const shape = (c: InsightsConfig | undefined) => JSON.stringify(c ? [c.drift, c.anomaly] : null);
    const restart = shape(prev) !== shape(cfg);
    for (const [name, m] of this.models) if (restart || !this.configured.has(name)) this.drop(m);
    this.cfg = cfg;
    if (cfg?.webhook) {
      const s = { url: cfg.webhook, ...cfg.notify };
      if (this.notifier) this.notifier.configure(s);
      else this.notifier = new BatchNotifier(s, this.logger, this.opts.post);
    } else {
      this.notifier?.close();
      this.notifier = undefined;
    }
  }

  /** At the start of a request: undefined when insights is off. */
  begin(body: Record<string, unknown>, raw: Buffer): RequestInsight | undefined {
    const cfg = this.cfg;
    if (!cfg) return undefined;
    const q = cfg.quality;
    const sampled = q.sample >= 1 || (q.sample > 0 && this.random() < q.sample);
    const repeat = this.prompts.seen(hashPrompt(raw));
    return new RequestInsight(this, sampled ? new OutputSlice(q.head_bytes, q.tail_bytes) : undefined, sampled && wantsJson(body), repeat);
  }

  private state(model: string): ModelState | undefined {
    let m = this.models.get(model);
    if (!m && this.cfg && this.configured.has(model))
      this.models.set(model, (m = new ModelState(model, this.cfg, this.metrics, this.opts.random)));
    return m;
  }

  private backendIndex(name: string): number {
    let i = this.backendIdx.get(name);
    if (i === undefined) {
      if (this.backendList.length >= 4096) return -1; // configured names only in practice; bounded regardless
      this.backendIdx.set(name, (i = this.backendList.length));
      this.backendList.push(name);
    }
    return i;
  }

  /** Forgets a model's state; its open incidents end (the signal they watched is gone). */
  private drop(m: ModelState): void {
    const now = this.now();
    for (const s of SIGNALS) if (m.open[s]) this.resolve(m, s, now);
    this.models.delete(m.name);
  }

  /** @internal Called through RequestInsight.settled. */
  observe(
    rec: Observation,
    ri: RequestInsight,
    servedModel: string,
    costUsd: number,
    ttftMs: number | undefined,
    tpotMs: number | undefined,
  ): void {
    if (!this.cfg || rec.routed === false) return;
    const m = this.state(servedModel);
    if (!m) return;
    const now = this.now();
    const ok = rec.status < 400;
    const failed = rec.status >= 500;
    const durationMs = rec.endedAt - rec.receivedAt;
    const b = this.backendIndex(rec.backend ?? 'none');

    m.sla.record(now, failed, ttftMs, tpotMs, ok ? durationMs : undefined);
    this.hours[Math.floor(now / 3_600_000) % 24]! += 1;
    const reason = errorReason(rec.status, rec.error?.code);
    if (reason) m.pushReason(ERROR_REASONS.indexOf(reason as (typeof ERROR_REASONS)[number]));

    const u = m.usage;
    u.requests++;
    u.costUsd += costUsd;
    u.hashed++;
    if (ri.repeatPrompt) u.repeats++;

    // Anomalies. Errors count as points of an error rate, ERROR_GROUP requests at a time.
    if (ttftMs !== undefined) this.point(m, 'ttft', ttftMs, b, now);
    if (tpotMs !== undefined) this.point(m, 'tpot', tpotMs, b, now);
    if (ok) this.point(m, 'duration', durationMs, b, now);
    if (rec.status !== 499) {
      m.errN++;
      if (failed) m.errBad++;
      if (m.errN >= ERROR_GROUP) {
        const rate = m.errBad / m.errN;
        m.errN = m.errBad = 0;
        this.point(m, 'error_rate', rate, -1, now);
      }
    }
    if (!ok) return;

    u.ok++;
    if (rec.tokens) {
      u.inputTokens += rec.tokens.input;
      u.outputTokens += rec.tokens.output;
      this.drifted(m, 'input_tokens', rec.tokens.input);
      if (rec.endpoint !== 'embeddings') this.drifted(m, 'output_tokens', rec.tokens.output);
    }
    if (ttftMs !== undefined) this.drifted(m, 'ttft', ttftMs);
    if (tpotMs !== undefined) this.drifted(m, 'tpot', tpotMs);
    this.drifted(m, 'duration', durationMs);

    if (rec.endpoint === 'embeddings') return;
    this.scoreQuality(m, rec, ri);
  }

  private scoreQuality(m: ModelState, rec: Observation, ri: RequestInsight): void {
    m.responses++;
    const fr = rec.finishReason;
    if (fr === 'length' || fr === 'max_tokens' || fr === 'max_output_tokens') m.count('truncated');
    else if (fr === 'content_filter') m.count('content_filter');
    const out = rec.tokens?.output;
    if (out === 0 && fr !== 'tool_calls' && fr !== 'tool_use') m.count('empty');
    const slice = ri.slice;
    if (!slice || slice.bytes === 0) {
      if (fr === 'refusal') m.count('refusal');
      return;
    }
    const { head, tail } = slice.text();
    let text: ReturnType<typeof extractText>;
    if (slice.cut) {
      const h = extractText(head);
      const t = extractText(tail);
      text = { text: h.text + '\n' + t.text, refusalField: h.refusalField || t.refusalField };
    } else text = extractText(head + tail);
    if (fr === 'refusal') text.refusalField = true;
    m.scored++;
    const score = scoreText(text, ri.wantJson, !slice.cut);
    for (const s of score.signals) m.count(s);
    for (const k of score.pii) m.pii[k]++;
  }

  private drifted(m: ModelState, f: Feature, v: number): void {
    const r = m.drift[f].add(v);
    if (!r) return;
    m.psiSeries[f].set(r.psi);
    m.ksSeries[f].set(r.ks_pvalue);
  }

  private point(m: ModelState, signal: Signal, v: number, backend: number, now: number): void {
    const d = m.detectors[signal];
    d.observe(v, backend);
    m.scoreSeries[signal].set(d.score);
    const open = m.open[signal];
    const anomalies = d.recentAnomalies;
    if (!open) {
      if (anomalies >= d.settings.persist) this.openIncident(m, signal, now);
    } else if (anomalies === 0) this.resolve(m, signal, now);
    else {
      const sev = severityOf(this.anomalousScore(d));
      const next = worse(open.severity, sev);
      if (next !== open.severity) open.severity = next;
    }
  }

  /** min(z/6,1) of the anomalous points: what the incident's severity is judged on. */
  private anomalousScore(d: Detector): number {
    return Math.min(d.zFor(d.recentMean()) / 6, 1);
  }

  private openIncident(m: ModelState, kind: Signal, now: number): void {
    const d = m.detectors[kind];
    const { anomalous, normal } = d.recentBackends();
    const names = (s: Set<number>) => [...s].filter((i) => i >= 0).map((i) => this.backendList[i]!);
    const anomalousBackends = names(anomalous);
    const normalBackends = names(normal).filter((n) => !anomalousBackends.includes(n));
    const other = kind === 'ttft' ? m.detectors.tpot : kind === 'tpot' ? m.detectors.ttft : undefined;
    const breakers = this.circuits()
      .filter((c) => c.model === m.name && (c.state !== 'closed' || c.openings > 0))
      .map((c) => ({ backend: c.backend, state: c.state, openings: c.openings }));
    const reloadAgo =
      this.lastReloadAt !== undefined && now - this.lastReloadAt <= RELOAD_HINT_MS ? (now - this.lastReloadAt) / 1000 : undefined;
    const score = this.anomalousScore(d);
    const base = d.baseline;
    const unit = kind === 'error_rate' ? 'share' : 'ms';
    const incident: Incident = {
      id: `inc-${now.toString(36)}-${++this.incidentSeq}`,
      model: m.name,
      backend: anomalousBackends.length === 1 && normalBackends.length > 0 ? anomalousBackends[0]! : null,
      kind,
      severity: severityOf(score),
      started_at: new Date(now).toISOString(),
      resolved_at: null,
      evidence: {
        signal: kind,
        unit,
        baseline_mean: round(base.mean),
        baseline_std: round(base.std),
        baseline_points: base.n,
        recent_mean: round(d.recentMean()),
        z: round(d.lastZ),
        score: round(score),
        anomalous_points: d.recentAnomalies,
        of_points: d.settings.persist_of,
        backends_affected: anomalousBackends,
        backends_normal: normalBackends,
      },
      hint: buildHint({
        kind,
        model: m.name,
        anomalousBackends,
        normalBackends,
        otherLatencyAnomalous: other ? other.recentAnomalies > 0 : undefined,
        errorReasons: m.reasonCounts(),
        breakers,
        reloadAgoS: reloadAgo,
      }),
    };
    m.open[kind] = incident;
    m.openSeries[kind].set(1);
    this.metrics.incidents.inc({ kind, severity: incident.severity });
    this.history.push(incident);
    if (this.history.length > MAX_KEPT) {
      // Drop the oldest resolved one; open ones stay listed while open.
      const i = this.history.findIndex((x) => x.resolved_at !== null);
      this.history.splice(i >= 0 ? i : 0, 1);
    }
    const fields = {
      incident_id: incident.id,
      model: m.name,
      backend: incident.backend,
      kind,
      severity: incident.severity,
      evidence: incident.evidence,
      hint: incident.hint,
    };
    if (isLoud(incident.severity)) this.logger.error(fields, 'incident opened');
    else this.logger.warn(fields, 'incident opened');
    this.notifier?.push({ event: 'incident_opened', incident: { ...incident } });
  }

  private resolve(m: ModelState, kind: Signal, now: number): void {
    const incident = m.open[kind];
    if (!incident) return;
    delete m.open[kind];
    incident.resolved_at = new Date(now).toISOString();
    m.openSeries[kind].set(0);
    this.logger.info(
      { incident_id: incident.id, model: m.name, kind, severity: incident.severity, started_at: incident.started_at },
      'incident resolved',
    );
    this.notifier?.push({ event: 'incident_resolved', incident: { ...incident } });
  }

  /** POST /admin/insights/baseline: pins the current window of every (or one) model as the drift reference. */
  pinBaseline(
    model?: string,
    unpin = false,
  ): { pinned: Array<{ model: string; feature: Feature }>; skipped: Array<{ model: string; feature: Feature }> } {
    const pinned: Array<{ model: string; feature: Feature }> = [];
    const skipped: Array<{ model: string; feature: Feature }> = [];
    for (const m of this.models.values()) {
      if (model !== undefined && m.name !== model) continue;
      for (const f of FEATURES) {
        const d = m.drift[f];
        if (unpin) {
          d.unpin();
          pinned.push({ model: m.name, feature: f });
        } else (d.pin() ? pinned : skipped).push({ model: m.name, feature: f });
      }
    }
    return { pinned, skipped };
  }

  /**
   * POST /admin/insights/baseline {anomalies: true}: an operator accepts the current level as
   * the new normal. Anomaly baselines start over (from the next 10 points) and open incidents
   * resolve; without it, a lasting shift keeps its incident open until the signal is back.
   */
  resetAnomalies(model?: string): { reset: string[] } {
    const reset: string[] = [];
    const now = this.now();
    for (const m of this.models.values()) {
      if (model !== undefined && m.name !== model) continue;
      for (const s of SIGNALS) {
        if (m.open[s]) this.resolve(m, s, now);
        m.detectors[s] = new Detector(s, m.detectors[s].settings);
        m.scoreSeries[s].set(0);
      }
      reset.push(m.name);
    }
    return { reset };
  }

  /** GET /admin/insights. */
  report(budgets: BudgetFact[] = []): Record<string, unknown> {
    const now = this.now();
    const sla: Record<string, unknown> = {};
    const quality: Record<string, unknown> = {};
    const drift: Record<string, Record<string, unknown>> = {};
    const anomalies: Record<string, unknown> = {};
    for (const m of this.models.values()) {
      sla[m.name] = { '5m': m.sla.window(now, 5), '1h': m.sla.window(now, 60) };
      const rates: Record<string, number | null> = {};
      for (const s of QUALITY_SIGNALS) {
        const text = s === 'refusal' || s === 'repetition' || s === 'invalid_json' || s === 'pii';
        const den = text ? m.scored : m.responses;
        rates[s] = den ? round(m.quality[s] / den, 6) : null;
      }
      quality[m.name] = { responses: m.responses, scored: m.scored, counts: { ...m.quality }, rates, pii: { ...m.pii } };
      const byFeature: Record<string, unknown> = {};
      let composite = 0;
      for (const f of FEATURES) {
        const d = m.drift[f];
        const r: DriftResult | undefined = d.last;
        composite = Math.max(composite, r?.score ?? 0);
        byFeature[f] = r
          ? {
              psi: round(r.psi, 6),
              ks_pvalue: round(r.ks_pvalue, 6),
              ks_statistic: round(r.ks_statistic, 6),
              level: r.level,
              ks_drifted: r.ks_drifted,
              mean_change: round(r.mean_change),
              std_change: round(r.std_change),
              score: r.score,
              score_level: r.score_level,
              reference: r.reference,
              current: { n: r.current.n, mean: round(r.current.mean), std: round(r.current.std) },
              pending: d.pending,
              pinned: d.pinned,
            }
          : { psi: null, ks_pvalue: null, level: null, pending: d.pending, pinned: d.pinned };
      }
      drift[m.name] = {
        ...byFeature,
        composite_score: composite,
        composite_level: composite >= 4 ? 'high' : composite >= 2 ? 'medium' : 'low',
      };
      const bySignal: Record<string, unknown> = {};
      for (const s of SIGNALS) {
        const d = m.detectors[s];
        const base = d.baseline;
        bySignal[s] = {
          score: round(d.score),
          severity: d.recentAnomalies ? severityOf(this.anomalousScore(d)) : null,
          z: round(d.lastZ),
          anomalous_points: d.recentAnomalies,
          baseline: { n: base.n, mean: round(base.mean), std: round(base.std) },
          incident_open: m.open[s]?.id ?? null,
        };
      }
      anomalies[m.name] = bySignal;
    }
    const usage = new Map([...this.models.values()].map((m) => [m.name, m.usage]));
    return {
      enabled: this.enabled,
      generated_at: new Date(now).toISOString(),
      sla,
      quality,
      drift,
      anomalies,
      incidents: [...this.history].reverse(),
      recommendations: recommend({ now, usage, pricing: this.pricing, hours: this.hours, budgets }),
      chaos: this.chaos.list(),
      webhook: this.notifier
        ? { pending: this.notifier.pending, sent: this.notifier.sent, failed: this.notifier.failed, dropped: this.notifier.dropped }
        : null,
    };
  }

  /** Names chaos may target. */
  known(): { models: Set<string>; backends: Set<string> } {
    return { models: this.configured, backends: this.backendNames };
  }

  /** Incidents open now (for the dashboard). */
  openIncidents(): Incident[] {
    return this.history.filter((i) => i.resolved_at === null);
  }

  /** What the state holds: constant per model whatever the traffic (see the memory test). */
  footprint(): { models: number; bytes: number; incidents: number; backends: number } {
    let bytes = this.prompts.bytes + this.hours.byteLength;
    for (const m of this.models.values()) {
      bytes += m.sla.bytes + m.reasons.byteLength;
      for (const f of FEATURES) bytes += m.drift[f].bytes;
      for (const s of SIGNALS) bytes += m.detectors[s].bytes;
    }
    return { models: this.models.size, bytes, incidents: this.history.length, backends: this.backendList.length };
  }

  /** Sends queued webhook events now (tests, shutdown). */
  flush(): Promise<void> {
    return this.notifier?.flush() ?? Promise.resolve();
  }

  close(): void {
    this.chaos.close();
    this.notifier?.close();
  }
}

function round(v: number, d = 3): number {
  return Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : v;
}
