// node:http front door: request ids, body reading with a size cap, JSON parsed once, routes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { handleInference, type Endpoint } from '../pipeline.js';
import { handleAdmin } from './admin.js';
import { createPassthrough } from './passthrough.js';
import { handleDashboard } from '../dashboard/page.js';
import { checkHost } from './exposure.js';
import { applyServerLimits, connectionsCheckingInterval, refuseBody, watchRefusedConnections } from './limits.js';

const INFERENCE: Record<string, Endpoint> = {
  '/v1/chat/completions': 'chat/completions',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

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
export function readBody(req: IncomingMessage, limit: number, timeoutMs = 0): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(errors.tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // server.body_timeout_ms: a body that never ends gets a shaped 408 (see server/limits.ts).
    const timer = timeoutMs > 0 ? setTimeout(() => (cleanup(), reject(errors.requestTimeout(timeoutMs))), timeoutMs) : undefined;
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
      if (timer) clearTimeout(timer);
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
  const settings = gw.stages().policies.server;
  const server = createServer({ connectionsCheckingInterval: connectionsCheckingInterval(settings) }, (req, res) => {
    const receivedAt = performance.now();
    const id = requestIdOf(req);
    handle(req, res, id, receivedAt).catch((e: unknown) => {
      // A GatewayError is an answer (a 401 for GET /v1/models without a key), not a fault: no error line, no stack.
      if (e instanceof GatewayError) gw.logger.debug({ request_id: id, status: e.status, code: e.code }, 'request refused');
      else gw.logger.error({ err: e, request_id: id }, 'unhandled error');
      sendError(res, e instanceof GatewayError ? e : errors.internal(), id);
    });
  });

  applyServerLimits(server, settings);
  watchRefusedConnections(server, gw.metrics, gw.logger);

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
    // Probes and scrapes come by pod IP: exempt. Everything that spends or administers is not.
    const wrongHost = checkHost(req.headers.host, gw.stages().policies.server.allowed_hosts);
    if (wrongHost) {
      req.resume();
      return sendError(res, wrongHost, id);
    }
    if (path === '/dashboard') return handleDashboard(gw, req, res, id);
    if (path.startsWith('/admin/') || path === '/admin') return handleAdmin(gw, req, res, path, id);

    if (gw.isDraining) {
      res.setHeader('connection', 'close');
      return sendError(res, errors.shuttingDown(), id);
    }

    const endpoint = INFERENCE[path];
    if (endpoint) {
      if (method !== 'POST') return sendError(res, errors.methodNotAllowed(method, path), id);
      const ct = req.headers['content-type'];
      if (!ct || !/^application\/(.+\+)?json\b/i.test(ct)) {
        req.resume();
        return sendError(res, errors.contentType(ct), id);
      }
      const { max_body_bytes: limit, body_timeout_ms } = gw.stages().policies.server;
      let raw: Buffer;
      try {
        raw = await readBody(req, limit, body_timeout_ms);
      } catch (e) {
        return refuseBody(req, res, e instanceof GatewayError ? e : errors.internal(), id);
      }
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        return sendError(res, errors.invalidJson((e as Error).message), id);
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return sendError(res, errors.notObject(), id);
      return handleInference(gw, { id, endpoint, req, res, raw, body: body as Record<string, unknown>, receivedAt });
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
