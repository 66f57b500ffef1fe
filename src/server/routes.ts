// Every method and path the server answers, in one table. A request's path is made canonical
// first (path.ts); the first row whose pattern matches it decides: a method the row lists
// runs its handler, any other method answers 405 with `allow`. No row matches: 404.
//
//   governed as  | what a request on the row passes before it is answered
//   -------------+--------------------------------------------------------------------------
//   open         | nothing (health, readiness, metrics: for probes and scrapers on loopback)
//   admin        | the admin token (auth/admin.ts), checked before the method
//   pipeline     | the full pipeline (pipeline.ts): key, model allow-list, admission, routing,
//                | stream tap, settle
//   key          | the virtual key; answered by the gateway itself (the model list)
//   passthrough  | key, model allow-list, rpm/concurrency, the spending rule (passthrough.ts)
//   reserved     | an API this gateway does not serve yet: 404, never passed through
//
// Patterns: `{name}` is one path segment, `{name+}` (last only) one or more. Handlers get the
// request's stages snapshot; `gw` is there for the request lifecycle only (in-flight
// tracking, readiness, reload).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway, Stages } from '../gateway.js';
import { errors, GatewayError, sendError } from '../errors.js';
import { handleInference } from '../pipeline.js';
import { handleResponseFollowUp, type FollowUpAction } from '../followup.js';
import { protocols, type Protocol } from '../protocols/index.js';
import { computeStats, handleDashboard } from '../dashboard/index.js';
import { spendReport, limitsReport, resetBudget } from '../admission/admin.js';
import { circuitsView, forceCircuit } from '../routing/admin.js';
import { admin, reloadPolicy } from './admin.js';
import { getChaos, getInsights, postBaseline, postChaos, stopChaos } from '../insights/routes.js';
import { readBody, parseJsonObject } from './body.js';
import { refuseBody } from './limits.js';
import { passthrough } from './passthrough.js';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';
export type Governance = 'open' | 'admin' | 'pipeline' | 'key' | 'passthrough' | 'reserved';

export interface RouteCall {
  req: IncomingMessage;
  res: ServerResponse;
  id: string;
  receivedAt: number;
  /** The canonical path (path.ts); the query string as the client sent it ('' or '?…'). */
  path: string;
  query: string;
  /** The pattern's {params}, %-decoded; a {rest+} param holds its segments joined by '/'. */
  params: Record<string, string>;
  /** The stages this request runs under, taken once when it arrived. */
  stages: Stages;
  gw: Gateway;
}

export type Handler = (c: RouteCall) => void | Promise<void>;

export interface RouteRow {
  pattern: string;
  governed: Governance;
  /** Handlers by method; `*` takes any method (the pass-through). */
  methods: Partial<Record<Method | '*', Handler>>;
}

// ---- handlers the server answers itself -------------------------------------------------

function sendJson(res: ServerResponse, status: number, body: unknown, id: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': id });
  res.end(text);
}

const healthz: Handler = (c) => sendJson(c.res, 200, { status: 'ok' }, c.id);

const readyz: Handler = (c) => {
  const r = c.gw.ready();
  sendJson(c.res, r.ok ? 200 : 503, r.ok ? { status: 'ready' } : { status: 'not ready', reason: r.reason }, c.id);
};

const metrics: Handler = async (c) => {
  const reg = c.stages.metrics.registry;
  const text = await reg.metrics();
  c.res.writeHead(200, { 'content-type': reg.contentType, 'x-request-id': c.id });
  c.res.end(text);
};

const dashboard: Handler = (c) => handleDashboard(c.stages.policies, c.req, c.res, c.id);

/** The JSON APIs: content type, body (capped), JSON object, then the pipeline. Errors in the API's own shape. */
function inference(protocol: Protocol): Handler {
  return async (c) => {
    const { req, res, id } = c;
    const ct = req.headers['content-type'];
    if (!ct || !/^application\/(.+\+)?json\b/i.test(ct)) {
      req.resume();
      return sendError(res, errors.contentType(ct), id, undefined, protocol.errorBody);
    }
    let raw: Buffer;
    let body: Record<string, unknown>;
    try {
      const { max_body_bytes, body_timeout_ms } = c.stages.policies.server;
      raw = await readBody(req, max_body_bytes, body_timeout_ms);
    } catch (e) {
      const err = e instanceof GatewayError ? e : errors.internal();
      // Counted as settle counts a request that never reached a model (413: max_body_bytes).
      c.stages.metrics.series('unknown', 'none').requests(err.status).inc();
      return refuseBody(req, res, err, id, protocol.errorBody);
    }
    try {
      body = parseJsonObject(raw);
    } catch (e) {
      if (e instanceof GatewayError) return sendError(res, e, id, undefined, protocol.errorBody);
      throw e;
    }
    return handleInference(c.gw, { id, protocol, req, res, raw, body, receivedAt: c.receivedAt });
  };
}

