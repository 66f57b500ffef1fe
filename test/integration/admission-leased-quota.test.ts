// Leased quota (state.leased_quota) against the real Redis: three stores stand for three
// gateways on one Redis, each driving a closed loop of requests as fast as it can, so that
// every scope is busy and admitted mostly against leases. Whatever the leases do, the fleet
// never admits more than a limit, and once the leases have ended it has admitted exactly what
// fits; slots and reservations all come back; a grant whose reply was lost is undone.
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Redis } from 'ioredis';
import { LEASE } from '../../src/admission/lua.js';
import { RedisStore } from '../../src/admission/redis.js';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import type { Reservation, Verdict } from '../../src/admission/store.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { flushPrefix } from './admission-support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-leased:`;
const table = new ScopeTable({
  keys: [
    { name: 'rpm', limits: { rpm: 600 } },
    { name: 'tpm', limits: { tpm: 50_000 } },
    { name: 'conc', limits: { concurrency: 10 } },
    { name: 'usd', budget: { usd: 1, period: 'day' } },
    { name: 'all', limits: { rpm: 400, tpm: 1_000_000, concurrency: 50 }, budget: { usd: 100, period: 'day' } },
    { name: 'undo', limits: { rpm: 4_000, tpm: 1_000_000, concurrency: 1_000 }, budget: { usd: 100, period: 'day' } },
    { name: 'close', limits: { rpm: 100_000, tpm: 10_000_000, concurrency: 1_000 }, budget: { usd: 100, period: 'day' } },
  ] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
type S = NonNullable<(typeof table.all)[0]>;
const [rpmScope, tpmScope, concScope, usdScope, allScope, undoScope, closeScope] = table.all as [S, S, S, S, S, S, S];
const stores: RedisStore[] = [];

function gateway(opts: { commandTimeoutMs?: number } = {}): RedisStore {
  const s = new RedisStore({
    url: REDIS_URL,
    prefix: PREFIX,
    scopes: table.all,
    thresholds: [],
    onSpend: () => undefined,
    logger: pino({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
    leasedQuota: true,
    ...opts,
  });
  stores.push(s);
  return s;
}

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await flushPrefix(REDIS_URL, PREFIX);
});

/** Waits, if need be, until the Redis clock is less than 500 ms into a second. */
async function earlyInASecond(): Promise<void> {
  const c = new Redis(REDIS_URL);
  try {
    const [, us] = await c.time();
    const ms = Number(us) / 1000;
    if (ms > 500) await new Promise((res) => setTimeout(res, 1_010 - ms));
  } finally {
    c.disconnect();
  }
}

let n = 0;
const reservation = (scope: S, tokens: number, nano: number): Reservation => ({
  id: `q${++n}`,
  scopes: [scope],
  tokens,
  nano,
  leased: undefined,
});

interface LoopResult {
  admitted: number;
  leased: number;
  /** Refusals that came with a retry-after (rate and concurrency); budget refusals say -1. */
  refused: number;
}

/**
 * One gateway's closed loop: admit, hold for `holdMs`, settle with `used`; a refusal waits a
 * millisecond. `shared.inFlight` counts admitted requests across the whole fleet.
 */
async function loop(
  store: RedisStore,
  scope: S,
  p: { tokens: number; nano: number; used: { tokens: number; costNano: number }; holdMs: number; untilMs: number; stop: () => boolean },
  shared: { inFlight: number; maxInFlight: number },
): Promise<LoopResult> {
  const out: LoopResult = { admitted: 0, leased: 0, refused: 0 };
  while (performance.now() < p.untilMs && !p.stop()) {
    const r = reservation(scope, p.tokens, p.nano);
    const answer = store.admit(r);
    const v: Verdict = answer instanceof Promise ? await answer : answer;
    if (!v.ok) {
      out.refused++;
      await new Promise((res) => setTimeout(res, 1));
      continue;
    }
    out.admitted++;
    if (r.leased) out.leased++;
    shared.maxInFlight = Math.max(shared.maxInFlight, ++shared.inFlight);
    if (p.holdMs > 0) await new Promise((res) => setTimeout(res, p.holdMs));
    else await Promise.resolve();
    shared.inFlight--;
    store.settle(r, p.used);
  }
  return out;
}

/** Three gateways' loops on one scope, together. */
async function fleet(
  gws: RedisStore[],
  scope: S,
  p: { tokens: number; nano: number; used: { tokens: number; costNano: number }; holdMs: number; forMs: number },
) {
  const shared = { inFlight: 0, maxInFlight: 0 };
  const untilMs = performance.now() + p.forMs;
  const stop = () => false;
  const results = await Promise.all(gws.map((g) => loop(g, scope, { ...p, untilMs, stop }, shared)));
  // Leases end with their Redis second; then every flush is written.
  await new Promise((res) => setTimeout(res, 1_100));
  await Promise.all(gws.map((g) => g.drain()));
  const admitted = results.reduce((a, r) => a + r.admitted, 0);
  const leased = results.reduce((a, r) => a + r.leased, 0);
  return { admitted, leased, maxInFlight: shared.maxInFlight };
}

describe('leased quota: three gateways, one Redis', () => {
  const gws = [gateway(), gateway(), gateway()];

  it('rpm 600: mostly admitted against leases, never more than 600, and exactly 600 once they end', async () => {
    // Every admit is in one 60 s window, and the loops ask far more than 600 times: the
    // fleet must admit exactly the limit, whatever the leases did.
    const r = await fleet(gws, rpmScope, { tokens: 10, nano: 0, used: { tokens: 10, costNano: 0 }, holdMs: 0, forMs: 3_500 });
    expect(r.admitted).toBe(600);
    expect(r.leased).toBeGreaterThan(300);
    const [u] = await gws[0]!.usage([rpmScope]);
    // What the leases did not use went back: Redis counts exactly what was admitted.
    expect(u!.rpmUsed).toBe(600);
  });

  it('tpm 50,000 with estimates of 100 and real counts of 80: exactly the 624 requests that fit, counted at their real size', async () => {
    // Admitted while real tokens so far + 100 <= 50,000: 80 n + 100 > 50,000 first at n = 624.
    const r = await fleet(gws, tpmScope, { tokens: 100, nano: 0, used: { tokens: 80, costNano: 0 }, holdMs: 0, forMs: 3_500 });
    expect(r.admitted).toBe(624);
    expect(r.leased).toBeGreaterThan(200);
    const [u] = await gws[0]!.usage([tpmScope]);
    expect(u!.tpmUsed).toBe(624 * 80);
  });

  it('concurrency 10: never more than 10 in flight across the fleet, and every slot back at the end', async () => {
    const r = await fleet(gws, concScope, { tokens: 10, nano: 0, used: { tokens: 10, costNano: 0 }, holdMs: 3, forMs: 2_000 });
    expect(r.maxInFlight).toBeLessThanOrEqual(10);
    expect(r.maxInFlight).toBeGreaterThan(1);
    expect(r.leased).toBeGreaterThan(0);
    const [u] = await gws[0]!.usage([concScope]);
    expect(u!.inUse).toBe(0);
  });

  it('budget $1.00, $0.003 reserved and $0.002 spent per request: never over $1.00, and nothing more fits', async () => {
    const w = toNano(0.003);
    const c = toNano(0.002);
    const r = await fleet(gws, usdScope, { tokens: 10, nano: w, used: { tokens: 10, costNano: c }, holdMs: 1, forMs: 3_500 });
    expect(r.leased).toBeGreaterThan(0);
    const [u] = await gws[0]!.usage([usdScope]);
    expect(u!.reservedNano).toBe(0);
    expect(u!.spentNano).toBe(r.admitted * c);
    expect(u!.spentNano).toBeLessThanOrEqual(toNano(1));
    expect(toNano(1) - u!.spentNano).toBeLessThan(w);
  });

  it('a scope with every limit: rpm 400 binds exactly, slots and reservations all come back, spend is what was used', async () => {
    const c = toNano(0.001);
    const r = await fleet(gws, allScope, { tokens: 100, nano: toNano(0.002), used: { tokens: 90, costNano: c }, holdMs: 1, forMs: 3_500 });
    expect(r.admitted).toBe(400);
    expect(r.maxInFlight).toBeLessThanOrEqual(50);
    const [u] = await gws[0]!.usage([allScope]);
    expect(u).toMatchObject({ rpmUsed: 400, tpmUsed: 400 * 90, inUse: 0, reservedNano: 0, spentNano: 400 * c });
  });
});

describe('leased quota: a grant whose reply was lost', () => {
  it('is undone from the lease state Redis keeps: rate counts, slots and the budget slice all come back', async () => {
    const g = gateway();
    const scope = undoScope;
    // Take the grants away from the gateway, as if LEASE's reply had been lost.
    const book = (g as unknown as { leases: { granted: (...a: unknown[]) => void } }).leases;
    const lost: { id: string }[] = [];
    const granted = book.granted.bind(book);
    book.granted = (s: unknown, lease: unknown, ...rest: unknown[]) => {
      if (lease) lost.push(lease as { id: string });
      granted(s, undefined, ...rest);
    };
    const [before] = await g.usage([scope]);
    // A grant needs 100 ms of the Redis second left: start early in one.
    await earlyInASecond();
    // Busy enough to ask for a lease: 40 admits at once (the ones not leased go by script).
    const rs = Array.from({ length: 40 }, () => reservation(scope, 100, toNano(0.002)));
    const vs = await Promise.all(rs.map((r) => g.admit(r)));
    expect(vs.every((v) => v.ok)).toBe(true);
    expect(lost.length).toBeGreaterThan(0);
    const [held] = await g.usage([scope]);
    expect(held!.rpmUsed).toBeGreaterThan(before!.rpmUsed + 40);
    for (const r of rs) g.settle(r, { tokens: 100, costNano: 0 });
    await g.drain();
    const exec = (g as unknown as { exec(ops: object[]): Promise<void> }).exec.bind(g);
    const undo = { seq: 1, reqDelta: 0, tokDelta: 0, freed: '*', held: 0, heldAfter: 0, cost: 0 };
    const ops = () =>
      lost.map((l) => ({
        mode: 4,
        r: { id: l.id, scopes: [scope], tokens: 0, nano: 0 },
        u: { tokens: 0, costNano: 0 },
        at: Date.now(),
        first: false,
        flush: undo,
      }));
    await exec(ops());
    // Twice: the second finds the grant undone already and changes nothing.
    await exec(ops());
    const [after] = await g.usage([scope]);
    expect(after).toMatchObject({ rpmUsed: before!.rpmUsed + 40, tpmUsed: before!.tpmUsed + 40 * 100, inUse: 0, reservedNano: 0 });
  });
});

describe('leased quota: the scripts on their own', () => {
  it("counts a rate slice in each ring's own head, so a ring behind another keeps it for the whole window", async () => {
    const r = new Redis(REDIS_URL);
    const rz = `${PREFIX}heads:rpm:b`;
    const tz = `${PREFIX}heads:tpm:b`;
    const st = `${PREFIX}lease:heads.1`;
    try {
      await earlyInASecond();
      const sec = Number((await r.time())[0]);
      // The tpm ring 3 s ahead of Redis' clock (a failover to a slower clock); no rpm ring yet.
      await r.hset(tz, 'h', sec + 3, 's', 0);
      // One scope: rpm 100, tpm 1,000,000; wants 100 requests/s, 100,000 tokens/s, 8 slots.
      const out = (await r.eval(
        LEASE,
        3,
        rz,
        tz,
        st,
        'heads',
        '900000',
        '0',
        '0.25',
        '1',
        '100',
        '1000000',
        '-1',
        '-1',
        '100',
        '100000',
        '0',
        '1',
        '0',
        '8',
      )) as number[];
      const granted = out[2]!;
      expect(granted).toBeGreaterThan(0);
      expect(out[6]).toBe(sec); // rpm counted at its own head
      expect(out[7]).toBe(sec + 3); // tpm at its own
      // Later, when the rpm ring has moved on: the slice still counts (it would have vanished
      // from a bucket of the other ring's second).
      await new Promise((res) => setTimeout(res, 4_100));
      const again = (await r.eval(
        LEASE,
        3,
        rz,
        tz,
        st,
        'heads2',
        '900000',
        '0',
        '0.25',
        '1',
        '100',
        '1000000',
        '-1',
        '-1',
        '1',
        '1',
        '0',
        '1',
        '0',
        '1',
      )) as number[];
      expect(again[8]! + (again[2]! > 0 ? again[2]! : 0)).toBe(100 - granted);
    } finally {
      await r.del(rz, tz, st, `${PREFIX}lease:heads2.1`);
      r.disconnect();
    }
  }, 15_000);

  it('a flush whose lease state has expired applies only on its first send: a replay never commits twice', async () => {
    const g = gateway();
    await g.usage([undoScope]);
    const exec = (g as unknown as { exec(ops: object[]): Promise<void> }).exec.bind(g);
    const flush = (seq: number) => ({ seq, reqDelta: 0, tokDelta: 0, freed: '', held: 0, heldAfter: 0, cost: toNano(0.01) });
    const op = (id: string, seq: number, first: boolean) => ({
      mode: 4,
      r: { id, scopes: [undoScope], tokens: 0, nano: 0 },
      u: { tokens: 0, costNano: 0 },
      at: Date.now(),
      first,
      flush: flush(seq),
    });
    const [before] = await g.usage([undoScope]);
    // A replay (may have run before) of a lease whose state hash is gone: nothing.
    await exec([op('gone.1', 3, false)]);
    expect((await g.usage([undoScope]))[0]!.spentNano).toBe(before!.spentNano);
    // A first send: applied, once, and its replay is recognised.
    await exec([op('gone.2', 3, true)]);
    await exec([op('gone.2', 3, false)]);
    expect((await g.usage([undoScope]))[0]!.spentNano).toBe(before!.spentNano + toNano(0.01));
  });
});

describe('leased quota: closing', () => {
  /** What a closed store left held in Redis for scope `name`: slots and budget members of leases. */
  async function leftHeld(name: string) {
    const c = new Redis(REDIS_URL);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const base = `${PREFIX}key:${name}:`;
      return {
        slots: (await c.zrange(`${base}conc`, 0, -1)).filter((m) => m.includes('#')),
        budget: (await c.zrange(`${base}reserved`, 0, -1)).filter((m) => /\.\d+\.\d+:/.test(m)),
      };
    } finally {
      c.disconnect();
    }
  }

  it('returns every lease, also one whose earlier flush is still unanswered when close() begins', async () => {
    const g = gateway();
    await g.usage([closeScope]);
    await earlyInASecond();
    let leased: Reservation | undefined;
    for (let i = 0; i < 20 && !leased; i++) {
      const r = reservation(closeScope, 100, 1_000);
      const v = await g.admit(r);
      expect(v.ok).toBe(true);
      if (r.leased) leased = r;
      else g.settle(r, { tokens: 100, costNano: 1_000 });
    }
    expect(leased).toBeDefined();
    // A settle and its flush sent now (as the 50 ms tick would): one flush in flight as close() begins.
    g.settle(leased!, { tokens: 80, costNano: 700 });
    (g as unknown as { leases: { flushTicking(): void } }).leases.flushTicking();
    await g.close();
    expect(await leftHeld('close')).toEqual({ slots: [], budget: [] });
  });

  it('starts no lease once close() has begun (an admit that comes late goes by script)', async () => {
    const g = gateway();
    await g.usage([closeScope]);
    for (let i = 0; i < 5; i++) {
      const r = reservation(closeScope, 100, 1_000);
      expect((await g.admit(r)).ok).toBe(true);
      g.settle(r, { tokens: 100, costNano: 1_000 });
    }
    const closing = g.close();
    const late = g.admit(reservation(closeScope, 100, 1_000));
    await Promise.resolve(late).catch(() => undefined);
    await closing;
    expect(await leftHeld('close')).toEqual({ slots: [], budget: [] });
  });
});
