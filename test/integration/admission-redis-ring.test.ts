// The Redis store's rate windows are rings of 1 s buckets (the memory store's algorithm): an
// amount counts in the second Redis admitted it in, a settle corrects that bucket, and
// retry-after is the moment enough of the oldest buckets leave the window: never earlier
// than an exact log would say, at most 1 s later. Bounds come from this host's clock, which
// Redis (TIME) shares.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { RedisStore } from '../../src/admission/redis.js';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import type { Reservation } from '../../src/admission/store.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { flushPrefix } from './admission-support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-ring:`;
const table = new ScopeTable({
  keys: [
    { name: 'w', limits: { rpm: 3, tpm: 1000 } },
    { name: 'big', limits: { tpm: 9e15 } },
  ] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
const [w, big] = table.all as [NonNullable<(typeof table.all)[0]>, NonNullable<(typeof table.all)[0]>];
let store: RedisStore;
let n = 0;
const res = (tokens: number, scope = w): Reservation => ({ id: `t${++n}`, scopes: [scope], tokens, nano: toNano(0), bucket: -1, gen: 0 });

beforeAll(() => {
  store = new RedisStore({
    url: REDIS_URL,
    prefix: PREFIX,
    scopes: table.all,
    thresholds: [],
    onSpend: () => undefined,
    logger: pino({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
    commandTimeoutMs: 10_000,
  });
});

afterAll(async () => {
  await store.close();
  await flushPrefix(REDIS_URL, PREFIX);
});

describe('redis store, 1 s bucket rings', () => {
  it("counts per second, settles into the admit's bucket, and answers retry-after from the oldest bucket, never early", async () => {
    const t0 = Date.now();
    const r1 = res(400);
    expect((await store.admit(r1)).ok).toBe(true);
    const t1 = Date.now();
    expect(r1.bucket).toBeGreaterThanOrEqual(Math.floor(t0 / 1000));
    // Into a later second: the ring moves (drops the buckets in between) and counts there.
    await new Promise((r) => setTimeout(r, 1_100));
    const r2 = res(400);
    expect((await store.admit(r2)).ok).toBe(true);
    expect(r2.bucket).toBeGreaterThan(r1.bucket!);
    // r1 used 100 of its 400: its bucket now holds 100.
    store.settle(r1, { tokens: 100, costNano: 0 });
    await store.drain();
    const [u] = await store.usage([w]);
    expect(u).toMatchObject({ rpmUsed: 2, tpmUsed: 500 });

    // 600 more fits only once r1's bucket (100) has left: 500 - 100 + 600 = 1000.
    const t2 = Date.now();
    const v = await store.admit(res(600));
    const t3 = Date.now();
    expect(v).toMatchObject({ ok: false, limit: 'tpm', tokLimit: 1000, tokRemaining: -100 });
    // An exact log would say: r1's admit time + 60 s. Never earlier than that, at most 1 s later.
    expect(v.retryAfterMs).toBeGreaterThanOrEqual(t0 + 60_000 - t3);
    expect(v.retryAfterMs).toBeLessThanOrEqual(t1 + 61_000 - t2);
    // More than the limit can never fit.
    expect(await store.admit(res(1001))).toMatchObject({ ok: false, limit: 'tpm', retryAfterMs: -1 });

    // rpm 3: one more fits, the next waits for r1's second to leave.
    expect((await store.admit(res(0))).ok).toBe(true);
    const t4 = Date.now();
    const v2 = await store.admit(res(0));
    const t5 = Date.now();
    expect(v2).toMatchObject({ ok: false, limit: 'rpm', reqLimit: 3, reqRemaining: -1 });
    expect(v2.retryAfterMs).toBeGreaterThanOrEqual(t0 + 60_000 - t5);
    expect(v2.retryAfterMs).toBeLessThanOrEqual(t1 + 61_000 - t4);
    const [after] = await store.usage([w]);
    expect(after).toMatchObject({ rpmUsed: 3, tpmUsed: 500 });
  });

  it('counts amounts beyond 10^14 exactly (no 1e+15 strings on the way to Redis)', async () => {
    const r = res(2e15, big);
    expect((await store.admit(r)).ok).toBe(true);
    expect((await store.usage([big]))[0]!.tpmUsed).toBe(2e15);
    // The settle moves the bucket by 500 - 2e15.
    store.settle(r, { tokens: 500, costNano: 0 });
    await store.drain();
    expect((await store.usage([big]))[0]!.tpmUsed).toBe(500);
  });
});
