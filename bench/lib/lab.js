// The processes under test and how to reach them. In local mode: one simulator for the
// whole run, and for each measurement a fresh bare proxy or gateway in front of it. In
// remote mode (--target-url): one target, an existing deployment, and nothing started.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import os from 'node:os';
import { Pool } from 'undici';
import { startNode, jsonLine, pinSelf, tasksetAvailable } from './procs.js';
import { inspectorUrl } from './inspector.js';

export const MODEL = 'bench-model';
// Limits admission must never reach: the point is the cost of checking them.
const HUGE = { rpm: 10_000_000, tpm: 1_000_000_000_000, concurrency: 1_000_000 };
const BIG_BUDGET = { usd: 1_000_000_000, period: 'month' };

/** CPU layout: the server under test gets a core of its own; load generator and simulator share the other. */
export function cpuPlan(pin) {
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  if (pin === 'off' || cores < 2 || !tasksetAvailable()) return { pinned: false, cores, main: null, sim: null, proxy: null };
  if (cores === 2) return { pinned: true, cores, main: 0, sim: 0, proxy: 1 };
  return { pinned: true, cores, main: 0, sim: 1, proxy: 2 };
}

/**
 * What a gateway's policy sets beyond its backend and model, each with its reason: printed
 * beside the tables, so a figure is never read as the shipped defaults' when it is not.
 */
export function gatewayKnobs(features, leased = false) {
  if (!features) return [];
  const knobs = [
    {
      knob: 'keys[] (one key), limits {rpm, tpm, concurrency} and budget on key, user, team, model and global',
      reason: 'the features scenario measures the cost of checking every scope; the values are set so high they are never reached',
    },
  ];
  if (features === 'redis')
    knobs.push({
      knob: 'state: {store: redis, redis_url, redis_prefix}',
      reason: 'the shared-store variant; a prefix per run keeps runs apart',
    });
  if (leased)
    knobs.push({
      knob: 'state.leased_quota: true',
      reason: 'the Redis store admitting busy scopes against leased slices (off by default)',
    });
  return knobs;
}

export class Lab {
  constructor({ root, dir, cpus, cpuProfDir, progress, redisUrl, gatewayNodeArgs = [], gatewayRoot }) {
    this.gatewayNodeArgs = gatewayNodeArgs;
    this.gatewayRoot = gatewayRoot ?? root;
    this.root = root;
    this.dir = dir;
    this.cpus = cpus;
    this.cpuProfDir = cpuProfDir;
    this.progress = progress;
    this.redisUrl = redisUrl;
    this.sim = null;
    this.seq = 0;
    this.tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
    if (cpus.pinned && cpus.main !== null) pinSelf(cpus.main);
  }

  async startSimulator() {
    const { child, info } = await startNode({
      name: 'simulator',
      script: join(this.root, 'dist/simulator/cli.js'),
      args: ['--port', '0', '--ttft-ms', '0', '--tpot-ms', '0', '--output-tokens', '16', '--error-rate', '0'],
      dir: this.dir,
      cpu: this.cpus.sim,
      ready: (line) => jsonLine(line)?.url,
    });
    const origin = new URL(info).origin;
    this.sim = { child, origin, base: info };
    this.simPool = new Pool(origin, { connections: 2 });
    return this.sim;
  }

  /** POST /_sim/config (ttftMs, tpotMs, outputTokens, errorRate). */
  async configureSim(patch) {
    const r = await this.simRequest('POST', '/_sim/config', JSON.stringify(patch));
    if (r.status !== 200) throw new Error(`simulator refused config ${JSON.stringify(patch)}: ${r.status} ${r.text}`);
  }

  async simStats() {
    const r = await this.simRequest('GET', '/_sim/stats');
    return JSON.parse(r.text);
  }

  simRequest(method, path, body) {
    return dispatchText(this.simPool, { method, path, headers: { 'content-type': 'application/json' }, body: body ?? null });
  }

  /** The simulator itself as a target. */
  direct() {
    return { name: 'direct', origin: this.sim.origin, base: '/v1', model: MODEL, headers: {}, child: null, stop: async () => {} };
  }

