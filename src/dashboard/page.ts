// GET /dashboard: the live page, guarded by the admin token. A browser cannot send a Bearer
// header when it navigates, so the token may come once as ?token=…: it is checked (constant
// time), exchanged for an HttpOnly, SameSite=Strict session cookie (see session.ts), and the
// browser is redirected to /dashboard without the token in its address bar or history.
// `Authorization: Bearer <admin token>` works too (and also sets the cookie, which the page's
// own fetches of /admin/stats then carry).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Policies } from '../config/schema.js';
import { errors, sendError } from '../errors.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './html.js';
import { adminToken } from '../auth/admin.js';
import { bearer, sameSecret } from '../auth/credentials.js';
import { sessionCookie, validSession } from '../auth/session.js';

const unauthorised = errors.invalidAdminTokenDashboard;

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': DASHBOARD_CSP,
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/** GET/HEAD /dashboard (the route table sends no other method here). */
export function handleDashboard(policies: Pick<Policies, 'admin_token'>, req: IncomingMessage, res: ServerResponse, id: string): void {
  req.resume();
  const method = req.method ?? 'GET';
  const token = adminToken(policies);
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

  const presented = bearer(req.headers.authorization);
  const headers: Record<string, string | number> = {
    ...PAGE_HEADERS,
    'content-length': Buffer.byteLength(DASHBOARD_HTML),
    'x-request-id': id,
  };
  if (presented !== undefined) {
    if (!sameSecret(presented, token)) return sendError(res, unauthorised(), id);
    headers['set-cookie'] = sessionCookie(token, req.socket.localPort);
  } else if (!validSession(req.headers.cookie, token, req.socket.localPort)) {
    return sendError(res, unauthorised(), id);
  }
  res.writeHead(200, headers);
  res.end(method === 'HEAD' ? undefined : DASHBOARD_HTML);
}
