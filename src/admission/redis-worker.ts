// The thread that holds one Redis connection (redis-thread.ts starts it). ioredis lives only
// here: loaded into the gateway's own isolate it made every request of that isolate cost 1.26 to
// 1.32× the CPU, Redis in use or not (docs/performance.md, "What loading ioredis costs").
import { parentPort, workerData } from 'node:worker_threads';
import { connectRedis, type RedisTarget } from './redis-connect.js';
import { BACKSTOP_MS, type LinkReply, type LinkRequest, type LinkSettings } from './redis-thread.js';

const { target, settings } = workerData as { target: RedisTarget; settings: LinkSettings };
const port = parentPort!;

const client = connectRedis(target, {
  lazyConnect: settings.lazyConnect,
  enableOfflineQueue: settings.enableOfflineQueue,
  connectTimeout: settings.connectTimeoutMs,
  maxRetriesPerRequest: 0,
  retryStrategy: (n) => Math.min(100 * n, 1_000),
  // Commands that arrive in one turn of this thread go out in one socket write.
  enableAutoPipelining: true,
  // A backstop: every command is answered in bounded time, so the caller's table of commands
  // in flight stays finite even against a Redis that accepts and never replies. The callers'
  // own, shorter timeouts decide first.
  commandTimeout: BACKSTOP_MS,
});

const post = (m: LinkReply) => port.postMessage(m);
const status = () => post({ status: client.status });
for (const event of ['connect', 'ready', 'close', 'reconnecting', 'end']) client.on(event, status);
client.on('error', (e: Error) => post({ error: e.message }));

port.on('message', (m: LinkRequest) => {
  if (m.op === 'quit') {
    client.quit().then(
      () => post({ id: m.id, value: 'OK' }),
      (e: Error) => post({ id: m.id, error: e.message }),
    );
    return;
  }
  client.call(m.op, m.args as string[]).then(
    (value) => post({ id: m.id, value }),
    (e: Error) => post({ id: m.id, error: e.message }),
  );
});
status();
