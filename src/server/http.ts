// node:http front door: request ids, the path made canonical (path.ts), the route looked up
// in the one table (routes.ts), its handler run; refusals answered in OpenAI's error shape.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { normalisePath } from './path.js';
import { matchRoute, shadowsGovernedRoute, type Governance, type Method } from './routes.js';
import { guardAdmin } from './admin.js';
import { answerClientErrors, applyServerLimits, connectionsCheckingInterval, watchRefusedConnections } from './limits.js';
import { checkHost, HOST_EXEMPT } from './exposure.js';

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

export function createHttpServer(gw: Gateway): Server {
  const settings = gw.stages().policies.server;
  const server = createServer({ connectionsCheckingInterval: connectionsCheckingInterval(settings) }, (req, res) => {
    const receivedAt = performance.now();
    const id = requestIdOf(req);
    let done: void | Promise<void>;
    try {
      done = dispatch(gw, req, res, id, receivedAt);
    } catch (e) {
      return failed(gw, req, res, id, e);
    }
    if (done) done.catch((e: unknown) => failed(gw, req, res, id, e));
  });
  applyServerLimits(server, settings);
  watchRefusedConnections(server, gw.metrics, gw.logger);
  answerClientErrors(server, gw.metrics);
  return server;
}

/** A refusal (GatewayError) is an answer, not an incident: only anything else is logged, with its stack. */
function failed(gw: Gateway, req: IncomingMessage, res: ServerResponse, id: string, e: unknown): void {
  if (!(e instanceof GatewayError)) gw.logger.error({ err: e, request_id: id }, 'unhandled error');
  if (!req.complete) req.resume();
  sendError(res, e instanceof GatewayError ? e : errors.internal(), id);
}

/** Canonical path → route row → method → handler (routes.ts holds the table). */
function dispatch(gw: Gateway, req: IncomingMessage, res: ServerResponse, id: string, receivedAt: number): void | Promise<void> {
  const target = normalisePath(req.url ?? '/');
  if (!target.ok) throw errors.invalidPath(target.reason);
  const path = target.path;
  const match = matchRoute(path);
  if (!match) throw errors.notFound(path);
  const { row } = match;
  const stages = gw.stages();
  if (!HOST_EXEMPT.has(path)) {
    const wrongHost = checkHost(req.headers.host, stages.policies.server.allowed_hosts);
    if (wrongHost) throw wrongHost;
  }
  const method = req.method ?? 'GET';
  if (row.governed === 'admin') guardAdmin({ stages, req });
  const handler = row.methods[method as Method] ?? row.methods['*'];
  if (!handler) throw errors.methodNotAllowed(method, path, match.allow);
  if (row.governed === 'passthrough' && shadowsGovernedRoute(path)) throw errors.notFound(path);
  if (gw.isDraining && DRAINS.has(row.governed)) {
    res.setHeader('connection', 'close');
    throw errors.shuttingDown();
  }
  return handler({ req, res, id, receivedAt, path, query: target.query, params: match.params, stages, gw });
}

/** Requests refused once the gateway drains (probes, metrics and admin keep answering). */
const DRAINS = new Set<Governance>(['pipeline', 'key', 'passthrough', 'reserved']);
