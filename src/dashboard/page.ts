// GET /dashboard: the live page, guarded by the admin token. A browser cannot send a Bearer
// header when it navigates, so the token may come once as ?token=…: it is checked (constant
// time), exchanged for an HttpOnly, SameSite=Strict session cookie (see session.ts), and the
// browser is redirected to /dashboard without the token in its address bar or history.
// `Authorization: Bearer <admin token>` works too (and also sets the cookie, which the page's
// own fetches of /admin/stats then carry).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './html.js';
import { sameSecret, sessionCookie, validSession } from './session.js';

const unauthorised = () =>
  new GatewayError(
    401,
    'authentication_error',
    'invalid_admin_token',
    'The dashboard needs the admin token: open /dashboard?token=<admin token> once (it is exchanged for a session cookie), or send Authorization: Bearer <admin token>.',
  );

export function adminToken(gw: Gateway): string | undefined {
  return gw.stages().policies.admin_token || process.env.GATEWAY_ADMIN_TOKEN || undefined;
}

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': DASHBOARD_CSP,
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

export function handleDashboard(gw: Gateway, req: IncomingMessage, res: ServerResponse, id: string): void {
  req.resume();
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') return sendError(res, errors.methodNotAllowed(method, '/dashboard'), id);
  const token = adminToken(gw);
  if (!token) return sendError(res, errors.adminDisabled(), id);

  const url = new URL(req.url ?? '/dashboard', 'http://gateway');
  const given = url.searchParams.get('token');
  if (given !== null) {
    if (!sameSecret(given, token)) return sendError(res, unauthorised(), id);
    url.searchParams.delete('token');
    const rest = url.searchParams.toString();
    res.writeHead(303, {
      location: `/dashboard${rest ? `?${rest}` : ''}`,
      'set-cookie': sessionCookie(token, req.socket.localPort),
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'content-length': 0,
      'x-request-id': id,
    });
    res.end();
    return;
  }

  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
  const headers: Record<string, string | number> = { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(DASHBOARD_HTML), 'x-request-id': id };
  if (bearer !== undefined) {
    if (!sameSecret(bearer, token)) return sendError(res, unauthorised(), id);
    headers['set-cookie'] = sessionCookie(token, req.socket.localPort);
  } else if (!validSession(req.headers.cookie, token, req.socket.localPort)) {
    return sendError(res, unauthorised(), id);
  }
  res.writeHead(200, headers);
  res.end(method === 'HEAD' ? undefined : DASHBOARD_HTML);
}
