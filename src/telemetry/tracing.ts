// A span per request, with the attributes of the OpenTelemetry GenAI semantic conventions
// (the version pinned in docs/tracing.md) and W3C trace context in from the client and out
// to the upstream.
//
// Two modes, fixed when the gateway starts:
// - export configured (otlp.ts): the SDK's tracer; the client's traceparent/tracestate are
//   extracted (our span is a child of the app's), our span's context is injected into the
//   upstream request, and trace_id/span_id go on the request log line.
// - otherwise: the @opentelemetry/api global tracer. Without an SDK registered by a host
//   process it is the no-op tracer (a few property reads per request); the client's own
//   traceparent then passes through to the upstream untouched, as any other header.
//
// Spans never carry prompt or completion text: only names, counts, timings and codes.
import type { IncomingHttpHeaders } from 'node:http';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api';
import type { OtlpConfig } from '../config/schema.js';
import { resolveOtlp } from './otlp-config.js';
import { startOtlpExport, TRACER_NAME, TRACER_VERSION, type DropReason, type OtlpExport } from './otlp.js';

const headerGetter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (h) => Object.keys(h),
  get: (h, key) => h[key],
};

export interface SpanOutcome {
  status: number;
  /** backend.system: the kind of server (openai, simulator, openai_compatible, ...). */
  provider?: string;
  /** The backend's origin (scheme://host:port), for server.address / server.port. */
  origin?: string;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadInputTokens?: number;
  cacheCreationInputTokens?: number;
  reasoningOutputTokens?: number;
  /** From request received to the first chunk sent to the client, in ms (streams). */
  ttftMs?: number;
  finishReason?: string;
  /** Error code (ours or the upstream's); also the span status message. */
  errorType?: string;
  errorMessage?: string;
}

/** gen_ai.operation.name of each inference endpoint. */
export const GEN_AI_OPERATION: Readonly<Record<string, string>> = {
  'chat/completions': 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
};

/** server.address / server.port of an origin, parsed once per origin. */
const servers = new Map<string, { address: string; port: number }>();
export function serverOf(origin: string): { address: string; port: number } {
  let s = servers.get(origin);
  if (!s) {
    const u = new URL(origin);
    s = { address: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80 };
    if (servers.size < 1024) servers.set(origin, s);
  }
  return s;
}

/** A URL for the log: user and password (if someone put a token there) left out. */
function withoutCredentials(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString();
}

export interface TracingOptions {
  /** Counts spans the exporter could not take or deliver (llm_gateway_trace_spans_dropped_total). */
  onDrop?: (reason: DropReason, count: number) => void;
  /** Problems with the settings (ignored variables, unsupported protocol), for the startup log. */
  onProblem?: (message: string) => void;
  env?: Record<string, string | undefined>;
}

export class Tracing {
  private constructor(
    private readonly tracer: Tracer,
    /** Set only when this gateway exports its own traces. */
    private readonly propagator: TextMapPropagator | undefined,
    private readonly exporter: OtlpExport | undefined,
    /** Where spans go, for the startup log ("off" without export). */
    readonly target: string,
  ) {}

  /** The tracing a gateway without export uses (the API's global tracer: a no-op unless a host registered an SDK). */
  static global(): Tracing {
    return new Tracing(trace.getTracer(TRACER_NAME, TRACER_VERSION), undefined, undefined, 'off');
  }

  /** Loads the SDK and starts export if `telemetry.otlp` or the OTEL_* variables ask for it. */
  static async create(cfg: OtlpConfig | undefined, opts: TracingOptions = {}): Promise<Tracing> {
    const r = resolveOtlp(cfg, opts.env ?? process.env);
    for (const p of r.problems) opts.onProblem?.(p);
    if (!r.enabled) return Tracing.global();
    const exporter = await startOtlpExport(r.settings, opts.onDrop ?? (() => {}));
    return new Tracing(
      exporter.tracer,
      exporter.propagator,
      exporter,
      `${withoutCredentials(r.settings.tracesEndpoint)} (${r.settings.protocol})`,
    );
  }

  /** True when this gateway exports its own traces (trace context handled, ids logged). */
  get exporting(): boolean {
    return this.propagator !== undefined;
  }

  /** The request's span, a child of the client's trace when it sent a valid traceparent. */
  start(headers: IncomingHttpHeaders, operation: string, model: string, stream: boolean): Span {
    let parent: Context | undefined;
    if (this.propagator && headers.traceparent !== undefined) parent = this.propagator.extract(ROOT_CONTEXT, headers, headerGetter);
    return this.tracer.startSpan(
      `${operation} ${model}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'gen_ai.operation.name': operation,
          'gen_ai.request.model': model,
          'gen_ai.request.stream': stream,
        },
      },
      parent,
    );
  }

  /** Writes the span's context into the upstream request's headers (replacing the client's traceparent/tracestate). */
  inject(span: Span, headers: Record<string, string>): void {
    if (!this.propagator) return;
    // The W3C format written directly: the span context is the SDK's own (valid ids), so the
    // propagator's validation and the context object it needs are per-request work for nothing.
    const sc = span.spanContext();
    headers.traceparent = '00-' + sc.traceId + '-' + sc.spanId + ((sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? '-01' : '-00');
    const state = sc.traceState?.serialize();
    if (state) headers.tracestate = state;
    // The client's tracestate belonged to its traceparent (delete only when present: it makes
    // the object a slow dictionary, and these headers go on to undici).
    else if (headers.tracestate !== undefined) delete headers.tracestate;
  }

  /** Exports what is queued and stops. Never rejects: spans that could not go out are counted as dropped. */
  async shutdown(): Promise<void> {
    await this.exporter?.shutdown().catch(() => undefined);
  }

  async flush(): Promise<void> {
    await this.exporter?.flush().catch(() => undefined);
  }
}

/** A routing event (retry, fallback, circuit decision) on the request's span. */
export function spanEvent(span: Span, name: string, attributes: Attributes): void {
  if (span.isRecording()) span.addEvent(name, attributes);
}

export function endRequestSpan(span: Span, o: SpanOutcome): void {
  if (span.isRecording()) {
    span.setAttribute('http.response.status_code', o.status);
    if (o.provider) span.setAttribute('gen_ai.provider.name', o.provider);
    if (o.origin) {
      const s = serverOf(o.origin);
      span.setAttribute('server.address', s.address);
      span.setAttribute('server.port', s.port);
    }
    if (o.responseModel) span.setAttribute('gen_ai.response.model', o.responseModel);
    if (o.inputTokens !== undefined) span.setAttribute('gen_ai.usage.input_tokens', o.inputTokens);
    if (o.outputTokens !== undefined) span.setAttribute('gen_ai.usage.output_tokens', o.outputTokens);
    if (o.cacheReadInputTokens) span.setAttribute('gen_ai.usage.cache_read.input_tokens', o.cacheReadInputTokens);
    if (o.cacheCreationInputTokens) span.setAttribute('gen_ai.usage.cache_creation.input_tokens', o.cacheCreationInputTokens);
    if (o.reasoningOutputTokens) span.setAttribute('gen_ai.usage.reasoning.output_tokens', o.reasoningOutputTokens);
    if (o.ttftMs !== undefined) span.setAttribute('gen_ai.response.time_to_first_chunk', o.ttftMs / 1000);
    if (o.finishReason) span.setAttribute('gen_ai.response.finish_reasons', [o.finishReason]);
    if (o.errorType) {
      span.setAttribute('error.type', o.errorType);
      span.setStatus({ code: SpanStatusCode.ERROR, message: o.errorMessage ?? o.errorType });
    }
  }
  span.end();
}
