// The official @anthropic-ai/sdk through the gateway onto the simulator speaking Anthropic's
// Messages API: messages.create streamed and not, messages.stream().finalMessage(), tool use,
// the exact text and tokens (cache reads and writes included) and cost on the log line and
// /metrics, TTFT bracketed by the client's own clock, and the refusals (wrong key, spent
// budget, rate limit, allow-list, a model with no messages deployment, a dying upstream)
// raised by the SDK as its own typed errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { completionText } from '../../src/simulator/words.js';
import { withGateway, type GatewayFixture, anthropicClient, metricValue } from '../helpers/gateway.js';

const TOKENS = 8;
// $ per million tokens; cache writes priced apart from plain input (Anthropic's 1.25x).
const PRICE = { input: 3, output: 15, cached: 0.3, write: 3.75 };

let sim: Simulator;
let gw: GatewayFixture;
let client: Anthropic;

beforeAll(async () => {
  sim = await startSimulator({ ttftMs: 5, tpotMs: 2, outputTokens: TOKENS });
  gw = await withGateway(
    `
admin_token: adm
server: { max_body_bytes: 65536 }
backends:
  claude:
    type: anthropic
    base_url: "${sim.url}"
    api_key: sk-ant-provider-secret
    forward_headers: [x-sim-fault, x-sim-cache-read-tokens, x-sim-cache-write-tokens, x-sim-ttft-ms]
  oai: { base_url: "${sim.url}", api_key: sk-oai-provider-secret }
models:
  claude-sonnet:
    deployments: [{ backend: claude, model: claude-sonnet-4-5 }]
    pricing: { input_per_mtok: ${PRICE.input}, output_per_mtok: ${PRICE.output}, cached_input_per_mtok: ${PRICE.cached}, cache_write_per_mtok: ${PRICE.write} }
  gpt-only:
    deployments: [{ backend: oai, model: gpt-x }]
keys:
  - { key: sk-client, name: app }
  - { key: sk-broke, name: broke, budget: { usd: 0, period: day } }
  - { key: sk-slow, name: slow, limits: { rpm: 1 } }
  - { key: sk-gpt, name: gptonly, models: [gpt-only] }
`,
    { apiKey: 'sk-client' },
  );
  client = gw.anthropic;
});
afterAll(async () => {
  await gw?.close();
  await sim?.close();
});

const PROMPT = 'Say hello to the gateway.';
const SYSTEM = 'You are terse.';
const promptTokens = countTokens(SYSTEM) + countTokens(PROMPT);

function lineFor(id: string | null | undefined) {
  return gw.waitForLog((l) => l.msg === 'request' && l.request_id === id);
}

function expectedCost(plain: number, read: number, write: number, out: number): number {
  return (plain * PRICE.input + read * PRICE.cached + write * PRICE.write + out * PRICE.output) / 1e6;
}

