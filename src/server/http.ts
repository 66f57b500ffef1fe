// node:http front door: request ids, body reading with a size cap, JSON parsed once, routes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { handleInference } from '../pipeline.js';
import { handleResponseFollowUp, type FollowUpAction } from '../followup.js';
import { protocols, type Protocol } from '../protocols/index.js';
import { handleAdmin } from './admin.js';
import { createPassthrough } from './passthrough.js';
import { handleDashboard } from '../dashboard/page.js';

const INFERENCE: Record<string, Protocol> = {
  '/v1/chat/completions': protocols.chat,
  '/v1/completions': protocols.completions,
  '/v1/embeddings': protocols.embeddings,
  '/v1/responses': protocols.responses,
  '/v1/responses/input_tokens': protocols.responsesInputTokens,
};

/** /v1/responses/{id}[/cancel|/input_items]: the follow-ups of a stored response, by method. */
const FOLLOW_UP = /^\/v1\/responses\/([^/]+)(\/cancel|\/input_items)?$/;
function followUpAction(method: string, sub: string | undefined): FollowUpAction | undefined {
  if (sub === undefined) return method === 'GET' ? 'get' : method === 'DELETE' ? 'delete' : undefined;
  if (sub === '/cancel') return method === 'POST' ? 'cancel' : undefined;
  return method === 'GET' ? 'input_items' : undefined;
}

/**
 * Request ids for requests that bring none: UUID-shaped, a random per-process prefix and a
 * counter. Unique (not secret), and without randomUUID's per-request formatting and
 * periodic randomFillSync.
 */
const ID_PREFIX = randomUUID().slice(0, 24); // "xxxxxxxx-xxxx-4xxx-yxxx-"
let idCounter = 0;
function newRequestId(): string {
  idCounter = (idCounter + 1) % 0x1000000000000;
  const hex = idCounter.toString(16);
  return ID_PREFIX + '000000000000'.slice(hex.length) + hex;
}

/** A client-supplied x-request-id is kept only if it is short and printable, since it lands in logs and headers. */
function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && given.length > 0 && given.length <= 128 && /^[\x21-\x7e]+$/.test(given)) return given;
  return newRequestId();
}

/** Reads the body up to `limit` bytes; rejects with 413 as soon as it is known to be larger. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(errors.tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        cleanup();
        reject(errors.tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onAborted = () => {
      cleanup();
      reject(new GatewayError(400, 'invalid_request_error', 'client_closed_request', 'client closed the connection while sending the body'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': requestId });
  res.end(text);
}

export function createHttpServer(gw: Gateway): Server {
  const passthrough = createPassthrough(gw);
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    const receivedAt = performance.now();
    const id = requestIdOf(req);
    handle(req, res, id, receivedAt).catch((e: unknown) => {
      gw.logger.error({ err: e, request_id: id }, 'unhandled error');
      sendError(res, e instanceof GatewayError ? e : errors.internal(), id);
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse, id: string, receivedAt: number): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';

    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' }, id);
    if (path === '/readyz') {
      const r = gw.ready();
      return sendJson(res, r.ok ? 200 : 503, r.ok ? { status: 'ready' } : { status: 'not ready', reason: r.reason }, id);
    }
    if (path === '/metrics' && method === 'GET') {
      const reg = gw.metrics.registry;
      const text = await reg.metrics();
      res.writeHead(200, { 'content-type': reg.contentType, 'x-request-id': id });
      res.end(text);
      return;
    }
    if (path === '/dashboard') return handleDashboard(gw, req, res, id);
    if (path.startsWith('/admin/') || path === '/admin') return handleAdmin(gw, req, res, path, id);

    if (gw.isDraining) {
      res.setHeader('connection', 'close');
      return sendError(res, errors.shuttingDown(), id);
    }

    const protocol = INFERENCE[path];
    if (protocol) {
      if (method !== 'POST') return sendError(res, errors.methodNotAllowed(method, path), id);
      const ct = req.headers['content-type'];
      if (!ct || !/^application\/(.+\+)?json\b/i.test(ct)) {
        req.resume();
        return sendError(res, errors.contentType(ct), id, undefined, protocol.errorBody);
      }
      const limit = gw.stages().policies.server.max_body_bytes;
      let raw: Buffer;
      try {
        raw = await readBody(req, limit);
      } catch (e) {
        // The rest of the body is unread: answer, then close the connection rather than drain it.
        res.setHeader('connection', 'close');
        sendError(res, e instanceof GatewayError ? e : errors.internal(), id, undefined, protocol.errorBody);
        res.once('finish', () => req.destroy());
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        return sendError(res, errors.invalidJson((e as Error).message), id, undefined, protocol.errorBody);
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return sendError(res, errors.notObject(), id, undefined, protocol.errorBody);
      return handleInference(gw, { id, protocol, req, res, raw, body: body as Record<string, unknown>, receivedAt });
    }

    const follow = FOLLOW_UP.exec(path);
    if (follow) {
      const action = followUpAction(method, follow[2]);
      req.resume();
      if (!action) return sendError(res, errors.methodNotAllowed(method, path), id);
      return handleResponseFollowUp(gw, { id, req, res, receivedAt, responseId: follow[1]!, action, query: q === -1 ? '' : url.slice(q) });
    }

    if (path === '/v1/models' && method === 'GET') {
      const { auth, policy } = gw.stages();
      auth.identify(req.headers);
      const created = Math.floor(Date.now() / 1000);
      return sendJson(res, 200, { object: 'list', data: policy.names().map((m) => ({ id: m, object: 'model', created, owned_by: 'llm-gateway' })) }, id);
    }
    if (path.startsWith('/v1/')) return passthrough(req, res, id);
    req.resume();
    return sendError(res, errors.notFound(path), id);
  }

  return server;
}
