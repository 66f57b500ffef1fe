// Plumbing shared by the admission tests: fleets of gateway processes on one store and the
// limits they must hold together, a private redis-server or Redis Cluster, admin calls, and
// batches of concurrent SDK requests.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { openaiClient } from '../helpers/gateway.js';
import { freePort } from '../helpers/net.js';
import { runProcess, spawnGateway, startRedisServer, type GatewayProcess, type Started } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

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

export interface RedisServer {
  port: number;
  url: string;
  start(): Promise<void>;
  /** SAVE (so a restart reloads the data, like a Redis with persistence), then SIGKILL. */
  kill(): Promise<void>;
}

/**
 * A private redis-server on its own port and directory (tests stop and restart it). With
 * `aof`, every write is fsynced to an append-only file, so a SIGKILL loses nothing Redis
 * acknowledged (without it, kill() SAVEs first and writes after the SAVE are lost).
 */
export async function privateRedis(dir: string, { aof = false } = {}): Promise<RedisServer> {
  const port = await freePort();
  let server: Started | undefined;
  const url = `redis://127.0.0.1:${port}`;
  return {
    port,
    url,
    async start() {
      const persistence = aof ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
      server = await startRedisServer(['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir]);
    },
    async kill() {
      if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
      const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      await c.connect();
      await c.save();
      c.disconnect();
      await server.stop('SIGKILL');
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

/**
 * Policies for a fleet on a shared Redis under `prefix` (the store refuses when Redis fails),
 * serving simModelYaml(5, 1). The command timeout is generous: these tests are about
 * exactness, and on a starved machine a 1 s timeout turns into refusals they would count.
 */
export const redisFleetPolicies = (redisUrl: string, prefix: string, keysYaml: string, leasedQuota = false): string => `
admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${redisUrl}", redis_prefix: "${prefix}", redis_timeout_ms: 10000, on_store_error: closed, leased_quota: ${leasedQuota} }
${simModelYaml(5, 1)}
${keysYaml}
`;

/** `n` gateway processes serving one policies file (written to `dir`), as a fleet sharing a store. */
export async function startFleet(dir: string, policiesYaml: string, { n = 3, oneAtATime = false } = {}): Promise<GatewayProcess[]> {
  const file = join(dir, 'policies.yaml');
  writeFileSync(file, policiesYaml);
  // One at a time where several cold starts at once could exceed the start timeout on a busy machine.
  if (oneAtATime) {
    const fleet: GatewayProcess[] = [];
    for (let i = 0; i < n; i++) fleet.push(await spawnGateway(file));
    return fleet;
  }
  return Promise.all(Array.from({ length: n }, () => spawnGateway(file)));
}

/** Prints the fleet's warnings and errors (what explains a count that came out wrong), then stops it. */
export async function stopFleet(fleet: GatewayProcess[]): Promise<void> {
  for (const g of fleet) for (const l of g.lines) if ((l.level as number) >= 40) console.log(JSON.stringify(l));
  await Promise.all(fleet.map((g) => g.stop()));
}

/** The keys sharedLimitTests uses: rpm 100 and a $1.00 daily budget (in `team`, if given). */
export const fleetKeysYaml = (team?: string): string => {
  const t = team ? `, team: ${team}` : '';
  return `keys:
  - { key: k-rpm, name: rpm100${t}, limits: { rpm: 100 } }
  - { key: k-dollar, name: dollar${t}, budget: { usd: 1, period: day } }`;
};

const ONE_CENT = { model: 'm', max_tokens: 10 };

/** 300 concurrent $0.01 requests with `key`, spread over the fleet; none fails otherwise than by a refusal. */
async function burst(gateways: GatewayProcess[], key: string): Promise<BatchResult> {
  const r = await batch(
    gateways.map((g) => openaiClient(g, key)),
    300,
    ONE_CENT,
  );
  expect(r.other.map((e) => String(e))).toEqual([]);
  return r;
}

/** What /admin/limits says scope `name` has used of its rpm. */
async function rpmUsed(g: GatewayProcess, name: string): Promise<number> {
  const limits = await admin<{ scopes: Array<{ name: string; rpm: { used: number } }> }>(g.url, 'limits');
  return limits.body.scopes.find((s) => s.name === name)!.rpm.used;
}

/** Every gateway reports the key's $1.00 budget spent exactly, nothing reserved (settles are written after the response). */
async function spentExactlyOneDollar(gateways: GatewayProcess[]): Promise<void> {
  for (const g of gateways)
    await eventually(async () => expect(await budgetOf(g.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 }));
}

/**
 * What a fleet sharing one store must hold exactly, whatever the store: rpm 100 and a $1.00
 * budget under 300 concurrent requests spread over every gateway (keys of fleetKeysYaml).
 */
export function sharedLimitTests(fleet: () => GatewayProcess[]): void {
  it('rpm 100 shared by three gateways under 300 concurrent requests admits exactly 100', async () => {
    const gateways = fleet();
    const r = await burst(gateways, 'k-rpm');
    expect(r.ok).toBe(100);
    expect(r.rateLimited).toBe(200);
    expect(await rpmUsed(gateways[1]!, 'rpm100')).toBe(100);
  });

  it('a $1.00 budget shared by three gateways under 300 concurrent $0.01 requests admits exactly 100, spend = $1.00, nothing left reserved', async () => {
    const gateways = fleet();
    const r = await burst(gateways, 'k-dollar');
    expect(r.ok).toBe(100);
    expect(r.quota).toBe(200);
    await spentExactlyOneDollar(gateways);
  });
}

/**
 * The same burst with quota leases (state.leased_quota): a slice a gateway took and did not
 * use is refused to the others until its second ends, so the burst may admit fewer than
 * 100, never more; once the slices are back, a client that keeps asking gets exactly what
 * fits, and nothing stays reserved.
 */
export function leasedLimitTests(fleet: () => GatewayProcess[]): void {
  /** Sequential requests through one gateway until the first refusal; how many were admitted. */
  async function untilRefused(g: GatewayProcess, key: string): Promise<number> {
    const client = openaiClient(g, key);
    for (let n = 0; n <= 100; n++) {
      try {
        await client.chat.completions.create({ ...ONE_CENT, messages: [{ role: 'user', content: 'hi' }] });
      } catch (e) {
        expect(e).toBeInstanceOf(OpenAI.RateLimitError);
        return n;
      }
    }
    return 101;
  }

  it('rpm 100 with leases: the burst admits at most 100, and asking on until refused makes it exactly 100', async () => {
    const gateways = fleet();
    const r = await burst(gateways, 'k-rpm');
    expect(r.ok).toBeLessThanOrEqual(100);
    expect(r.ok + r.rateLimited).toBe(300);
    // The leases end with their Redis second; what they did not use is back within the next.
    await new Promise((res) => setTimeout(res, 1_100));
    const more = await untilRefused(gateways[2]!, 'k-rpm');
    expect(r.ok + more).toBe(100);
    expect(await rpmUsed(gateways[1]!, 'rpm100')).toBe(100);
  });

  it('a $1.00 budget with leases: the burst never spends over $1.00, and asking on spends exactly $1.00, nothing left reserved', async () => {
    const gateways = fleet();
    const r = await burst(gateways, 'k-dollar');
    expect(r.ok).toBeLessThanOrEqual(100);
    await new Promise((res) => setTimeout(res, 1_100));
    const more = await untilRefused(gateways[0]!, 'k-dollar');
    expect(r.ok + more).toBe(100);
    await spentExactlyOneDollar(gateways);
  });
}

/** The failover tests' key: a $10 daily budget, rpm far out of reach. */
export const FAILOVER_KEY_YAML = `keys:
  - { key: k-fo, name: fo, limits: { rpm: 10000 }, budget: { usd: 10, period: day } }`;
const FAILOVER_ASK = { model: 'm', max_tokens: 10, messages: [{ role: 'user' as const, content: 'hi' }] };

/** Five $0.01 requests with key k-fo, and their spend in Redis. */
export async function spendBeforeFailover(g: GatewayProcess): Promise<void> {
  const client = openaiClient(g, 'k-fo');
  for (let i = 0; i < 5; i++) await client.chat.completions.create(FAILOVER_ASK);
  await eventually(async () => expect(await budgetOf(g.url, 'key', 'fo')).toMatchObject({ spend_usd: 0.05, reserved_usd: 0 }));
}

/**
 * After the store's master was killed: requests until one is admitted again (503s meanwhile,
 * on_store_error: closed), three more, and the budget then holds exactly the five from
 * before plus what was served; the gateway is ready.
 */
export async function carriesOnAfterFailover(g: GatewayProcess): Promise<void> {
  const client = openaiClient(g, 'k-fo');
  let served = 0;
  await eventually(
    async () => {
      await client.chat.completions.create(FAILOVER_ASK, { maxRetries: 0 });
      served++;
    },
    30_000,
    250,
  );
  for (let i = 0; i < 3; i++) await client.chat.completions.create(FAILOVER_ASK);
  served += 3;
  await eventually(async () =>
    expect(await budgetOf(g.url, 'key', 'fo')).toMatchObject({ spend_usd: (5 + served) / 100, reserved_usd: 0 }),
  );
  expect((await fetch(`${g.url}/readyz`)).status).toBe(200);
}

export interface RedisCluster {
  ports: number[];
  /** redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3 */
  url: string;
  /** SIGKILLs every node and waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILLs one node (a crash: its replica, if any, takes over). */
  kill(port: number): Promise<void>;
}

/** Runs a redis-cli command; its output, or an error when it fails. */
async function cli(command: string, args: string[], timeoutMs: number): Promise<string> {
  const r = await runProcess(command, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout + r.stderr;
}

/**
 * A private Redis Cluster of `n` masters (no replicas), each `server` process on its own
 * port and cluster-bus port in `dir`. Started whole or not at all: a failure stops what started.
 */
export async function privateCluster(
  dir: string,
  { masters = 3, replicas = 0, nodeTimeoutMs = 15_000, server = 'redis-server', redisCli = 'redis-cli' } = {},
): Promise<RedisCluster> {
  const n = masters * (1 + replicas);
  const nodes: Started[] = [];
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((p) => p.stop('SIGKILL')));
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const bus = await freePort();
      ports.push(port);
      nodes.push(
        await startRedisServer(
          [
            '--port',
            String(port),
            '--cluster-port',
            String(bus),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            String(nodeTimeoutMs),
            '--save',
            '',
            '--appendonly',
            'no',
            '--daemonize',
            'no',
            '--dir',
            dir,
          ],
          undefined,
          server,
        ),
      );
    }
    await cli(
      redisCli,
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      30_000,
    );
    // Every node must see the whole cluster before clients come (slots served, gossip done).
    await eventually(
      async () => {
        for (const port of ports) {
          const info = await cli(redisCli, ['-p', String(port), 'cluster', 'info'], 5_000);
          if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${n}`))
            throw new Error(`node ${port} not ready: ${info}`);
        }
      },
      20_000,
      100,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    ports,
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    stop,
    kill: async (port) => {
      await nodes[ports.indexOf(port)]!.stop('SIGKILL');
    },
  };
}
