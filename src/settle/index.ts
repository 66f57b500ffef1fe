// The one place a request is finished: real tokens → cost, the admission ticket settled
// (reservation freed, spend committed), metrics, the log line and the span. Envoy finishes
// stats, access log and span at one point too; doing it here means no path can forget one.
import type { Pricing } from '../config/schema.js';
import type { Ticket } from '../admission/index.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { endRequestSpan } from '../telemetry/tracing.js';
import { requestLogEnabled, writeRequestLine } from '../telemetry/request-log.js';
import { requestLine } from './line.js';
import type { Span } from '@opentelemetry/api';
import type { GenAiMetrics } from '../telemetry/otlp-metrics.js';
import type { RequestInsight } from '../insights/index.js';

export interface TokenCounts {
  input: number;
  output: number;
  cachedInput: number;
  reasoning: number;
  /** The part of `input` written to the prompt cache (Anthropic); absent for APIs that do not report it. */
  cacheWriteInput?: number;
}

/**
 * USD for the given tokens. `input` is the whole prompt for every API (protocols/messages.ts
 * explains the rule); its parts are priced once each: cache reads at cached_input_per_mtok,
 * cache writes at cache_write_per_mtok (both default to the input price), the rest at
 * input_per_mtok. Reasoning tokens are part of output.
 */
export function costUsd(p: Pricing, t: TokenCounts): number {
  const cached = Math.min(t.cachedInput, t.input);
  const written = Math.min(t.cacheWriteInput ?? 0, t.input - cached);
  const cachedPrice = p.cached_input_per_mtok ?? p.input_per_mtok;
  const writePrice = p.cache_write_per_mtok ?? p.input_per_mtok;
  return (
    ((t.input - cached - written) * p.input_per_mtok + cached * cachedPrice + written * writePrice + t.output * p.output_per_mtok) / 1e6
  );
}

export interface RequestRecord {
  requestId: string;
  endpoint: string;
  /** The model the client asked for. */
  model: string;
  /** True once the model resolved to a route: only then may it be a metric label (clients must not mint series). */
  routed?: boolean;
  /** The model that served it (after fallbacks), if any did. */
  servedModel?: string;
  backend?: string;
  upstreamModel?: string;
  status: number;
  stream: boolean;
  receivedAt: number;
  endedAt: number;
  firstTokenAt?: number;
  lastTokenAt?: number;
  /** Waited for an upstream connection (last attempt), and when its request went out (performance.now()). */
  queueMs?: number;
  upstreamStartAt?: number;
  tokens?: TokenCounts;
  /** True when tokens came from our tokenizer rather than upstream usage. */
  estimated?: boolean;
  pricing?: Pricing;
  keyName?: string;
  user?: string;
  team?: string;
  /** Bounded team label for metrics (see Identity.teamLabel). */
  teamLabel?: string;
  attempts?: number;
  finishReason?: string;
  error?: { code: string; message: string };
  system?: string;
  /** The upstream's usage was refused (settle/usage.ts): the field at fault; `tokens` are the estimate. */
  usageFault?: string;
  /** Insights' handle on this request (src/insights/), when insights is on. */
  insight?: RequestInsight;
  /** The serving backend's origin (server.address/port on the span). */
  origin?: string;
  /** W3C ids of the request's span, when the gateway exports traces (log line). */
  traceId?: string;
  spanId?: string;
  /** Overhead stamps (performance.now): upstream request sent, upstream first byte (non-streamed: body complete), client first byte. */
  upstreamSentAt?: number;
  upstreamFirstByteAt?: number;
  clientFirstByteAt?: number;
}

