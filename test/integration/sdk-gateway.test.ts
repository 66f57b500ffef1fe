// The official openai SDK through the gateway, onto the simulator: chat structured output
// (.parse() with a zod schema) and n choices, and the Responses API (responses.create streamed
// and not, function calls, text.format, a dying upstream), with the gateway's request log line
// as the accounting evidence.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { z } from 'zod';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { completionText } from '../../src/simulator/words.js';
import { withGateway, type GatewayFixture } from '../helpers/gateway.js';

const TOKENS = 8;
const Person = z.object({
  name: z.string(),
  age: z.number().int().min(0).max(150),
  tags: z.array(z.string()),
  role: z.enum(['admin', 'user']),
});
const TOOLS: OpenAI.Responses.Tool[] = [
  {
    type: 'function',
    name: 'lookup',
    strict: true,
    parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false },
  },
];

let sim: Simulator;
let gw: GatewayFixture;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSimulator({ ttftMs: 5, tpotMs: 1, outputTokens: TOKENS });
  gw = await withGateway(
    `
backends:
  sim: { type: openai, base_url: "${sim.url}", api_key: sk-provider-secret, forward_headers: [x-sim-fault] }
models:
  m:
    deployments: [{ backend: sim, model: upstream-m }]
    pricing: { input_per_mtok: 2, output_per_mtok: 8, cached_input_per_mtok: 1 }
`,
    { apiKey: 'sk-client-key' },
  );
  client = gw.openai;
});
afterAll(async () => {
  await gw?.close();
  await sim?.close();
});

describe('chat completions through the gateway: structured output and n', () => {
  it('.parse() with a zod schema and n = 3: every choice parses, usage counts them all', async () => {
    const r = await client.chat.completions.parse({
      model: 'm',
      messages: [{ role: 'user', content: 'A person.' }],
      n: 3,
      response_format: zodResponseFormat(Person, 'person'),
    });
    expect(r.choices).toHaveLength(3);
    for (const c of r.choices) expect(Person.parse(c.message.parsed)).toEqual(c.message.parsed);
    const perChoice = countTokens(r.choices[0]!.message.content!);
    expect(r.usage!.completion_tokens).toBe(3 * perChoice);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === r._request_id);
    expect((line.tokens as { output: number }).output).toBe(3 * perChoice);
  });

  it('streamed n = 2: the SDK assembles both choices', async () => {
    const done = await client.chat.completions
      .stream({ model: 'm', messages: [{ role: 'user', content: 'hi' }], n: 2 })
      .finalChatCompletion();
    expect(done.choices.map((c) => c.message.content)).toEqual([completionText(TOKENS, 0), completionText(TOKENS, 1)]);
  });
});

describe('the Responses API through the gateway (openai SDK)', () => {
  it('responses.create, not streamed: the answer, the upstream model spliced in, tokens logged', async () => {
    const r = await client.responses.create({ model: 'm', input: 'Say hello.' });
    expect(r.output_text).toBe(completionText(TOKENS));
    expect((sim.stats.lastRequest!.body as { model: string }).model).toBe('upstream-m');
    expect(JSON.stringify(sim.stats.lastRequest!.headers)).not.toContain('sk-client-key');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === r._request_id);
    expect(line.tokens).toMatchObject({ input: countTokens('Say hello.'), output: TOKENS, cached_input: 0, reasoning: 0 });
  });

  it('responses.stream: the SDK assembles it; the gateway logs TTFT, TPOT and tokens', async () => {
    const stream = client.responses.stream({ model: 'm', input: 'Say hello.' });
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(completionText(TOKENS));
    const line = await gw.waitForLog(
      (l) => l.msg === 'request' && l.stream === true && (l.tokens as { output?: number } | undefined)?.output === TOKENS,
    );
    expect(line.ttft_ms).toBeGreaterThanOrEqual(5);
    expect(line.tpot_ms).toBeGreaterThan(0);
  });

  it('a follow-up with previous_response_id: the context is counted as cached input', async () => {
    const first = await client.responses.create({ model: 'm', input: 'Say hello.' });
    const next = await client.responses.create({ model: 'm', input: 'Again.', previous_response_id: first.id });
    expect(next.usage!.input_tokens_details.cached_tokens).toBe(first.usage!.total_tokens);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === next._request_id);
    expect((line.tokens as { cached_input: number }).cached_input).toBe(first.usage!.total_tokens);
    expect((await client.responses.retrieve(first.id)).id).toBe(first.id);
  });

  it('function calls, streamed: arguments assembled by the SDK', async () => {
    const final = await client.responses.stream({ model: 'm', input: 'Look it up.', tools: TOOLS }).finalResponse();
    const call = final.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call).toMatchObject({ type: 'function_call', name: 'lookup' });
    expect(JSON.parse(call.arguments)).toEqual({ q: 'hello' });
  });

  it('responses.parse() with zodTextFormat', async () => {
    const r = await client.responses.parse({ model: 'm', input: 'A person.', text: { format: zodTextFormat(Person, 'person') } });
    expect(Person.parse(r.output_parsed)).toEqual(r.output_parsed);
  });

  it('an upstream dying mid-stream reaches the SDK as an error, never a clean end', async () => {
    const c = client.withOptions({ defaultHeaders: { 'x-sim-fault': JSON.stringify({ kind: 'die_mid_stream', afterChunks: 3 }) } });
    await expect(c.responses.stream({ model: 'm', input: 'Say hello.' }).finalResponse()).rejects.toThrow();
  });

  it('bad input gets an OpenAI-shaped 400 and is never forwarded', async () => {
    const before = sim.stats.requests;
    const r = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"m","input":',
    });
    expect(r.status).toBe(400);
    expect((await r.json()) as unknown).toMatchObject({ error: { type: 'invalid_request_error' } });
    expect(sim.stats.requests).toBe(before);
  });
});
