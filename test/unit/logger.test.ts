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
