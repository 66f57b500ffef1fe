// Hot reload of policies.yaml, end to end: gateway processes (node dist/main.js) fed by a
// file the test rewrites (atomically: temp + rename), a ConfigMap-style symlink swap,
// SIGHUP and POST /admin/reload; the official openai SDK as client. A valid change takes
// effect without failing a single request; an invalid one is refused (path + line, logged,
// counted) while the old policy serves; rate windows, spend and breakers carry over.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { parsePolicies } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { metricValue, openaiClient } from '../helpers/gateway.js';
import { ADMIN_TOKEN, admin, budgetOf, flushPrefix } from './admission-support.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const dirs: string[] = [];
const gateways: GatewayProcess[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gw-reload-'));
  dirs.push(d);
  return d;
}

/** Replaces the file the way editors and config tools do: write a temp file, rename it over. */
function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

async function start(file: string): Promise<GatewayProcess> {
  const gw = await spawnGateway(file);
  gateways.push(gw);
  return gw;
}

const logged = (gw: GatewayProcess, pred: (l: Record<string, unknown>) => boolean) =>
  eventually(async () => {
    const l = gw.lines.find(pred);
    if (!l) throw new Error('no such log line yet');
    return l;
  }, 8_000);

async function metrics(gw: GatewayProcess): Promise<string> {
  return (await fetch(`${gw.url}/metrics`)).text();
}

const reloads = async (gw: GatewayProcess, result: 'success' | 'failure') =>
  metricValue(await metrics(gw), 'llm_gateway_policy_reloads_total', { result }) ?? 0;

const ask = (c: OpenAI, model: string) => c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });

async function askStream(c: OpenAI, model: string): Promise<number> {
  const s = await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
  let chunks = 0;
  for await (const _ of s) chunks++;
  return chunks;
}

beforeAll(() => requireBuild());

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('in process', () => {
  it('reload() swaps backends and stages; close() releases the watcher, old and new simulators, every timer', async () => {
    const resources = () => process.getActiveResourcesInfo().sort();
    const before = resources();
    const file = join(tempDir(), 'policies.yaml');
    const text = (backend: string, extra = '') => `
backends: { ${backend}: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 4 } }
models: { m: { deployments: [{ backend: ${backend} }] } }
keys: [{ key: k, name: app, limits: { rpm: 100 }, budget: { usd: 5, period: day } }]
${extra}`;
    writeFileSync(file, text('a'));
    const gw = await Gateway.create(parsePolicies(text('a'), file), {
      policiesFile: file,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics({ defaultMetrics: false }),
    });
    const { port } = await gw.listen(0, '127.0.0.1');
    gw.watch();
    const agent = new Agent();
    const c = openaiClient({ baseURL: `http://127.0.0.1:${port}/v1` }, 'k', {
      fetch: ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher: agent })) as unknown as typeof fetch,
    });
    await ask(c, 'm');
    // In-process text (no file read), a backend replaced: its simulator is retired.
    const r = await gw.reload(text('b'), 'admin');
    expect(r).toMatchObject({ ok: true, changed: { backends: { added: ['b'], removed: ['a'] } } });
    await ask(c, 'm');
    const bad = await gw.reload(text('b', 'retries: { max: -1 }'), 'admin');
    expect(bad).toMatchObject({ ok: false, problems: [expect.stringContaining('retries.max (line 5)')] });
    expect(gw.stages().policies.backends).toHaveProperty('b');
    await agent.close();
    await gw.close(1000);
    await expect.poll(() => resources(), { timeout: 3000 }).toEqual(before);
  });
});

