// Every store refuses non-finite amounts: the usage boundary (settle/usage.ts) decides what
// an upstream's usage is worth, and the memory store, the Redis store and its Lua scripts
// each check again on their own, so that no caller (a bug, another gateway version) can put
// Infinity or NaN into a rate window, a budget or Redis.
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Redis } from 'ioredis';
import { MemoryStore } from '../../src/admission/memory.js';
import { RedisStore } from '../../src/admission/redis.js';
import { ADMIT, SETTLE } from '../../src/admission/lua.js';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import { clampAmount, type Reservation } from '../../src/admission/store.js';
import { MAX_USAGE_TOKENS, usageFault } from '../../src/settle/usage.js';
import { usageFromResponse } from '../../src/protocols/openai.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { flushPrefix } from './admission-support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-amounts:`;
const table = new ScopeTable({
  keys: [{ name: 'a', limits: { tpm: 1_000_000 }, budget: { usd: 100, period: 'day' } }] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
const scopes = table.all;
let n = 0;
const res = (tokens = 100, usd = 0.1): Reservation => ({ id: `r${++n}`, scopes, tokens, nano: toNano(usd), bucket: -1, gen: 0 });
const NON_FINITE = [Infinity, -Infinity, NaN, -1, 1.5, 2 ** 60];

afterAll(async () => {
  await flushPrefix(REDIS_URL, PREFIX);
});

describe('the usage boundary', () => {
  it('accepts integer counts in [0, 10^9] and names the first field that is not', () => {
    const parse = (usage: string) => usageFromResponse(JSON.parse(`{"usage":${usage}}`));
    expect(usageFault(parse('{"prompt_tokens":0,"completion_tokens":1000000000}'))).toBeUndefined();
    expect(usageFault(parse('{"prompt_tokens":12}'))).toBeUndefined();
    expect(usageFault(undefined)).toBeUndefined();
    expect(usageFault(parse('{"prompt_tokens":1e308,"completion_tokens":1}'))).toBe('prompt_tokens');
    expect(usageFault(parse('{"prompt_tokens":1e400}'))).toBe('prompt_tokens'); // JSON.parse gives Infinity
    expect(usageFault(parse(`{"prompt_tokens":1,"completion_tokens":${MAX_USAGE_TOKENS + 1}}`))).toBe('completion_tokens');
    expect(usageFault(parse('{"prompt_tokens":-1}'))).toBe('prompt_tokens');
    expect(usageFault(parse('{"prompt_tokens":1.5}'))).toBe('prompt_tokens');
    expect(usageFault(parse('{"prompt_tokens":"12"}'))).toBe('prompt_tokens');
    expect(usageFault(parse('{"prompt_tokens":"NaN","completion_tokens":3}'))).toBe('prompt_tokens');
    expect(usageFault(parse('{"prompt_tokens":1,"completion_tokens":true}'))).toBe('completion_tokens');
    expect(usageFault(parse('{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":"x"}}'))).toBe(
      'prompt_tokens_details.cached_tokens',
    );
    expect(usageFault(parse('{"prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":-3}}'))).toBe(
      'completion_tokens_details.reasoning_tokens',
    );
  });

  it('reservations are clamped to safe integers (a NaN or huge one reserves the maximum, so a real limit refuses it)', () => {
    expect(clampAmount(12)).toBe(12);
    expect(clampAmount(-3)).toBe(0);
    expect(clampAmount(2.4)).toBe(2);
    for (const x of [Infinity, NaN, 1e308]) expect(clampAmount(x)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('memory store', () => {
  it('a non-finite or negative settled usage commits the reservation instead: windows and spend stay finite', () => {
    const store = new MemoryStore(
      scopes,
      [],
      undefined,
      () => 0,
      () => Date.parse('2025-03-09T12:00:00Z'),
    );
    let tokens = 0;
    let nano = 0;
    for (const bad of NON_FINITE) {
      const r = res(100, 0.1);
      expect(store.admit(r).ok).toBe(true);
      store.settle(r, { tokens: bad, costNano: bad });
      tokens += 100;
      nano += toNano(0.1);
    }
    const [u] = store.usage();
    expect(u!.tpmUsed).toBe(tokens);
    expect(u!.spentNano).toBe(nano);
    expect(u!.reservedNano).toBe(0);
    const snap = store.snapshot()['key:a']!;
    expect(snap.spent_nano).toBe(nano);
    // Loading spend (state file, Redis fallback seeding) refuses non-amounts.
    const period = snap.period;
    for (const bad of NON_FINITE) expect(store.setSpent(scopes[0]!, period, bad)).toBe(false);
    expect(store.usage()[0]!.spentNano).toBe(nano);
  });
});

describe('redis store', () => {
  it('a non-finite settled usage commits the reservation instead; Redis never holds inf or nan', async () => {
    const store = new RedisStore({
      url: REDIS_URL,
      prefix: `${PREFIX}store:`,
      scopes,
      thresholds: [],
      onSpend: () => {},
      logger: pino({ level: 'silent' }),
      metrics: new Metrics({ defaultMetrics: false }),
    });
    try {
      for (const bad of NON_FINITE) {
        const r = res(100, 0.1);
        expect((await store.admit(r)).ok).toBe(true);
        store.settle(r, { tokens: bad, costNano: bad });
        store.addSpend(r, { tokens: bad, costNano: bad }); // fallback spend: same rule
      }
      await store.drain();
      const [u] = await store.usage(scopes);
      expect(u!.tpmUsed).toBe(100 * NON_FINITE.length);
      // settle + addSpend each committed the reservation's worst case.
      expect(u!.spentNano).toBe(2 * toNano(0.1) * NON_FINITE.length);
      expect(u!.reservedNano).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('the Lua scripts themselves refuse inf / nan amounts, whoever sends them', async () => {
    const c = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const p = `${PREFIX}lua:`;
    const keys = [`${p}tpm:b`, `${p}reserved`, `${p}reserved:sum`, `${p}spend`];
    try {
      // ADMIT with a non-finite reservation is an error, not a reservation of inf.
      for (const bad of ['inf', 'nan', '-1', '1e400']) {
        await expect(
          c.eval(ADMIT, keys.length, ...keys, 'x', bad, '5', '60000', '1000', '1', '-1', '1000000', '-1', '100000000000'),
        ).rejects.toThrow(/invalid reservation amount/);
      }
      // A real reservation, then a settle that reports inf tokens and nan cost: the reservation is committed.
      const admitted = (await c.eval(
        ADMIT,
        keys.length,
        ...keys,
        'ok',
        '50',
        '7000',
        '60000',
        '1000',
        '1',
        '-1',
        '1000000',
        '-1',
        '100000000000',
      )) as number[];
      expect(admitted[0]).toBe(1);
      const sec = admitted[10]!;
      // ARGV: n_thresholds, n_ops, then n_keys, id, mode, est, real, resv, cost, first, second, n, (rpm, tpm, conc, budget, exp).
      await c.eval(
        SETTLE,
        keys.length,
        ...keys,
        '0',
        '1',
        String(keys.length),
        'ok',
        '1',
        '50',
        'inf',
        '7000',
        'nan',
        '1',
        String(sec),
        '1',
        '-1',
        '1000000',
        '-1',
        '100000000000',
        '0',
      );
      expect(await c.hget(`${p}tpm:b`, 's')).toBe('50');
      expect(await c.hget(`${p}tpm:b`, String(sec % 61))).toBe('50');
      expect(await c.hget(`${p}spend`, 'spent')).toBe('7000');
    } finally {
      c.disconnect();
    }
  });
});
