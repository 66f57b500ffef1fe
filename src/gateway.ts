// The composition root: builds every stage from a policy and owns the server's lifetime.
// A request takes one snapshot of the stages when it starts (gw.stages()), so a policy
// reload swaps the snapshot without touching requests already in flight.
//
// reload(): parse and validate → build new stages from the old ones (each stage carries its
// own state over: backends, breakers, admission) → swap → retire the old stages in the
// background, once the requests that started under them are done. Reloads run one at a time.
import type { Server, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { Policies } from './config/schema.js';
import { parsePolicies, PolicyError } from './config/load.js';
import { contentHash, watchPolicies, type PolicyWatcher } from './config/watch.js';
import { diffPolicies, type PolicyChanges } from './config/diff.js';
import { KeyRing } from './auth/index.js';
import { PolicyTable } from './policy/index.js';
import { createAdmission, RETIRE_MAX_MS, type Admission } from './admission/index.js';
import { Router } from './routing/index.js';
import { Backends, type StartInProcess } from './upstream/backends.js';
import { Metrics } from './telemetry/metrics.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { Tracing } from './telemetry/tracing.js';
import { GenAiMetrics } from './telemetry/otlp-metrics.js';
import { resolveOtlpMetrics } from './telemetry/otlp-config.js';
import { createHttpServer } from './server/http.js';
import { applyServerLimits } from './server/limits.js';
import { exposureProblems } from './server/exposure.js';
import { preloadTokenizer } from './streamtap/index.js';
import { ResponseAffinity } from './routing/affinity.js';
import { Insights } from './insights/index.js';

export interface Stages {
  policies: Policies;
  policy: PolicyTable;
  auth: KeyRing;
  admission: Admission;
  router: Router;
  backends: Backends;
  metrics: Metrics;
  logger: Logger;
  /** One for the gateway's life: each policy reconfigures it. */
  insights: Insights;
}

export interface GatewayOptions {
  logger?: Logger;
  metrics?: Metrics;
  /** Where reload() reads the policy from. */
  policiesFile?: string;
  /** contentHash() of the text the starting policy came from: a file event that finds it unchanged is ignored. */
  policiesHash?: string;
  /** Environment the OTEL_* variables are read from (default process.env). */
  env?: Record<string, string | undefined>;
}

/** At most one log line per this interval about dropped spans (the counter has every one). */
const DROP_LOG_EVERY_MS = 60_000;

/** How long close() waits for queued spans to reach the collector. */
const TRACE_FLUSH_MAX_MS = 2_000;

export type ReloadSource = 'watch' | 'sighup' | 'admin';
export type ReloadResult = { ok: true; changed: PolicyChanges; unchanged?: true } | { ok: false; problems: string[] };

const LISTEN_BACKLOG = 4096;

/** The built-in `type: simulator` backends. Loaded only when a policy has one: production sidecars never carry the simulator. */
const startSimulatorBackend: StartInProcess = async (cfg) => {
  const { startSimulator } = await import('./simulator/index.js');
  return startSimulator({ ttftMs: cfg.ttft_ms, tpotMs: cfg.tpot_ms, outputTokens: cfg.output_tokens, errorRate: cfg.error_rate });
};

/** Builds every stage for a policy; with `prev` (a reload), each stage takes its state over from the old one. */
async function buildStages(policies: Policies, metrics: Metrics, logger: Logger, prev?: Stages): Promise<Stages> {
  const backends = await Backends.start(policies.backends, prev?.backends, startSimulatorBackend);
  try {
    const policy = new PolicyTable(policies);
    // Every request will need a prompt estimate: load the tokenizer now, not on a request.
    if (policy.needsTokenEstimates) preloadTokenizer();
    const auth = new KeyRing(policies);
    const insights = prev?.insights ?? new Insights(metrics, logger);
    const router = new Router(policy, backends, metrics, policies, logger, prev?.router.breakers, { chaos: insights.chaos.decide });
    // Last: taking the old admission's state over has effects on it (its state file stops).
    const admission = createAdmission(policies, { metrics, logger }, prev?.admission);
    insights.configure(policies, prev !== undefined);
    insights.circuits = () => router.breakers.view();
    return { policies, policy, auth, admission, router, backends, metrics, logger, insights };
  } catch (e) {
    // Close what was started for this policy only (backends carried over stay).
    await (prev ? prev.backends.retire(backends) : backends.close());
    throw e;
  }
}

/** Resolves when none of `started` is in `inflight` any more, or after maxMs (polled on an unref'd timer). */
async function finished(started: Set<ServerResponse>, inflight: Set<ServerResponse>, maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    for (const r of started) if (!inflight.has(r)) started.delete(r);
    if (started.size === 0 || Date.now() >= deadline) return;
    await new Promise((r) => setTimeout(r, 100).unref());
  }
}

