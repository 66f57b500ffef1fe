// Admission internals on a fake clock: UTC period boundaries, the sliding window log (no
// 60-second window ever holds more than the limit, and retry-after says exactly when the
// window admits again), token settle, budget reserve/commit/free and alerts once per period.
import { describe, expect, it } from 'vitest';
import { periodAt } from '../../src/admission/periods.js';
import { ScopeTable, toNano, type Scope } from '../../src/admission/scopes.js';
import { MemoryStore } from '../../src/admission/memory.js';
import type { Reservation } from '../../src/admission/store.js';
import { createAdmission } from '../../src/admission/index.js';
import { parsePolicies } from '../../src/config/load.js';
import type { Identity } from '../../src/auth/index.js';
import type { Route } from '../../src/policy/index.js';

const iso = (ms: number) => new Date(ms).toISOString();

describe('budget periods (UTC)', () => {
  it('day starts at UTC midnight', () => {
    const w = periodAt('day', Date.parse('2025-03-09T23:59:59.999Z'));
    expect([w.id, iso(w.start), iso(w.end)]).toEqual(['day:2025-03-09', '2025-03-09T00:00:00.000Z', '2025-03-10T00:00:00.000Z']);
  });
  it('week is the ISO week, Monday 00:00 UTC', () => {
    const sunday = periodAt('week', Date.parse('2025-03-09T23:59:59.999Z')); // a Sunday
    expect([sunday.id, iso(sunday.start), iso(sunday.end)]).toEqual(['week:2025-03-03', '2025-03-03T00:00:00.000Z', '2025-03-10T00:00:00.000Z']);
    expect(periodAt('week', Date.parse('2025-03-10T00:00:00.000Z')).id).toBe('week:2025-03-10');
    expect(periodAt('week', Date.parse('2025-01-01T12:00:00Z')).id).toBe('week:2024-12-30'); // across a year
  });
  it('month starts on the 1st UTC, including across a year', () => {
    const dec = periodAt('month', Date.parse('2024-12-31T23:59:59.999Z'));
    expect([dec.id, iso(dec.start), iso(dec.end)]).toEqual(['month:2024-12', '2024-12-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z']);
    expect(periodAt('month', Date.parse('2024-02-29T10:00:00Z')).end).toBe(Date.parse('2024-03-01T00:00:00Z'));
  });
  it('total never resets', () => {
    expect(periodAt('total', Date.now())).toEqual({ id: 'total', start: 0, end: Infinity });
  });
});

function table(keys: Array<{ name: string; limits?: { rpm?: number; tpm?: number; concurrency?: number }; budget?: { usd: number; period: 'day' | 'week' | 'month' | 'total' } }>) {
  return new ScopeTable({ keys: keys as never, users: {}, teams: {}, models: {}, global: undefined });
}

function harness(scopes: Scope[], thresholds: number[] = []) {
  const clock = { mono: 0, wall: Date.parse('2025-03-09T12:00:00Z') };
  const alerts: Array<[string, number, readonly number[]]> = [];
  const store = new MemoryStore(scopes, thresholds, (s, spent, fired) => alerts.push([s.name, spent, fired]), () => clock.mono, () => clock.wall);
  let n = 0;
  const res = (tokens = 1, usd = 0): Reservation => ({ id: String(++n), scopes, tokens, nano: toNano(usd) });
  return { clock, store, alerts, res };
}

describe('memory store: sliding window log', () => {
  it('never admits more than rpm in any 60 s window, where a fixed window would admit twice the limit', () => {
    const t = table([{ name: 'k', limits: { rpm: 10 } }]);
    const { clock, store, res } = harness(t.all);
    const admitted: number[] = [];
    // Requests every 100 ms for 3 minutes: a fixed window would admit 10 at 0:59.9 and 10 more at 1:00.0.
    for (let ms = 0; ms < 180_000; ms += 100) {
      clock.mono = ms;
      if (store.admit(res()).ok) admitted.push(ms);
    }
    for (let i = 0; i + 10 < admitted.length; i++) expect(admitted[i + 10]! - admitted[i]!).toBeGreaterThanOrEqual(60_000);
    expect(admitted.length).toBe(30);
  });

  it('retry-after is exactly when the window admits again', () => {
    const t = table([{ name: 'k', limits: { rpm: 2 } }]);
    const { clock, store, res } = harness(t.all);
    clock.mono = 1_000;
    expect(store.admit(res()).ok).toBe(true);
    clock.mono = 5_000;
    expect(store.admit(res()).ok).toBe(true);
    clock.mono = 20_000;
    const v = store.admit(res());
    expect(v).toMatchObject({ ok: false, limit: 'rpm', refusedAt: 0, retryAfterMs: 41_000, reqLimit: 2 });
    clock.mono = 20_000 + 41_000 - 1;
    expect(store.admit(res()).ok).toBe(false);
    clock.mono = 20_000 + 41_000;
    expect(store.admit(res()).ok).toBe(true);
  });

  it('tpm reserves the estimate and settles to the real count; retry-after accounts for the tokens needed', () => {
    const t = table([{ name: 'k', limits: { tpm: 1000 } }]);
    const { clock, store, res } = harness(t.all);
    const a = res(600);
    expect(store.admit(a)).toMatchObject({ ok: true, tokLimit: 1000, tokRemaining: 400 });
    clock.mono = 10_000;
    expect(store.admit(res(600))).toMatchObject({ ok: false, limit: 'tpm', retryAfterMs: 50_000 });
    store.settle(a, { tokens: 100, costNano: 0 }); // it used far less than reserved
    expect(store.admit(res(600))).toMatchObject({ ok: true, tokRemaining: 300 });
    expect(store.admit(res(2000))).toMatchObject({ ok: false, limit: 'tpm', retryAfterMs: -1 }); // can never fit
  });

  it('concurrency is held from admit to settle', () => {
    const t = table([{ name: 'k', limits: { concurrency: 1 } }]);
    const { store, res } = harness(t.all);
    const a = res();
    expect(store.admit(a).ok).toBe(true);
    expect(store.admit(res())).toMatchObject({ ok: false, limit: 'concurrency' });
    store.settle(a, { tokens: 0, costNano: 0 });
    expect(store.admit(res()).ok).toBe(true);
  });

  it('a refusal by a later scope reserves nothing in the earlier ones', () => {
    const t = table([
      { name: 'a', limits: { concurrency: 5, tpm: 100 }, budget: { usd: 1, period: 'day' } },
      { name: 'b', limits: { rpm: 1 } },
    ]);
    const { store, res } = harness(t.all);
    expect(store.admit(res(10, 0.1)).ok).toBe(true);
    expect(store.admit(res(10, 0.1))).toMatchObject({ ok: false, refusedAt: 1, limit: 'rpm' });
    const a = store.usage()[0]!;
    expect(a).toMatchObject({ inUse: 1, tpmUsed: 10, reservedNano: toNano(0.1) });
  });
});

