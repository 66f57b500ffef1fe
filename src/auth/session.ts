// The dashboard's browser session. A browser cannot send `Authorization: Bearer` when it
// navigates, so GET /dashboard?token=<admin token> is exchanged (once) for this cookie and a
// redirect to /dashboard. The cookie holds no token: it is `<expiry ms>.<HMAC-SHA256 keyed
// by the admin token over the expiry>`, so it expires on the server side too, and rotating
// the admin token invalidates every session. auth/admin.ts accepts it for GET /admin/* only
// (reads: the page fetches /admin/stats with it); POST admin routes still need the Bearer
// header, so a cookie can never trigger a reload or a circuit override.
// A leaf module (node:crypto and credentials.ts only): auth/admin.ts (the admin guard) and the dashboard page import it.
import { createHmac } from 'node:crypto';
import { sameSecret } from './credentials.js';

/**
 * Cookies are shared by every port of a host, so the name carries the gateway's own listening
 * port: two gateways on one machine (or a gateway and the bench) keep separate sessions.
 */
export const sessionCookieName = (port: number | undefined): string => `llm_gateway_dashboard_${port ?? 0}`;
export const SESSION_TTL_S = 12 * 60 * 60;

function signature(token: string, exp: number): string {
  return createHmac('sha256', token).update(`llm-gateway dashboard session|${exp}`).digest('base64url');
}

/** A fresh session value for the admin token, valid for ttlS seconds. */
export function newSession(token: string, now = Date.now(), ttlS = SESSION_TTL_S): string {
  const exp = now + ttlS * 1000;
  return `${exp}.${signature(token, exp)}`;
}

/** The Set-Cookie header value that carries a session. */
export function sessionCookie(token: string, port: number | undefined, now = Date.now()): string {
  return `${sessionCookieName(port)}=${newSession(token, now)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_S}`;
}

/** The value of one cookie in a Cookie header, if present. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** True when the Cookie header carries an unexpired session signed with this admin token. */
export function validSession(cookieHeader: string | undefined, token: string, port: number | undefined, now = Date.now()): boolean {
  const v = cookieValue(cookieHeader, sessionCookieName(port));
  if (!v) return false;
  const m = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(v);
  if (!m) return false;
  const exp = Number(m[1]);
  if (!(exp > now) || exp > now + SESSION_TTL_S * 1000 + 60_000) return false;
  return sameSecret(m[2]!, signature(token, exp));
}
