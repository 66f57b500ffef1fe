// The admin guard: /admin/* needs `Authorization: Bearer <admin token>` (policies.yaml
// admin_token, or GATEWAY_ADMIN_TOKEN); the dashboard's session cookie (session.ts) is
// accepted for reads (GET) only. Without a configured token the admin surface is off.
import type { IncomingHttpHeaders } from 'node:http';
import type { Policies } from '../config/schema.js';
import { errors } from '../errors.js';
import { bearer, sameSecret } from './credentials.js';
import { validSession } from './session.js';

export function adminToken(policies: Pick<Policies, 'admin_token'>): string | undefined {
  return policies.admin_token || process.env.GATEWAY_ADMIN_TOKEN || undefined;
}

/**
 * Throws 403 admin_disabled without a configured token and 401 invalid_admin_token when the
 * request carries neither the token nor (for GET) a valid dashboard session.
 */
export function checkAdmin(
  policies: Pick<Policies, 'admin_token'>,
  headers: IncomingHttpHeaders,
  method: string,
  localPort: number | undefined,
): void {
  const token = adminToken(policies);
  if (!token) throw errors.adminDisabled();
  const given = bearer(headers.authorization);
  if (given !== undefined ? sameSecret(given, token) : method === 'GET' && validSession(headers.cookie, token, localPort)) return;
  throw errors.unauthorizedAdmin();
}