describe('memory store: budgets', () => {
  it('checks spend + in-flight reservations, commits the real cost, frees the rest, fires each threshold once per period', () => {
    const t = table([{ name: 'k', budget: { usd: 1, period: 'day' } }]);
    const { clock, store, alerts, res } = harness(t.all, [0.5, 1]);
    const a = res(1, 0.6);
    expect(store.admit(a).ok).toBe(true);
    expect(store.admit(res(1, 0.6))).toMatchObject({ ok: false, limit: 'budget', spentNano: 0, reservedNano: toNano(0.6) });
    store.settle(a, { tokens: 1, costNano: toNano(0.55) });
    expect(alerts).toEqual([['k', toNano(0.55), [0.5]]]);
    const b = res(1, 0.45);
    expect(store.admit(b).ok).toBe(true);
    store.settle(b, { tokens: 1, costNano: toNano(0.45) });
    expect(alerts.at(-1)).toEqual(['k', toNano(1), [1]]);
    expect(store.admit(res(1, 0.01))).toMatchObject({ ok: false, limit: 'budget' });
    expect(store.admit(res(1, 0)).ok).toBe(true); // a free request still fits
    // Next UTC day: spend and alerts start over.
    clock.wall = Date.parse('2025-03-10T00:00:00Z');
    const c = res(1, 0.6);
    expect(store.admit(c).ok).toBe(true);
    store.settle(c, { tokens: 1, costNano: toNano(0.6) });
    expect(alerts.at(-1)).toEqual(['k', toNano(0.6), [0.5]]);
  });

  it('keeps money exact: 100 × $0.01 is $1.00', () => {
    const t = table([{ name: 'k', budget: { usd: 1, period: 'total' } }]);
    const { store, res } = harness(t.all);
    let admitted = 0;
    for (let i = 0; i < 150; i++) {
      const r = res(1, 0.01);
      if (!store.admit(r).ok) continue;
      admitted++;
      store.settle(r, { tokens: 1, costNano: toNano(0.01) });
    }
    expect(admitted).toBe(100);
    expect(store.usage()[0]!.spentNano).toBe(1e9);
  });
});

describe('createAdmission', () => {
  const yaml = (extra: string, model = '{ deployments: [{ backend: sim }] }') => `
backends: { sim: { type: simulator } }
models: { m: ${model} }
${extra}`;
  const route = { name: 'm' } as Route;
  const anon: Identity = { key: 'anonymous' };

  it('without limits or budgets admits with one shared, already-resolved promise (no store, no allocation)', async () => {
    const a = createAdmission(parsePolicies(yaml(''), 't.yaml'));
    const req = { identity: anon, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0 };
    const p1 = a.admit(req);
    expect(a.admit(req)).toBe(p1);
    expect((await p1).headers).toEqual({});
    expect(a.ready()).toBe(true);
    await a.close();
  });

  it('checks key → user → team → model → global, and names the first scope that refuses', async () => {
    const p = parsePolicies(
      yaml(`
keys: [{ key: x, name: app, user: u1, team: t1, limits: { rpm: 5 } }]
users: { u1: { limits: { rpm: 4 } } }
teams: { t1: { limits: { rpm: 3 } } }
global: { limits: { rpm: 1 } }`,
        '{ deployments: [{ backend: sim }], limits: { rpm: 2 } }',
      ),
      't.yaml',
    );
    const t = new ScopeTable(p);
    const identity: Identity = { key: 'app', user: 'u1', team: 't1', config: p.keys[0] };
    expect(t.resolve(identity, route)!.map((s) => s.id)).toEqual(['key:app', 'user:u1', 'team:t1', 'model:m', 'global:global']);
    const a = createAdmission(p);
    const req = { identity, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0 };
    const ticket = await a.admit(req);
    expect(ticket.headers['x-ratelimit-limit-requests']).toBe('1');
    expect(ticket.headers['x-ratelimit-remaining-requests']).toBe('0');
    const err = await a.admit(req).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect((err as Error).message).toContain("global 'global'");
    await a.close();
  });
});
