// Writing the per-request log line (built by settle/line.ts) to the logger's own destination.
// pino builds a line by concatenating a string per field, which allocated ~9 KiB of
// short-lived strings for this ~500-byte line (the largest allocation per request in the
// throughput bench); its fields are settle's and fixed, so they need none of pino's
// per-field handling. The line has the shape of every other pino line (level, time, service,
// fields, msg), goes through the same destination, and obeys the logger's level.
import pino, { type Logger } from 'pino';

const STREAM = pino.symbols.streamSym;

/** pino's number for level info, and the service name every line carries (see logger.ts base). */
export const INFO = 30;
export const ERROR = 50;
export const SERVICE = 'llm-gateway';

let cachedSecond = -1;
let cachedPrefix = '';

/**
 * Date.prototype.toISOString of now, from a prefix cached per second ("2026-11-24T23:35:01.")
 * plus the milliseconds: a Date object and a full format per request cost ~1.4 us in the bench.
 */
export function isoNow(now = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  const ms = now - second * 1000;
  return cachedPrefix + (ms < 10 ? '00' : ms < 100 ? '0' : '') + ms + 'Z';
}

export function requestLogEnabled(logger: Logger, status = 0): boolean {
  return logger.isLevelEnabled(status >= 500 ? 'error' : 'info');
}

/** Writes one finished line (newline included) to the logger's destination. */
export function writeRequestLine(logger: Logger, line: string): void {
  const stream = (logger as unknown as Record<symbol, { write(s: string): void } | undefined>)[STREAM];
  stream?.write(line);
}