/** A follow-up of a stored response (its body, if any, is not read: none of them takes one). */
function followUp(action: FollowUpAction): Handler {
  return (c) => {
    c.req.resume();
    return handleResponseFollowUp(c.gw, {
      id: c.id,
      req: c.req,
      res: c.res,
      receivedAt: c.receivedAt,
      responseId: c.params.id!,
      action,
      query: c.query,
    });
  };
}

/** The models a key may use: every served model, or its `models` allow-list. */
function modelsFor(c: RouteCall): string[] {
  const identity = c.stages.auth.identify(c.req.headers);
  const names = c.stages.policy.names();
  const allowed = identity.config?.models;
  return allowed ? names.filter((n) => allowed.includes(n)) : names;
}

const modelObject = (id: string, created: number) => ({ id, object: 'model', created, owned_by: 'llm-gateway' });

const listModels: Handler = (c) => {
  c.req.resume();
  const created = Math.floor(Date.now() / 1000);
  sendJson(c.res, 200, { object: 'list', data: modelsFor(c).map((m) => modelObject(m, created)) }, c.id);
};

/** A model the key may not use is as unknown to it as one not served (404, OpenAI's shape). */
const getModel: Handler = (c) => {
  c.req.resume();
  const id = c.params.id!;
  if (!modelsFor(c).includes(id)) throw errors.unknownModel(id);
  sendJson(c.res, 200, modelObject(id, Math.floor(Date.now() / 1000)), c.id);
};

const adminNotFound: Handler = (c) => {
  c.req.resume();
  throw errors.notFound(c.path);
};

// ---- the table ----------------------------------------------------------------------------

export const ROUTES: readonly RouteRow[] = [
  { pattern: '/healthz', governed: 'open', methods: { GET: healthz, HEAD: healthz } },
  { pattern: '/readyz', governed: 'open', methods: { GET: readyz, HEAD: readyz } },
  { pattern: '/metrics', governed: 'open', methods: { GET: metrics } },
  // The page checks the admin token (or its session cookie) itself: ?token= is exchanged there.
  { pattern: '/dashboard', governed: 'open', methods: { GET: dashboard, HEAD: dashboard } },

  // The inference APIs. GET /v1/chat/completions lists stored completions (pass-through).
  { pattern: '/v1/chat/completions', governed: 'pipeline', methods: { POST: inference(protocols.chat), GET: passthrough } },
  { pattern: '/v1/completions', governed: 'pipeline', methods: { POST: inference(protocols.completions) } },
  { pattern: '/v1/embeddings', governed: 'pipeline', methods: { POST: inference(protocols.embeddings) } },
  // The Responses API. Follow-ups of a stored response name no model: they go, governed as the
  // model that made it, to the backend that holds it (followup.ts, routing/affinity.ts).
  { pattern: '/v1/responses', governed: 'pipeline', methods: { POST: inference(protocols.responses) } },
  { pattern: '/v1/responses/input_tokens', governed: 'pipeline', methods: { POST: inference(protocols.responsesInputTokens) } },
  { pattern: '/v1/responses/{id}', governed: 'pipeline', methods: { GET: followUp('get'), DELETE: followUp('delete') } },
  { pattern: '/v1/responses/{id}/cancel', governed: 'pipeline', methods: { POST: followUp('cancel') } },
  { pattern: '/v1/responses/{id}/input_items', governed: 'pipeline', methods: { GET: followUp('input_items') } },
  // Anthropic's Messages API (protocols/messages.ts): Anthropic's error shape; the virtual key
  // also in x-api-key. count_tokens is routed by model to a deployment that serves messages.
  { pattern: '/v1/messages', governed: 'pipeline', methods: { POST: inference(protocols.messages) } },
  { pattern: '/v1/messages/count_tokens', governed: 'pipeline', methods: { POST: inference(protocols.messages_count_tokens) } },

  { pattern: '/v1/models', governed: 'key', methods: { GET: listModels } },
  { pattern: '/v1/models/{id+}', governed: 'key', methods: { GET: getModel } },

  // Every other /v1/* path: admitted pass-through to one backend (passthrough.ts).
  { pattern: '/v1/{rest+}', governed: 'passthrough', methods: { '*': passthrough } },

  {
    pattern: '/admin/stats',
    governed: 'admin',
    methods: { GET: admin(({ stages }) => computeStats(stages.metrics, stages.policy.names())) },
  },
  { pattern: '/admin/spend', governed: 'admin', methods: { GET: admin(({ stages }) => spendReport(stages.admission)) } },
  { pattern: '/admin/limits', governed: 'admin', methods: { GET: admin(({ stages }) => limitsReport(stages.admission)) } },
  {
    pattern: '/admin/budgets/reset',
    governed: 'admin',
    methods: { POST: admin(({ stages, body }) => resetBudget(stages.admission, body)) },
  },
  { pattern: '/admin/circuits', governed: 'admin', methods: { GET: admin(({ stages }) => circuitsView(stages.router)) } },
  {
    pattern: '/admin/circuits/{rest+}',
    governed: 'admin',
    methods: { POST: admin(({ stages, rest, body }) => forceCircuit(stages.router, rest, body)) },
  },
  { pattern: '/admin/reload', governed: 'admin', methods: { POST: reloadPolicy } },
  { pattern: '/admin/insights', governed: 'admin', methods: { GET: admin(({ stages }) => getInsights(stages)) } },
  {
    pattern: '/admin/insights/baseline',
    governed: 'admin',
    methods: { POST: admin(({ stages, body }) => postBaseline(stages, undefined, body)) },
  },
  {
    pattern: '/admin/chaos',
    governed: 'admin',
    methods: { GET: admin(({ stages }) => getChaos(stages)), POST: admin(({ stages, body }) => postChaos(stages, undefined, body)) },
  },
  { pattern: '/admin/chaos/stop', governed: 'admin', methods: { POST: admin(({ stages, body }) => stopChaos(stages, undefined, body)) } },
  // Unknown admin paths: 404, after the guard (a caller without the token learns nothing).
  { pattern: '/admin', governed: 'admin', methods: { '*': adminNotFound } },
  { pattern: '/admin/{rest+}', governed: 'admin', methods: { '*': adminNotFound } },
];

