// Admission across a policy reload: the new memory store adopts the old one's per-scope
// state (shared objects, rebuilt only where the policy changed), requests admitted before
// the reload settle through the old store into that same state, and the old engine retires
// once its tickets are in.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import { MemoryStore } from '../../src/admission/memory.js';
import type { Reservation } from '../../src/admission/store.js';
import { createAdmission } from '../../src/admission/index.js';
import { parsePolicies } from '../../src/config/load.js';
import type { Identity } from '../../src/auth/index.js';
import type { Route } from '../../src/policy/index.js';

type KeySpec = {
  name: string;
  limits?: { rpm?: number; tpm?: number; concurrency?: number };
  budget?: { usd: number; period: 'day' | 'week' | 'month' | 'total' };
};

function table(keys: KeySpec[]) {
  return new ScopeTable({ keys: keys as never, users: {}, teams: {}, models: {}, global: undefined });
}

function stores(before: KeySpec[], after: KeySpec[], thresholds: [number[], number[]] = [[], []]) {
  const clock = { mono: 0, wall: Date.parse('2025-03-09T12:00:00Z') };
  const alerts: string[] = [];
  const t1 = table(before);
  const t2 = table(after);
  const mk = (t: ScopeTable, th: number[], tag: string) =>
    new MemoryStore(
      t.all,
      th,
      (s, _spent, fired) => fired.forEach((f) => alerts.push(`${tag}:${s.name}:${f}`)),
      () => clock.mono,
      () => clock.wall,
    );
  const old = mk(t1, thresholds[0], 'old');
  const next = mk(t2, thresholds[1], 'new');
  let n = 0;
  const res = (t: ScopeTable, tokens = 1, usd = 0): Reservation => ({ id: String(++n), scopes: t.all, tokens, nano: toNano(usd) });
  return { clock, alerts, t1, t2, old, next, res };
}

