// Admission internals on a fake clock: UTC period boundaries, the sliding window of 1 s
// buckets (no 60-second window ever holds more than the limit, retry-after is never early and
// at most 1 s later than an exact log's, memory does not grow with requests), token settle,
// budget reserve/commit/free and alerts once per period.
import { describe, expect, it } from 'vitest';
import { periodAt } from '../../src/admission/periods.js';
import { ScopeTable, toNano, type Scope } from '../../src/admission/scopes.js';
import { MemoryStore } from '../../src/admission/memory.js';
import type { Reservation } from '../../src/admission/store.js';
import { createAdmission } from '../../src/admission/index.js';
import { parsePolicies } from '../../src/config/load.js';
import type { Identity } from '../../src/auth/index.js';
import type { Route } from '../../src/policy/index.js';
import { mulberry32 } from '../helpers/random.js';

const iso = (ms: number) => new Date(ms).toISOString();

describe('budget periods (UTC)', () => {
  it('day starts at UTC midnight', () => {
    const w = periodAt('day', Date.parse('2025-03-09T23:59:59.999Z'));
    expect([w.id, iso(w.start), iso(w.end)]).toEqual(['day:2025-03-09', '2025-03-09T00:00:00.000Z', '2025-03-10T00:00:00.000Z']);
  });
  it('week is the ISO week, Monday 00:00 UTC', () => {
    const sunday = periodAt('week', Date.parse('2025-03-09T23:59:59.999Z')); // a Sunday
    expect([sunday.id, iso(sunday.start), iso(sunday.end)]).toEqual([
      'week:2025-03-03',
      '2025-03-03T00:00:00.000Z',
      '2025-03-10T00:00:00.000Z',
    ]);
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

function table(
  keys: Array<{
    name: string;
    limits?: { rpm?: number; tpm?: number; concurrency?: number };
    budget?: { usd: number; period: 'day' | 'week' | 'month' | 'total' };
  }>,
) {
  return new ScopeTable({ keys: keys as never, users: {}, teams: {}, models: {}, global: undefined });
}

function harness(scopes: Scope[], thresholds: number[] = []) {
  const clock = { mono: 0, wall: Date.parse('2025-03-09T12:00:00Z') };
  const alerts: Array<[string, number, readonly number[]]> = [];
  const store = new MemoryStore(
    scopes,
    thresholds,
    (s, spent, fired) => alerts.push([s.name, spent, fired]),
    () => clock.mono,
    () => clock.wall,
  );
  let n = 0;
  const res = (tokens = 1, usd = 0): Reservation => ({ id: String(++n), scopes, tokens, nano: toNano(usd) });
  return { clock, store, alerts, res };
}

describe('memory store: sliding window of 1 s buckets', () => {
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

  it('retry-after is when the window admits again: bucket granularity, never early, at most 1 s later than an exact log', () => {
    const t = table([{ name: 'k', limits: { rpm: 2 } }]);
    const { clock, store, res } = harness(t.all);
    clock.mono = 1_000;
    expect(store.admit(res()).ok).toBe(true);
    clock.mono = 5_000;
    expect(store.admit(res()).ok).toBe(true);
    clock.mono = 20_000;
    const v = store.admit(res());
    // An exact log admits again at 61 s (the request of 1 s leaves); its 1 s bucket (1.000–1.999 s)
    // counts whole until 62 s.
    expect(v).toMatchObject({ ok: false, limit: 'rpm', refusedAt: 0, retryAfterMs: 42_000, reqLimit: 2 });
    clock.mono = 20_000 + 42_000 - 1;
    expect(store.admit(res()).ok).toBe(false);
    clock.mono = 20_000 + 42_000;
    expect(store.admit(res()).ok).toBe(true);
  });

  it('tpm reserves the estimate and settles to the real count; retry-after accounts for the tokens needed', () => {
    const t = table([{ name: 'k', limits: { tpm: 1000 } }]);
    const { clock, store, res } = harness(t.all);
    const a = res(600);
    expect(store.admit(a)).toMatchObject({ ok: true, tokLimit: 1000, tokRemaining: 400 });
    clock.mono = 10_000;
    // Exact: 50 s (the entry of 0 s leaves at 60 s); its bucket counts until 61 s.
    expect(store.admit(res(600))).toMatchObject({ ok: false, limit: 'tpm', retryAfterMs: 51_000 });
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

/** Bytes of typed arrays, array slots and object fields reachable from `root`: what a store holds. */
function footprint(root: unknown): number {
  const seen = new Set<unknown>();
  let bytes = 0;
  const walk = (x: unknown): void => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (ArrayBuffer.isView(x)) {
      bytes += x.byteLength;
      return;
    }
    if (x instanceof Map || x instanceof Set) {
      for (const e of x) walk(e);
      bytes += 16 * x.size;
      return;
    }
    const keys = Object.keys(x);
    bytes += 8 * keys.length;
    for (const k of keys) walk((x as Record<string, unknown>)[k]);
  };
  walk(root);
  return bytes;
}

interface Entry {
  at: number;
  tokens: number;
}

/** What an exact log would say: ms from `now` until `need` more fits under `limit`, oldest entries leaving first. */
function exactRetry(entries: readonly Entry[], now: number, need: number, limit: number, count: boolean): number {
  const inside = entries.filter((e) => e.at > now - 60_000);
  let sum = inside.reduce((a, e) => a + (count ? 1 : e.tokens), 0);
  if (sum + need <= limit) return 0; // an exact log would admit it now
  for (const e of inside) {
    sum -= count ? 1 : e.tokens;
    if (sum + need <= limit) return e.at + 60_000 - now;
  }
  return 0;
}

/** The most any 60 s window (t-60 s, t] holds, over windows ending at an entry (where the maximum is). */
function maxInAnyWindow(entries: readonly Entry[], count: boolean): number {
  let max = 0;
  let sum = 0;
  let lo = 0;
  for (let hi = 0; hi < entries.length; hi++) {
    sum += count ? 1 : entries[hi]!.tokens;
    for (; entries[lo]!.at <= entries[hi]!.at - 60_000; lo++) sum -= count ? 1 : entries[lo]!.tokens;
    max = Math.max(max, sum);
  }
  return max;
}

describe('memory store: 1 s buckets, randomized and at scale', () => {
  it('over 2 random hours never admits more than the limit in any 60 s window; retry-after is never early and at most 1 s late', () => {
    const t = table([
      { name: 'a', limits: { rpm: 40, tpm: 6_000 } },
      { name: 'b', limits: { rpm: 55, tpm: 4_500 } },
    ]);
    const { clock, store, res } = harness(t.all);
    const rand = mulberry32(42);
    const log: Entry[] = []; // every admitted request, with its current token count (real once settled)
    const open: Array<{ r: Reservation; e: Entry }> = [];
    let refusals = 0;
    let probes = 0;
    while (clock.mono < 120 * 60_000) {
      // Mostly bursts (gaps of a few ms), sometimes quiet spells of up to 20 s; fractional ms too.
      clock.mono += rand() < 0.97 ? rand() * 400 : rand() * 20_000;
      const r = res(1 + Math.floor(rand() * 500));
      const v = store.admit(r);
      if (v.ok) {
        const e = { at: clock.mono, tokens: r.tokens };
        log.push(e);
        open.push({ r, e });
      } else {
        refusals++;
        expect(['rpm', 'tpm']).toContain(v.limit);
        const scope = t.all[v.refusedAt]!;
        const exact =
          v.limit === 'rpm' ? exactRetry(log, clock.mono, 1, scope.rpm, true) : exactRetry(log, clock.mono, r.tokens, scope.tpm, false);
        expect(v.retryAfterMs).toBeGreaterThanOrEqual(exact - 1e-6);
        expect(v.retryAfterMs).toBeLessThanOrEqual(exact + 1_000 + 1e-6);
        if (rand() < 0.2) {
          // Never early: the same request is still refused just before, and that scope admits it at the time said.
          probes++;
          const at = clock.mono + v.retryAfterMs;
          clock.mono = at - Math.min(0.5, v.retryAfterMs / 2);
          expect(store.admit(r)).toMatchObject({ ok: false, refusedAt: v.refusedAt, limit: v.limit });
          clock.mono = at;
          const w = store.admit(r);
          if (!w.ok)
            expect([w.refusedAt, w.limit]).not.toEqual([v.refusedAt, v.limit]); // another scope or limit may still say no
          else {
            const e = { at, tokens: r.tokens };
            log.push(e);
            open.push({ r, e });
          }
        }
      }
      // Settle some requests in flight, some long after their bucket left the window: real <= estimate.
      while (open.length > 0 && rand() < 0.6) {
        const { r: done, e } = open.splice(Math.floor(rand() * open.length), 1)[0]!;
        const real = Math.floor(done.tokens * rand());
        store.settle(done, { tokens: real, costNano: 0 });
        e.tokens = real;
      }
    }
    expect(log.length).toBeGreaterThan(3_000);
    expect(refusals).toBeGreaterThan(1_500);
    expect(probes).toBeGreaterThan(300);
    // Every request goes through both scopes: the tighter limits bind (rpm 40 of a, tpm 4,500 of b),
    // counted with each request's real tokens once settled (never more than its estimate).
    expect(maxInAnyWindow(log, true)).toBe(40); // reached, never passed
    expect(maxInAnyWindow(log, false)).toBeLessThanOrEqual(4_500);
  });

  it('memory does not grow with requests or with the limit: constant state after 100,000 admits at rpm 1e9', () => {
    const t = table([
      { name: 'huge', limits: { rpm: 1_000_000_000, tpm: 1_000_000_000_000, concurrency: 1_000_000 } },
      { name: 'big', limits: { rpm: 10_000_000, tpm: 1_000_000_000_000 }, budget: { usd: 1_000_000, period: 'month' } },
    ]);
    const { clock, store, res } = harness(t.all);
    const first = res(100, 0.001);
    expect(store.admit(first).ok).toBe(true);
    store.settle(first, { tokens: 50, costNano: toNano(0.0005) });
    const before = footprint(store);
    expect(before).toBeLessThan(4_096); // two rate windows per scope of 61 × 8 bytes, and a few fields
    const open: Reservation[] = [];
    for (let i = 0; i < 100_000; i++) {
      clock.mono += 0.5; // 2,000 req/s: 50 s of traffic, all of it inside one window
      const r = res(100, 0.001);
      expect(store.admit(r).ok).toBe(true);
      open.push(r);
      if (open.length > 100) store.settle(open.shift()!, { tokens: 50, costNano: toNano(0.0005) });
    }
    expect(footprint(store)).toBe(before);
    expect(store.usage()[0]).toMatchObject({ rpmUsed: 100_001, inUse: 100 });
  });

  it('a settle adjusts the bucket its tokens went into', () => {
    const t = table([{ name: 'k', limits: { tpm: 10_000 } }]);
    const { clock, store, res } = harness(t.all);
    clock.mono = 500;
    const a = res(100); // bucket 0 s
    store.admit(a);
    clock.mono = 1_500;
    const b = res(100); // bucket 1 s
    store.admit(b);
    clock.mono = 2_000;
    store.settle(a, { tokens: 10, costNano: 0 });
    expect(store.usage()[0]!.tpmUsed).toBe(110);
    clock.mono = 61_000; // bucket 0 s has left: only b's 100 remain, so a's 10 were in bucket 0
    expect(store.usage()[0]!.tpmUsed).toBe(100);
    store.settle(b, { tokens: 30, costNano: 0 });
    expect(store.usage()[0]!.tpmUsed).toBe(30);
    clock.mono = 62_000;
    expect(store.usage()[0]!.tpmUsed).toBe(0);
  });

  it('a reservation whose bucket has left the window changes nothing at settle (even where the ring reuses its slot)', () => {
    const t = table([{ name: 'k', limits: { tpm: 10_000 } }]);
    const { clock, store, res } = harness(t.all);
    const old = res(100);
    store.admit(old); // bucket 0 s
    clock.mono = 61_000;
    const now = res(200); // bucket 61 s: the slot bucket 0 s had
    store.admit(now);
    store.settle(old, { tokens: 7_000, costNano: 0 });
    expect(store.usage()[0]!.tpmUsed).toBe(200);
    // Left the window with the ring not moved since (no request in between): ignored all the same.
    clock.mono = 200_000;
    store.settle(now, { tokens: 5_000, costNano: 0 });
    expect(store.usage()[0]!.tpmUsed).toBe(0);
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
  const anon: Identity = { key: 'anonymous', teamLabel: 'none' };

  it('without limits or budgets admits synchronously with one shared ticket (no store, no allocation)', async () => {
    const a = createAdmission(parsePolicies(yaml(''), 't.yaml'));
    const req = { identity: anon, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0 };
    const t1 = a.admit(req);
    expect(t1).not.toBeInstanceOf(Promise);
    expect(a.admit(req)).toBe(t1);
    expect((await t1).headers).toEqual({});
    expect(a.ready()).toBe(true);
    await a.close();
  });

  it('checks key → user → team → model → global, and names the first scope that refuses', async () => {
    const p = parsePolicies(
      yaml(
        `
keys: [{ key: x, name: app, user: u1, team: t1, limits: { rpm: 5 } }]
users: { u1: { limits: { rpm: 4 } } }
teams: { t1: { limits: { rpm: 3 } } }
global: { limits: { rpm: 1 } }`,
        '{ deployments: [{ backend: sim }], limits: { rpm: 2 } }',
      ),
      't.yaml',
    );
    const t = new ScopeTable(p);
    const identity: Identity = { key: 'app', user: 'u1', team: 't1', config: p.keys[0], teamLabel: 't1' };
    expect(t.resolve(identity, route)!.map((s) => s.id)).toEqual(['key:app', 'user:u1', 'team:t1', 'model:m', 'global:global']);
    const a = createAdmission(p);
    const req = { identity, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0 };
    // The memory store decides synchronously: a ticket, or a thrown refusal.
    const ticket = a.admit(req);
    expect(ticket).not.toBeInstanceOf(Promise);
    expect((await ticket).headers['x-ratelimit-limit-requests']).toBe('1');
    expect((await ticket).headers['x-ratelimit-remaining-requests']).toBe('0');
    let err: unknown;
    try {
      a.admit(req);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect((err as Error).message).toContain("global 'global'");
    await a.close();
  });
});