// ---- matching -----------------------------------------------------------------------------

type Part = { literal: string } | { param: string; rest: boolean };

interface CompiledRow {
  row: RouteRow;
  parts: Part[];
  /** Methods for the `allow` header of a 405. */
  allow: string[];
}

function compile(row: RouteRow): CompiledRow {
  const parts: Part[] = row.pattern
    .slice(1)
    .split('/')
    .map((s) => {
      const m = /^\{(\w+)(\+?)\}$/.exec(s);
      return m ? { param: m[1]!, rest: m[2] === '+' } : { literal: s };
    });
  return { row, parts, allow: Object.keys(row.methods).filter((m) => m !== '*') };
}

export interface Match {
  row: RouteRow;
  params: Record<string, string>;
  allow: string[];
}

const NO_PARAMS: Record<string, string> = Object.freeze({});
const COMPILED = ROUTES.map(compile);
/** Rows without parameters, by path, with their (shared, read-only) match: the common requests find theirs with one lookup. */
const STATIC = new Map<string, Match>();
for (const c of COMPILED) {
  if (c.parts.every((p) => 'literal' in p) && !STATIC.has(c.row.pattern))
    STATIC.set(c.row.pattern, { row: c.row, params: NO_PARAMS, allow: c.allow });
}

function matchRow(c: CompiledRow, segs: string[]): Record<string, string> | undefined {
  const parts = c.parts;
  let params: Record<string, string> | undefined;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if ('literal' in p) {
      if (segs[i] !== p.literal) return undefined;
      continue;
    }
    if (i >= segs.length) return undefined;
    params ??= {};
    if (p.rest) {
      params[p.param] = segs.slice(i).map(decodeSegment).join('/');
      return params;
    }
    params[p.param] = decodeSegment(segs[i]!);
  }
  return segs.length === parts.length ? (params ?? NO_PARAMS) : undefined;
}

function decodeSegment(s: string): string {
  if (s.indexOf('%') === -1) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    throw errors.invalidPath('a %-escape does not decode as UTF-8');
  }
}

/** The row that answers a canonical path, or undefined (404). */
export function matchRoute(path: string): Match | undefined {
  const hit = STATIC.get(path);
  if (hit) return hit;
  const segs = path.slice(1).split('/');
  for (const c of COMPILED) {
    const params = matchRow(c, segs);
    if (params) return { row: c.row, params, allow: c.allow };
  }
  return undefined;
}

/**
 * True when `path`, in another letter case, names a route the gateway governs itself: such a
 * spelling is refused rather than passed through (an upstream may match paths without case).
 */
export function shadowsGovernedRoute(path: string): boolean {
  const m = matchRoute(path.toLowerCase());
  return m !== undefined && m.row.governed !== 'passthrough';
}
