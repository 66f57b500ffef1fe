// The front door's own bounds: how long a client may take to send a request, how many
// connections it may hold, and how a refused body is got rid of. None of these applies to
// the response, so a stream of any length is never cut by them.
//
//   server.headers_timeout_ms     the request head (Node's headersTimeout): a slowloris that
//                                 trickles header bytes is cut with a 408
//   server.body_timeout_ms        the request body (readBody's own timer, a shaped 408); Node's
//                                 requestTimeout, just above head + body, is the backstop for
//                                 bodies nobody reads (pass-through, admin)
//   server.keep_alive_timeout_ms  an idle keep-alive connection (Node's keepAliveTimeout)
//   server.max_connections        open connections; more are refused at accept
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Policies } from '../config/schema.js';
import type { Logger } from '../telemetry/logger.js';
import { errors, sendError, type GatewayError } from '../errors.js';
import type { Metrics } from '../telemetry/metrics.js';

type ServerSettings = Policies['server'];

/** Node checks headers/request timeouts on this interval: its default (30 s) would let a slowloris live 30 s past the limit. */
export function connectionsCheckingInterval(s: ServerSettings): number {
  return Math.max(100, Math.min(1_000, Math.floor(s.headers_timeout_ms / 4)));
}

/** Node's request timeout: the backstop behind readBody's own, shaped, body timer. */
export function backstopRequestTimeout(s: ServerSettings): number {
  return s.headers_timeout_ms + s.body_timeout_ms + 1_000;
}

/** Applies the settings to a server (at start and on every reload: they are plain properties). */
export function applyServerLimits(server: Server, s: ServerSettings): void {
  server.headersTimeout = s.headers_timeout_ms;
  server.requestTimeout = backstopRequestTimeout(s);
  server.keepAliveTimeout = s.keep_alive_timeout_ms;
  server.maxConnections = s.max_connections;
}

/** Counts and logs (at most every 10 s) connections refused at max_connections. */
export function watchRefusedConnections(server: Server, metrics: Metrics, logger: Logger): void {
  let lastLog = 0;
  let since = 0;
  server.on('drop', () => {
    metrics.connectionsRefused.inc();
    since++;
    const now = Date.now();
    if (now - lastLog >= 10_000) {
      logger.warn({ refused: since, max_connections: server.maxConnections }, 'connections refused: server.max_connections are open');
      lastLog = now;
      since = 0;
    }
  });
}

/** node:http's own refusals, answered as it would (status and connection: close) but in the OpenAI shape, and counted. */
const CLIENT_ERRORS: Record<string, { text: string; err: GatewayError }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { text: 'Request Timeout', err: errors.requestHeadTimeout() },
  HPE_HEADER_OVERFLOW: { text: 'Request Header Fields Too Large', err: errors.headerOverflow() },
};
const BAD_REQUEST = { text: 'Bad Request', err: errors.badHttp() };

/**
 * Replaces node:http's default clientError answer (a bare status line) with the same status,
 * an OpenAI-shaped body, and a count in llm_gateway_client_errors_total. A client that reset
 * or left is not answered (nothing to answer) and not counted.
 */
export function answerClientErrors(server: Server, metrics: Metrics): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    const { text, err: e } = (err.code && CLIENT_ERRORS[err.code]) || BAD_REQUEST;
    metrics.clientErrors.inc({ reason: e.code });
    if ((socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) {
      const body = JSON.stringify(e.body());
      socket.write(
        `HTTP/1.1 ${e.status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  });
}

/** How much of a refused body is read and thrown away, and for how long, before the connection is cut. */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const DISCARD_MAX_MS = 10_000;

/**
 * After an early answer (413, 408) to a request whose body is still arriving: read and
 * discard the rest, up to a bound, so the client (still writing) can read the answer. Closing
 * at once (or answering with connection: close, which makes node:http destroy the socket as
 * soon as the answer is written) leaves unread bytes in the receive buffer, the kernel sends
 * a reset, and the client sees ECONNRESET instead of the 413. Within the bound the connection
 * stays usable for the next request; past it, it is cut.
 */
export function discardBody(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  let bytes = 0;
  const done = () => {
    clearTimeout(timer);
    req.off('data', onData);
  };
  const cut = () => {
    done();
    req.destroy();
  };
  const onData = (c: Buffer) => {
    bytes += c.length;
    if (bytes > DISCARD_MAX_BYTES) cut();
  };
  const timer = setTimeout(cut, DISCARD_MAX_MS);
  timer.unref();
  req.on('data', onData);
  req.once('end', done);
  req.once('close', done);
  req.resume();
}

/**
 * Answers a request whose body was refused before it was read whole. Too large (413): the
 * rest is discarded so the client can read the answer. Too slow (408) or broken: answered
 * with connection: close and the socket closed once the answer is out.
 */
export function refuseBody(
  req: IncomingMessage,
  res: ServerResponse,
  err: GatewayError,
  id: string,
  render?: (err: GatewayError) => string,
): void {
  if (err.status === 413) {
    sendError(res, err, id, undefined, render);
    discardBody(req);
    return;
  }
  if (!res.headersSent) res.setHeader('connection', 'close');
  sendError(res, err, id, undefined, render);
  res.once('finish', () => req.destroy());
}
