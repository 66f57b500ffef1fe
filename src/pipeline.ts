// The request pipeline for /v1/chat/completions, /v1/completions and /v1/embeddings,
// in the order of DESIGN.md: server → auth → policy → admission → routing → upstream →
// stream tap → settle. Each stage lives in its own folder; this file only wires them.
//
//   stage      | may answer with
//   -----------+-------------------------------------------------------------
//   server     | 400 bad JSON / body, 413 too large, 415 content-type
//   auth       | 401 invalid_api_key, 403 model_not_allowed
//   policy     | 404 model_not_found
//   admission  | 429 rate_limit_exceeded / insufficient_quota, 503 store down
//   routing    | 502 / 503 / 504 upstream trouble (before the first byte)
//   stream tap | a final `data: {"error":…}` event (after the first byte)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, GatewayError, sendError } from './errors.js';
import type { Gateway } from './gateway.js';
import type { Ticket } from './admission/index.js';
import { estimatePromptTokens } from './streamtap/index.js';
import { forwardResponse, type PromptCounter } from './streamtap/forward.js';
import { ClientAbort } from './upstream/failures.js';
import type { UpstreamExchange, UpstreamRequest } from './upstream/exchange.js';
import type { RoutingContext, Target } from './routing/index.js';
import { settle, type RequestRecord } from './settle/index.js';
import { rewriteBody } from './upstream/body.js';
import { GEN_AI_OPERATION, spanEvent, type Tracing } from './telemetry/tracing.js';
import type { Span } from '@opentelemetry/api';
import { worstCaseUsd, maxOutputTokens } from './policy/cost.js';

export type Endpoint = 'chat/completions' | 'completions' | 'embeddings';

export interface InferenceRequest {
  id: string;
  endpoint: Endpoint;
  req: IncomingMessage;
  res: ServerResponse;
  /** The body as the client sent it: the upstream body is made from these bytes. */
  raw: Buffer;
  body: Record<string, unknown>;
  receivedAt: number;
}

const CLIENT_LEFT = { code: 'client_closed_request', message: 'the client closed the connection' };

/**
 * One request's state in the pipeline. It is also the routing context and the prompt
 * counter: methods on a prototype instead of per-request closures and an object literal
 * with a getter (which gave every request its own hidden class and made the call sites
 * that read it megamorphic).
 */
class Call implements RoutingContext, PromptCounter {
  exchange: UpstreamExchange | undefined = undefined;
  gone = false;
  /** Made only if routing has to wait (backoff, retry-after): most requests never do. */
  private left: AbortController | undefined = undefined;
  /** -1 until counted: a tokenizer pass only when some scope reserves tokens or money, or the upstream reports no usage. */
  private prompt = -1;
  /** The 'close' listener (the one closure a request needs). */
  readonly onClose = (): void => this.closed();

  constructor(
    readonly r: InferenceRequest,
    readonly stream: boolean,
    readonly span: Span,
    readonly tracing: Tracing,
  ) {}

  private closed(): void {
    if (this.r.res.writableFinished) return;
    this.gone = true;
    this.left?.abort();
    this.exchange?.abort(new ClientAbort());
  }

  buildRequest(t: Target): UpstreamRequest {
    const req = buildUpstreamRequest(this.r, t, this.stream);
    // W3C trace context for the upstream: our span is its parent (a no-op without export).
    this.tracing.inject(this.span, req.headers);
    return req;
  }

  event(name: string, attributes: Record<string, string | number>): void {
    spanEvent(this.span, name, attributes);
  }

  onExchange(e: UpstreamExchange | undefined): void {
    this.exchange = e;
  }

  clientGone(): boolean {
    return this.gone;
  }

  get signal(): AbortSignal {
    if (!this.left) {
      this.left = new AbortController();
      if (this.gone) this.left.abort();
    }
    return this.left.signal;
  }

