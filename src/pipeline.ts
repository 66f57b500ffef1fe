// The request pipeline for every governed API (chat, completions, embeddings, responses),
// in the order of docs/architecture.md: server → auth → policy → admission → routing → upstream →
// stream tap → settle. Each stage lives in its own folder; this file only wires them, and
// what depends on the API's field names comes from its protocol (src/protocols/).
//
//   stage      | may answer with
//   -----------+-------------------------------------------------------------
//   server     | 400 bad JSON / body, 413 too large, 415 content-type
//   auth       | 401 invalid_api_key, 403 model_not_allowed
//   policy     | 404 model_not_found
//   admission  | 429 rate_limit_exceeded / insufficient_quota, 503 store down
//   routing    | 502 / 503 / 504 upstream trouble (before the first byte)
//   stream tap | a final error event in the API's own shape (after the first byte)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, GatewayError, sendError } from './errors.js';
import type { Gateway, Stages } from './gateway.js';
import type { Ticket } from './admission/index.js';
import type { PromptCounter } from './streamtap/forward.js';
import { forwardGuarded } from './upstream/guard.js';
import { ClientAbort, ShutdownCut, type UpstreamFailure } from './upstream/failures.js';
import type { UpstreamExchange, UpstreamRequest } from './upstream/exchange.js';
import type { RoutingContext, Served, Target } from './routing/index.js';
import { settle, type RequestRecord } from './settle/index.js';
import { upstreamRequestHeaders } from './upstream/headers.js';
import { tooDeepToWalk } from './upstream/body.js';
import { spanEvent, type Tracing } from './telemetry/tracing.js';
import type { Span } from '@opentelemetry/api';
import { worstCaseUsd, maxOutputTokens } from './policy/cost.js';
import type { Protocol } from './protocols/index.js';

export interface InferenceRequest {
  id: string;
  /** The API this request speaks. */
  protocol: Protocol;
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
  /** The last attempt's exchange, kept after a failure: its queue time goes on the log line. */
  lastExchange: UpstreamExchange | undefined = undefined;
  gone = false;
  /** The backend that holds the stored response this request continues, if any. */
  pin: string | undefined = undefined;
  /** The gateway cut this request (shutdown past drain_timeout_ms): not the client's doing. */
  cut = false;
  /** Made only if routing has to wait (backoff, retry-after): most requests never do. */
  private left: AbortController | undefined = undefined;
  /** -1 until counted: a tokenizer pass only when some scope reserves tokens or money, or the upstream reports no usage. */
  private prompt = -1;
  /** The 'close' listener (the one closure a request needs). */
  readonly onClose = (): void => this.closed();
  /** Called by the gateway when it must stop this request (see Gateway.close). */
  readonly onCut = (): void => this.shutdownCut();

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

  private shutdownCut(): void {
    if (this.r.res.writableFinished || this.gone) return;
    this.cut = true;
    this.left?.abort();
    // A stream in progress ends with a shutting_down error event (forwardResponse's onError).
    this.exchange?.abort(new ShutdownCut());
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
    if (e) this.lastExchange = e;
  }

  clientGone(): boolean {
    return this.gone || this.cut;
  }

  get signal(): AbortSignal {
    if (!this.left) {
      this.left = new AbortController();
      if (this.gone || this.cut) this.left.abort();
    }
    return this.left.signal;
  }

  /** The API a deployment's backend must serve (the backends' `apis:`). */
  get api(): string {
    return this.r.protocol.api ?? this.r.protocol.name;
  }

  promptTokens(): number {
    if (this.prompt >= 0) return this.prompt;
    // A body too deep to walk gets a linear estimate (about 4 bytes a token), not a stack overflow.
    return (this.prompt = tooDeepToWalk(this.r.raw) ? Math.ceil(this.r.raw.length / 4) : this.r.protocol.promptTokens(this.r.body));
  }
}