export function settle(
  rec: RequestRecord,
  deps: { metrics: Metrics; logger: Logger; ticket?: Ticket; span: Span; genai?: GenAiMetrics },
): void {
  const { metrics } = deps;
  const model = rec.routed ? rec.model : 'unknown';
  const servedModel = rec.servedModel ?? model;
  const backend = rec.backend ?? 'none';
  if (rec.usageFault !== undefined) {
    metrics.upstreamErrors.inc({ backend, reason: 'invalid_usage' });
    deps.logger.warn(
      { request_id: rec.requestId, backend, field: rec.usageFault },
      "the upstream reported an invalid token count: the request is counted by the gateway's estimate",
    );
  }
  const cost = rec.tokens && rec.pricing ? costUsd(rec.pricing, rec.tokens) : 0;
  deps.ticket?.settle({
    servedModel,
    inputTokens: rec.tokens?.input ?? 0,
    outputTokens: rec.tokens?.output ?? 0,
    costUsd: cost,
  });

  const durationS = (rec.endedAt - rec.receivedAt) / 1000;
  const asked = metrics.series(model, backend);
  asked.requests(rec.status).inc();
  asked.duration(rec.stream).observe(durationS);
  const served = servedModel === model ? asked : metrics.series(servedModel, backend);
  let ttftMs: number | undefined;
  let tpotMs: number | undefined;
  if (rec.stream && rec.firstTokenAt !== undefined) {
    ttftMs = rec.firstTokenAt - rec.receivedAt;
    served.ttft.observe(ttftMs / 1000);
    const out = rec.tokens?.output ?? 0;
    if (out > 1 && rec.lastTokenAt !== undefined) {
      tpotMs = (rec.lastTokenAt - rec.firstTokenAt) / (out - 1);
      served.tpot.observe(tpotMs / 1000);
    }
  }
  if (rec.tokens) {
    const t = rec.tokens;
    if (t.input) served.input.inc(t.input);
    if (t.output) served.output.inc(t.output);
    if (t.cachedInput) served.cachedInput.inc(t.cachedInput);
    if (t.reasoning) served.reasoning.inc(t.reasoning);
    if (t.cacheWriteInput) served.cacheWriteInput.inc(t.cacheWriteInput);
  }
  if (cost > 0) metrics.costFor(servedModel, rec.teamLabel ?? 'none').inc(cost);
  // Insights (quality, drift, anomalies, SLA): one call per request, never per chunk.
  rec.insight?.settled(rec, servedModel, cost, ttftMs, tpotMs);
  const overhead = overheadMs(rec);
  if (overhead !== undefined) metrics.overheadFor(servedModel, rec.stream).observe(overhead / 1000);

  deps.genai?.record(rec, ttftMs, tpotMs);
  if (requestLogEnabled(deps.logger, rec.status)) writeRequestLine(deps.logger, requestLine(rec, servedModel, ttftMs, tpotMs, cost));
  endRequestSpan(deps.span, {
    status: rec.status,
    provider: rec.system,
    origin: rec.origin,
    responseModel: rec.upstreamModel,
    inputTokens: rec.tokens?.input,
    outputTokens: rec.tokens?.output,
    cacheReadInputTokens: rec.tokens?.cachedInput,
    cacheCreationInputTokens: rec.tokens?.cacheWriteInput,
    reasoningOutputTokens: rec.tokens?.reasoning,
    ttftMs,
    finishReason: rec.finishReason,
    errorType: rec.error?.code,
    errorMessage: rec.error?.message,
  });
}

/**
 * The time the gateway itself added, for requests served at the first attempt (a retry's
 * wait is the upstream's failure, not the gateway's overhead) and delivered whole:
 * (upstream request sent - request received) + (client first byte - upstream first byte).
 */
export function overheadMs(rec: RequestRecord): number | undefined {
  if (rec.attempts !== 1 || rec.status >= 400 || rec.error !== undefined) return undefined;
  const { upstreamSentAt: sent, upstreamFirstByteAt: first, clientFirstByteAt: out } = rec;
  if (sent === undefined || first === undefined || out === undefined) return undefined;
  const ms = sent - rec.receivedAt + (out - first);
  return ms >= 0 ? ms : undefined;
}
