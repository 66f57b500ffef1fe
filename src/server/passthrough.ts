// Admitted pass-through: the /v1/* routes the gateway does not govern as an API of its own
// (files, batches, vector stores, images, audio, fine-tuning, stored completions, ...) go to
// one backend, `server.passthrough_backend` or the first deployment of the first model. The
// client never names the upstream; its key is replaced by the provider's. On the way:
//
//   1. the virtual key (401);
//   2. a write whose path ends like an inference API under another name (`…/completions`,
//      `…/embeddings`, `…/responses`: Azure's deployments/{d}/…, the legacy engines/{e}/…) is
//      refused with 404: inference goes through its governed route or nowhere;
//   3. a write that can spend money the gateway cannot price is refused with 403
//      `passthrough_not_allowed` for a key whose scopes carry a budget or that has a model
//      allow-list (a batch file or an audio form names models the gateway cannot read),
//      unless `server.passthrough.allow` lists its path. Known free writes (FREE_WRITES)
//      and every GET, HEAD, DELETE and OPTIONS pass;
//   4. a JSON body (read whole, up to server.max_body_bytes) that names a model is checked
//      against the key's allow-list (403 model_not_allowed); a served model also brings its
//      model scope and `x-gateway-model`;
//   5. admission with zero tokens and zero cost: rpm and concurrency count every request of
//      the key (429 as on the inference routes), released when the response ends or breaks.
//
// The exchange runs on the backend's undici pool (keep-alive, the backend's connect, header
// and idle timeouts) rather than a separate proxy library: the body goes as received (or as
// the bytes read for the check), the response streams back with backpressure, and an
// upstream that dies mid-body destroys the client's connection, so the client sees an
// error, never a clean end. Each request is counted in llm_gateway_requests_total under
// model="passthrough:<family>" (a bounded set) and gets a `request` log line.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Policies } from '../config/schema.js';
import type { Identity } from '../auth/index.js';
import type { Route } from '../policy/index.js';
import type { Ticket } from '../admission/index.js';
import type { Backend } from '../upstream/backends.js';
import { classifyError } from '../upstream/failures.js';
import { MAX_SCRUBBED_BODY, scrubBody } from '../upstream/scrub.js';
import { DROPPED_RESPONSE_HEADERS } from '../upstream/headers.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { parseJsonObject, readBody } from './body.js';
import type { RouteCall } from './routes.js';

/** Writes known to spend nothing (beyond file storage): open to every key. */
const FREE_WRITES: readonly RegExp[] = [
  /^\/v1\/moderations$/,
  /^\/v1\/files$/,
  /^\/v1\/uploads$/,
  /^\/v1\/uploads\/[^/]+\/(parts|complete|cancel)$/,
  // Updating a stored chat completion's metadata.
  /^\/v1\/chat\/completions\/[^/]+$/,
  // Cancelling (a batch, a fine-tuning job, a run) only stops spending.
  /\/cancel$/,
];

/** A write under another name for an inference API: governed on its own route, never here. */
const INFERENCE_SUFFIX = /\/(completions|embeddings|responses)$/;

const READS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

/** Resource families: the bounded `passthrough:<family>` model label. */
const FAMILIES = new Set([
  'files',
  'uploads',
  'batches',
  'vector_stores',
  'images',
  'audio',
  'fine_tuning',
  'moderations',
  'chat',
  'assistants',
  'threads',
  'containers',
  'evals',
  'realtime',
  'conversations',
  'videos',
  'organization',
]);

export function familyOf(path: string): string {
  const seg = path.split('/', 3)[2] ?? '';
  return FAMILIES.has(seg) ? seg : 'other';
}

/** True when `path` is listed in server.passthrough.allow (a prefix on segment boundaries). */
export function allowedByPolicy(path: string, allow: readonly string[]): boolean {
  for (const a of allow) if (path === a || path.startsWith(a + '/')) return true;
  return false;
}

/** How a pass-through request is classed before anything is sent: 'ok' or the error to answer. */
export function passthroughRule(method: string, path: string, restricted: boolean, allow: readonly string[]): GatewayError | undefined {
  if (READS.has(method)) return undefined;
  if (INFERENCE_SUFFIX.test(path)) return errors.notFound(path);
  if (!restricted || FREE_WRITES.some((r) => r.test(path)) || allowedByPolicy(path, allow)) return undefined;
  return errors.passthroughNotAllowed(method, path);
}

/** A key is restricted when a budget applies to it (key, user, team, model or global) or it has a model allow-list. */
export function restrictedKey(
  p: Pick<Policies, 'users' | 'teams' | 'global' | 'models'>,
  identity: Identity,
  route: Route | undefined,
): boolean {
  if (identity.config?.budget || identity.config?.models) return true;
  if (identity.user !== undefined && p.users[identity.user]?.budget) return true;
  if (identity.team !== undefined && p.teams[identity.team]?.budget) return true;
  if (route?.config.budget) return true;
  return p.global?.budget !== undefined;
}

