// The Redis store on its own, against the real Redis: a reservation whose gateway died
// (never settled) expires with its lease; settles are idempotent (a replayed settle does not
// count spend twice, alone or twice in one batch); a refusal by a later scope reserves nothing
// anywhere; settles that end together are group-committed into a few scripts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { RedisStore } from '../../src/admission/redis.js';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import type { Reservation } from '../../src/admission/store.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { flushPrefix } from './admission-support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-lease:`;
const table = new ScopeTable({
  keys: [
    { name: 'a', limits: { concurrency: 1, tpm: 1000 }, budget: { usd: 1, period: 'day' } },
    { name: 'b', limits: { rpm: 1 } },
    { name: 'zero', budget: { usd: 0, period: 'day' } },
    { name: 'wide', limits: { rpm: 1_000_000, tpm: 1_000_000_000, concurrency: 10_000 }, budget: { usd: 100, period: 'day' } },
  ] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
type S = NonNullable<(typeof table.all)[0]>;
const [a, b, zero, wide] = table.all as [S, S, S, S];
const spends: number[] = [];
let store: RedisStore;
let n = 0;
const res = (scopes = [a], tokens = 100, usd = 0.1): Reservation => ({ id: `t${++n}`, scopes, tokens, nano: toNano(usd) });

beforeAll(() => {
  store = new RedisStore({
    url: REDIS_URL,
    prefix: PREFIX,
    scopes: table.all,
    thresholds: [1],
    onSpend: (_s, spent) => spends.push(spent),
    logger: pino({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
    leaseMs: 300,
  });
});

afterAll(async () => {
  await store.close();
  await flushPrefix(REDIS_URL, PREFIX);
});

describe('redis store', () => {
  it('a reservation never settled (crashed gateway) frees its concurrency slot and budget when its lease ends', async () => {
    expect((await store.admit(res())).ok).toBe(true); // never settled
    expect(await store.admit(res())).toMatchObject({ ok: false, limit: 'concurrency' });
    await new Promise((r) => setTimeout(r, 400));
    const [u] = await store.usage([a]);
    expect(u).toMatchObject({ inUse: 0, reservedNano: 0, spentNano: 0 });
    const r = res();
    expect((await store.admit(r)).ok).toBe(true);
    store.settle(r, { tokens: 50, costNano: toNano(0.05) });
    await store.drain();
  });

  it('settles once: replaying a settle does not count its spend twice', async () => {
    await new Promise((r) => setTimeout(r, 50));
    const [before] = await store.usage([a]);
    expect(before).toMatchObject({ inUse: 0, reservedNano: 0, spentNano: toNano(0.05) });
    const r = res();
    expect((await store.admit(r)).ok).toBe(true);
    // Settle through the replay path twice, as after a timeout whose outcome was unknown.
    const replay = (store as unknown as { exec(ops: object[]): Promise<void> }).exec.bind(store);
    const op = () => ({ mode: 1, r, u: { tokens: 80, costNano: toNano(0.07) }, at: Date.now(), first: false });
    await replay([op()]);
    await replay([op()]);
    // Twice in one batch (one script) too: still once.
    await replay([op(), op()]);
    const [after] = await store.usage([a]);
    expect(after).toMatchObject({ inUse: 0, reservedNano: 0, spentNano: toNano(0.12), tpmUsed: 50 + 80 + 100 });
  });

  it('a refusal by a later scope leaves every earlier scope untouched (one script, all or nothing)', async () => {
    expect((await store.admit(res([b]))).ok).toBe(true); // b's rpm is now spent
    const [before] = await store.usage([a]);
    const v = await store.admit(res([a, b]));
    expect(v).toMatchObject({ ok: false, refusedAt: 1, limit: 'rpm' });
    expect(v.retryAfterMs).toBeGreaterThan(59_000);
    // 1 s buckets: an entry counts until its whole second has left the window (up to 1 s more than a log).
    expect(v.retryAfterMs).toBeLessThanOrEqual(61_000);
    const [after] = await store.usage([a]);
    expect(after).toEqual(before);
  });

  it("a $0 budget is a budget (free requests only): its keys and arguments stay in step with the next scope's", async () => {
    const [before] = await store.usage([a]);
    const r = res([zero, a], 10, 0);
    expect((await store.admit(r)).ok).toBe(true);
    expect(await store.admit(res([zero], 10, 0.01))).toMatchObject({ ok: false, limit: 'budget' });
    store.settle(r, { tokens: 5, costNano: toNano(0.02) }); // the real cost is committed anyway
    await store.drain();
    const [z, after] = await store.usage([zero, a]);
    expect(z).toMatchObject({ spentNano: toNano(0.02), reservedNano: 0 });
    expect(after).toMatchObject({ spentNano: before!.spentNano + toNano(0.02), reservedNano: 0, inUse: 0 });
  });

  it('settles that end together go out as a few scripts (group commit), each applied exactly once', async () => {
    const [before] = await store.usage([wide]);
    const rs = Array.from({ length: 300 }, () => res([wide], 40, 0.002));
    const verdicts = await Promise.all(rs.map((r) => store.admit(r)));
    expect(verdicts.every((v) => v.ok)).toBe(true);
    const spy = store as unknown as { exec(ops: unknown[]): Promise<void> };
    const exec = spy.exec;
    const batches: number[] = [];
    spy.exec = function (ops) {
      batches.push(ops.length);
      return exec.call(this, ops);
    };
    try {
      for (const r of rs) store.settle(r, { tokens: 25, costNano: toNano(0.001) });
      await store.drain();
    } finally {
      spy.exec = exec;
    }
    // The first goes at once; the others wait for it, 128 at most per script.
    expect(batches.reduce((x, y) => x + y, 0)).toBe(300);
    expect(batches.length).toBeLessThanOrEqual(4);
    const [after] = await store.usage([wide]);
    expect(after).toMatchObject({
      inUse: 0,
      reservedNano: 0,
      spentNano: before!.spentNano + 300 * toNano(0.001),
      tpmUsed: before!.tpmUsed + 300 * 25,
      rpmUsed: before!.rpmUsed + 300,
    });
  });
});