describe('Messages API through the gateway (@anthropic-ai/sdk)', () => {
  it('messages.create, not streamed: the text, the upstream model spliced in, the provider key as x-api-key, exact tokens and cost', async () => {
    const r = await client.messages
      .create(
        { model: 'claude-sonnet', max_tokens: 100, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] },
        { headers: { 'x-sim-cache-read-tokens': '400', 'x-sim-cache-write-tokens': '120' } },
      )
      .withResponse();
    const msg = r.data;
    expect(msg.content).toEqual([{ type: 'text', text: completionText(TOKENS) }]);
    expect(msg.usage).toMatchObject({
      input_tokens: promptTokens,
      cache_read_input_tokens: 400,
      cache_creation_input_tokens: 120,
      output_tokens: TOKENS,
    });
    const up = sim.stats.lastRequest!;
    expect((up.body as { model: string }).model).toBe('claude-sonnet-4-5');
    expect(up.headers['x-api-key']).toBe('sk-ant-provider-secret');
    // The client's anthropic-version goes upstream as it sent it (the SDK sends its own).
    expect(up.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(up.headers.authorization).toBeUndefined();
    expect(JSON.stringify(up.headers)).not.toContain('sk-client');
    const line = await lineFor(r.response.headers.get('x-request-id'));
    expect(line).toMatchObject({ endpoint: 'messages', status: 200, stream: false, finish_reason: 'end_turn', tokens_estimated: false });
    // input is the whole prompt (plain + cache reads + cache writes); its parts are priced once each.
    expect(line.tokens).toEqual({ input: promptTokens + 520, output: TOKENS, cached_input: 400, reasoning: 0, cache_write_input: 120 });
    expect(line.cost_usd).toBeCloseTo(expectedCost(promptTokens, 400, 120, TOKENS), 8);
  });

  it('messages.create streamed: events pass through, TTFT bracketed by the client, tokens from message_start and message_delta', async () => {
    const before = await gw.metricsText();
    const writesBefore = metricValue(before, 'llm_gateway_tokens_total', { model: 'claude-sonnet', type: 'cache_write_input' }) ?? 0;
    const readsBefore = metricValue(before, 'llm_gateway_tokens_total', { model: 'claude-sonnet', type: 'cached_input' }) ?? 0;
    const t0 = performance.now();
    const { data: stream, response } = await client.messages
      .create(
        { model: 'claude-sonnet', max_tokens: 100, stream: true, system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] },
        { headers: { 'x-sim-cache-read-tokens': '30', 'x-sim-cache-write-tokens': '7' } },
      )
      .withResponse();
    let text = '';
    let firstAt: number | undefined;
    const types: string[] = [];
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') {
        firstAt ??= performance.now();
        text += ev.delta.text;
      }
    }
    const t1 = performance.now();
    expect(text).toBe(completionText(TOKENS));
    expect(types[0]).toBe('message_start');
    expect(types.at(-1)).toBe('message_stop');
    const line = await lineFor(response.headers.get('x-request-id'));
    expect(line).toMatchObject({ status: 200, stream: true, finish_reason: 'end_turn', tokens_estimated: false });
    expect(line.tokens).toEqual({ input: promptTokens + 37, output: TOKENS, cached_input: 30, reasoning: 0, cache_write_input: 7 });
    expect(line.cost_usd).toBeCloseTo(expectedCost(promptTokens, 30, 7, TOKENS), 8);
    // The gateway stamps the first token before the client can see it, after the request left the client.
    const ttft = line.ttft_ms as number;
    expect(ttft).toBeGreaterThan(0);
    expect(ttft).toBeLessThanOrEqual(firstAt! - t0);
    expect(typeof line.tpot_ms).toBe('number');
    expect(line.duration_ms as number).toBeLessThanOrEqual(t1 - t0);
    const after = await gw.metricsText();
    expect(metricValue(after, 'llm_gateway_tokens_total', { model: 'claude-sonnet', type: 'cache_write_input' })).toBe(writesBefore + 7);
    expect(metricValue(after, 'llm_gateway_tokens_total', { model: 'claude-sonnet', type: 'cached_input' })).toBe(readsBefore + 30);
  });

  it('messages.stream(...).finalMessage() assembles the message', async () => {
    const msg = await client.messages
      .stream({ model: 'claude-sonnet', max_tokens: 5, messages: [{ role: 'user', content: PROMPT }] })
      .finalMessage();
    expect(msg.content).toEqual([{ type: 'text', text: completionText(5) }]);
    expect(msg.stop_reason).toBe('max_tokens');
    expect(msg.usage.output_tokens).toBe(5);
  });

  it('tool use, streamed and not: the SDK gets the tool_use block with input that fits the schema; output tokens counted', async () => {
    const tools: Anthropic.Tool[] = [
      {
        name: 'get_weather',
        description: 'Weather',
        input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    ];
    const req = { model: 'claude-sonnet', max_tokens: 200, tools, messages: [{ role: 'user' as const, content: 'Weather in Paris?' }] };
    const whole = await client.messages.create(req);
    expect(whole.stop_reason).toBe('tool_use');
    const block = whole.content[0] as Anthropic.ToolUseBlock;
    expect(block.type).toBe('tool_use');
    expect(block.name).toBe('get_weather');
    expect(typeof (block.input as { city: unknown }).city).toBe('string');

    const final = await client.messages.stream(req).finalMessage();
    const sblock = final.content[0] as Anthropic.ToolUseBlock;
    expect(sblock.type).toBe('tool_use');
    expect(typeof (sblock.input as { city: unknown }).city).toBe('string');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream === true && l.finish_reason === 'tool_use');
    expect((line.tokens as { output: number }).output).toBe(final.usage.output_tokens);
    expect(line.ttft_ms).toBeGreaterThan(0);

    // The agent loop's second turn: the tool result gets a text answer.
    const next = await client.messages.create({
      ...req,
      messages: [
        ...req.messages,
        { role: 'assistant', content: whole.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: block.id, content: 'sunny' }] },
      ],
    });
    expect(next.content[0]!.type).toBe('text');
  });

  it('/admin/stats (the dashboard) shows Messages traffic like the rest: requests, TTFT, tokens by type, cost', async () => {
    const text = await gw.metricsText();
    const r = await fetch(`${gw.url}/admin/stats`, { headers: { authorization: 'Bearer adm' } });
    expect(r.status).toBe(200);
    const s = (await r.json()) as {
      models: Array<{ model: string; requests: number; ttft: { count: number }; tokens: Record<string, number>; cost_usd: number }>;
    };
    const m = s.models.find((x) => x.model === 'claude-sonnet')!;
    expect(m.requests).toBeGreaterThanOrEqual(4);
    expect(m.ttft.count).toBeGreaterThanOrEqual(2);
    expect(m.tokens.cache_write_input).toBe(
      metricValue(text, 'llm_gateway_tokens_total', { model: 'claude-sonnet', type: 'cache_write_input' }),
    );
    expect(m.tokens.cache_write_input).toBeGreaterThanOrEqual(127);
    expect(m.cost_usd).toBeGreaterThan(0);
  });

  it('count_tokens is routed by model and spends nothing', async () => {
    const r = await client.messages.countTokens({ model: 'claude-sonnet', system: SYSTEM, messages: [{ role: 'user', content: PROMPT }] });
    expect(r.input_tokens).toBe(promptTokens);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.endpoint === 'messages/count_tokens');
    expect(line.cost_usd).toBe(0);
  });

  it('a client without anthropic-version gets the backend default; anthropic-beta is forwarded', async () => {
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'sk-client', 'anthropic-beta': 'prompt-caching-2024-07-31' },
      body: JSON.stringify({ model: 'claude-sonnet', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(200);
    await r.json();
    const h = sim.stats.lastRequest!.headers;
    expect(h['anthropic-version']).toBe('2023-06-01');
    expect(h['anthropic-beta']).toBe('prompt-caching-2024-07-31');
    expect(h['x-api-key']).toBe('sk-ant-provider-secret');
  });

  it('the virtual key in Authorization: Bearer works as well as x-api-key', async () => {
    const bearer = anthropicClient(gw, null, { authToken: 'sk-client' });
    const msg = await bearer.messages.create({ model: 'claude-sonnet', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] });
    expect(msg.usage.output_tokens).toBe(3);
    expect(JSON.stringify(sim.stats.lastRequest!.headers)).not.toContain('sk-client');
  });
});