  promptTokens(): number {
    return this.prompt >= 0 ? this.prompt : (this.prompt = estimatePromptTokens(this.r.body));
  }
}

export async function handleInference(gw: Gateway, r: InferenceRequest): Promise<void> {
  const model = typeof r.body.model === 'string' ? r.body.model : '';
  const stream = r.body.stream === true && r.endpoint !== 'embeddings';
  const rec = newRecord(r, model, stream);
  const span = gw.tracing.start(r.req.headers, GEN_AI_OPERATION[r.endpoint]!, model, stream);
  if (gw.tracing.exporting) {
    const sc = span.spanContext();
    rec.traceId = sc.traceId;
    rec.spanId = sc.spanId;
  }
  const { policy, auth, admission, router, metrics, logger } = gw.stages();
  const call = new Call(r, stream, span, gw.tracing);
  let ticket: Ticket | undefined;
  r.res.on('close', call.onClose);
  gw.inflight.add(r.res);

  try {
    if (!model) throw errors.missingModel();
    const identity = auth.identify(r.req.headers);
    rec.keyName = identity.key;
    rec.user = identity.user;
    rec.team = identity.team;
    rec.teamLabel = identity.teamLabel;
    const route = policy.resolve(model);
    if (!route) throw errors.unknownModel(model);
    rec.routed = true;
    if (identity.config?.models && !identity.config.models.includes(model)) throw errors.modelNotAllowed(model);
    if (r.body.stream !== undefined && typeof r.body.stream !== 'boolean') throw errors.invalidParam('stream', "'stream' must be a boolean.");

    const promptTokens = policy.needsTokenEstimates ? call.promptTokens() : -1;
    const maxOut = r.endpoint === 'embeddings' ? 0 : maxOutputTokens(r.body, route);
    const admitted = admission.admit({
      identity,
      route,
      promptTokens: Math.max(promptTokens, 0),
      maxOutputTokens: maxOut,
      worstCaseUsd: promptTokens >= 0 ? worstCaseUsd(policy, route, promptTokens, maxOut) : 0,
    });
    // The memory store answers synchronously: no microtask hop for it.
    ticket = admitted instanceof Promise ? await admitted : admitted;
    if (call.gone) throw new ClientAbort();

    const active = metrics.activeFor(model);
    active.inc();
    try {
      const served = await router.open(call, route);
      rec.servedModel = served.route.name;
      rec.backend = served.backend.name;
      rec.upstreamModel = served.upstreamModel;
      rec.pricing = served.route.config.pricing;
      rec.attempts = served.attempts;
      rec.system = served.backend.system;
      rec.origin = served.backend.origin;
      const forwarded = forwardResponse({
        res: r.res,
        exchange: served.exchange,
        stream,
        stripUsage: stream && !clientAskedForUsage(r.body),
        requestId: r.id,
        headers: ticket.headers,
        servedModel: served.route.name,
        prompt: call,
      });
      // Overhead stamps: a stream's head goes to the client within forwardResponse's
      // synchronous part; a whole body is written when its promise settles.
      const ex = served.exchange;
      rec.upstreamSentAt = ex.sentAt;
      if (stream) {
        rec.upstreamFirstByteAt = ex.headAt;
        rec.clientFirstByteAt = performance.now();
      }
      const outcome = await forwarded;
      if (!stream) {
        rec.upstreamFirstByteAt = ex.endAt;
        rec.clientFirstByteAt = performance.now();
      }
      router.report(served, outcome.failure === undefined || outcome.failure.reason === 'client_abort', outcome.failure);
      rec.status = outcome.status;
      rec.tokens = outcome.tokens;
      rec.estimated = outcome.estimated;
      rec.firstTokenAt = outcome.firstTokenAt;
      rec.lastTokenAt = outcome.lastTokenAt;
      rec.finishReason = outcome.finishReason;
      if (outcome.failure) rec.error = outcome.failure.reason === 'client_abort' ? CLIENT_LEFT : { code: outcome.failure.error.code, message: outcome.failure.error.message };
    } finally {
      active.dec();
    }
  } catch (e) {
    if (e instanceof ClientAbort || call.gone) {
      rec.status = 499;
      rec.error = CLIENT_LEFT;
    } else {
      const err = e instanceof GatewayError ? e : errors.internal();
      if (!(e instanceof GatewayError)) logger.error({ err: e, request_id: r.id }, 'internal error');
      // Limits applied to this request: its error carries the x-ratelimit-* headers too.
      sendError(r.res, err, r.id, ticket?.headers);
      rec.status = err.status;
      rec.error = { code: err.code, message: err.message };
    }
  } finally {
    r.res.off('close', call.onClose);
    gw.inflight.delete(r.res);
    rec.endedAt = performance.now();
    settle(rec, { metrics, logger, ticket, span, genai: gw.genai });
  }
}

