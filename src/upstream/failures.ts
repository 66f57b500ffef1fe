// Maps low-level failures to a stable reason (a metric label and a breaker input) and the
// OpenAI-shaped error a client gets. As Envoy does, failures the gateway saw locally
// (connect, timeout, reset) carry `local: true`, apart from upstream status errors.
import { errors, GatewayError } from '../errors.js';

export type FailureReason =
  | 'connect'
  | 'connect_timeout'
  | 'dns'
  | 'headers_timeout'
  | 'idle_timeout'
  | 'reset'
  | 'mid_stream'
  | 'client_abort'
  | 'status_429'
  | 'status_5xx'
  | 'status_4xx'
  | 'redirect'
  | 'shutdown'
  | 'bad_response';

export class ClientAbort extends Error {
  readonly code = 'GW_CLIENT_ABORT';
  constructor() {
    super('client closed the connection');
  }
}

/** The gateway cut the request itself: shutting down past server.drain_timeout_ms. */
export class ShutdownCut extends Error {
  readonly code = 'GW_SHUTDOWN_CUT';
  constructor() {
    super('the gateway is shutting down');
  }
}

export class UpstreamFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    readonly error: GatewayError,
    /** true when the gateway saw it locally (no status from the upstream). */
    readonly local: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(error.message);
  }
}

function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 3 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function classifyError(err: Error, backend: string, afterHead: boolean): UpstreamFailure {
  if (err instanceof ClientAbort) return new UpstreamFailure('client_abort', errors.midStream(backend, 'client left'), true);
  if (err instanceof ShutdownCut) return new UpstreamFailure('shutdown', errors.shuttingDown(), true);
  const code = codeOf(err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new UpstreamFailure('connect_timeout', errors.upstreamTimeout(backend, 'connect'), true);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new UpstreamFailure('headers_timeout', errors.upstreamTimeout(backend, 'no response headers in time'), true);
    case 'UND_ERR_BODY_TIMEOUT':
      return new UpstreamFailure('idle_timeout', errors.upstreamTimeout(backend, 'no data between chunks in time'), true);
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new UpstreamFailure('connect', errors.upstreamConnect(backend), true);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UpstreamFailure('dns', errors.upstreamDns(backend), true);
    default:
      if (afterHead) return new UpstreamFailure('mid_stream', errors.midStream(backend, 'connection lost'), true);
      return new UpstreamFailure('reset', errors.upstreamReset(backend), true);
  }
}

/**
 * The retry-after a client is told, in whole seconds: an upstream's value capped at 60 s.
 * The SDKs wait what they are told up to 60 s; an upstream saying 999999 is not passed on.
 */
export const MAX_CLIENT_RETRY_AFTER_S = 60;
export function clientRetryAfter(ms: number): string {
  return String(Math.min(MAX_CLIENT_RETRY_AFTER_S, Math.max(0, Math.ceil(ms / 1000))));
}

/** Reads retry-after (seconds or HTTP date) or retry-after-ms into milliseconds. */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>): number | undefined {
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = headers['retry-after'];
  if (typeof ra !== 'string') return undefined;
  const s = Number(ra);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const at = Date.parse(ra);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * An upstream 3xx. Relayed, it would send the client's SDK (which follows 307/308 with the
 * same body) to a host the upstream names, carrying the prompt. It is a fault of the
 * deployment (misconfigured base_url, a captive proxy): a 502 the router may fail over from.
 * Counted as a local failure so the client gets this error, not a generic 503.
 */
export function redirectFailure(backend: string, status: number): UpstreamFailure {
  return new UpstreamFailure('redirect', errors.upstreamRedirect(backend, status), true, status);
}

/** A failure for an upstream answer with an error status (the body is forwarded to the client when nothing else can serve). */
export function statusFailure(backend: string, status: number, headers: Record<string, string | string[] | undefined>): UpstreamFailure {
  const reason: FailureReason = status === 429 ? 'status_429' : status >= 500 ? 'status_5xx' : 'status_4xx';
  return new UpstreamFailure(reason, errors.upstreamStatus(backend, status), false, status, retryAfterMs(headers));
}
