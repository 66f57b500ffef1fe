// One $1.00 budget shared by Messages and chat requests under concurrency: every request
// costs exactly $0.02 whichever API it speaks (input free, 10 output tokens at $2,000/Mtok),
// so exactly 50 of 150 are admitted, spend ends at $1.00 and nothing stays reserved. In one
// gateway (memory store), and in three gateway processes sharing Redis.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { ADMIN_TOKEN, budgetOf, flushPrefix } from './admission-support.js';
import { requireBuild, spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { anthropicClient, openaiClient, startGateway, type TestGateway } from '../helpers/gateway.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-messages-${process.pid}-${Date.now()}:`;
const KEY = 'k-dollar';

const policies = (state: string) => `
admin_token: ${ADMIN_TOKEN}
${state}
backends:
  sim: { type: simulator, ttft_ms: 5, tpot_ms: 1, output_tokens: 16 }
models:
  m:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 0, output_per_mtok: 2000 }
keys:
  - { key: ${KEY}, name: dollar, budget: { usd: 1, period: day } }
`;

interface Tally {
  ok: number;
  refused: number;
  other: unknown[];
  byApi: { chat: number; messages: number };
}

/** `n` concurrent $0.02 requests, alternating chat (openai SDK) and messages (@anthropic-ai/sdk), spread over the gateways. */
async function mixedBatch(gateways: Array<{ url: string; baseURL: string }>, n = 150): Promise<Tally> {
  const oai = gateways.map((g) => openaiClient(g, KEY));
  const ant = gateways.map((g) => anthropicClient(g, KEY));
  const results = await Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      const g = i % gateways.length;
      if (i % 2 === 0) {
        const r = await oai[g]!.chat.completions.create({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
        expect(r.usage!.completion_tokens).toBe(10);
        return 'chat' as const;
      }
      const r = await ant[g]!.messages.create({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
      expect(r.usage.output_tokens).toBe(10);
      return 'messages' as const;
    }),
  );
  const t: Tally = { ok: 0, refused: 0, other: [], byApi: { chat: 0, messages: 0 } };
  for (const r of results) {
    if (r.status === 'fulfilled') {
      t.ok++;
      t.byApi[r.value]++;
    } else if (r.reason instanceof OpenAI.RateLimitError && r.reason.code === 'insufficient_quota') t.refused++;
    else if (r.reason instanceof Anthropic.RateLimitError && r.reason.headers?.get('x-should-retry') === 'false') t.refused++;
    else t.other.push(r.reason);
  }
  return t;
}

describe('one budget across chat and messages', () => {
  let gw: TestGateway | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'messages-budget-'));
  const children: GatewayProcess[] = [];
  afterAll(async () => {
    await gw?.close();
    await Promise.all(children.map((c) => c.stop()));
    await flushPrefix(REDIS_URL, PREFIX);
    rmSync(dir, { recursive: true, force: true });
  });

  it('memory store: 150 concurrent mixed requests, exactly 50 admitted, spend $1.00, reserved 0', async () => {
    gw = await startGateway(policies(''));
    const t = await mixedBatch([gw]);
    expect(t.other.map(String)).toEqual([]);
    expect(t.ok).toBe(50);
    expect(t.refused).toBe(100);
    // Both APIs got some of the budget (it is one budget, not one per API).
    expect(t.byApi.chat).toBeGreaterThan(0);
    expect(t.byApi.messages).toBeGreaterThan(0);
    expect(await budgetOf(gw.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 });
  });

  it('three gateways on Redis: the same, for the fleet', async () => {
    requireBuild();
    const file = join(dir, 'policies.yaml');
    // A generous command timeout: this is about exactness, and a starved machine's 1 s timeouts would be refusals.
    writeFileSync(
      file,
      policies(
        `state: { store: redis, redis_url: "${REDIS_URL}", redis_prefix: "${PREFIX}", redis_timeout_ms: 10000, on_store_error: closed }`,
      ),
    );
    // One after another: three cold starts at once can outlast the helper's start timeout on a loaded machine.
    for (let i = 0; i < 3; i++) children.push(await spawnGateway(file));
    const t = await mixedBatch(children);
    expect(t.other.map(String)).toEqual([]);
    expect(t.ok).toBe(50);
    expect(t.refused).toBe(100);
    for (const c of children) expect(await budgetOf(c.url, 'key', 'dollar')).toMatchObject({ spend_usd: 1, reserved_usd: 0 });
  }, 60_000);
});
