// The Redis connection in its worker thread (src/admission/redis-thread.ts), against the real
// Redis: replies and Redis' own errors cross back; a thread that dies fails what it owed and is
// started again; a closed link refuses; an unreachable Redis fails fast; the thread holds the
// process open only while it owes an answer.
import { afterEach, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { RedisThread } from '../../src/admission/redis-thread.js';
import { parseRedisUrl } from '../../src/admission/redis-connect.js';
import { ROOT, requireBuild, runProcess } from '../helpers/process.js';
import { freePort } from '../helpers/net.js';
import { until } from '../helpers/wait.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY = `llmgw-test-${process.pid}-${Date.now()}-thread`;
const links: RedisThread[] = [];

function link(url = REDIS_URL, lazyConnect = false): RedisThread {
  const l = new RedisThread(parseRedisUrl(url), { lazyConnect, enableOfflineQueue: false, connectTimeoutMs: 2_000 });
  links.push(l);
  return l;
}

afterEach(async () => {
  for (const l of links.splice(0)) await l.quit().catch(() => l.disconnect());
});

describe('RedisThread', () => {
  it('sends commands and brings back replies, and Redis errors with their message', async () => {
    const l = link();
    await until(() => l.status === 'ready', 10_000);
    expect(await l.command('set', [KEY, 'v', 'PX', '5000'])).toBe('OK');
    expect(await l.command('get', [KEY])).toBe('v');
    expect(await l.command('eval', ['return {1, KEYS[1], ARGV[1]}', '1', KEY, 'x'])).toEqual([1, KEY, 'x']);
    await expect(l.command('evalsha', ['0'.repeat(40), '0'])).rejects.toThrow(/^NOSCRIPT/);
    expect(await l.command('del', [KEY])).toBe(1);
  });

  it('a thread that dies fails the commands it owed, and a new one connects again', async () => {
    const l = link();
    let readies = 0;
    l.onReady = () => readies++;
    await until(() => readies === 1, 10_000);
    const owed = l.command('blpop', [`${KEY}:never`, '5']);
    await (l as unknown as { worker: Worker }).worker.terminate();
    await expect(owed).rejects.toThrow('Redis connection thread exited');
    expect(l.status).not.toBe('ready');
    await until(() => readies === 2, 10_000);
    expect(await l.command('ping', [])).toBe('PONG');
  });

  it('a closed link refuses commands; a lazy link that was never used starts no thread', async () => {
    const l = link();
    await until(() => l.status === 'ready', 10_000);
    await l.quit();
    expect(l.status).toBe('end');
    await expect(l.command('ping', [])).rejects.toThrow('Connection is closed.');
    const lazy = link(REDIS_URL, true);
    expect(lazy.status).toBe('wait');
    expect((lazy as unknown as { worker: Worker | undefined }).worker).toBeUndefined();
  });

  it('an unreachable Redis fails commands at once instead of queueing them', async () => {
    const l = link(`redis://127.0.0.1:${await freePort()}`);
    const errors: Error[] = [];
    l.onError = (e) => errors.push(e);
    await until(() => errors.length > 0, 10_000);
    await expect(l.command('ping', [])).rejects.toThrow(/enableOfflineQueue|Stream isn't writeable/);
    expect(l.status).not.toBe('ready');
  });

  it('holds the process open while it owes an answer, and not once it is idle', async () => {
    requireBuild();
    // The child ends by itself: an idle link (connected at once) does not hold it, and the lazy
    // one owes nothing once BLPOP has timed out (the null it prints shows it waited for that).
    const script = `
      import { RedisThread } from '${ROOT}dist/admission/redis-thread.js';
      const target = { kind: 'single', url: '${REDIS_URL}' };
      new RedisThread(target, { lazyConnect: false, enableOfflineQueue: false });
      const lazy = new RedisThread(target, { lazyConnect: true, enableOfflineQueue: true });
      lazy.command('blpop', ['${KEY}:never', '1']).then((v) => console.log('reply', v));
    `;
    const run = await runProcess(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 20_000 });
    expect(run.stdout.trim()).toBe('reply null');
    expect(run.code).toBe(0);
  });
});
