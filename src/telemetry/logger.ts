// One pino JSON line per request, written at its end (never per chunk).
//
// Keys never reach the log by construction: the request line is built from fields we
// choose (settle/), and errors go through `safeError`, which keeps only message, code and
// stack, never the request options or headers an HTTP client error can carry. This replaced
// pino's wildcard `redact` paths, which cloned every logged object (28 of the 72 KiB the
// gateway allocated per request in the bench).
//
// Lines are batched (BatchedWriter, batched-stdout.ts): each is encoded into an off-heap batch
// buffer as it is logged, and a batch goes out with one async write per 256 KiB. One async
// write per line cost a thread-pool round trip per request (~8% of the gateway's CPU in the
// throughput bench), and pino.destination (sonic-boom) flattens its growing buffer on every
// line to measure it. A timer writes a partly filled batch so lines never wait long, the
// queue is bounded (a stalled stdout reader drops lines and says how many), and closeLog()
// and process exit write what is queued.
import pino, { type Logger, type DestinationStream } from 'pino';
import { BatchedWriter } from './batched-stdout.js';

export type { Logger };

/** Longest a log line waits in the buffer. */
const FLUSH_INTERVAL_MS = 250;
/** Batch size: one write per this many bytes of log lines (at 5,000 req/s about one write per 100 ms). */
const BATCH_BYTES = 256 * 1024;
/** Queue bound when the reader of stdout stalls; lines beyond it are dropped and counted. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const BASE = { service: 'llm-gateway' };

/** Writers on stdout not yet closed: written synchronously at process exit. */
const openWriters = new Set<BatchedWriter>();
let exitHooked = false;
function flushAtExit(): void {
  for (const w of openWriters) w.flushSync();
}

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
  /** Stops the flush timer, waits for the write in flight, writes what is queued, then calls back. */
  closeLog?: (done: () => void) => void;
}

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): GatewayLogger {
  const writer = opts.destination
    ? null
    : new BatchedWriter({
        fd: 1,
        batchBytes: BATCH_BYTES,
        flushIntervalMs: FLUSH_INTERVAL_MS,
        maxPendingBytes: MAX_PENDING_BYTES,
        fields: BASE,
      });
  const logger: GatewayLogger = pino(
    {
      level: opts.level ?? process.env.GATEWAY_LOG_LEVEL ?? 'info',
      base: BASE,
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: safeError },
    },
    opts.destination ?? writer!,
  );
  if (writer) {
    openWriters.add(writer);
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', flushAtExit);
    }
    logger.closeLog = (done) => {
      openWriters.delete(writer);
      writer.close(done);
    };
  }
  return logger;
}
