// An upstream's usage is not trusted: counts that are not plain token counts (1e308, 1e400,
// negative, fractional, strings, "NaN", beyond 10^9) are an upstream fault, logged and
// counted as llm_gateway_upstream_errors_total{reason="invalid_usage"}, and the request is
// counted by the gateway's own estimate. Nothing the stores hold (tpm windows, spend, the
// state file, Redis) ever becomes non-finite, and limits keep being enforced.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { withGateway, type GatewayFixture, metricValue } from '../helpers/gateway.js';
import { startScriptedUpstream, chunkEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';
import { ADMIN_TOKEN, admin, flushPrefix } from './admission-support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}-usage:`;

/** The usage values an upstream sent, as raw JSON text (1e400 and friends cannot be built with JSON.stringify). */
const BAD_USAGE = [
  '{"prompt_tokens":1e308,"completion_tokens":1e308,"total_tokens":1e308}',
  '{"prompt_tokens":1e400,"completion_tokens":3,"total_tokens":1e400}',
  '{"prompt_tokens":-5,"completion_tokens":3,"total_tokens":-2}',
  '{"prompt_tokens":"12","completion_tokens":"3","total_tokens":"15"}',
  '{"prompt_tokens":"NaN","completion_tokens":"NaN","total_tokens":"NaN"}',
  '{"prompt_tokens":2.5,"completion_tokens":3,"total_tokens":5.5}',
  '{"prompt_tokens":4,"completion_tokens":2000000000,"total_tokens":2000000004}',
  '{"prompt_tokens":4,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":1e300}}',
];

let usageJson = BAD_USAGE[0]!;
const CONTENT = 'hello there';

function streamBytes(): string {
  return (
    chunkEvent({ role: 'assistant', content: '' }) +
    chunkEvent({ content: CONTENT }) +
    chunkEvent({}, {}, 'stop') +
    `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":${usageJson}}\n\n` +
    'data: [DONE]\n\n'
  );
}

function wholeBytes(): string {
  return `{"id":"c","object":"chat.completion","created":1,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"${CONTENT}"},"finish_reason":"stop"}],"usage":${usageJson}}`;
}

let upstream: ScriptedUpstream;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-usage-'));
  upstream = await startScriptedUpstream({ steps: [] });
  upstream.setScript((body) =>
    (body as { stream?: boolean }).stream
      ? { steps: [{ delayMs: 0, bytes: streamBytes() }] }
      : { headers: { 'content-type': 'application/json' }, steps: [{ delayMs: 0, bytes: wholeBytes() }] },
  );
});

afterAll(async () => {
  await upstream?.close();
  await rm(dir, { recursive: true, force: true });
  await flushPrefix(REDIS_URL, PREFIX);
});

interface ScopeRow {
  scope: string;
  name: string;
  tpm?: { used: number; limit: number };
  budget?: { spend_usd: number; reserved_usd: number };
}

