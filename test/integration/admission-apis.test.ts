// One budget across every API: three gateway processes share one Redis, and 300 concurrent
// requests mixed across chat, completions and the Responses API (streamed and not), each
// costing $0.01, meet a $1.00 budget. Exactly the 100 that fit are admitted, spend ends at
// $1.00 and nothing stays reserved. Each run uses its own key prefix and deletes only its keys.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetOf, flushPrefix, redisFleetPolicies, startFleet, stopFleet } from './admission-support.js';
import { openaiClient } from '../helpers/gateway.js';
import { requireBuild, type GatewayProcess } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-apis-${process.pid}-${Date.now()}:`;
const dir = mkdtempSync(join(tmpdir(), 'admission-apis-'));
const gateways: GatewayProcess[] = [];
/** 10 output tokens at $1,000 per Mtok: one cent, on every API. */
const CAP = 10;

beforeAll(async () => {
  requireBuild();
  const policies = redisFleetPolicies(REDIS_URL, PREFIX, 'keys: [{ key: k-dollar, name: dollar, budget: { usd: 1, period: day } }]');
  gateways.push(...(await startFleet(dir, policies, { oneAtATime: true })));
}, 60_000);

afterAll(async () => {
  await stopFleet(gateways);
  await flushPrefix(REDIS_URL, PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

const drain = async (s: AsyncIterable<unknown>) => {
  for await (const ev of s) void ev;
};

/** The six kinds of request, each capped at CAP output tokens. */
const KINDS: Array<(c: OpenAI) => Promise<unknown>> = [
  (c) => c.chat.completions.create({ model: 'm', max_tokens: CAP, messages: [{ role: 'user', content: 'hi' }] }),
  async (c) =>
    drain(await c.chat.completions.create({ model: 'm', max_tokens: CAP, messages: [{ role: 'user', content: 'hi' }], stream: true })),
  (c) => c.completions.create({ model: 'm', max_tokens: CAP, prompt: 'hi' }),
  async (c) => drain(await c.completions.create({ model: 'm', max_tokens: CAP, prompt: 'hi', stream: true })),
  (c) => c.responses.create({ model: 'm', max_output_tokens: CAP, input: 'hi' }),
  async (c) => drain(await c.responses.create({ model: 'm', max_output_tokens: CAP, input: 'hi', stream: true })),
];

describe('one budget across chat, completions and responses', () => {
  it(
    '$1.00 shared by three gateways under 300 concurrent mixed $0.01 requests: exactly 100 admitted, spend $1.00, nothing reserved',
    { timeout: 60_000 },
    async () => {
      const clients = gateways.map((g) => openaiClient(g, 'k-dollar'));
      // One of each kind first, one at a time (so every API is among the admitted whatever the
      // burst's timing), then the other 294 at once.
      const first: PromiseSettledResult<unknown>[] = [];
      for (let i = 0; i < KINDS.length; i++) first.push(...(await Promise.allSettled([KINDS[i]!(clients[i % clients.length]!)])));
      const burst = await Promise.allSettled(
        Array.from({ length: 300 - KINDS.length }, (_, i) =>
          KINDS[Math.floor(i / clients.length) % KINDS.length]!(clients[i % clients.length]!),
        ),
      );
      const results = [...first, ...burst];
      expect(first.every((r) => r.status === 'fulfilled')).toBe(true);
      let ok = 0;
      let quota = 0;
      const other: string[] = [];
      for (const r of results) {
        if (r.status === 'fulfilled') ok++;
        else if (r.reason instanceof OpenAI.RateLimitError && r.reason.code === 'insufficient_quota') quota++;
        else other.push(String(r.reason));
      }
      expect(other).toEqual([]);
      expect(ok).toBe(100);
      expect(quota).toBe(200);
      // Settles are written after the response has ended (group-committed, off the request path).
      for (const g of gateways)
        await eventually(async () => expect(await budgetOf(g.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 }));
      // Every API took part in the admitted hundred (the first six made sure of it).
      const endpoints = new Set(
        gateways.flatMap((g) => g.lines.filter((l) => l.msg === 'request' && l.status === 200).map((l) => l.endpoint)),
      );
      expect([...endpoints].sort()).toEqual(['chat/completions', 'completions', 'responses']);
    },
  );
});