  async bare(connections = 10_000, extraNodeArgs = []) {
    const n = ++this.seq;
    const { child, info } = await startNode({
      name: `bare-${n}`,
      script: join(this.root, 'bench/bare-proxy.js'),
      nodeArgs: [
        ...(this.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${this.cpuProfDir}`, `--cpu-prof-name=bare-${n}.cpuprofile`] : []),
        ...extraNodeArgs,
      ],
      args: ['--upstream', this.sim.origin, '--port', '0', '--connections', String(connections)],
      dir: this.dir,
      cpu: this.cpus.proxy,
      ready: (line) => jsonLine(line)?.url,
    });
    return { name: 'bare', origin: info, base: '/v1', model: MODEL, headers: {}, child, stop: () => child.stop() };
  }

  /**
   * A gateway in front of the simulator, run with the defaults users get: its policy names
   * its backend (URL and key) and its model (deployment and pricing), nothing else.
   * features: null, or 'memory' / 'redis': keys, rate limits, budgets at every scope (see
   * gatewayKnobs, which the report prints beside the tables).
   */
  async gateway({ features = null, insights = false, leased = false, otlp = false, name = 'gateway', inspect = false } = {}) {
    const n = ++this.seq;
    const key = `sk-bench-${this.tag}`;
    const policy = {
      // The simulator speaks every API the bench drives, Anthropic's Messages API included.
      backends: {
        sim: {
          base_url: this.sim.base,
          api_key: 'sk-sim-not-a-real-key',
          apis: ['chat', 'completions', 'embeddings', 'responses', 'messages'],
        },
      },
      models: {
        [MODEL]: {
          deployments: [{ backend: 'sim', model: 'sim-model' }],
          pricing: { input_per_mtok: 0.15, output_per_mtok: 0.6 },
        },
      },
    };
    let redisPrefix;
    if (features) {
      Object.assign(policy.models[MODEL], { limits: HUGE, budget: BIG_BUDGET });
      policy.keys = [{ key, name: 'bench', team: 'bench-team', user: 'bench-user', limits: HUGE, budget: BIG_BUDGET }];
      policy.teams = { 'bench-team': { limits: HUGE, budget: BIG_BUDGET } };
      policy.users = { 'bench-user': { limits: HUGE, budget: BIG_BUDGET } };
      policy.global = { limits: HUGE, budget: BIG_BUDGET };
      if (features === 'redis') {
        redisPrefix = `llmgw-bench-${this.tag}-${n}:`;
        policy.state = { store: 'redis', redis_url: this.redisUrl, redis_prefix: redisPrefix, leased_quota: leased };
      } else {
        policy.state = { store: 'memory' };
      }
    }
    // Traffic intelligence with its defaults (quality.sample 1.0): what it costs per request.
    if (insights) policy.insights = {};
    // Every request traced and exported (OTLP/HTTP protobuf) to a sink in this process.
    if (otlp) policy.telemetry = { otlp: { enabled: true, endpoint: await this.otlpSink(), sampler: 'always_on' } };
    // YAML is a superset of JSON: the policy file is written as JSON.
    const file = join(this.dir, `policies-${n}.yaml`);
    writeFileSync(file, JSON.stringify(policy, null, 2));
    const nodeArgs = this.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${this.cpuProfDir}`, `--cpu-prof-name=${name}-${n}.cpuprofile`] : [];
    nodeArgs.push(...this.gatewayNodeArgs);
    // The memory soak forces full GCs through the inspector (loopback, ephemeral port).
    if (inspect) nodeArgs.push('--inspect=127.0.0.1:0');
    const { child, info } = await startNode({
      name: `${name}-${n}`,
      script: join(this.gatewayRoot, 'dist/main.js'),
      args: ['--policies', file, '--port', '0'],
      nodeArgs,
      dir: this.dir,
      cpu: this.cpus.proxy,
      // The request log line (level info) carries ttft_ms / tpot_ms, which the streams scenario reads.
      env: { GATEWAY_HOST: '127.0.0.1', GATEWAY_LOG_LEVEL: 'info' },
      ready: (line) => {
        const j = jsonLine(line);
        return j?.msg === 'listening' ? j.port : undefined;
      },
    });
    const target = {
      name,
      origin: `http://127.0.0.1:${info}`,
      base: '/v1',
      model: MODEL,
      headers: features ? { authorization: `Bearer ${key}` } : {},
      child,
      policyFile: file,
      inspectorUrl: inspect ? inspectorUrl(child.stderr()) : undefined,
      redisPrefix,
      redisCpuMs: redisPrefix ? () => this.redisCpuMs() : undefined,
      knobs: gatewayKnobs(features, leased),
      stop: async () => {
        await child.stop(5000);
        if (redisPrefix) await this.dropRedisKeys(redisPrefix).catch(() => {});
      },
    };
    return target;
  }

  /**
   * An OTLP/HTTP receiver in this process that takes every export and answers 200 with an
   * empty ExportTraceServiceResponse (an empty protobuf message is zero bytes); it counts the
   * trace exports in `otlpExports`. Started once; unref'd, so it never holds the bench open.
   */
  async otlpSink() {
    if (!this.sink) {
      this.otlpExports = 0;
      this.sink = http.createServer((req, res) => {
        if (req.url === '/v1/traces') this.otlpExports++;
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end());
      });
      await new Promise((r) => this.sink.listen(0, '127.0.0.1', r));
      this.sink.unref();
    }
    return `http://127.0.0.1:${this.sink.address().port}`;
  }

  /** Runs fn with a short-lived connection to the bench's Redis; `failed` is returned when it cannot connect or fn throws. */
  async withRedis(fn, failed) {
    const { Redis } = await import('ioredis');
    const r = new Redis(this.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 1000, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      return await fn(r);
    } catch {
      return failed;
    } finally {
      r.disconnect();
    }
  }

  redisReachable() {
    return this.withRedis(async (r) => (await r.ping()) === 'PONG', false);
  }

  /** The Redis server's CPU so far (INFO cpu, user + sys), ms; NaN if unreachable. Other clients of that Redis count too. */
  redisCpuMs() {
    return this.withRedis(async (r) => {
      const info = await r.info('cpu');
      const f = (re) => Number(re.exec(info)?.[1] ?? NaN);
      return (f(/used_cpu_user:([\d.]+)/) + f(/used_cpu_sys:([\d.]+)/)) * 1000;
    }, NaN);
  }

  dropRedisKeys(prefix) {
    return this.withRedis(async (r) => {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== '0');
    }, undefined);
  }
}

/** A target given by URL (an existing deployment): nothing is started, nothing is stopped. */
export function remoteTarget({ url, model, apiKey }) {
  const u = new URL(url);
  const base = u.pathname.replace(/\/+$/, '');
  return {
    name: 'target',
    origin: u.origin,
    base,
    model,
    headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
    child: null,
    remote: true,
    stop: async () => {},
  };
}

/** Resident memory of a target in bytes: /proc for a local process, else the gateway's /metrics. */
export async function targetRss(target) {
  if (target.child) return target.child.rss();
  const m = await scrape(target);
  return m.llm_gateway_process_resident_memory_bytes ?? NaN;
}

/** One request through an undici dispatcher, the whole body as text. */
function dispatchText(pool, opts) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let status = 0;
    pool.dispatch(opts, {
      onRequestStart() {},
      onResponseStart(_c, s) {
        status = s;
      },
      onResponseData(_c, c) {
        chunks.push(c);
      },
      onResponseEnd() {
        resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
      },
      onResponseError(_c, e) {
        reject(e);
      },
    });
  });
}

