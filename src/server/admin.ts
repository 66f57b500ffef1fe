// /admin/*: each route is a plain function of the stages it reads, listed in routes.ts. This
// module is the glue they share: the admin guard runs before anything else (so an unknown
// admin path or method answers 401 to a caller without the token), a POST body is read as
// JSON (1 MiB at most), and the function's result is the 200 body (a string is HTML).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Stages } from '../gateway.js';
import { errors } from '../errors.js';
import { checkAdmin } from '../auth/admin.js';
import { parseJsonObject, readBody } from './body.js';
import type { RouteCall, Handler } from './routes.js';

const MAX_ADMIN_BODY = 1024 * 1024;

export interface AdminCall {
  stages: Stages;
  /** The route's {params}, decoded. */
  params: Record<string, string>;
  /** A trailing {rest+} param split back into its segments. */
  rest: string[];
  /** Parsed JSON body for POST (empty object when none). */
  body: Record<string, unknown>;
  query: URLSearchParams;
  call: RouteCall;
}

/** The guard every /admin/* row runs before its method is even looked at. */
export function guardAdmin(c: { stages: Stages; req: IncomingMessage }): void {
  checkAdmin(c.stages.policies, c.req.headers, c.req.method ?? 'GET', c.req.socket.localPort);
}

/** Wraps an admin function as a route handler. */
export function admin(fn: (a: AdminCall) => unknown): Handler {
  return async (c) => {
    let body: Record<string, unknown> = {};
    if (c.req.method === 'POST') {
      const raw = await readBody(c.req, MAX_ADMIN_BODY);
      if (raw.length) body = parseJsonObject(raw);
    } else c.req.resume();
    const rest = c.params.rest !== undefined ? c.params.rest.split('/') : [];
    const result = await fn({ stages: c.stages, params: c.params, rest, body, query: new URLSearchParams(c.query.slice(1)), call: c });
    reply(c.res, c.id, result);
  };
}

function reply(res: ServerResponse, id: string, result: unknown): void {
  if (typeof result === 'string') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-request-id': id });
    res.end(result);
    return;
  }
  const text = JSON.stringify(result ?? { ok: true });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': id });
  res.end(text);
}

/** POST /admin/reload: re-reads the policies file, as a file change or SIGHUP would. */
export const reloadPolicy = admin(async ({ call }) => {
  const r = await call.gw.reload(undefined, 'admin');
  if (r.ok) return { ok: true, changed: r.changed };
  throw errors.policyInvalid(r.problems);
});
