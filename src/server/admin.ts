// /admin/*: guarded by Authorization: Bearer <admin token> (policies.yaml admin_token, or
// GATEWAY_ADMIN_TOKEN). Without a configured token the admin surface is off entirely.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { readBody } from './http.js';
import { validSession } from '../dashboard/session.js';

export interface AdminRequest {
  gw: Gateway;
  req: IncomingMessage;
  /** Path segments after /admin/, e.g. ["circuits", "gpt-4o", "openai"]. */
  params: string[];
  /** Parsed JSON body for POST (empty object when none). */
  body: Record<string, unknown>;
  query: URLSearchParams;
}
export type AdminHandler = (r: AdminRequest) => Promise<unknown> | unknown;

/** Routes: "METHOD first-segment" → handler. Each stage registers its own. */
const routes = new Map<string, AdminHandler>();

export function registerAdminRoute(method: 'GET' | 'POST', segment: string, handler: AdminHandler): void {
  routes.set(`${method} ${segment}`, handler);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function authorised(gw: Gateway, req: IncomingMessage): boolean {
  const token = gw.stages().policies.admin_token || process.env.GATEWAY_ADMIN_TOKEN;
  if (!token) throw errors.adminDisabled();
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  // No Bearer: the dashboard's session cookie (HMAC-signed, constant-time checked), for GET (reads) only.
  if (!m?.[1]) return req.method === 'GET' && validSession(req.headers.cookie, token, req.socket.localPort);
  return timingSafeEqual(digest(m[1].trim()), digest(token));
}

/** A %-encoded path segment; a malformed escape (`%`, `%zz`) is the client's 400, not a URIError. */
function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new GatewayError(400, 'invalid_request_error', 'invalid_path', `Malformed %-escape in path segment ${JSON.stringify(s.slice(0, 64))}.`);
  }
}

export async function handleAdmin(gw: Gateway, req: IncomingMessage, res: ServerResponse, path: string, id: string): Promise<void> {
  try {
    if (!authorised(gw, req)) throw errors.unauthorizedAdmin();
    const segments = path.split('/').filter(Boolean).slice(1).map(decodeSegment);
    const method = req.method === 'POST' ? 'POST' : 'GET';
    const handler = routes.get(`${method} ${segments[0] ?? ''}`);
    if (!handler) throw errors.notFound(path);
    let body: Record<string, unknown> = {};
    if (method === 'POST') {
      const raw = await readBody(req, 1024 * 1024);
      if (raw.length) {
        const parsed: unknown = JSON.parse(raw.toString('utf8'));
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw errors.notObject();
        body = parsed as Record<string, unknown>;
      }
    } else req.resume();
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    const result = await handler({ gw, req, params: segments.slice(1), body, query });
    if (typeof result === 'string') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-request-id': id });
      res.end(result);
      return;
    }
    const text = JSON.stringify(result ?? { ok: true });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': id });
    res.end(text);
  } catch (e) {
    if (e instanceof SyntaxError) return sendError(res, errors.invalidJson(e.message), id);
    sendError(res, e instanceof GatewayError ? e : errors.internal(), id);
    if (!(e instanceof GatewayError)) gw.logger.error({ err: e }, 'admin route failed');
  }
}
