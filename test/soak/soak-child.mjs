// The soak, run in its own process (node --expose-gc) by test/integration/soak.test.ts:
// a gateway in this process in front of the built-in simulator, N requests through the
// official openai SDK with clients aborting at random points, then what the process holds is
// compared with what it held before. Prints one JSON line with the measurements.
import { readdirSync } from 'node:fs';
import { Agent as HttpAgent, request } from 'node:http';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { parsePolicies } from '../../dist/config/load.js';
import { Gateway } from '../../dist/gateway.js';

const TOTAL = Number(process.env.SOAK_REQUESTS ?? 10_000);
const WARMUP = Number(process.env.SOAK_WARMUP ?? 300);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 32);
const SEED = Number(process.env.SOAK_SEED ?? 12);
/** The share of requests made with the openai SDK (the rest with a plain HTTP client, for CPU). */
const SDK_SHARE = Number(process.env.SOAK_SDK_SHARE ?? 0.03);
const ADMIN = 'soak-admin';

let seed = SEED >>> 0;
const rand = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const policies = parsePolicies(
  `
admin_token: ${ADMIN}
backends:
  fast: { type: simulator, ttft_ms: 0, tpot_ms: 0, output_tokens: 3, pool_size: 4 }
  slow: { type: simulator, ttft_ms: 1, tpot_ms: 2, output_tokens: 6, pool_size: 4 }
models:
  fast:
    deployments: [{ backend: fast }]
    pricing: { input_per_mtok: 1, output_per_mtok: 1 }
  slow:
    deployments: [{ backend: slow }]
    pricing: { input_per_mtok: 1, output_per_mtok: 1 }
keys:
  - { key: k-soak, name: soak, team: t, limits: { concurrency: 1000, tpm: 100000000 }, budget: { usd: 100000, period: total } }
teams:
  t: { budget: { usd: 100000, period: total } }
`,
  'soak.yaml',
  {},
);

// Request log lines are written (their cost is part of a request) and dropped.
const sink = new Writable({ write: (_c, _e, cb) => cb() });
const gw = await Gateway.create(policies, { logger: pino({ level: 'info', base: null }, sink) });
const { port } = await gw.listen(0, '127.0.0.1');
const base = `http://127.0.0.1:${port}`;

const outcomes = { completed: 0, aborted: 0, errors: 0 };
const MESSAGES = [{ role: 'user', content: 'soak' }];

/** Where a client leaves: never (half), before the answer starts, after the first chunk, after a few chunks. */
function plan() {
  const p = rand();
  return {
    stream: rand() < 0.7,
    model: rand() < 0.3 ? 'slow' : 'fast',
    mode: p < 0.5 ? 'never' : p < 0.7 ? 'early' : p < 0.85 ? 'first' : 'later',
    delayMs: Math.floor(rand() * 3),
    leaveAt: 2 + Math.floor(rand() * 3),
  };
}

function count(aborted, error) {
  if (error) {
    outcomes.errors++;
    if (outcomes.errors <= 5) console.error('soak request error:', error);
  } else if (aborted) outcomes.aborted++;
  else outcomes.completed++;
}

/** The official SDK as the client (its fetch on its own undici pool, closed after the run). */
function sdkClient() {
  const agent = new Agent({ connections: CONCURRENCY });
  const client = new OpenAI({
    baseURL: `${base}/v1`,
    apiKey: 'k-soak',
    maxRetries: 0,
    fetch: (url, init) => undiciFetch(url, { ...init, dispatcher: agent }),
  });
  const one = async () => {
    const { stream, model, mode, delayMs, leaveAt } = plan();
    const ac = new AbortController();
    const timer = mode === 'early' || (!stream && mode !== 'never') ? setTimeout(() => ac.abort(), delayMs) : undefined;
    try {
      if (stream) {
        const s = await client.chat.completions.create({ model, messages: MESSAGES, stream: true, max_tokens: 8 }, { signal: ac.signal });
        let n = 0;
        for await (const _chunk of s) {
          if ((mode === 'first' && ++n >= 1) || (mode === 'later' && ++n >= leaveAt)) {
            ac.abort();
            break;
          }
        }
      } else await client.chat.completions.create({ model, messages: MESSAGES, max_tokens: 8 }, { signal: ac.signal });
      count(ac.signal.aborted);
    } catch (e) {
      const aborted = ac.signal.aborted || e instanceof OpenAI.APIUserAbortError;
      count(aborted, aborted ? undefined : `${e?.status} ${e?.message}`);
    } finally {
      clearTimeout(timer);
    }
  };
  return { one, close: () => agent.close() };
}