/** After cutting what outlived the drain: how long cut requests get to write their last event and settle. */
const CUT_GRACE_MS = 2_000;

export class Gateway {
  readonly inflight = new Set<ServerResponse>();
  /** How to cut each in-flight pipeline request at shutdown (its final error event, recorded as the gateway's own cut). */
  private readonly cutters = new Map<ServerResponse, () => void>();
  /** The address listened on, once listening. */
  private listenHost: string | undefined;
  readonly server: Server;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Responses API: which deployment holds which stored response (kept across reloads; its store settings apply at start). */
  readonly affinity: ResponseAffinity;
  /** Span per request and, when configured, OTLP export: set at start (a change of telemetry.otlp needs a restart). */
  readonly tracing: Tracing;
  /** OTLP metrics in the GenAI conventions, when OTEL_METRICS_EXPORTER=otlp or telemetry.otlp.metrics asks for them. */
  readonly genai: GenAiMetrics | undefined;
  private current: Stages;
  private draining = false;
  /** The last reload (or a resolved promise): the next one starts after it. */
  private reloading: Promise<unknown> = Promise.resolve();
  /** A file-triggered reload queued and not started yet: more file events join it. */
  private queuedWatch: Promise<ReloadResult> | undefined;
  /** Hash of the policy text last tried (applied or refused): unchanged content is not re-applied on file events. */
  private seenHash: string | undefined;
  private watcher: PolicyWatcher | undefined;
  /** Previous stages being retired, with the promise that ends when they are closed. */
  private readonly retiring = new Map<Stages, Promise<void>>();

  private constructor(
    stages: Stages,
    tracing: Tracing,
    genai: GenAiMetrics | undefined,
    readonly options: GatewayOptions,
  ) {
    this.current = stages;
    this.tracing = tracing;
    this.genai = genai;
    this.metrics = stages.metrics;
    this.logger = stages.logger;
    this.seenHash = options.policiesHash;
    this.affinity = ResponseAffinity.fromPolicies(stages.policies, stages.logger);
    // The upstream pool gauges read the current backends at scrape time.
    this.metrics.upstreamPools = () => this.current.backends.all();
    this.server = createHttpServer(this);
  }

  static async create(policies: Policies, options: GatewayOptions = {}): Promise<Gateway> {
    const metrics = options.metrics ?? new Metrics();
    const logger = options.logger ?? createLogger();
    let lastDropLog = -Infinity;
    // Traces are never a reason not to serve: an SDK that fails to start leaves spans off.
    const tracing = await Tracing.create(policies.telemetry?.otlp, {
      env: options.env,
      onDrop: (reason, count) => {
        metrics.traceSpansDropped.inc({ reason }, count);
        // Ops learn of a failing collector from the log too, at most once a minute.
        const now = Date.now();
        if (now - lastDropLog >= DROP_LOG_EVERY_MS) {
          lastDropLog = now;
          logger.warn(
            { reason, spans: count },
            'trace spans dropped: the OTLP collector is not taking them (llm_gateway_trace_spans_dropped_total)',
          );
        }
      },
      onProblem: (message) => logger.warn(message),
    }).catch((e: unknown) => {
      logger.error({ err: e }, 'trace export could not start: serving without it');
      return Tracing.global();
    });
    if (tracing.exporting) logger.info({ traces: tracing.target }, 'exporting traces (OTLP/HTTP)');
    const metricsSettings = resolveOtlpMetrics(policies.telemetry?.otlp, options.env ?? process.env);
    let genai: GenAiMetrics | undefined;
    if (metricsSettings) {
      genai = await GenAiMetrics.start(metricsSettings).catch((e: unknown) => {
        logger.error({ err: e }, 'OTLP metrics could not start: serving without them');
        return undefined;
      });
      if (genai)
        logger.info(
          {
            metrics: `${new URL(metricsSettings.metricsEndpoint).origin}${new URL(metricsSettings.metricsEndpoint).pathname} (${metricsSettings.protocol})`,
          },
          'exporting GenAI metrics (OTLP/HTTP)',
        );
    }
    return new Gateway(await buildStages(policies, metrics, logger), tracing, genai, options);
  }

