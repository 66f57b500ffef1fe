// The error catalogue: every error the gateway answers with, its status, type and code.
// Bodies have OpenAI's shape, so the official SDKs map them to their own exception classes
// (BadRequestError, RateLimitError, ...). This module imports nothing: every layer may use it.

/** The part of node:http's ServerResponse an error is written to (kept structural: no imports here). */
export interface ErrorSink {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: string): unknown;
}

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'server_error'
  | 'upstream_error'
  | 'timeout_error'
  | 'service_unavailable';

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const errors = {
  invalidJson: (detail: string) =>
    new GatewayError(400, 'invalid_request_error', 'invalid_json', `We could not parse the JSON body of your request: ${detail}`),
  tooDeep: (max: number) =>
    new GatewayError(400, 'invalid_request_error', 'json_too_deep', `The JSON body nests objects or arrays more than ${max} levels deep.`),
  notObject: () => new GatewayError(400, 'invalid_request_error', 'invalid_request', 'The request body must be a JSON object.'),
  missingModel: () =>
    new GatewayError(400, 'invalid_request_error', 'missing_model', 'You must provide a model parameter (a string).', 'model'),
  invalidParam: (param: string, message: string) => new GatewayError(400, 'invalid_request_error', 'invalid_value', message, param),
  contentType: (got: string | undefined) =>
    new GatewayError(
      415,
      'invalid_request_error',
      'unsupported_media_type',
      `Content-Type must be application/json (got ${got ? JSON.stringify(got) : 'none'}).`,
    ),
  tooLarge: (limit: number) =>
    new GatewayError(
      413,
      'invalid_request_error',
      'request_too_large',
      `Request body is larger than the gateway's limit of ${limit} bytes.`,
    ),
  requestTimeout: (ms: number) =>
    new GatewayError(
      408,
      'invalid_request_error',
      'request_timeout',
      `The request body did not arrive within ${ms} ms (server.body_timeout_ms).`,
    ),
  hostNotAllowed: (host: string) =>
    new GatewayError(
      421,
      'invalid_request_error',
      'host_not_allowed',
      `This gateway does not answer for host ${JSON.stringify(host.slice(0, 255))} (server.allowed_hosts).`,
    ),
  badKey: () => new GatewayError(401, 'authentication_error', 'invalid_api_key', 'Incorrect API key provided.'),
  modelNotAllowed: (model: string) =>
    new GatewayError(403, 'permission_error', 'model_not_allowed', `This key may not use the model '${model}'.`, 'model'),
  unknownModel: (model: string) =>
    new GatewayError(
      404,
      'invalid_request_error',
      'model_not_found',
      `The model '${model}' does not exist or is not served by this gateway.`,
      'model',
    ),
  notFound: (path: string) => new GatewayError(404, 'invalid_request_error', 'not_found', `Unknown path ${path}.`),
  methodNotAllowed: (method: string, path: string, allow: readonly string[] = []) =>
    new GatewayError(
      405,
      'invalid_request_error',
      'method_not_allowed',
      `${method} is not allowed on ${path}.`,
      null,
      allow.length ? { allow: allow.join(', ') } : {},
    ),
  invalidPath: (detail: string) =>
    new GatewayError(400, 'invalid_request_error', 'invalid_path', `The request path is not accepted: ${detail}.`),
  apiNotServed: (model: string, api: string) =>
    new GatewayError(
      400,
      'invalid_request_error',
      'api_not_supported',
      `The model '${model}' has no deployment whose backend serves the ${api} API (the backends' apis: lists).`,
      'model',
    ),
  clientClosed: () =>
    new GatewayError(400, 'invalid_request_error', 'client_closed_request', 'client closed the connection while sending the body'),
  passthroughNotAllowed: (method: string, path: string) =>
    new GatewayError(
      403,
      'permission_error',
      'passthrough_not_allowed',
      `${method} ${path} can spend money the gateway cannot price, and this key has a budget or a model allow-list. An operator can allow it with server.passthrough.allow.`,
    ),
  invalidAdminTokenDashboard: () =>
    new GatewayError(
      401,
      'authentication_error',
      'invalid_admin_token',
      'The dashboard needs the admin token: open /dashboard?token=<admin token> once (it is exchanged for a session cookie), or send Authorization: Bearer <admin token>.',
    ),
  policyInvalid: (problems: readonly string[]) =>
    new GatewayError(
      400,
      'invalid_request_error',
      'policy_invalid',
      `The policy was not reloaded (the previous one keeps serving): ${problems.join('; ')}`,
    ),
  circuitUsage: () =>
    new GatewayError(
      400,
      'invalid_request_error',
      'invalid_request',
      'Use POST /admin/circuits/{model}/{backend} with {"state":"open"|"closed"}.',
    ),
  noSuchDeployment: (model: string, backend: string) =>
    new GatewayError(404, 'invalid_request_error', 'not_found', `No deployment of model '${model}' on backend '${backend}'.`),
  unauthorizedAdmin: () =>
    new GatewayError(401, 'authentication_error', 'invalid_admin_token', 'Admin routes need Authorization: Bearer <admin token>.'),
  adminDisabled: () =>
    new GatewayError(
      403,
      'permission_error',
      'admin_disabled',
      'Admin routes are disabled: set admin_token in policies.yaml or GATEWAY_ADMIN_TOKEN.',
    ),
  upstreamConnect: (backend: string) =>
    new GatewayError(502, 'upstream_error', 'upstream_unreachable', `Could not connect to backend '${backend}'.`),
  upstreamReset: (backend: string) =>
    new GatewayError(502, 'upstream_error', 'upstream_reset', `Backend '${backend}' closed the connection before answering.`),
  upstreamBadResponse: (backend: string, detail: string) =>
    new GatewayError(502, 'upstream_error', 'upstream_bad_response', `Backend '${backend}' sent an invalid response: ${detail}`),
  upstreamRedirect: (backend: string, status: number) =>
    new GatewayError(
      502,
      'upstream_error',
      'upstream_redirect',
      `Backend '${backend}' answered with a redirect (${status}); the gateway does not follow or relay redirects.`,
    ),
  upstreamTooLarge: (backend: string, limit: number) =>
    new GatewayError(
      502,
      'upstream_error',
      'upstream_body_too_large',
      `Backend '${backend}' sent a response body larger than the gateway's limit of ${limit} bytes (server.max_upstream_body_bytes).`,
    ),
  upstreamEncoding: (backend: string, encoding: string) =>
    new GatewayError(
      502,
      'upstream_error',
      'upstream_bad_response',
      `Backend '${backend}' sent a body with content-encoding ${JSON.stringify(encoding.slice(0, 64))}, which the gateway cannot read.`,
    ),
  /** A stream request answered with a whole JSON/HTML body: retrying would be billed again for the same answer. */
  upstreamNotStream: (backend: string, contentType: string) =>
    new GatewayError(
      502,
      'upstream_error',
      'upstream_bad_response',
      `Backend '${backend}' answered a stream request with ${JSON.stringify(contentType.slice(0, 64))} instead of text/event-stream.`,
      null,
      { 'x-should-retry': 'false' },
    ),
  upstreamTimeout: (backend: string, what: string) =>
    new GatewayError(504, 'timeout_error', 'upstream_timeout', `Backend '${backend}' timed out (${what}).`),
  midStream: (backend: string, detail: string) =>
    new GatewayError(502, 'upstream_error', 'upstream_stream_error', `The stream from backend '${backend}' broke: ${detail}`),
  responseNotFound: (id: string) =>
    new GatewayError(
      404,
      'invalid_request_error',
      'response_not_found',
      `No response with id '${id}' is known to this gateway (never served through it, deleted, or past its affinity TTL).`,
    ),
  previousResponseUnreachable: (id: string, model: string) =>
    new GatewayError(
      400,
      'invalid_request_error',
      'previous_response_unreachable',
      `The response '${id}' is held by a backend that model '${model}' has no deployment on; continue it with a model served there.`,
      'previous_response_id',
    ),
  unavailable: (message: string) => new GatewayError(503, 'service_unavailable', 'service_unavailable', message),
  shuttingDown: () => new GatewayError(503, 'service_unavailable', 'shutting_down', 'The gateway is shutting down.'),
  internal: () => new GatewayError(500, 'server_error', 'internal_error', 'The gateway hit an internal error.'),
  /** node:http refused the request before the gateway saw it (server/limits.ts answers on the socket). */
  requestHeadTimeout: () =>
    new GatewayError(408, 'invalid_request_error', 'request_timeout', 'The request head or body did not arrive in time.'),
  headerOverflow: () => new GatewayError(431, 'invalid_request_error', 'header_overflow', 'The request headers are too large.'),
  badHttp: () => new GatewayError(400, 'invalid_request_error', 'bad_request', 'The request is not valid HTTP.'),
  /** The admission store (Redis) cannot answer; an admit says when to retry, an admin call does not. */
  storeUnavailable: (retryAfterS?: number) =>
    new GatewayError(
      503,
      'service_unavailable',
      'store_unavailable',
      'The rate-limit and budget store is unreachable; try again shortly.',
      null,
      retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) },
    ),
  budgetNotFound: (scope: string, name: string) =>
    new GatewayError(404, 'invalid_request_error', 'budget_not_found', `No budget is configured for ${scope} '${name}'.`, 'scope'),
  /** `who` names the scope ("key 'a'"); amounts are USD strings; `reserved` is what requests in flight hold ('' for none). */
  budgetExceeded: (
    b: { who: string; spent: string; limit: number; period: string; reserved: string; cost: string },
    headers: Record<string, string>,
  ) =>
    new GatewayError(
      429,
      'insufficient_quota',
      'insufficient_quota',
      `Budget exceeded for ${b.who}: $${b.spent} of $${b.limit} spent this ${b.period === 'total' ? 'budget' : b.period}` +
        `${b.reserved ? ` ($${b.reserved} more reserved by requests in flight)` : ''}, and this request may cost up to $${b.cost}.`,
      null,
      headers,
    ),
  /** A request that no window can ever admit: it may use more tokens than the tpm limit. */
  requestOverLimit: (who: string, tokens: number, limit: number, headers: Record<string, string>) =>
    new GatewayError(
      429,
      'rate_limit_error',
      'rate_limit_exceeded',
      `Request too large for ${who}: it may use ${tokens} tokens, more than its limit of ${limit} tokens per minute. Lower max_tokens or shorten the prompt.`,
      null,
      headers,
    ),
  /** `what` names the limit ("requests per minute (rpm)"); `wait` is "a moment" or "1.250s". */
  rateLimited: (who: string, what: string, limit: number, wait: string, headers: Record<string, string>) =>
    new GatewayError(
      429,
      'rate_limit_error',
      'rate_limit_exceeded',
      `Rate limit reached for ${who} on ${what}: limit ${limit}. Please try again in ${wait}.`,
      null,
      headers,
    ),
  noRoutingPlan: (model: string) => new GatewayError(500, 'server_error', 'internal_error', `No routing plan for model '${model}'.`),
  routeDeadline: (model: string, deadlineMs: number, tried: string) =>
    new GatewayError(
      504,
      'timeout_error',
      'upstream_timeout',
      `Gave up on model '${model}' after its ${deadlineMs} ms deadline. Tried: ${tried}.`,
    ),
  /**
   * Nothing could serve the model: the last attempt's status, type and code (so they still say
   * what went wrong), or 503 when no attempt could be made. `tried` summarises every attempt ('' for none).
   */
  exhausted: (model: string, tried: string, headers: Record<string, string>, last?: GatewayError) => {
    const message = tried
      ? `No deployment could serve model '${model}'. Tried: ${tried}.`
      : `Model '${model}' has no deployment to send to.`;
    if (last) return new GatewayError(last.status, last.type, last.code, message, null, headers);
    return new GatewayError(503, 'service_unavailable', 'service_unavailable', message, null, headers);
  },
  /** The upstream's own error answer, as the client gets it (routing/index.ts reads and scrubs the fields). */
  upstreamAnswer: (status: number, type: ErrorType, code: string, message: string, param: string | null) =>
    new GatewayError(status, type, code, message, param),
  /** An upstream error status whose body is not relayed (the router may still fail over). */
  upstreamStatus: (backend: string, status: number) =>
    new GatewayError(status >= 500 ? 502 : status, 'upstream_error', `upstream_${status}`, `Backend '${backend}' answered ${status}.`),
  upstreamDns: (backend: string) =>
    new GatewayError(503, 'service_unavailable', 'upstream_dns', `Could not connect to backend '${backend}'.`),
  insightsDisabled: () =>
    new GatewayError(409, 'invalid_request_error', 'insights_disabled', "Insights are off: add an 'insights:' section to policies.yaml."),
};

const JSON_HEADERS = { 'content-type': 'application/json' };

/**
 * Writes an error, unless the response has already started: OpenAI's shape, or the shape
 * `render` gives (an API with its own error body, e.g. Anthropic's).
 */
export function sendError(
  res: ErrorSink,
  err: GatewayError,
  requestId: string,
  extraHeaders?: Record<string, string>,
  render?: (err: GatewayError) => string,
): void {
  if (res.headersSent || res.destroyed) return;
  const body = render ? render(err) : JSON.stringify(err.body());
  res.writeHead(err.status, {
    ...JSON_HEADERS,
    ...extraHeaders,
    ...err.headers,
    'x-request-id': requestId,
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