describe.each(['memory', 'redis'] as const)('invalid upstream usage (%s store)', (store) => {
  let gw: GatewayFixture;
  let client: OpenAI;
  const stateFile = () => join(dir, `${store}-state.json`);

  beforeAll(async () => {
    gw = await withGateway(
      `
admin_token: ${ADMIN_TOKEN}
state: { store: ${store}, file: "${stateFile()}", flush_interval_ms: 100000, redis_url: "${REDIS_URL}", redis_prefix: "${PREFIX}${store}:", on_store_error: closed }
retries: { max: 0, backoff_ms: 0 }
backends:
  up: { base_url: "${upstream.baseURL}" }
models:
  m:
    deployments: [{ backend: up }]
    pricing: { input_per_mtok: 1000, output_per_mtok: 1000 }
keys:
  - { key: k-usage, name: usage, limits: { tpm: 1000000 }, budget: { usd: 1000, period: month } }
`,
      { apiKey: 'k-usage' },
    );
    client = gw.openai;
  });

  afterAll(async () => {
    await gw?.close();
  });

  async function row(): Promise<ScopeRow> {
    const r = await admin<{ scopes: ScopeRow[] }>(gw.url, 'limits');
    expect(r.status).toBe(200);
    return r.body.scopes.find((s) => s.scope === 'key' && s.name === 'usage')!;
  }

  it('an out-of-range, negative, fractional or non-numeric usage is counted as an upstream fault and the estimate is committed instead', async () => {
    let n = 0;
    for (const bad of BAD_USAGE) {
      usageJson = bad;
      for (const stream of [true, false]) {
        const id = `${store}-bad-${++n}`;
        const before =
          metricValue(await gw.metricsText(), 'llm_gateway_upstream_errors_total', { backend: 'up', reason: 'invalid_usage' }) ?? 0;
        const messages = [{ role: 'user' as const, content: 'count me' }];
        if (stream) {
          const s = await client.chat.completions.create(
            { model: 'm', messages, stream: true, max_tokens: 5 },
            { headers: { 'x-request-id': id } },
          );
          let text = '';
          for await (const c of s) {
            expect(c.usage ?? null, 'the injected usage event never reaches the client').toBeNull();
            text += c.choices[0]?.delta?.content ?? '';
          }
          expect(text).toBe(CONTENT);
        } else {
          const r = await client.chat.completions.create({ model: 'm', messages, max_tokens: 5 }, { headers: { 'x-request-id': id } });
          expect(r.choices[0]!.message.content).toBe(CONTENT);
        }
        const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === id);
        expect(line.status, bad).toBe(200);
        expect(line.tokens_estimated, bad).toBe(true);
        const t = line.tokens as { input: number; output: number };
        expect(Number.isSafeInteger(t.input) && t.input > 0 && t.input < 100, `${bad}: input ${t.input}`).toBe(true);
        expect(Number.isSafeInteger(t.output) && t.output > 0 && t.output < 100, `${bad}: output ${t.output}`).toBe(true);
        expect(Number.isFinite(line.cost_usd as number) && (line.cost_usd as number) > 0).toBe(true);
        const warn = await gw.waitForLog((l) => l.request_id === id && typeof l.field === 'string');
        expect(warn.level).toBe(40);
        const after = metricValue(await gw.metricsText(), 'llm_gateway_upstream_errors_total', { backend: 'up', reason: 'invalid_usage' });
        expect(after, bad).toBe(before + 1);
      }
    }
    const r = await row();
    expect(Number.isFinite(r.tpm!.used) && r.tpm!.used > 0 && r.tpm!.used < 10_000).toBe(true);
    expect(Number.isFinite(r.budget!.spend_usd) && r.budget!.spend_usd > 0 && r.budget!.spend_usd < 1).toBe(true);
  });

  it('the tpm limit is still enforced afterwards (the window holds a finite sum)', async () => {
    const r = await row();
    const left = r.tpm!.limit - r.tpm!.used;
    // A request reserving more than what is left is refused...
    await expect(
      client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: left + 1 }),
    ).rejects.toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    // ...and one within it is served.
    usageJson = '{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}';
    const ok = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 5 });
    expect(ok.choices[0]!.message.content).toBe(CONTENT);
    const after = await row();
    expect(after.budget!.spend_usd).toBeCloseTo(r.budget!.spend_usd + (7 * 1000) / 1e6, 9);
  });

  it.runIf(store === 'memory')('the state file holds finite spend (not null) and reads back the same after a restart', async () => {
    const spent = (await row()).budget!.spend_usd;
    await gw.close();
    const data = JSON.parse(await readFile(stateFile(), 'utf8')) as { budgets: Record<string, { spent_nano: unknown }> };
    const b = data.budgets['key:usage']!;
    expect(typeof b.spent_nano).toBe('number');
    expect(b.spent_nano as number).toBe(Math.round(spent * 1e9));
  });

  it.runIf(store === 'redis')('Redis holds no inf or nan anywhere under the prefix', async () => {
    const c = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const keys = await c.keys(`${PREFIX}redis:*`);
      expect(keys.length).toBeGreaterThan(0);
      const values: string[] = [];
      for (const k of keys) {
        const type = await c.type(k);
        if (type === 'string') values.push((await c.get(k)) ?? '');
        else if (type === 'hash') values.push(...Object.values(await c.hgetall(k)));
        else if (type === 'zset') values.push(...(await c.zrange(k, 0, -1, 'WITHSCORES')));
      }
      expect(values.length).toBeGreaterThan(0);
      for (const v of values) expect(v, `a value in Redis: ${v}`).not.toMatch(/inf|nan/i);
    } finally {
      c.disconnect();
    }
  });
});
