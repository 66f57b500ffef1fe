// Plumbing shared by the admission tests: gateway child processes (node dist/main.js), a
// private redis-server, admin calls, and batches of concurrent SDK requests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { Redis } from 'ioredis';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = `${ROOT}dist/main.js`;
export const ADMIN_TOKEN = 'admission-test-admin';

/**
 * The backend and model the admission tests share: the built-in simulator answering 16
 * tokens, priced so that one answer costs exactly $0.016 (output $1,000 per Mtok, input free).
 */
export const simModelYaml = (ttftMs: number, tpotMs: number): string => `backends:
  sim: { type: simulator, ttft_ms: ${ttftMs}, tpot_ms: ${tpotMs}, output_tokens: 16 }
models:
  m:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 0, output_per_mtok: 1000 }`;


export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error('dist/main.js is missing: run `npm run build` first (npm test does it)');
}

export { freePort } from '../helpers/net.js';

export interface ChildGateway {
  proc: ChildProcess;
  url: string;
  baseURL: string;
  port: number;
  lines: Array<Record<string, unknown>>;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `node dist/main.js --policies FILE --port 0` and reads its port from the 'listening' log line. */
export async function spawnGateway(policiesFile: string, env: NodeJS.ProcessEnv = {}): Promise<ChildGateway> {
  // The 'listening' line is logged at info: keep that level.
  const proc = spawn(process.execPath, [MAIN, '--policies', policiesFile, '--port', '0'], {
    cwd: ROOT,
    env: { ...process.env, ...env, GATEWAY_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`gateway did not start: ${stderr}`));
    }, 45_000); // a cold start compiles every module: seconds on a busy machine
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      lines.push(obj);
      if (obj.msg === 'listening') {
        clearTimeout(t);
        resolve(obj.port as number);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`gateway exited with ${code}: ${stderr}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    proc,
    url,
    baseURL: `${url}/v1`,
    port,
    lines,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

export interface RedisServer {
  port: number;
  url: string;
  start(): Promise<void>;
  /** SAVE (so a restart reloads the data, like a Redis with persistence), then SIGKILL. */
  kill(): Promise<void>;
}

/** A private redis-server on its own port and directory (tests stop and restart it). */
export async function privateRedis(dir: string): Promise<RedisServer> {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  return {
    port,
    url,
    async start() {
      proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('redis-server did not start')), 5_000);
        let out = '';
        proc!.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('Ready to accept connections')) {
            clearTimeout(t);
            resolve();
          }
        });
        proc!.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`redis-server exited with ${code}: ${out}`));
        });
      });
    },
    async kill() {
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      await c.connect();
      await c.save();
      c.disconnect();
      const p = proc;
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill('SIGKILL');
      await exited;
    },
  };
}

/** Deletes every key under `prefix` (only this test's keys). */
export async function flushPrefix(url: string, prefix: string): Promise<void> {
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await c.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await c.del(...keys);
    } while (cursor !== '0');
  } finally {
    c.disconnect();
  }
}

export async function admin<T = Record<string, unknown>>(url: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${url}/admin/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

export interface BudgetRow {
  scope: string;
  name: string;
  spend_usd: number;
  reserved_usd: number;
  limit_usd: number;
}

export async function budgetOf(url: string, scope: string, name: string): Promise<BudgetRow> {
  const r = await admin<{ budgets: BudgetRow[] }>(url, 'spend');
  if (r.status !== 200) throw new Error(`/admin/spend answered ${r.status}: ${JSON.stringify(r.body)}`);
  const row = r.body.budgets.find((b) => b.scope === scope && b.name === name);
  if (!row) throw new Error(`no budget ${scope}:${name}`);
  return row;
}

/** Polls until `check` stops throwing (or the deadline passes, then rethrows). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}

export const client = (baseURL: string, apiKey: string, extra: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
  new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000, ...extra });

export interface BatchResult {
  ok: number;
  rateLimited: number;
  quota: number;
  other: unknown[];
}

/** `n` concurrent chat completions spread over `clients` round-robin; counts outcomes by kind. */
export async function batch(clients: OpenAI[], n: number, body: { model: string; max_tokens: number }): Promise<BatchResult> {
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) =>
      clients[i % clients.length]!.chat.completions.create({ ...body, messages: [{ role: 'user', content: 'hi' }] }),
    ),
  );
  const out: BatchResult = { ok: 0, rateLimited: 0, quota: 0, other: [] };
  for (const r of results) {
    if (r.status === 'fulfilled') out.ok++;
    else if (r.reason instanceof OpenAI.RateLimitError && r.reason.code === 'rate_limit_exceeded') out.rateLimited++;
    else if (r.reason instanceof OpenAI.RateLimitError && r.reason.code === 'insufficient_quota') out.quota++;
    else out.other.push(r.reason);
  }
  return out;
}

export interface RedisCluster {
  ports: number[];
  /** redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3 */
  url: string;
  /** SIGKILLs every node and waits for it to exit. */
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${out}`));
    });
  });
}

/**
 * A private Redis Cluster of `n` masters (no replicas), each `server` process on its own
 * port and cluster-bus port in `dir`. Started whole or not at all: a failure stops what started.
 */
export async function privateCluster(dir: string, n = 3, server = 'redis-server', cli = 'redis-cli'): Promise<RedisCluster> {
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(
      procs.map((p) => {
        if (p.exitCode !== null || p.signalCode !== null) return undefined;
        const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
        p.kill('SIGKILL');
        return exited;
      }),
    );
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const bus = await freePort();
      ports.push(port);
      const p = spawn(
        server,
        ['--port', String(port), '--cluster-port', String(bus), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
          '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      procs.push(p);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${server} did not start`)), 10_000);
        let out = '';
        p.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('Ready to accept connections')) {
            clearTimeout(t);
            resolve();
          }
        });
        p.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`${server} exited with ${code}: ${out}`));
        });
      });
    }
    await run(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], 30_000);
    // Every node must see the whole cluster before clients come (slots served, gossip done).
    await eventually(async () => {
      for (const port of ports) {
        const info = await run(cli, ['-p', String(port), 'cluster', 'info'], 5_000);
        if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${n}`)) throw new Error(`node ${port} not ready: ${info}`);
      }
    }, 20_000, 100);
  } catch (e) {
    await stop();
    throw e;
  }
  return { ports, url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, stop };
}