/**
 * A plain keep-alive HTTP client, a tenth of the SDK's CPU per request: leaving is destroying
 * the request (the socket goes), as a client that crashes or gives up does.
 */
function httpClient() {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: CONCURRENCY });
  const one = () =>
    new Promise((resolve) => {
      const { stream, model, mode, delayMs, leaveAt } = plan();
      const body = JSON.stringify({ model, messages: MESSAGES, stream, max_tokens: 8 });
      let done = false;
      const finish = (aborted, error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        count(aborted, error);
        resolve();
      };
      const req = request(`${base}/v1/chat/completions`, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', authorization: 'Bearer k-soak', 'content-length': Buffer.byteLength(body) },
      });
      const leave = () => {
        req.destroy();
        finish(true);
      };
      const timer = mode === 'early' || (!stream && mode !== 'never') ? setTimeout(leave, delayMs) : undefined;
      req.on('error', (e) => finish(done, done ? undefined : e.message));
      req.on('response', (res) => {
        if (res.statusCode !== 200) finish(false, `status ${res.statusCode}`);
        let n = 0;
        res.on('data', () => {
          if (stream && ((mode === 'first' && ++n >= 1) || (mode === 'later' && ++n >= leaveAt))) leave();
        });
        res.on('end', () => finish(false));
        res.on('error', () => finish(true));
      });
      req.end(body);
    });
  return { one, close: () => agent.destroy() };
}

async function run(n, sdkShare) {
  const sdk = sdkClient();
  const http = httpClient();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        next++;
        await (rand() < sdkShare ? sdk.one() : http.one());
      }
    }),
  );
  await sdk.close();
  http.close();
}

async function admin(path) {
  const r = await undiciFetch(`${base}/admin/${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return r.json();
}

const settleWait = async () => {
  // Every request the gateway accepted settles once its client is gone: wait (bounded) for that.
  for (let i = 0; i < 200 && gw.inflight.size > 0; i++) await new Promise((r) => setTimeout(r, 25));
  await new Promise((r) => setTimeout(r, 200)); // sockets whose peer closed: their 'close' runs
};

function resources() {
  const byType = {};
  for (const t of process.getActiveResourcesInfo()) byType[t] = (byType[t] ?? 0) + 1;
  return byType;
}

async function snapshot() {
  await settleWait();
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  const limits = await admin('limits');
  const text = await gw.metrics.registry.metrics();
  const active = text
    .split('\n')
    .filter((l) => l.startsWith('llm_gateway_active_requests{'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  // The gateway's keep-alive pools to the simulators (in this process: two sockets, two fds per
  // connection) legitimately hold up to pool_size connections each; they are counted apart.
  const backends = gw.stages().backends.all();
  const upstream = backends.reduce((n, b) => n + b.pool.stats.connected, 0);
  const res = resources();
  const fds = readdirSync('/proc/self/fd').length;
  return {
    heapUsed: process.memoryUsage().heapUsed,
    fds,
    resources: res,
    upstreamConnections: upstream,
    upstreamPoolSize: backends.reduce((n, b) => n + b.config.pool_size, 0),
    fdsBesideUpstream: fds - 2 * upstream,
    inflight: gw.inflight.size,
    activeGauge: active,
    scopes: limits.scopes.map((s) => ({
      scope: s.scope,
      name: s.name,
      in_use: s.concurrency?.in_use ?? null,
      reserved_usd: s.budget?.reserved_usd ?? null,
    })),
  };
}

const t0 = performance.now();
await run(WARMUP, 0.2);
const before = await snapshot();
for (const k of Object.keys(outcomes)) outcomes[k] = 0; // count the soak's requests only
const t1 = performance.now();
await run(TOTAL, SDK_SHARE);
const soakMs = performance.now() - t1;
const after = await snapshot();
await gw.close(1000);
process.stdout.write(
  JSON.stringify({
    total: TOTAL,
    warmup: WARMUP,
    concurrency: CONCURRENCY,
    outcomes,
    soakMs,
    totalMs: performance.now() - t0,
    before,
    after,
  }) + '\n',
);
