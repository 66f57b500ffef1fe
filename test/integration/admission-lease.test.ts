// The Redis store on its own, against the real Redis: a reservation whose gateway died
// (never settled) expires with its lease; settles are idempotent (a replayed settle does not
// count spend twice); a refusal by a later scope reserves nothing anywhere.
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
  ] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
const [a, b] = table.all as [NonNullable<(typeof table.all)[0]>, NonNullable<(typeof table.all)[1]>];
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
    const replay = (store as unknown as { exec(op: object): Promise<void> }).exec.bind(store);
    await replay({ mode: 1, r, u: { tokens: 80, costNano: toNano(0.07) }, at: Date.now(), first: false });
    await replay({ mode: 1, r, u: { tokens: 80, costNano: toNano(0.07) }, at: Date.now(), first: false });
    const [after] = await store.usage([a]);
    expect(after).toMatchObject({ inUse: 0, reservedNano: 0, spentNano: toNano(0.12), tpmUsed: 50 + 80 + 100 });
  });

  it('a refusal by a later scope leaves every earlier scope untouched (one script, all or nothing)', async () => {
    expect((await store.admit(res([b]))).ok).toBe(true); // b's rpm is now spent
    const [before] = await store.usage([a]);
    const v = await store.admit(res([a, b]));
    expect(v).toMatchObject({ ok: false, refusedAt: 1, limit: 'rpm' });
    expect(v.retryAfterMs).toBeGreaterThan(59_000);
    expect(v.retryAfterMs).toBeLessThanOrEqual(60_000);
    const [after] = await store.usage([a]);
    expect(after).toEqual(before);
  });
});
