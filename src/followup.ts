// Follow-ups of a stored Responses API response: GET / DELETE /v1/responses/{id},
// POST /v1/responses/{id}/cancel, GET /v1/responses/{id}/input_items. They name no model: the
// response-id affinity (routing/affinity.ts) says which model served it and which backend
// holds it. Governed like any request of that model: the key is checked, the model must be on
// its allow-list, admission counts it (rpm, concurrency; it reserves no tokens or money), and
// routing retries it, but only on the backend that holds the response.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors } from './errors.js';
import type { Gateway } from './gateway.js';
import type { Ticket } from './admission/index.js';
import { answerFailure, newRecord, noteFailure, noteServed, settleRequest, upstreamHeaders } from './pipeline.js';
import type { PromptCounter } from './streamtap/forward.js';
import { forwardGuarded } from './upstream/guard.js';
import { ClientAbort, ShutdownCut } from './upstream/failures.js';
import type { UpstreamExchange, UpstreamRequest } from './upstream/exchange.js';
import type { RoutingContext, Target } from './routing/index.js';
import type { Tracing } from './telemetry/tracing.js';
import type { Span } from '@opentelemetry/api';
import { responses } from './protocols/responses.js';

export type FollowUpAction = 'get' | 'delete' | 'cancel' | 'input_items';

export interface FollowUpRequest {
  id: string;
  req: IncomingMessage;
  res: ServerResponse;
  receivedAt: number;
  responseId: string;
  action: FollowUpAction;
  /** The client's query string, '?' included ('' when none): passed on as is. */
  query: string;
}

const UPSTREAM: Record<FollowUpAction, { method: UpstreamRequest['method']; suffix: string }> = {
  get: { method: 'GET', suffix: '' },
  delete: { method: 'DELETE', suffix: '' },
  cancel: { method: 'POST', suffix: '/cancel' },
  input_items: { method: 'GET', suffix: '/input_items' },
};

/** Response ids are opaque word characters (resp_...): anything else cannot name one, and must not shape the upstream path. */
export const RESPONSE_ID = /^[A-Za-z0-9_-]{1,256}$/;

class FollowUpCall implements RoutingContext, PromptCounter {
  exchange: UpstreamExchange | undefined = undefined;
  lastExchange: UpstreamExchange | undefined = undefined;
  gone = false;
  /** The gateway cut this request (shutdown past drain_timeout_ms). */
  cut = false;
  pin: string | undefined = undefined;
  readonly onClose = (): void => {
    if (this.f.res.writableFinished) return;
    this.gone = true;
    this.exchange?.abort(new ClientAbort());
  };
  readonly onCut = (): void => {
    if (this.f.res.writableFinished || this.gone) return;
    this.cut = true;
    this.exchange?.abort(new ShutdownCut());
  };

  constructor(
    readonly f: FollowUpRequest,
    readonly span: Span,
    readonly tracing: Tracing,
  ) {}

  buildRequest(t: Target): UpstreamRequest {
    const { method, suffix } = UPSTREAM[this.f.action];
    const headers = upstreamHeaders(this.f.req, this.f.id, false, t.backend.forwardHeaders);
    this.tracing.inject(this.span, headers);
    return { method, path: `/responses/${this.f.responseId}${suffix}${this.f.query}`, headers };
  }
  onExchange(e: UpstreamExchange | undefined): void {
    this.exchange = e;
    if (e) this.lastExchange = e;
  }
  clientGone(): boolean {
    return this.gone || this.cut;
  }
  promptTokens(): number {
    return 0;
  }
}

export async function handleResponseFollowUp(gw: Gateway, f: FollowUpRequest): Promise<void> {
  // GET ?stream=true replays a (background) response's events: forwarded through the tap.
  const stream = f.action === 'get' && new URLSearchParams(f.query).get('stream') === 'true';
  const rec = newRecord(f.id, `responses/${f.action}`, f.receivedAt, '', stream);
  const span = gw.tracing.start(f.req.headers, `responses.${f.action}`, '', stream);
  if (gw.tracing.exporting) {
    const sc = span.spanContext();
    rec.traceId = sc.traceId;
    rec.spanId = sc.spanId;
  }
  const { policy, auth, admission, router, metrics, logger } = gw.stages();
  const call = new FollowUpCall(f, span, gw.tracing);
  let ticket: Ticket | undefined;
  f.res.on('close', call.onClose);
  gw.track(f.res, call.onCut);
  try {
    const identity = auth.identify(f.req.headers);
    rec.keyName = identity.key;
    rec.user = identity.user;
    rec.team = identity.team;
    rec.teamLabel = identity.teamLabel;
    const held = RESPONSE_ID.test(f.responseId) ? await gw.affinity.lookup(f.responseId) : undefined;
    const route = held && policy.resolve(held.model);
    if (!held || !route) throw errors.responseNotFound(f.responseId);
    rec.model = held.model;
    rec.routed = true;
    if (identity.config?.models && !identity.config.models.includes(held.model)) throw errors.modelNotAllowed(held.model);
    const admitted = admission.admit({ identity, route, promptTokens: 0, maxOutputTokens: 0, worstCaseUsd: 0 });
    ticket = admitted instanceof Promise ? await admitted : admitted;
    if (call.gone || call.cut) throw new ClientAbort();
    call.pin = held.backend;
    const active = metrics.activeFor(held.model);
    active.inc();
    try {
      const served = await router.open(call, route);
      // No pricing: reading a stored response again is not billed a second time.
      noteServed(rec, served);
      const outcome = await forwardGuarded({
        res: f.res,
        wire: responses,
        exchange: served.exchange,
        maxBodyBytes: policy.policies.server.max_upstream_body_bytes,
        stream,
        stripUsage: false,
        requestId: f.id,
        headers: ticket.headers,
        servedModel: served.route.name,
        prompt: call,
      });
      router.report(served, outcome.failure === undefined || outcome.failure.reason === 'client_abort', outcome.failure);
      rec.status = outcome.status;
      noteFailure(rec, outcome.failure);
      if (f.action === 'delete' && outcome.status < 300) gw.affinity.forget(f.responseId);
    } finally {
      active.dec();
    }
  } catch (e) {
    answerFailure(e, call, f.res, f.id, rec, ticket, logger);
  } finally {
    f.res.off('close', call.onClose);
    gw.untrack(f.res);
    settleRequest(gw, rec, call.lastExchange, metrics, logger, ticket, span);
  }
}