describe('policy reload under load', () => {
  const policy = (extra: { price?: number; models?: string } = {}) => `
admin_token: ${ADMIN_TOKEN}
backends:
  sim: { type: simulator, ttft_ms: 5, tpot_ms: 2, output_tokens: 8 }
models:
  m1:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: ${extra.price ?? 1}, output_per_mtok: 2 }
${extra.models ?? ''}
keys:
  - { key: k-load, name: load, limits: { rpm: 100000 }, budget: { usd: 1000, period: day } }
`;

  it('a valid change (file, then /admin/reload, then SIGHUP) takes effect without failing one request', async () => {
    const dir = tempDir();
    const file = join(dir, 'policies.yaml');
    writeFileSync(file, policy());
    const gw = await start(file);
    const c = openaiClient(gw, 'k-load');

    let ok = 0;
    const failures: unknown[] = [];
    let stop = false;
    const worker = async (i: number) => {
      for (let n = 0; !stop; n++) {
        try {
          if ((i + n) % 2) await askStream(c, 'm1');
          else await ask(c, 'm1');
          ok++;
        } catch (e) {
          failures.push(e);
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, i) => worker(i)));
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      // 1. The file changes: a model added, a price changed.
      await sleep(500);
      atomicWrite(file, policy({ price: 5, models: '  m2: { deployments: [{ backend: sim }] }' }));
      const line = await logged(gw, (l) => l.msg === 'policy reloaded' && l.source === 'watch');
      expect(line.changed).toMatchObject({ models: { added: ['m2'], removed: [], changed: ['m1'] }, backends: { added: [], removed: [] } });
      expect((await ask(c, 'm2')).choices[0]!.message.content).toBeTruthy();
      await sleep(500);

      // 2. POST /admin/reload (the watcher may see the file first: admin re-applies anyway).
      atomicWrite(
        file,
        policy({ price: 5, models: '  m2: { deployments: [{ backend: sim }] }\n  m3: { deployments: [{ backend: sim }] }' }),
      );
      const r = await admin<{ ok: boolean; changed: unknown }>(gw.url, 'reload', {});
      expect(r.status).toBe(200);
      expect(r.body.ok).toBe(true);
      expect((await ask(c, 'm3')).model).toBeTruthy(); // served the moment the answer came back
      await logged(gw, (l) => l.msg === 'policy reloaded' && l.source === 'admin');
      await sleep(500);

      // 3. SIGHUP.
      atomicWrite(file, policy({ price: 5, models: '  m4: { deployments: [{ backend: sim }] }' }));
      gw.child.kill('SIGHUP');
      await logged(gw, (l) => l.msg === 'policy reloaded' && l.source === 'sighup');
      await eventually(async () => expect((await ask(c, 'm4')).model).toBeTruthy());
      await expect(ask(c, 'm2')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await sleep(800);
    } finally {
      stop = true;
      await load;
    }
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
    expect(await reloads(gw, 'failure')).toBe(0);
    expect(await reloads(gw, 'success')).toBeGreaterThanOrEqual(3);
    expect(gw.lines.filter((l) => (l.level as number) >= 50)).toEqual([]); // no error logged
  });
});

describe('an invalid policy', () => {
  it('is refused with the field path and line, counted, and the old policy keeps serving', async () => {
    const dir = tempDir();
    const file = join(dir, 'policies.yaml');
    const good = `admin_token: ${ADMIN_TOKEN}
backends:
  sim: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 4 }
models:
  m1:
    deployments: [{ backend: sim }]
`;
    writeFileSync(file, good);
    const gw = await start(file);
    const c = openaiClient(gw, 'k');
    atomicWrite(file, good.replace('[{ backend: sim }]', '[{ backend: nope }]'));
    const line = await logged(gw, (l) => String(l.msg).startsWith('policy reload refused'));
    expect(line).toMatchObject({ source: 'watch', level: 40 });
    expect(line.problems).toEqual([expect.stringMatching(/^models\.m1\.deployments\.0\.backend \(line 6\): unknown backend "nope"/)]);
    expect(await reloads(gw, 'failure')).toBe(1);
    // The watcher's poll finds the same bad content again: refused (and counted) once only.
    await new Promise((r) => setTimeout(r, 600));
    expect(await reloads(gw, 'failure')).toBe(1);

    const r = await admin<{ error: { code: string; message: string; type: string } }>(gw.url, 'reload', {});
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'policy_invalid', type: 'invalid_request_error' });
    expect(r.body.error.message).toContain('models.m1.deployments.0.backend (line 6)');
    expect(await reloads(gw, 'failure')).toBe(2);
    expect(await reloads(gw, 'success')).toBe(0);

    expect((await ask(c, 'm1')).choices[0]!.message.content).toBeTruthy();
    expect(await askStream(c, 'm1')).toBeGreaterThan(1);
    const models = await c.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['m1']);
  });
});