describe('memory store: adopt()', () => {
  it('rate windows, concurrency and spend continue for a scope that still exists', () => {
    const spec: KeySpec[] = [{ name: 'k', limits: { rpm: 5, tpm: 1000, concurrency: 3 }, budget: { usd: 1, period: 'day' } }];
    const { t1, old, next, res } = stores(spec, spec);
    const held = res(t1, 100, 0.2);
    expect(old.admit(held).ok).toBe(true);
    const done = res(t1, 100, 0.2);
    expect(old.admit(done).ok).toBe(true);
    old.settle(done, { tokens: 50, costNano: toNano(0.1) });
    expect([...next.adopt(old)]).toEqual(['key:k']);
    const u = next.usage()[0]!;
    expect(u).toMatchObject({ rpmUsed: 2, tpmUsed: 150, inUse: 1, spentNano: toNano(0.1), reservedNano: toNano(0.2) });
    // The request admitted before the reload settles through the old store: same state.
    old.settle(held, { tokens: 10, costNano: toNano(0.05) });
    expect(next.usage()[0]).toMatchObject({ rpmUsed: 2, tpmUsed: 60, inUse: 0, spentNano: toNano(0.15), reservedNano: 0 });
    expect(next.dirty).toBe(true);
  });

  it('rebuilds only what changed: a new rpm keeps the window, added limits start empty, removed ones go', () => {
    const { clock, t1, t2, old, next, res } = stores(
      [{ name: 'k', limits: { rpm: 10 }, budget: { usd: 1, period: 'day' } }],
      [{ name: 'k', limits: { rpm: 3, tpm: 100, concurrency: 1 } }],
    );
    for (let i = 0; i < 4; i++) {
      clock.mono = i * 1000;
      const r = res(t1);
      expect(old.admit(r).ok).toBe(true);
      old.settle(r, { tokens: 1, costNano: 0 });
    }
    const inflight = res(t1, 1, 0.1);
    expect(old.admit(inflight).ok).toBe(true); // 5 in the window, one still running
    next.adopt(old);
    // rpm 3 with 5 in the window: full until enough of the oldest leave (buckets 0, 1 and 2 s:
    // at 63 s only the two requests of 3 s still count).
    const v = next.admit(res(t2, 10));
    expect(v).toMatchObject({ ok: false, limit: 'rpm', reqLimit: 3, retryAfterMs: 63_000 - 3_000 });
    expect(next.usage()[0]).toMatchObject({ rpmUsed: 5, tpmUsed: 0, inUse: 1, spentNano: -1 });
    // The old request settles: no tpm entry of its own in the new log, its concurrency slot freed.
    old.settle(inflight, { tokens: 50, costNano: toNano(0.1) });
    expect(next.usage()[0]).toMatchObject({ tpmUsed: 0, inUse: 0 });
    clock.mono = 63_000 - 1;
    expect(next.admit(res(t2, 10))).toMatchObject({ ok: false, limit: 'rpm' });
    clock.mono = 63_000; // the buckets of 0..2 s have left
    expect(next.admit(res(t2, 10))).toMatchObject({ ok: true, reqRemaining: 0 });
  });

  it('a budget whose period changed starts a fresh spend but keeps what requests in flight reserved', () => {
    const { t1, t2, old, next, res } = stores(
      [{ name: 'k', budget: { usd: 1, period: 'day' } }],
      [{ name: 'k', budget: { usd: 1, period: 'month' } }],
    );
    const a = res(t1, 1, 0.3);
    expect(old.admit(a).ok).toBe(true);
    const b = res(t1, 1, 0.3);
    old.admit(b);
    old.settle(b, { tokens: 1, costNano: toNano(0.2) });
    next.adopt(old);
    expect(next.usage()[0]).toMatchObject({ spentNano: 0, reservedNano: toNano(0.3) });
    expect(next.admit(res(t2, 1, 0.8))).toMatchObject({ ok: false, limit: 'budget' });
    old.settle(a, { tokens: 1, costNano: toNano(0.1) });
    expect(next.usage()[0]).toMatchObject({ spentNano: toNano(0.1), reservedNano: 0 });
    expect(next.usage()[0]!.period?.id).toMatch(/^month:/);
  });

  it("a threshold that fired stays fired when budget_alerts changes; later alerts are the new store's", () => {
    const spec: KeySpec[] = [{ name: 'k', budget: { usd: 1, period: 'day' } }];
    const { alerts, t1, old, next, res } = stores(spec, spec, [
      [0.5, 0.9],
      [0.25, 0.5, 0.75],
    ]);
    const a = res(t1, 1, 0.6);
    old.admit(a);
    old.settle(a, { tokens: 1, costNano: toNano(0.6) });
    expect(alerts).toEqual(['old:k:0.5']);
    next.adopt(old);
    // Settled through the old store after the reload: the new store's thresholds decide.
    const b = res(t1, 1, 0.2);
    old.admit(b);
    old.settle(b, { tokens: 1, costNano: toNano(0.2) });
    // 0.5 fired under the old policy and stays fired; 0.25 is new and already crossed: it fires once now.
    expect(alerts).toEqual(['old:k:0.5', 'new:k:0.25', 'new:k:0.75']);
  });

  it('a raised budget re-arms the thresholds its spend is now below', () => {
    const { alerts, t1, t2, old, next, res } = stores(
      [{ name: 'k', budget: { usd: 1, period: 'day' } }],
      [{ name: 'k', budget: { usd: 2, period: 'day' } }],
      [[0.5], [0.5]],
    );
    const a = res(t1, 1, 0.6);
    old.admit(a);
    old.settle(a, { tokens: 1, costNano: toNano(0.6) });
    next.adopt(old);
    const b = res(t2, 1, 0.5);
    next.admit(b);
    next.settle(b, { tokens: 1, costNano: toNano(0.5) });
    expect(alerts).toEqual(['old:k:0.5', 'new:k:0.5']); // $0.60 of $1, then $1.10 of $2
  });
});