export async function handleInference(gw: Gateway, r: InferenceRequest): Promise<void> {
  const api = r.protocol;
  const model = api.model(r.body);
  const stream = api.stream(r.body);
  const rec = newRecord(r.id, api.endpoint, r.receivedAt, model, stream);
  const span = gw.tracing.start(r.req.headers, api.operation, model, stream);
  if (gw.tracing.exporting) {
    const sc = span.spanContext();
    rec.traceId = sc.traceId;
    rec.spanId = sc.spanId;
  }
  const { policy, auth, admission, router, metrics, logger, insights } = gw.stages();
  rec.insight = insights.begin(r.body, r.raw);
  const call = new Call(r, stream, span, gw.tracing);
  let ticket: Ticket | undefined;
  r.res.on('close', call.onClose);
  gw.track(r.res, call.onCut);

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
    api.validate(r.body);
    if (!router.serves(route.name, call.api)) throw errors.apiNotServed(model, call.api);
    const continues = api.continues?.(r.body);
    if (continues !== undefined) {
      // Responses' previous_response_id: the conversation lives where that response was made.
      const held = await gw.affinity.lookup(continues);
      if (held) {
        if (!router.reaches(route, held.backend)) throw errors.previousResponseUnreachable(continues, model);
        call.pin = held.backend;
      }
    }

    const promptTokens = policy.needsTokenEstimates ? call.promptTokens() : -1;
    const maxOut = maxOutputTokens(api.maxOutputTokens(r.body), route);
    const admitted = admission.admit({
      identity,
      route,
      promptTokens: Math.max(promptTokens, 0),
      maxOutputTokens: maxOut,
      worstCaseUsd: promptTokens >= 0 ? worstCaseUsd(policy, route, promptTokens, maxOut) : 0,
    });
    // The memory store answers synchronously: no microtask hop for it.
    ticket = admitted instanceof Promise ? await admitted : admitted;
    if (call.gone || call.cut) throw new ClientAbort();

    const active = metrics.activeFor(model);
    active.inc();
    try {
      const served = await router.open(call, route);
      noteServed(rec, served);
      rec.pricing = served.route.config.pricing;
      const forwarded = forwardGuarded({
        res: r.res,
        wire: api,
        exchange: served.exchange,
        maxBodyBytes: policy.policies.server.max_upstream_body_bytes,
        stream,
        stripUsage: api.injectsUsage(r.body, stream),
        requestId: r.id,
        headers: ticket.headers,
        servedModel: served.route.name,
        prompt: call,
        outputSlice: rec.insight?.slice,
        onResponseId: api.recordsResponses ? (id) => gw.affinity.remember(id, { model, backend: served.backend.name }) : undefined,
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
      rec.usageFault = outcome.usageFault;
      noteFailure(rec, outcome.failure);
    } finally {
      active.dec();
    }
  } catch (e) {
    answerFailure(e, call, r.res, r.id, rec, ticket, logger, api.errorBody);
  } finally {
    r.res.off('close', call.onClose);
    gw.untrack(r.res);
    settleRequest(gw, rec, call.lastExchange, metrics, logger, ticket, span);
  }
}

/** Every field present from the start, in one order: one hidden class for all records. */
/**
 * A request that failed before its answer was complete: the client gets the error in its API's
 * shape (unless it left), and the record says what happened. Shared with the Responses
 * follow-ups (src/followup.ts).
 */
export function answerFailure(
  e: unknown,
  call: { readonly cut: boolean; readonly gone: boolean },
  res: ServerResponse,
  requestId: string,
  rec: RequestRecord,
  ticket: Ticket | undefined,
  logger: Stages['logger'],
  render?: (err: GatewayError) => string,
): void {
  let err: GatewayError;
  if (call.cut) err = errors.shuttingDown();
  else if (e instanceof ClientAbort || call.gone) {
    rec.status = 499;
    rec.error = CLIENT_LEFT;
    return;
  } else if (e instanceof GatewayError) err = e;
  else {
    err = errors.internal();
    logger.error({ err: e, request_id: requestId }, 'internal error');
  }
  // Limits applied to this request: its error carries the x-ratelimit-* headers too.
  sendError(res, err, requestId, ticket?.headers, render);
  rec.status = err.status;
  rec.error = { code: err.code, message: err.message };
}

/** A body that broke after the head, or a client that left: what the record says of it. */
export function noteFailure(rec: RequestRecord, failure: UpstreamFailure | undefined): void {
  if (!failure) return;
  // Cut by the gateway's shutdown: its own 503, whatever status the stream had started with.
  if (failure.reason === 'shutdown') rec.status = 503;
  rec.error = failure.reason === 'client_abort' ? CLIENT_LEFT : { code: failure.error.code, message: failure.error.message };
}

/** Who served the request, on its record (the log line, metrics and span read it). */
export function noteServed(rec: RequestRecord, served: Served): void {
  rec.servedModel = served.route.name;
  rec.backend = served.backend.name;
  rec.upstreamModel = served.upstreamModel;
  rec.attempts = served.attempts;
  rec.system = served.backend.system;
  rec.origin = served.backend.origin;
}

export function newRecord(requestId: string, endpoint: string, receivedAt: number, model: string, stream: boolean): RequestRecord {
  return {
    requestId,
    endpoint,
    model,
    routed: false,
    servedModel: undefined,
    backend: undefined,
    upstreamModel: undefined,
    status: 0,
    stream,
    receivedAt,
    endedAt: 0,
    firstTokenAt: undefined,
    lastTokenAt: undefined,
    queueMs: undefined,
    upstreamStartAt: undefined,
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
    usageFault: undefined,
    insight: undefined,
    origin: undefined,
    traceId: undefined,
    spanId: undefined,
    upstreamSentAt: undefined,
    upstreamFirstByteAt: undefined,
    clientFirstByteAt: undefined,
  };
}

/**
 * The request sent upstream: the body from the client's bytes with the deployment's model
 * spliced in (the protocol's upstreamBody), once per attempt, never per chunk.
 */
function buildUpstreamRequest(r: InferenceRequest, t: Target, stream: boolean): UpstreamRequest {
  const body = r.protocol.upstreamBody(r.raw, r.body, t, stream);
  return { method: 'POST', path: r.protocol.upstreamPath, headers: upstreamHeaders(r.req, r.id, true, t.backend.forwardHeaders), body };
}

/** The headers sent upstream: ours, and the client's that the allow-list (upstream/headers.ts) lets through. */
export function upstreamHeaders(
  req: IncomingMessage,
  requestId: string,
  json: boolean,
  forward: readonly string[],
): Record<string, string> {
  const headers: Record<string, string> = {
    // The tap reads the bytes it forwards: ask for them uncompressed.
    'accept-encoding': 'identity',
    'x-request-id': requestId,
  };
  if (json) headers['content-type'] = 'application/json';
  return upstreamRequestHeaders(req.headers, headers, forward);
}

/**
 * The end every governed request shares (inference and Responses follow-ups): the last
 * exchange's queue stamps, then settle, exactly once.
 */
export function settleRequest(
  gw: Gateway,
  rec: RequestRecord,
  ex: UpstreamExchange | undefined,
  metrics: Stages['metrics'],
  logger: Stages['logger'],
  ticket: Ticket | undefined,
  span: Span,
): void {
  rec.endedAt = performance.now();
  if (ex) {
    rec.queueMs = ex.queueMs(rec.endedAt);
    rec.upstreamStartAt = ex.startedAt;
  }
  settle(rec, { metrics, logger, ticket, span, genai: gw.genai });
}