/** Every field present from the start, in one order: one hidden class for all records. */
function newRecord(r: InferenceRequest, model: string, stream: boolean): RequestRecord {
  return {
    requestId: r.id,
    endpoint: r.endpoint,
    model,
    routed: false,
    servedModel: undefined,
    backend: undefined,
    upstreamModel: undefined,
    status: 0,
    stream,
    receivedAt: r.receivedAt,
    endedAt: 0,
    firstTokenAt: undefined,
    lastTokenAt: undefined,
    tokens: undefined,
    estimated: undefined,
    pricing: undefined,
    keyName: undefined,
    user: undefined,
    team: undefined,
    teamLabel: undefined,
    attempts: undefined,
    finishReason: undefined,
    error: undefined,
    system: undefined,
    origin: undefined,
    traceId: undefined,
    spanId: undefined,
    upstreamSentAt: undefined,
    upstreamFirstByteAt: undefined,
    clientFirstByteAt: undefined,
  };
}

function clientAskedForUsage(body: Record<string, unknown>): boolean {
  const so = body.stream_options;
  return typeof so === 'object' && so !== null && (so as { include_usage?: unknown }).include_usage === true;
}

/**
 * The request sent upstream: the deployment's model name, and usage requested for streams.
 * The body is the client's bytes with the model spliced in (see upstream/body.ts); only an
 * unusual layout is serialised again. Once per attempt, never per chunk.
 */
function buildUpstreamRequest(r: InferenceRequest, t: Target, stream: boolean): UpstreamRequest {
  const addUsage = stream && !clientAskedForUsage(r.body);
  // A client's own stream_options would be a duplicate key next to ours: serialise instead.
  let body: Buffer | string | undefined = addUsage && r.body.stream_options !== undefined ? undefined : rewriteBody(r.raw, t.upstreamModelJson, addUsage);
  if (body === undefined) {
    const json: Record<string, unknown> = { ...r.body, model: t.upstreamModel };
    if (addUsage) {
      const so = typeof r.body.stream_options === 'object' && r.body.stream_options !== null ? r.body.stream_options : {};
      json.stream_options = { ...so, include_usage: true };
    }
    body = JSON.stringify(json);
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    // The tap reads the bytes it forwards: ask for them uncompressed.
    'accept-encoding': 'identity',
    'x-request-id': r.id,
  };
  const given = r.req.headers;
  for (const name in given) {
    const v = given[name];
    if (typeof v === 'string' && headers[name] === undefined && !DROPPED_REQUEST_HEADERS.has(name) && !name.startsWith('x-gateway-')) headers[name] = v;
  }
  return { method: 'POST', path: `/${r.endpoint}`, headers, body };
}

/**
 * Client headers never passed upstream: hop-by-hop ones, the ones we set, and credentials
 * (the client's key is the gateway's business; the provider key is added by the backend).
 */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization', 'api-key', 'cookie', 'host', 'content-length', 'content-type', 'accept-encoding',
  'connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'expect', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'forwarded',
]);
