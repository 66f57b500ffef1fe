// One pino JSON line per request, written at its end (never per chunk).
//
// Keys never reach the log by construction: the request line is built from fields we
// choose (settle/), and errors go through `safeError`, which keeps only message, code and
// stack, never the request options or headers an HTTP client error can carry. This replaced
// pino's wildcard `redact` paths, which cloned every logged object (28 of the 72 KiB the
// gateway allocated per request in the bench).
//
// Lines are buffered (sonic-boom minLength) and written in batches: one async write per
// line cost a thread-pool round trip per request (~8% of the gateway's CPU in the
// throughput bench). A timer flushes a partly filled buffer so lines never wait long, and
// closeLog() flushes it at shutdown.
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Longest a log line waits in the buffer. */
const FLUSH_INTERVAL_MS = 250;
const BUFFER_BYTES = 8 * 1024;

/** What of an Error is safe to log: no `options`, `headers`, `config` or other attached state. */
export function safeError(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: String(e) };
  const out: Record<string, unknown> = { type: e.name, message: e.message };
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  if (e.stack) out.stack = e.stack;
  if (e.cause !== undefined) out.cause = safeError(e.cause);
  return out;
}

export interface GatewayLogger extends Logger {
  /** Stops the flush timer and writes what is buffered, then calls back. */
  closeLog?: (done: () => void) => void;
}

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): GatewayLogger {
  const dest = opts.destination ?? pino.destination({ fd: 1, sync: false, minLength: BUFFER_BYTES });
  const logger: GatewayLogger = pino(
    {
      level: opts.level ?? process.env.GATEWAY_LOG_LEVEL ?? 'info',
      base: { service: 'llm-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: safeError },
    },
    dest,
  );
  if (!opts.destination) {
    const timer = setInterval(() => logger.flush(), FLUSH_INTERVAL_MS);
    timer.unref();
    logger.closeLog = (done) => {
      clearInterval(timer);
      logger.flush(() => done());
    };
  }
  return logger;
}
