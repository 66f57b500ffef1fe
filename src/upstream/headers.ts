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
 * Prefix of the built-in simulator's per-request knobs (x-sim-fault, x-sim-tpot-ms, ...):
 * demos and tests steer it through the gateway; no provider reads them.
 */
export const FORWARDED_REQUEST_PREFIX = 'x-sim-';

/**
 * The headers of an upstream request: `base` (the gateway's own: content-type, x-request-id,
 * accept-encoding) plus the allow-listed client headers. Credentials, hop-by-hop headers,
 * cookies, forwarding headers and account selectors are dropped by not being listed.
 */
export function upstreamRequestHeaders(given: Record<string, string | string[] | undefined>, base: Record<string, string>): Record<string, string> {
  for (const name in given) {
    const v = given[name];
    if (typeof v !== 'string' || base[name] !== undefined) continue;
    if (FORWARDED_REQUEST_HEADERS.has(name) || name.startsWith(FORWARDED_REQUEST_PREFIX)) base[name] = v;
  }
  return base;
}