  /**
   * Applies a new policy: `text`, or else the policies file. An invalid one is refused (the
   * current policy keeps serving) and the result lists its problems, each with field path and
   * line. Reloads run one at a time; a file event whose content is unchanged does nothing
   * (SIGHUP and admin always re-apply: ${VAR}s may have changed).
   */
  reload(text: string | undefined, source: ReloadSource): Promise<ReloadResult> {
    const fromFile = source === 'watch' && text === undefined;
    if (fromFile && this.queuedWatch) return this.queuedWatch;
    const run: Promise<ReloadResult> = this.reloading.then(() => {
      if (this.queuedWatch === run) this.queuedWatch = undefined;
      return this.apply(text, source);
    });
    if (fromFile) this.queuedWatch = run;
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async apply(text: string | undefined, source: ReloadSource): Promise<ReloadResult> {
    const file = this.options.policiesFile ?? '(inline policy)';
    if (this.draining) return { ok: false, problems: ['the gateway is shutting down'] };
    if (text === undefined && !this.options.policiesFile) return this.refused(source, file, ['no policies file to reload from']);
    let unreadable: Error | undefined;
    text ??= await readFile(file, 'utf8').catch((e: Error) => ((unreadable = e), ''));
    // What was tried last (a content, or why the file could not be read): a file event that
    // finds the same does nothing, so an invalid file is refused (and counted) once, not at every poll.
    const seen = unreadable ? `unreadable: ${unreadable.message}` : contentHash(text);
    if (source === 'watch' && seen === this.seenHash) return this.unchanged();
    this.seenHash = seen;
    let policies: Policies;
    try {
      if (unreadable) throw unreadable;
      policies = parsePolicies(text, file);
    } catch (e) {
      return this.refused(source, file, e instanceof PolicyError ? e.problems : [`${file}: ${(e as Error).message}`], e);
    }
    const prev = this.current;
    let next: Stages;
    try {
      next = await buildStages(policies, this.metrics, this.logger, prev);
    } catch (e) {
      return this.refused(source, file, [`cannot apply the policy: ${(e as Error).message}`], e);
    }
    // (Should close() have started meanwhile: it waits for this reload, then closes `next`
    // as the current stages and `prev` as retiring ones.)
    this.current = next;
    applyServerLimits(this.server, policies.server);
    this.warnExposure();
    this.retire(prev, next);
    const changed = diffPolicies(prev.policies, policies);
    this.metrics.policyReloads.inc({ result: 'success' });
    this.logger.info({ source, file, changed }, 'policy reloaded');
    if (changed.needs_restart.length) {
      this.logger.warn({ settings: changed.needs_restart }, 'policy reloaded, but these settings only apply after a restart');
    }
    return { ok: true, changed };
  }

  private unchanged(): ReloadResult {
    return { ok: true, changed: diffPolicies(this.current.policies, this.current.policies), unchanged: true };
  }

  private refused(source: ReloadSource, file: string, problems: string[], err?: unknown): ReloadResult {
    this.metrics.policyReloads.inc({ result: 'failure' });
    // The problems say it all for an invalid policy; anything else keeps its stack for the log.
    const e = err instanceof PolicyError ? undefined : err;
    this.logger.warn({ source, file, problems, err: e }, 'policy reload refused: the previous policy keeps serving');
    return { ok: false, problems };
  }

  /** Closes the previous stages once the requests that started under them are done. */
  private retire(prev: Stages, next: Stages): void {
    const started = new Set(this.inflight);
    const done = Promise.all([
      // Its tickets settle through the old admission: it waits for them itself.
      prev.admission.retire(),
      // A request may still open an exchange on an old backend (a retry): close pools after it.
      finished(started, this.inflight, RETIRE_MAX_MS).then(() => next.backends.retire(prev.backends)),
    ])
      .then(() => undefined)
      .catch((e: unknown) => this.logger.error({ err: e }, "closing the previous policy's stages failed"))
      .finally(() => this.retiring.delete(prev));
    this.retiring.set(prev, done);
  }

  /** Reloads when the policies file changes (ConfigMap symlink swaps included). Closed by close(). */
  watch(): void {
    const file = this.options.policiesFile;
    if (!file || this.watcher || this.draining) return;
    this.watcher = watchPolicies(file, () => {
      this.reload(undefined, 'watch').catch((e: unknown) => this.logger.error({ err: e }, 'policy reload failed'));
    });
  }

  /** Says loudly what is exposed on the address listened on (see server/exposure.ts). */
  private warnExposure(): void {
    if (this.listenHost === undefined) return;
    for (const problem of exposureProblems(this.listenHost, this.current.policies))
      this.logger.warn({ host: this.listenHost }, `EXPOSED: ${problem}`);
  }

  /** A pipeline request started: in flight until untrack(); `cut` stops it at shutdown. */
  track(res: ServerResponse, cut: () => void): void {
    this.inflight.add(res);
    this.cutters.set(res, cut);
  }

  untrack(res: ServerResponse): void {
    this.inflight.delete(res);
    this.cutters.delete(res);
  }

  stages(): Stages {
    return this.current;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  ready(): { ok: boolean; reason?: string } {
    if (this.draining) return { ok: false, reason: 'draining' };
    if (!this.current.admission.ready()) return { ok: false, reason: 'state store unreachable' };
    return { ok: true };
  }

  listen(port: number, host: string): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // Backlog: a burst of new client connections (hundreds of streams starting at once) waits
      // in the kernel's accept queue; Node's default 511 drops SYNs past it (a 1 s+ client retry).
      // The kernel caps it at net.core.somaxconn.
      this.server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', reject);
        this.listenHost = host;
        this.warnExposure();
        const addr = this.server.address();
        resolve({ port: typeof addr === 'object' && addr ? addr.port : port, host });
      });
    });
  }

  /**
   * Cuts what outlived the drain the way the gateway ends any stream it cannot finish: a final
   * error event (shutting_down) instead of a bare reset, recorded as a 503 of its own rather
   * than a client leaving, and settled now, so its spend is in the final state flush (the
   * admission store closes after this). Bounded: a client that does not read is cut anyway.
   */
  private async cutRemaining(): Promise<void> {
    const cut = [...this.cutters.keys()];
    for (const f of [...this.cutters.values()]) f();
    const until = Date.now() + CUT_GRACE_MS;
    const pending = () => this.inflight.size > 0 || cut.some((r) => !r.writableFinished && !r.destroyed);
    while (pending() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  }

  /**
   * Graceful stop: refuse new connections, let in-flight requests (streams included) finish
   * for up to drainMs, then cut what is left, then release pools, stores and simulators.
   */
  async close(drainMs = this.current.policies.server.drain_timeout_ms): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.watcher?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while (this.inflight.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      this.server.closeIdleConnections();
    }
    if (this.inflight.size > 0) {
      this.logger.warn({ inflight: this.inflight.size }, 'drain timeout: cutting remaining requests');
      await this.cutRemaining();
    }
    this.server.closeAllConnections();
    await closed;
    // A reload still building finishes first: its stages are then the current ones, and the
    // ones it replaced are retiring.
    await this.reloading;
    const s = this.current;
    // Every request is done or cut: previous stages being retired close now.
    for (const old of this.retiring.keys()) void old.admission.close();
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.retiring.values()), new Promise((r) => (t = setTimeout(r, 2_000)).unref())]);
    clearTimeout(t);
    s.insights.close();
    await s.admission.close();
    await s.backends.close();
    await this.affinity.close();
    // Spans of the last requests go out if the collector answers soon; never hold shutdown for it.
    const exports = Promise.all([this.tracing.shutdown().catch(() => undefined), this.genai?.shutdown().catch(() => undefined)]);
    await Promise.race([exports, new Promise((r) => (t = setTimeout(r, TRACE_FLUSH_MAX_MS)).unref())]);
    clearTimeout(t);
  }
}
