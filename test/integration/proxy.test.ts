// The proxy core through the official openai SDK: non-streamed and streamed chat, usage
// injection and removal, tool calls, completions, embeddings; bytes the client receives
// equal what the upstream sent (minus only the injected usage event); tokens and cost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request } from 'undici';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture, metricValue } from '../helpers/gateway.js';
import { startScriptedUpstream, chunkEvent, usageEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';

let sim: Simulator;
let scripted: ScriptedUpstream;
let gw: GatewayFixture;
let client: OpenAI;

const CONTENT = ['Hel', 'lo', ' there', '!'];
/** A realistic OpenAI stream: role chunk, content chunks, finish chunk, usage chunk, [DONE]. */
function scriptEvents(withUsage: boolean): string[] {
  const ev = [chunkEvent({ role: 'assistant', content: '' })];
  for (const c of CONTENT) ev.push(chunkEvent({ content: c }));
  ev.push(chunkEvent({}, {}, 'stop'));
  if (withUsage) ev.push(usageEvent(11, 4, 3, 0));
  ev.push('data: [DONE]\n\n');
  return ev;
}

beforeAll(async () => {
  sim = await startSimulator({ ttftMs: 5, tpotMs: 2, outputTokens: 12 });
  scripted = await startScriptedUpstream({ steps: [] });
  gw = await withGateway(
    `
backends:
  sim: { type: openai, base_url: "${sim.url}", api_key: sk-provider-secret }
  scripted: { type: openai, base_url: "${scripted.baseURL}" }
models:
  m-sim:
    deployments: [{ backend: sim, model: upstream-sim }]
    pricing: { input_per_mtok: 2, output_per_mtok: 8, cached_input_per_mtok: 1 }
  m-script:
    deployments: [{ backend: scripted, model: up-model }]
    pricing: { input_per_mtok: 1000, output_per_mtok: 3000, cached_input_per_mtok: 500 }
`,
    { apiKey: 'sk-client-key' },
  );
  client = gw.openai;
});

afterAll(async () => {
  await gw?.close();
  await sim?.close();
  await scripted?.close();
});

describe('chat completions through the simulator', () => {
  it('non-streamed: the SDK gets the completion, usage is exact, model name rewritten, client key replaced', async () => {
    const r = await client.chat.completions.create({ model: 'm-sim', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 7 });
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBe(7);
    const up = sim.stats.lastRequest!;
    expect((up.body as { model: string }).model).toBe('upstream-sim');
    expect(up.headers.authorization).toBe('Bearer sk-provider-secret');
    expect(JSON.stringify(up.headers)).not.toContain('sk-client-key');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream === false && l.model === 'm-sim');
    expect(line.tokens).toEqual({ input: r.usage!.prompt_tokens, output: 7, cached_input: 0, reasoning: 0 });
    expect(line.tokens_estimated).toBe(false);
    expect(line.cost_usd).toBeCloseTo((r.usage!.prompt_tokens * 2 + 7 * 8) / 1e6, 12);
    expect(line.upstream_model).toBe('upstream-sim');
    expect(JSON.stringify(gw.logs)).not.toContain('sk-client-key');
    expect(JSON.stringify(gw.logs)).not.toContain('sk-provider-secret');
  });

  it('streamed without include_usage: the SDK sees no usage chunk, yet the gateway counts exact tokens', async () => {
    const stream = await client.chat.completions.create({
      model: 'm-sim',
      messages: [{ role: 'user', content: 'stream please' }],
      stream: true,
      max_tokens: 9,
    });
    let text = '';
    let sawUsage = false;
    for await (const chunk of stream) {
      if (chunk.usage) sawUsage = true;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    expect(sawUsage).toBe(false);
    expect(text.length).toBeGreaterThan(0);
    const body = sim.stats.lastRequest!.body as { stream_options?: { include_usage?: boolean } };
    expect(body.stream_options?.include_usage).toBe(true);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream === true && (l.tokens as { output: number })?.output === 9);
    expect(line.tokens_estimated).toBe(false);
    expect(typeof line.ttft_ms).toBe('number');
    expect(typeof line.tpot_ms).toBe('number');
  });

  it('streamed with include_usage: the SDK gets the usage chunk itself', async () => {
    const stream = await client.chat.completions.create({
      model: 'm-sim',
      messages: [{ role: 'user', content: 'count me' }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 5,
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    expect(usage?.completion_tokens).toBe(5);
  });

  it('streamed tool calls are assembled by the SDK', async () => {
    const runner = client.chat.completions.stream({
      model: 'm-sim',
      messages: [{ role: 'user', content: 'weather in Paris?' }],
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      ],
    });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    expect(call && 'function' in call ? call.function.name : undefined).toBe('get_weather');
    expect(() => JSON.parse(call && 'function' in call ? call.function.arguments : '')).not.toThrow();
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
  });

  it('legacy completions, streamed and not', async () => {
    const r = await client.completions.create({ model: 'm-sim', prompt: 'Say hi', max_tokens: 4 });
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBe(4);
    const s = await client.completions.create({ model: 'm-sim', prompt: 'Say hi', max_tokens: 3, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    expect(text.length).toBeGreaterThan(0);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.endpoint === 'completions' && l.stream === true);
    expect((line.tokens as { output: number }).output).toBe(3);
  });

  it('embeddings', async () => {
    const r = await client.embeddings.create({ model: 'm-sim', input: ['one', 'two'], dimensions: 4 });
    expect(r.data).toHaveLength(2);
    expect(r.data[0]!.embedding).toHaveLength(4);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.endpoint === 'embeddings');
    expect((line.tokens as { input: number }).input).toBe(r.usage.prompt_tokens);
  });

  it('GET /v1/models lists the served models', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id).sort()).toEqual(['m-script', 'm-sim']);
  });

  it('x-request-id is kept when the client sends one and made otherwise', async () => {
    const a = await request(`${gw.url}/healthz`, { headers: { 'x-request-id': 'abc-123' } });
    await a.body.text();
    expect(a.headers['x-request-id']).toBe('abc-123');
    const b = await request(`${gw.url}/v1/models`);
    await b.body.text();
    expect(b.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('other /v1/* routes', () => {
  it("pass through to the first model's backend with the provider key, never the client's", async () => {
    const before = sim.stats.requests;
    const r = await request(`${gw.url}/v1/files?purpose=batch`, {
      headers: { authorization: 'Bearer sk-client-key', connection: 'upgrade, keep-alive' },
    });
    const body = (await r.body.json()) as { error?: { code?: string } };
    // The simulator has no /files: its own OpenAI-shaped 404 comes back through the proxy.
    expect(r.statusCode).toBe(404);
    expect(body.error).toBeTruthy();
    expect(sim.stats.requests).toBe(before + 1);
    const seen = sim.stats.lastRequest!.headers;
    expect(seen.authorization).toBe('Bearer sk-provider-secret');
    expect(JSON.stringify(seen)).not.toContain('sk-client-key');
    expect(r.headers['x-request-id']).toBeTruthy();
  });
});

describe('byte-exact pass-through (scripted upstream)', () => {
  async function rawStream(body: Record<string, unknown>): Promise<{ bytes: string; headers: Record<string, unknown> }> {
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client-key', connection: 'keep-alive' },
      body: JSON.stringify(body),
    });
    return { bytes: await r.body.text(), headers: r.headers };
  }

  it('without include_usage the client receives the upstream bytes minus exactly the injected usage event', async () => {
    const events = scriptEvents(true);
    scripted.setScript({
      steps: events.map((bytes) => ({ delayMs: 1, bytes })),
      headers: { connection: 'keep-alive', 'set-cookie': 'a=b', 'openai-organization': 'org-secret' },
    });
    const { bytes, headers } = await rawStream({ model: 'm-script', messages: [{ role: 'user', content: 'hi' }], stream: true });
    expect(bytes).toBe(scriptEvents(false).join(''));
    expect(headers['set-cookie']).toBeUndefined();
    expect(headers['openai-organization']).toBeUndefined();
    expect(headers['x-gateway-model']).toBe('m-script');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.model === 'm-script' && l.stream === true);
    // Usage from the upstream's (removed) usage event: exact, including cached tokens.
    expect(line.tokens).toEqual({ input: 11, output: 4, cached_input: 3, reasoning: 0 });
    expect(line.cost_usd).toBeCloseTo(((11 - 3) * 1000 + 3 * 500 + 4 * 3000) / 1e6, 12);
  });

  it('with include_usage the bytes are identical, events split at awkward boundaries included', async () => {
    const whole = scriptEvents(true).join('');
    // Split the byte stream at odd offsets, across event boundaries and inside JSON.
    const steps = [];
    for (let i = 0; i < whole.length; i += 37) steps.push({ delayMs: 0, bytes: whole.slice(i, i + 37) });
    scripted.setScript({ steps });
    const { bytes } = await rawStream({
      model: 'm-script',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(bytes).toBe(whole);
  });

  it('tokens and cost land in /metrics exactly', async () => {
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_tokens_total', { model: 'm-script', type: 'cached_input' })).toBe(6);
    expect(metricValue(text, 'llm_gateway_tokens_total', { model: 'm-script', type: 'input' })).toBe(22);
    expect(metricValue(text, 'llm_gateway_tokens_total', { model: 'm-script', type: 'output' })).toBe(8);
    expect(metricValue(text, 'llm_gateway_cost_usd_total', { model: 'm-script', team: 'none' })).toBeCloseTo(
      (2 * ((11 - 3) * 1000 + 3 * 500 + 4 * 3000)) / 1e6,
      10,
    );
    expect(metricValue(text, 'llm_gateway_requests_total', { model: 'm-script', status: '200' })).toBe(2);
  });
});
