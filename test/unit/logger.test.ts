import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/telemetry/logger.js';

describe('logger', () => {
  it('logs errors without the request options or headers they carry', async () => {
    let out = '';
    const dest = new Writable({
      write(c: Buffer, _e, cb) {
        out += c.toString();
        cb();
      },
    });
    const logger = createLogger({ destination: dest });
    const err = Object.assign(new Error('connect ECONNREFUSED'), {
      code: 'ECONNREFUSED',
      options: { headers: { authorization: 'Bearer sk-provider-secret' } },
      cause: Object.assign(new Error('inner'), { config: { api_key: 'sk-inner-secret' } }),
    });
    logger.error({ err }, 'upstream failed');
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(out.trim()) as { err: { message: string; code: string; cause: { message: string } } };
    expect(line.err.message).toBe('connect ECONNREFUSED');
    expect(line.err.code).toBe('ECONNREFUSED');
    expect(line.err.cause.message).toBe('inner');
    expect(out).not.toContain('sk-provider-secret');
    expect(out).not.toContain('sk-inner-secret');
  });
});

describe('isoNow (the request line timestamp)', () => {
  it('equals Date.prototype.toISOString across seconds, minutes and years', async () => {
    const { isoNow } = await import('../../src/telemetry/request-log.js');
    const starts = [Date.UTC(2026, 10, 24, 23, 59, 59, 990), Date.UTC(2026, 11, 31, 23, 59, 59, 995), Date.UTC(2027, 0, 1, 0, 0, 0, 0), 0];
    for (const start of starts) {
      for (let t = start; t < start + 30; t += 3) expect(isoNow(t)).toBe(new Date(t).toISOString());
    }
    expect(isoNow(Date.UTC(2026, 0, 1, 0, 0, 0, 7))).toBe('2026-01-01T00:00:00.007Z');
  });
});