describe('refusals in Anthropic shape, raised by the SDK as typed errors', () => {
  const ask = (c: Anthropic, model = 'claude-sonnet') =>
    c.messages.create({ model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
  const keyed = (apiKey: string, maxRetries = 0) => anthropicClient(gw, apiKey, { maxRetries });

  it('a wrong key → AuthenticationError (authentication_error)', async () => {
    const e = await ask(keyed('sk-wrong')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((e as APIError).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
  });

  it('a spent budget → RateLimitError, x-should-retry: false, and the SDK does not retry', async () => {
    const before = sim.stats.requests;
    const e = await ask(keyed('sk-broke', 2)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.RateLimitError);
    const err = e as APIError;
    expect(err.headers?.get('x-should-retry')).toBe('false');
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(sim.stats.requests).toBe(before);
    // One refusal logged, not three: no retry was made.
    expect(gw.logs.filter((l) => l.msg === 'request' && l.key_name === 'broke')).toHaveLength(1);
  });

  it('rpm spent → RateLimitError with retry-after', async () => {
    const c = keyed('sk-slow');
    await ask(c);
    const e = await ask(c).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.RateLimitError);
    expect(Number((e as APIError).headers?.get('retry-after'))).toBeGreaterThan(0);
  });

  it('a model outside the key allow-list → PermissionDeniedError', async () => {
    const e = await ask(keyed('sk-gpt')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.PermissionDeniedError);
  });

  it('an unknown model → NotFoundError', async () => {
    const e = await ask(client, 'nope').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.NotFoundError);
    expect((e as APIError).error).toMatchObject({ error: { type: 'not_found_error' } });
  });

  it('a model with no deployment serving messages → 400 naming model and API, nothing sent upstream', async () => {
    const before = sim.stats.requests;
    const e = await ask(client, 'gpt-only').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
    const body = (e as APIError).error as { error: { type: string; message: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toContain("'gpt-only'");
    expect(body.error.message).toContain('messages');
    expect(sim.stats.requests).toBe(before);
  });

  it('a body over max_body_bytes → ContentTooLargeError (413 request_too_large), nothing sent', async () => {
    const before = sim.stats.requests;
    const e = await client.messages
      .create({ model: 'claude-sonnet', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(100_000) }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.ContentTooLargeError);
    expect((e as APIError).error).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
    expect(sim.stats.requests).toBe(before);
  });

  it('missing max_tokens → BadRequestError before anything is sent', async () => {
    const before = sim.stats.requests;
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'sk-client' },
      body: JSON.stringify({ model: 'claude-sonnet', messages: [] }),
    });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(sim.stats.requests).toBe(before);
  });

  it("an upstream's own 400 (Anthropic-shaped, from the simulator) reaches the SDK as BadRequestError with its message", async () => {
    const e = await client.messages
      .create(
        { model: 'claude-sonnet', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] },
        { headers: { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 400 }) } },
      )
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
    expect((e as APIError).error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'Simulated error 400.' } });
  });

  it('an upstream that dies mid-stream: the SDK raises the error event', async () => {
    const stream = client.messages.stream(
      { model: 'claude-sonnet', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-sim-fault': JSON.stringify({ kind: 'die_mid_stream', afterChunks: 3 }) } },
    );
    const e = await stream.finalMessage().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.APIError);
    expect(String((e as Error).message)).toMatch(/api_error|broke/);
    const line = await gw.waitForLog(
      (l) => l.msg === 'request' && l.stream === true && (l.error as { code?: string } | undefined)?.code === 'upstream_stream_error',
    );
    expect(line.model).toBe('claude-sonnet');
  });
});