/** Client request headers never sent upstream: credentials, hop-by-hop, ours, and the account (clients never choose org or project). */
const DROPPED_REQUEST = new Set([
  'authorization',
  'api-key',
  'x-api-key',
  'cookie',
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'forwarded',
  'openai-organization',
  'openai-project',
  'x-request-id',
  // Other providers' credential headers (Anthropic, Google, Azure API Management): a client never brings its own.
  'x-api-key',
  'x-goog-api-key',
  'ocp-apim-subscription-key',
]);

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined;
}

const isJson = (ct: string | undefined): boolean => ct !== undefined && /^application\/(.+\+)?json\b/i.test(ct);

/** The pass-through handler (listed in routes.ts). */
export async function passthrough(c: RouteCall): Promise<void> {
  const { req, res, stages, path } = c;
  const method = req.method ?? 'GET';
  if (/%2F|%5C/i.test(path)) throw errors.invalidPath('encoded slashes (%2F, %5C) are not passed through');
  const identity = stages.auth.identify(req.headers);
  const policies = stages.policies;

  // A JSON body is read (bounded) to check the model it names; any other body streams through.
  let body: Buffer | IncomingMessage | null = null;
  let model: string | undefined;
  let route: Route | undefined;
  if (method !== 'HEAD' && hasBody(req)) {
    if (!READS.has(method) && isJson(req.headers['content-type'])) {
      try {
        body = await readBody(req, policies.server.max_body_bytes);
      } catch (e) {
        res.setHeader('connection', 'close');
        res.once('finish', () => req.destroy());
        throw e;
      }
      const named = parseJsonObject(body).model;
      if (typeof named === 'string') {
        model = named;
        if (identity.config?.models && !identity.config.models.includes(model)) throw errors.modelNotAllowed(model);
        route = stages.policy.resolve(model);
      }
    } else body = req;
  }
  let ticket: Ticket;
  let backend: Backend | undefined;
  try {
    const refused = passthroughRule(method, path, restrictedKey(policies, identity, route), policies.server.passthrough.allow);
    if (refused) throw refused;
    const name = policies.server.passthrough_backend ?? Object.values(policies.models)[0]?.deployments[0]?.backend;
    backend = name ? stages.backends.get(name) : undefined;
    if (!backend) throw errors.unavailable('No backend is configured for pass-through routes.');
    const admitted = stages.admission.admit({ identity, route, promptTokens: 0, maxOutputTokens: 0, worstCaseUsd: 0 });
    ticket = admitted instanceof Promise ? await admitted : admitted;
  } catch (e) {
    // A refused upload is not read to its end: answer, then close the connection.
    if (body === req) {
      res.setHeader('connection', 'close');
      res.once('finish', () => req.destroy());
    }
    throw e;
  }
  const exchange = new PassthroughExchange(c, backend, ticket, identity, method, model, route !== undefined);
  exchange.start(body);
}

/** Headers sent upstream: the client's, minus DROPPED_REQUEST and x-gateway-*, plus ours and the provider's. */
function upstreamHeaders(given: IncomingHttpHeaders, id: string, backend: Backend, bodyLength: number | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in given) {
    const v = given[name];
    if (typeof v === 'string' && !DROPPED_REQUEST.has(name) && !name.startsWith('x-gateway-')) out[name] = v;
  }
  if (bodyLength !== undefined) {
    out['content-length'] = String(bodyLength);
    delete out['transfer-encoding'];
  }
  out['x-request-id'] = id;
  const injected = backend.injectedHeaders;
  for (const name in injected) out[name] = injected[name]!;
  const defaults = backend.defaultHeaders;
  for (const name in defaults) out[name] ??= defaults[name]!;
  return out;
}

/**
 * One pass-through exchange, as its own undici dispatch handler: the response head is
 * written when it arrives, body chunks as they arrive (pausing the upstream while the client
 * is slow), and the end of either side ends the other. Settles once: ticket released, metric
 * counted, log line written.
 */
class PassthroughExchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;
  /** The client left: the upstream is aborted on purpose, its error is not a failure. */
  private gone = false;
  private error: GatewayError | undefined;
  /** An error response held until its body is scrubbed of provider secrets. */
  private held: { status: number; headers: OutgoingHttpHeaders; chunks: Buffer[]; bytes: number } | undefined;
  private readonly started = performance.now();

  constructor(
    private readonly c: RouteCall,
    private readonly backend: Backend,
    private readonly ticket: Ticket,
    private readonly identity: Identity,
    private readonly method: string,
    private readonly model: string | undefined,
    private readonly served: boolean,
  ) {}

  start(body: Buffer | IncomingMessage | null): void {
    const { req, res, gw } = this.c;
    gw.inflight.add(res);
    res.once('close', this.onClientClose);
    // A client that left while admission decided.
    if (res.destroyed) return this.onClientClose();
    const headers = upstreamHeaders(req.headers, this.c.id, this.backend, Buffer.isBuffer(body) ? body.length : undefined);
    // '/v1/files' → <base_url>/files: base_url carries its own version prefix.
    const upstreamPath = this.backend.basePath + this.c.path.slice(3) + this.c.query;
    try {
      this.backend.pool.dispatch({ origin: this.backend.origin, method: this.method, path: upstreamPath, headers, body }, this);
    } catch (e) {
      this.onResponseError(undefined, e as Error);
    }
  }

  private readonly onClientClose = (): void => {
    const { res } = this.c;
    if (res.writableFinished || this.error) return this.finish(res.statusCode);
    this.gone = true;
    this.controller?.abort(new Error('client closed the connection'));
    this.finish(499, { code: 'client_closed_request', message: 'the client closed the connection' });
  };

  private readonly onDrain = (): void => this.controller?.resume();

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.gone) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, upstream: IncomingHttpHeaders): void {
    if (status >= 300 && status < 400) {
      // Never relayed: the SDKs follow 307/308 and would re-send the body (a file, a batch) to
      // the host the upstream names (see upstream/failures.ts redirectFailure).
      this.error = errors.upstreamRedirect(this.backend.name, status);
      this.c.stages.metrics.upstreamErrors.inc({ backend: this.backend.name, reason: 'redirect' });
      controller.abort(new Error('upstream redirect'));
      if (!this.c.req.complete) this.c.req.resume();
      sendError(this.c.res, this.error, this.c.id, this.ticket.headers);
      return;
    }
    const out: OutgoingHttpHeaders = {};
    for (const name in upstream) {
      const v = upstream[name];
      if (v !== undefined && !DROPPED_RESPONSE_HEADERS.has(name) && !name.startsWith('x-ratelimit-')) out[name] = v;
    }
    const ours = this.ticket.headers;
    for (const name in ours) out[name] = ours[name];
    if (this.served) out['x-gateway-model'] = this.model;
    out['x-request-id'] = this.c.id;
    if (status >= 400 && this.backend.secrets.length > 0) {
      // An error body may quote the provider key: held (bounded) and scrubbed before it is sent.
      this.held = { status, headers: out, chunks: [], bytes: 0 };
      return;
    }
    this.c.res.writeHead(status, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const held = this.held;
    if (held) {
      held.chunks.push(chunk);
      held.bytes += chunk.length;
      if (held.bytes > MAX_SCRUBBED_BODY) this.refuseHeld(controller, 'an error body over 64 KiB');
      return;
    }
    const res = this.c.res;
    if (!res.write(chunk)) {
      controller.pause();
      res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    const held = this.held;
    if (!held) return void this.c.res.end();
    this.held = undefined;
    const encoding = held.headers['content-encoding'];
    const scrubbed = scrubBody(Buffer.concat(held.chunks), typeof encoding === 'string' ? encoding : undefined, this.backend.secrets);
    if (!scrubbed) return this.refuseHeld(undefined, 'an error body that cannot be decoded');
    if (scrubbed.decoded) delete held.headers['content-encoding'];
    held.headers['content-length'] = scrubbed.body.length;
    this.c.res.writeHead(held.status, held.headers);
    this.c.res.end(scrubbed.body);
  }

  /** A held error body that cannot be checked for secrets is not relayed: the client gets the gateway's 502. */
  private refuseHeld(controller: Dispatcher.DispatchController | undefined, what: string): void {
    this.held = undefined;
    this.error = errors.upstreamBadResponse(this.backend.name, what);
    controller?.abort(new Error(what));
    if (!this.c.req.complete) this.c.req.resume();
    sendError(this.c.res, this.error, this.c.id, this.ticket.headers);
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    const { res, id, stages } = this.c;
    if (this.gone || this.error) return; // our own abort after the client left
    const failure = classifyError(err, this.backend.name, res.headersSent);
    stages.metrics.upstreamErrors.inc({ backend: this.backend.name, reason: failure.reason });
    this.error = failure.error;
    if (!this.c.req.complete) this.c.req.resume();
    if (res.headersSent) {
      // The head went out: only a broken connection tells the client the body is incomplete.
      res.destroy(failure);
      return;
    }
    sendError(res, failure.error, id, this.ticket.headers);
  }

  private finish(status: number, clientError?: { code: string; message: string }): void {
    if (this.settled) return;
    this.settled = true;
    const { res, gw, stages, id, path } = this.c;
    res.off('drain', this.onDrain);
    gw.inflight.delete(res);
    this.ticket.settle({ servedModel: this.model ?? 'passthrough', inputTokens: 0, outputTokens: 0, costUsd: 0 });
    const durationMs = performance.now() - this.started;
    const series = stages.metrics.series('passthrough:' + familyOf(path), this.backend.name);
    series.requests(status).inc();
    series.duration(false).observe(durationMs / 1000);
    const error = this.error ? { code: this.error.code, message: this.error.message } : clientError;
    // As on the governed routes: a 5xx line at level error.
    stages.logger[status >= 500 ? 'error' : 'info'](
      {
        request_id: id,
        endpoint: 'passthrough',
        method: this.method,
        path,
        model: this.model,
        backend: this.backend.name,
        status,
        duration_ms: Math.round(durationMs * 1000) / 1000,
        key_name: this.identity.key,
        user: this.identity.user,
        team: this.identity.team,
        error,
      },
      'request',
    );
  }
}
