// Redis-side cost of admission, without the gateway: N requests (admit, then settle, C in
// flight) through the RedisStore of a build, five scopes each with rpm, tpm, concurrency and
// a budget (limits never reached), against a private redis-server. Prints Redis's time in
// scripts (INFO commandstats, usec) and its process CPU (INFO cpu) per request.
// usage: node bench/redis-scripts.mjs [--root DIR (a build: DIR/dist)] [--n 20000] [--c 16]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';

const { values: o } = parseArgs({
  options: { root: { type: 'string', default: '.' }, n: { type: 'string', default: '20000' }, c: { type: 'string', default: '16' } },
});
const N = Number(o.n);
const C = Number(o.c);
const { RedisStore } = await import(pathToFileURL(resolve(o.root, 'dist/admission/redis.js')).href);

const port = await new Promise((res) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => res(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'redis-scripts-'));
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
  stdio: 'ignore',
});
const url = `redis://127.0.0.1:${port}`;
let c;
try {
  for (let i = 0; ; i++) {
    const t = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    t.on('error', () => undefined);
    try {
      await t.connect();
      c = t;
      break;
    } catch (e) {
      t.disconnect();
      if (i > 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const kinds = ['key', 'user', 'team', 'model', 'global'];
  const scopes = kinds.map((kind, slot) => ({
    kind,
    name: kind === 'global' ? 'global' : `${kind}-1`,
    id: `${kind}:${kind}-1`,
    slot,
    rpm: 1e9,
    tpm: 1e12,
    concurrency: 1e6,
    budget: { usd: 1e6, nano: 1e15, period: 'day' },
  }));
  const noop = () => undefined;
  const logger = { info: noop, warn: noop, error: noop, debug: noop };
  const metrics = { storeErrors: { inc: noop } };
  const store = new RedisStore({ url, prefix: 'bench:', scopes, thresholds: [0.8], onSpend: noop, logger, metrics });
  let next = 0;
  const one = async () => {
    while (next < N) {
      const i = next++;
      const r = { id: `r${i}`, scopes, tokens: 600, nano: 5_000_000, bucket: -1, gen: 0 };
      const v = await store.admit(r);
      if (!v.ok) throw new Error('refused');
      store.settle(r, { tokens: 450, costNano: 3_000_000 });
    }
  };
  // Warm up (script load, JIT), then measure.
  next = N - Math.min(N, 500);
  await Promise.all(Array.from({ length: C }, one));
  await store.drain();
  const stats = async () => {
    const cpu = await c.info('cpu');
    const cs = await c.info('commandstats');
    const f = (re) => Number(re.exec(cpu)?.[1] ?? 0);
    let usec = 0;
    let calls = 0;
    for (const m of cs.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/g)) {
      calls += Number(m[1]);
      usec += Number(m[2]);
    }
    return { cpu: f(/used_cpu_user:([\d.]+)/) + f(/used_cpu_sys:([\d.]+)/), usec, calls };
  };
  next = 0;
  const a = await stats();
  const t0 = process.cpuUsage();
  await Promise.all(Array.from({ length: C }, one));
  await store.drain();
  const t1 = process.cpuUsage(t0);
  const b = await stats();
  const keys = await c.dbsize();
  const mem = /used_memory:(\d+)/.exec(await c.info('memory'))[1];
  console.log(
    JSON.stringify({
      root: o.root,
      requests: N,
      in_flight: C,
      redis_script_us_per_request: +((b.usec - a.usec) / N).toFixed(1),
      redis_cpu_us_per_request: +(((b.cpu - a.cpu) * 1e6) / N).toFixed(1),
      script_calls_per_request: +((b.calls - a.calls) / N).toFixed(3),
      client_cpu_us_per_request: +((t1.user + t1.system) / N).toFixed(1),
      redis_keys: keys,
      redis_used_memory_bytes: Number(mem),
    }),
  );
  await store.close();
} finally {
  c?.disconnect();
  server.kill('SIGKILL');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