describe('createAdmission(…, previous)', () => {
  const yaml = (keys: string, state = '') => `
backends: { sim: { type: simulator } }
models: { m: { deployments: [{ backend: sim }] } }
keys: [${keys}]
${state}`;
  const route = { name: 'm' } as Route;

  it('the old engine retires once its tickets have settled; counters continue in the new one', async () => {
    const p1 = parsePolicies(yaml('{ key: x, name: app, limits: { rpm: 3 } }'), 't.yaml');
    const identity: Identity = { key: 'app', config: p1.keys[0], teamLabel: 'none' };
    const req = { identity, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0 };
    const a1 = createAdmission(p1);
    const t1 = await a1.admit(req);
    await (await a1.admit(req)).settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: 0 });
    const p2 = parsePolicies(yaml('{ key: x, name: app, limits: { rpm: 3, concurrency: 5 } }'), 't.yaml');
    const a2 = createAdmission(p2, {}, a1);
    let retired = false;
    const retiring = a1.retire().then(() => (retired = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(retired).toBe(false); // t1 is still out
    const t3 = await a2.admit({ ...req, identity: { key: 'app', config: p2.keys[0], teamLabel: 'none' } });
    expect(t3.headers['x-ratelimit-remaining-requests']).toBe('0');
    t1.settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: 0 });
    await retiring;
    expect(retired).toBe(true);
    t3.settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: 0 });
    await a2.close();
  });

  it('a new policy without limits still retires the old engine; open admission retires at once', async () => {
    const p1 = parsePolicies(yaml('{ key: x, name: app, limits: { rpm: 3 } }'), 't.yaml');
    const a1 = createAdmission(p1);
    const t = await a1.admit({
      identity: { key: 'app', config: p1.keys[0], teamLabel: 'none' },
      route,
      promptTokens: 1,
      maxOutputTokens: 1,
      worstCaseUsd: 0,
    });
    const open = createAdmission(parsePolicies(yaml(''), 't.yaml'), {}, a1);
    const retiring = a1.retire();
    t.settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: 0 });
    await retiring;
    await open.retire();
    await open.close();
  });
});

describe('state file across a reload', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-statefile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes to the new engine: the old one stops without a final write, the new one writes the carried spend', async () => {
    const file = join(dir, 'state.json');
    const yaml = (limits: string) => `
state: { file: "${file}", flush_interval_ms: 60000 }
backends: { sim: { type: simulator } }
models: { m: { deployments: [{ backend: sim }] } }
keys: [{ key: x, name: app, ${limits} budget: { usd: 10, period: day } }]`;
    const route = { name: 'm' } as Route;
    const use = async (a: ReturnType<typeof createAdmission>, p: ReturnType<typeof parsePolicies>, usd: number) => {
      const t = await a.admit({
        identity: { key: 'app', config: p.keys[0], teamLabel: 'none' },
        route,
        promptTokens: 1,
        maxOutputTokens: 1,
        worstCaseUsd: 1,
      });
      t.settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: usd });
    };
    const p1 = parsePolicies(yaml(''), 't.yaml');
    const a1 = createAdmission(p1);
    await use(a1, p1, 0.3);
    const p2 = parsePolicies(yaml('limits: { rpm: 100 },'), 't.yaml');
    const a2 = createAdmission(p2, {}, a1);
    await a1.retire();
    expect(existsSync(file)).toBe(false); // the old engine wrote nothing on its way out
    await use(a2, p2, 0.2);
    await a2.close();
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { budgets: Record<string, { spent_usd: number }> };
    expect(saved.budgets['key:app']!.spent_usd).toBeCloseTo(0.5, 9);
    // A restart reads it back.
    const a3 = createAdmission(p2);
    const report = await a3.admin!.spend();
    expect(report.budgets[0]!.spend_usd).toBeCloseTo(0.5, 9);
    await a3.close();
  });
});