describe('a ConfigMap update (symlinked directory swap)', () => {
  it('is picked up', async () => {
    const dir = tempDir();
    const policyWith = (model: string) => `admin_token: ${ADMIN_TOKEN}
backends: { sim: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 4 } }
models: { ${model}: { deployments: [{ backend: sim }] } }
`;
    // The kubelet's layout: a timestamped directory, `..data` pointing at it, and the file
    // a symlink through `..data`.
    mkdirSync(join(dir, '..2026_11_24_a'));
    writeFileSync(join(dir, '..2026_11_24_a', 'policies.yaml'), policyWith('before'));
    symlinkSync('..2026_11_24_a', join(dir, '..data'));
    symlinkSync('..data/policies.yaml', join(dir, 'policies.yaml'));
    const gw = await start(join(dir, 'policies.yaml'));
    const c = openaiClient(gw, 'k');
    expect((await c.models.list()).data.map((m) => m.id)).toEqual(['before']);

    // An update: new directory, `..data` swapped atomically (symlink ..data_tmp, rename over), old one removed.
    mkdirSync(join(dir, '..2026_11_24_b'));
    writeFileSync(join(dir, '..2026_11_24_b', 'policies.yaml'), policyWith('after'));
    symlinkSync('..2026_11_24_b', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..2026_11_24_a'), { recursive: true });

    const line = await logged(gw, (l) => l.msg === 'policy reloaded');
    expect(line).toMatchObject({ source: 'watch', changed: { models: { added: ['after'], removed: ['before'] } } });
    expect((await c.models.list()).data.map((m) => m.id)).toEqual(['after']);
    expect((await ask(c, 'after')).choices[0]!.message.content).toBeTruthy();
  });
});

describe('state carries over a reload', () => {
  const slowBackend = '  slowsim: { type: simulator, ttft_ms: 1, tpot_ms: 100, output_tokens: 15 }';
  const policy = (extra = '', backends = slowBackend) => `admin_token: ${ADMIN_TOKEN}
backends:
  sim: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 4 }
${backends}
models:
  m1:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 1000, output_per_mtok: 1000 }
  guarded: { deployments: [{ backend: sim }] }
${extra}
keys:
  - { key: k-lim, name: limited, limits: { rpm: 5 }, budget: { usd: 100, period: day } }
`;
  const slowModel = '  slow: { deployments: [{ backend: slowsim }], pricing: { input_per_mtok: 1000, output_per_mtok: 1000 } }';
  let gw: GatewayProcess;
  let file: string;

  beforeAll(async () => {
    file = join(tempDir(), 'policies.yaml');
    writeFileSync(file, policy(slowModel));
    gw = await start(file);
  });

  it('rate-limit counters and spend (memory store) and breaker state', async () => {
    const c = openaiClient(gw, 'k-lim');
    const r1 = await c.chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
    expect(r1.response.headers.get('x-ratelimit-remaining-requests')).toBe('4');
    await ask(c, 'm1');
    const spent = (await budgetOf(gw.url, 'key', 'limited')).spend_usd;
    expect(spent).toBeGreaterThan(0);
    const forced = await admin(gw.url, 'circuits/guarded/sim', { state: 'open' });
    expect(forced.status).toBe(200);

    // An unrelated change: a model added.
    const r = await admin<{ ok: boolean; changed: { models: { added: string[] } } }>(gw.url, 'reload', {});
    expect(r.status).toBe(200); // the file is unchanged: admin re-applies it anyway
    atomicWrite(file, policy(`${slowModel}\n  extra: { deployments: [{ backend: sim }] }`));
    const r2 = await admin<{ ok: boolean; changed: { models: { added: string[] } } }>(gw.url, 'reload', {});
    expect(r2.status).toBe(200);

    const r3 = await c.chat.completions.create({ model: 'm1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
    expect(r3.response.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    const limits = await admin<{ scopes: Array<{ name: string; rpm: { used: number } }> }>(gw.url, 'limits');
    expect(limits.body.scopes.find((s) => s.name === 'limited')!.rpm.used).toBe(3);
    expect((await budgetOf(gw.url, 'key', 'limited')).spend_usd).toBeGreaterThan(spent);

    const circuits = await admin<{ circuits: Array<{ model: string; backend: string; state: string; forced: boolean }> }>(
      gw.url,
      'circuits',
    );
    expect(circuits.body.circuits.find((x) => x.model === 'guarded')).toMatchObject({ state: 'open', forced: true });
    await expect(ask(c, 'guarded')).rejects.toBeInstanceOf(OpenAI.InternalServerError); // 503: still open
    await admin(gw.url, 'circuits/guarded/sim', { state: 'closed' });
  });

  it('a request in flight finishes under the policy it started with, even when the reload removes its model and backend', async () => {
    // The key's 5th request this minute (rpm 5): the counters carried over, so no more after it.
    const c = openaiClient(gw, 'k-lim');
    const stream = await c.chat.completions.create({
      model: 'slow',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 15,
      stream: true,
    });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    const before = await budgetOf(gw.url, 'key', 'limited');
    expect(before.reserved_usd).toBeGreaterThan(0);

    atomicWrite(file, policy('  extra: { deployments: [{ backend: sim }] }', '')); // no `slow`, no `slowsim`
    const r = await admin<{ ok: boolean }>(gw.url, 'reload', {});
    expect(r.status).toBe(200);
    // The watcher (200 ms debounce) may apply the file before the admin call does: then the
    // admin reload finds nothing left to change. Either way, one reload removed them.
    const applied = await logged(gw, (l) => {
      const removed = (l.changed as { models?: { removed?: string[] } } | undefined)?.models?.removed;
      return l.msg === 'policy reloaded' && removed?.includes('slow') === true;
    });
    expect(applied.changed).toMatchObject({ models: { removed: ['slow'] }, backends: { removed: ['slowsim'] } });
    // The new policy's admission sees what the request holds (shared state).
    expect(await budgetOf(gw.url, 'key', 'limited')).toMatchObject({ reserved_usd: before.reserved_usd, spend_usd: before.spend_usd });

    let chunks = 1;
    let text = '';
    for (let n = await it.next(); !n.done; n = await it.next()) {
      chunks++;
      text += n.value.choices[0]?.delta?.content ?? '';
    }
    expect(chunks).toBeGreaterThan(10);
    expect(text.length).toBeGreaterThan(0);
    // Settled through the old admission into the shared state: nothing stays reserved.
    await eventually(async () => {
      const after = await budgetOf(gw.url, 'key', 'limited');
      expect(after.reserved_usd).toBe(0);
      expect(after.spend_usd).toBeGreaterThan(before.spend_usd);
    });
    expect(await logged(gw, (l) => l.model === 'slow' && typeof l.status === 'number')).toMatchObject({ status: 200, stream: true });
    await expect(ask(c, 'slow')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('redis store', () => {
  const prefix = `llmgw-reload-test-${process.pid}-${Date.now()}:`;
  afterAll(() => flushPrefix(REDIS_URL, prefix));

  it('a reload keeps limits shared', async () => {
    const file = join(tempDir(), 'policies.yaml');
    const policy = (extra = '') => `admin_token: ${ADMIN_TOKEN}
state: { store: redis, redis_url: "${REDIS_URL}", redis_prefix: "${prefix}" }
backends:
  sim: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 4 }
models:
  m1: { deployments: [{ backend: sim }], pricing: { input_per_mtok: 1000, output_per_mtok: 1000 } }
${extra}
keys:
  - { key: k-r, name: shared, limits: { rpm: 5 }, budget: { usd: 100, period: day } }
`;
    writeFileSync(file, policy());
    const gw = await start(file);
    const c = openaiClient(gw, 'k-r');
    await ask(c, 'm1');
    await ask(c, 'm1');
    const spent = (await budgetOf(gw.url, 'key', 'shared')).spend_usd;
    expect(spent).toBeGreaterThan(0);

    atomicWrite(file, policy('  m2: { deployments: [{ backend: sim }] }'));
    const r = await admin<{ ok: boolean }>(gw.url, 'reload', {});
    expect(r.status).toBe(200);
    const r3 = await c.chat.completions.create({ model: 'm2', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
    expect(r3.response.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    const limits = await admin<{ store: string; scopes: Array<{ name: string; rpm: { used: number } }> }>(gw.url, 'limits');
    expect(limits.body.store).toBe('redis');
    expect(limits.body.scopes.find((s) => s.name === 'shared')!.rpm.used).toBe(3);
    expect((await budgetOf(gw.url, 'key', 'shared')).spend_usd).toBeGreaterThanOrEqual(spent);
    // The old engine's connection closes once its tickets are in: no error logged on the way.
    await gw.stop('SIGTERM');
    expect(gw.child.exitCode).toBe(0);
    expect(gw.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
  });
});