/** Unlabelled samples of GET /metrics as {name: value}. */
export async function scrape(target) {
  const pool = new Pool(target.origin, { connections: 1 });
  try {
    const r = await dispatchText(pool, { method: 'GET', path: '/metrics', headers: {} }).catch(() => ({ status: 0, text: '' }));
    const out = {};
    if (r.status !== 200) return out;
    for (const line of r.text.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)\s+(\S+)$/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  } finally {
    await pool.destroy();
  }
}

/**
 * One histogram of GET /metrics summed over its series: bucket bounds (ascending, +Inf last)
 * and cumulative counts. Empty (no bounds) when the target does not export it.
 */
export async function scrapeHistogram(target, name) {
  const pool = new Pool(target.origin, { connections: 1 });
  try {
    const r = await dispatchText(pool, { method: 'GET', path: '/metrics', headers: {} }).catch(() => ({ status: 0, text: '' }));
    const byLe = new Map();
    const prefix = `${name}_bucket{`;
    for (const line of r.status === 200 ? r.text.split('\n') : []) {
      if (!line.startsWith(prefix)) continue;
      const m = /le="([^"]+)"[^}]*\}\s+(\S+)$/.exec(line);
      if (!m) continue;
      const le = m[1] === '+Inf' ? Infinity : Number(m[1]);
      byLe.set(le, (byLe.get(le) ?? 0) + Number(m[2]));
    }
    const le = [...byLe.keys()].sort((a, b) => a - b);
    return { le, cumulative: le.map((b) => byLe.get(b)) };
  } finally {
    await pool.destroy();
  }
}
