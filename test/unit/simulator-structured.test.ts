// Structured outputs and n choices from the simulator: the JSON-schema value generator on its
// own (bounds, nesting, refs, hostile schemas), and chat completions with response_format and n
// through the official openai SDK, including its .parse() with a zod schema.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { encode as encodeO200k } from 'gpt-tokenizer/encoding/o200k_base';
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { z } from 'zod';
import { startSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { sampleFromSchema } from '../../src/simulator/schema.js';
import { completionText, WORDS } from '../../src/simulator/words.js';

const MSG = [{ role: 'user' as const, content: 'Describe a user.' }];

const User = z.object({
  id: z.string().uuid(),
  email: z.string().email(),
  name: z.string().min(8).max(10),
  age: z.number().int().min(0).max(30),
  score: z.number().gt(0).lt(1),
  step: z.number().multipleOf(0.25).min(100),
  admin: z.boolean(),
  role: z.enum(['owner', 'member']),
  kind: z.literal('user'),
  tags: z.array(z.string()).min(3).max(5),
  address: z.object({ street: z.string(), geo: z.object({ lat: z.number(), lng: z.number() }) }),
  nickname: z.string().nullable(),
  contact: z.union([z.object({ phone: z.string() }), z.object({ mail: z.string() })]),
  created: z.string().datetime(),
});

describe('sampleFromSchema', () => {
  it('yields a value valid under a rich schema (zod generates it, zod validates it)', () => {
    // Optional properties and tuples: valid JSON Schema that OpenAI's strict mode refuses.
    const WithOptional = User.extend({ bio: z.string().optional(), pair: z.tuple([z.string(), z.number()]) });
    const value = sampleFromSchema(z.toJSONSchema(WithOptional));
    const parsed = WithOptional.parse(value);
    expect(parsed.bio).toBe('hello');
    expect(parsed.pair).toEqual(['hello', 42]);
    expect(parsed.tags).toHaveLength(3);
    expect(parsed.age).toBe(30);
    expect(parsed.step).toBe(100);
    expect(parsed.kind).toBe('user');
  });

  it('follows $refs, recursive ones included, and stays bounded', () => {
    interface Node {
      value: number;
      children: Node[];
    }
    const Tree: z.ZodType<Node> = z.lazy(() => z.object({ value: z.number(), children: z.array(Tree) }));
    const value = sampleFromSchema(z.toJSONSchema(Tree)) as Node;
    expect(Tree.parse(value)).toEqual(value);
    const text = JSON.stringify(value);
    expect(text.length).toBeLessThan(200_000);
    // A self-referencing required property cannot be satisfied finitely: it must still end.
    const hostile = { $defs: { a: { type: 'object', properties: { a: { $ref: '#/$defs/a' } }, required: ['a'] } }, $ref: '#/$defs/a' };
    expect(JSON.stringify(sampleFromSchema(hostile)).length).toBeLessThan(10_000);
    // Huge array demands are capped by the node budget.
    const wide = sampleFromSchema({ type: 'array', items: { type: 'array', minItems: 1000, items: { type: 'string' } }, minItems: 1000 });
    expect(JSON.stringify(wide).length).toBeLessThan(500_000);
  });

  it('never lets a property name become a prototype; remote refs resolve to a plain value', () => {
    const v = sampleFromSchema({
      type: 'object',
      properties: { __proto__: { type: 'string' }, x: { $ref: 'https://example.com/s.json' } },
      required: ['__proto__', 'x'],
    }) as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect(JSON.parse(JSON.stringify(v))).toHaveProperty('x');
  });

  it('json-schema draft 4 style bounds and type lists', () => {
    expect(sampleFromSchema({ type: 'number', minimum: 50, exclusiveMinimum: true, multipleOf: 5 })).toBe(55);
    expect(sampleFromSchema({ type: ['null', 'integer'], maximum: 3 })).toBe(3);
    expect(sampleFromSchema({ type: 'string', maxLength: 2 })).toBe('he');
    expect(
      sampleFromSchema({ allOf: [{ type: 'object', properties: { a: { type: 'boolean' } } }, { properties: { b: { const: 1 } } }] }),
    ).toEqual({ a: true, b: 1 });
  });
});

describe('chat completions: n and response_format', () => {
  let sim: Simulator;
  let client: OpenAI;
  const TOKENS = 5;
  beforeAll(async () => {
    sim = await startSimulator({ ttftMs: 0, tpotMs: 1, outputTokens: TOKENS });
    client = new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(async () => {
    await sim.close();
  });

  it('choices start at different words and stay one token each, in both tokenizers', () => {
    for (let offset = 0; offset < WORDS.length; offset++) {
      for (const n of [1, 7, 25]) {
        expect(encodeO200k(completionText(n, offset))).toHaveLength(n);
        expect(encodeCl100k(completionText(n, offset))).toHaveLength(n);
      }
    }
  });

  it('n choices, not streamed: distinct texts, usage counts every choice', async () => {
    const r = await client.chat.completions.create({ model: 'm', messages: MSG, n: 3 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.choices.map((c) => c.message.content)).toEqual([0, 1, 2].map((i) => completionText(TOKENS, i)));
    expect(r.usage!.completion_tokens).toBe(3 * TOKENS);
  });

  it('n choices, streamed: each token tick carries one chunk per choice; the SDK assembles all', async () => {
    const stream = client.chat.completions.stream({ model: 'm', messages: MSG, n: 2, stream_options: { include_usage: true } });
    const done = await stream.finalChatCompletion();
    expect(done.choices.map((c) => c.message.content)).toEqual([completionText(TOKENS, 0), completionText(TOKENS, 1)]);
    expect(done.choices.every((c) => c.finish_reason === 'stop')).toBe(true);
    expect(done.usage!.completion_tokens).toBe(2 * TOKENS);
  });

  it('refuses n outside 1..128 and an unknown response_format type with a 400', async () => {
    await expect(client.chat.completions.create({ model: 'm', messages: MSG, n: 0 })).rejects.toMatchObject({ status: 400, param: 'n' });
    await expect(client.chat.completions.create({ model: 'm', messages: MSG, n: 129 })).rejects.toMatchObject({ status: 400 });
    await expect(
      client.chat.completions.create({
        model: 'm',
        messages: MSG,
        response_format: { type: 'yaml' } as unknown as OpenAI.ResponseFormatJSONObject,
      }),
    ).rejects.toMatchObject({ status: 400, param: 'response_format.type' });
    await expect(
      client.chat.completions.create({
        model: 'm',
        messages: MSG,
        response_format: { type: 'json_schema' } as unknown as OpenAI.ResponseFormatJSONSchema,
      }),
    ).rejects.toMatchObject({ status: 400, param: 'response_format.json_schema' });
  });

  it('reasoning_effort: hidden reasoning tokens in completion_tokens and its details; answer unchanged', async () => {
    const r = await client.chat.completions.create({ model: 'm', messages: MSG, reasoning_effort: 'medium' });
    expect(r.choices[0]!.message.content).toBe(completionText(TOKENS));
    expect(r.usage!.completion_tokens).toBe(2 * TOKENS);
    expect(r.usage!.completion_tokens_details!.reasoning_tokens).toBe(TOKENS);
    const s = await client.chat.completions
      .stream({ model: 'm', messages: MSG, reasoning_effort: 'low', stream_options: { include_usage: true } })
      .finalChatCompletion();
    expect(s.usage!.completion_tokens_details!.reasoning_tokens).toBe(Math.ceil(TOKENS / 2));
  });

  it('error_mid_stream on chat: a data: {"error"} event after N chunks, which the SDK raises', async () => {
    sim.configure({ fault: { kind: 'error_mid_stream', afterChunks: 2 } });
    const r = await fetch(sim.url + '/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: 'm', messages: MSG, stream: true }),
    });
    const events = (await r.text()).split('\n\n').filter(Boolean);
    expect(events.filter((e) => e.includes('"content":" '))).toHaveLength(2);
    expect(JSON.parse(events.at(-1)!.slice(6))).toMatchObject({ error: { type: 'server_error' } });
    const stream = await client.chat.completions.create({ model: 'm', messages: MSG, stream: true });
    await expect(
      (async () => {
        for await (const _ of stream);
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
    sim.configure({ fault: null });
  });

  it('json_object: content is a JSON object', async () => {
    const r = await client.chat.completions.create({ model: 'm', messages: MSG, response_format: { type: 'json_object' } });
    expect(JSON.parse(r.choices[0]!.message.content!)).toBeTypeOf('object');
  });

  it('.parse() with a zod schema, n = 2: every choice parses; usage matches the JSON tokens', async () => {
    const r = await client.chat.completions.parse({ model: 'm', messages: MSG, n: 2, response_format: zodResponseFormat(User, 'user') });
    expect(r.choices).toHaveLength(2);
    for (const c of r.choices) expect(User.parse(c.message.parsed)).toEqual(c.message.parsed);
    expect(r.usage!.completion_tokens).toBe(2 * countTokens(r.choices[0]!.message.content!));
  });

  it('streamed json_schema: the SDK stream helper parses the assembled JSON', async () => {
    const stream = client.chat.completions.stream({ model: 'm', messages: MSG, response_format: zodResponseFormat(User, 'user') });
    const done = await stream.finalChatCompletion();
    expect(User.parse(done.choices[0]!.message.parsed)).toBeTruthy();
  });

  it('responses.parse() with zodTextFormat', async () => {
    const r = await client.responses.parse({ model: 'm', input: 'Describe a user.', text: { format: zodTextFormat(User, 'user') } });
    expect(User.parse(r.output_parsed)).toEqual(r.output_parsed);
  });
});
