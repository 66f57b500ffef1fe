// Which client request headers reach an upstream. An allow-list, not a deny-list: the
// upstream is called with the gateway's provider key, so any header the provider reads as
// an account choice (OpenAI-Organization, OpenAI-Project, x-api-key, api-key, Azure's
// ms-* headers, whatever a provider adds next) would let a client pick who is billed or
// which credentials apply. Only headers that change how the request is processed, never
// on whose account, pass; the backend's own configured headers are added after these.

/** Client headers forwarded as they are (lower case, as node:http gives them). */
export const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  // Beta features of the OpenAI API (assistants=v2, realtime=v1, ...).
  'openai-beta',
  // Anthropic's API version and beta flags (the messages API needs them).
  'anthropic-version',
  'anthropic-beta',
  // W3C trace context, so an upstream's spans join the caller's trace.
  'traceparent',
  'tracestate',
]);

/**
 * Upstream response headers never passed to the client (streams, whole bodies and
 * pass-through alike): hop-by-hop, framing the gateway redoes, cookies, the provider's own
 * account details, and the ids the gateway sets itself. x-ratelimit-* is dropped as a prefix
 * by the callers: the client gets the gateway's limits, not the provider key's.
 */
export const DROPPED_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'set-cookie',
  'openai-organization',
  'openai-project',
  'x-request-id',
  'alt-svc',
  'server',
]);

/**
 * The headers of an upstream request: `base` (the gateway's own: content-type, x-request-id,
 * accept-encoding) plus the allow-listed client headers. Credentials, hop-by-hop headers,
 * cookies, forwarding headers and account selectors are dropped by not being listed.
 */
export function upstreamRequestHeaders(
  given: Record<string, string | string[] | undefined>,
  base: Record<string, string>,
  extra: readonly string[] = [],
): Record<string, string> {
  for (const name of FORWARDED_REQUEST_HEADERS) copy(given, base, name);
  for (let i = 0; i < extra.length; i++) copy(given, base, extra[i]!);
  return base;
}

function copy(given: Record<string, string | string[] | undefined>, base: Record<string, string>, name: string): void {
  const v = given[name];
  if (typeof v === 'string' && base[name] === undefined && !NEVER_FORWARDED.has(name)) base[name] = v;
}

/** Never forwarded, whatever a backend's forward_headers says: credentials and framing. */
const NEVER_FORWARDED: ReadonlySet<string> = new Set([
  'authorization',
  'api-key',
  'x-api-key',
  'cookie',
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

/** The built-in simulator's per-request control headers (test and demo knobs; see simulator/index.ts). */
export const SIMULATOR_HEADERS: readonly string[] = [
  'x-sim-ttft-ms',
  'x-sim-tpot-ms',
  'x-sim-output-tokens',
  'x-sim-fault',
  'x-sim-cache-read-tokens',
  'x-sim-cache-write-tokens',
];
