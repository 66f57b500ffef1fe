// One pino JSON line per request, written at its end (never per chunk). Keys are never
// logged: the request log line is built from fields we choose, and redaction is a second
// guard for anything that slips into an error object.
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? process.env.GATEWAY_LOG_LEVEL ?? 'info',
      base: { service: 'llm-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'api_key',
          '*.api_key',
          'key',
          '*.key',
          'authorization',
          '*.authorization',
          'headers.authorization',
          '*.headers.authorization',
          'admin_token',
        ],
        censor: '[redacted]',
      },
    },
    opts.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
