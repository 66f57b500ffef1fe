// The Vercel AI SDK as users run it: `openai('demo')` (the Responses API, its default) and
// `openai.chat('demo')`, with generateText, streamText, generateObject/streamObject and a
// tool loop. Against the simulator directly, and through a gateway running the shipped
// policies/policies.yaml (what `npm start` serves: model `demo` on the built-in simulator, no
// key), so the default setup is known to work with the SDK.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, stepCountIs, streamObject, streamText, tool } from 'ai';
import { z } from 'zod';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { completionText } from '../../src/simulator/words.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const DEFAULT_POLICIES = readFileSync(new URL('../../policies/policies.yaml', import.meta.url), 'utf8');
const OUTPUT_TOKENS = 24; // policies.yaml: the simulator backend's output_tokens

const Recipe = z.object({
  name: z.string(),
  servings: z.number().int().min(1).max(12),
  vegetarian: z.boolean(),
  course: z.enum(['starter', 'main', 'dessert']),
  ingredients: z.array(z.object({ item: z.string(), grams: z.number().min(0) })).min(1),
  steps: z.array(z.string()),
});

let sim: Simulator;
let gw: TestGateway;

beforeAll(async () => {
  sim = await startSimulator({ ttftMs: 5, tpotMs: 1, outputTokens: OUTPUT_TOKENS });
  gw = await startGateway(DEFAULT_POLICIES, { GATEWAY_ADMIN_TOKEN: '' });
});
afterAll(async () => {
  await gw?.close();
  await sim?.close();
});

// Both targets serve model `demo` with 24 output tokens. No key: the default policies have none
// (the SDK insists on some string, which the gateway then ignores).
const targets = [
  { name: 'simulator', baseURL: () => sim.url },
  { name: 'gateway with policies/policies.yaml', baseURL: () => gw.baseURL },
];

describe.each(targets)("Vercel AI SDK, openai('demo') on the Responses API, against the $name", ({ baseURL }) => {
  const provider = () => createOpenAI({ baseURL: baseURL(), apiKey: 'no-key-needed' });

  it('generateText', async () => {
    const r = await generateText({ model: provider()('demo'), prompt: 'Say hello.', maxRetries: 0 });
    expect(r.text).toBe(completionText(OUTPUT_TOKENS));
    expect(r.finishReason).toBe('stop');
    expect(r.usage.outputTokens).toBe(OUTPUT_TOKENS);
    expect(r.usage.inputTokens).toBeGreaterThan(0);
  });

  it('streamText: text arrives in parts, usage at the end', async () => {
    const r = streamText({ model: provider()('demo'), prompt: 'Say hello.', maxRetries: 0 });
    const parts: string[] = [];
    for await (const p of r.textStream) parts.push(p);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.join('')).toBe(completionText(OUTPUT_TOKENS));
    expect((await r.usage).outputTokens).toBe(OUTPUT_TOKENS);
    expect(await r.finishReason).toBe('stop');
  });

  it('generateObject and streamObject: structured output valid under the zod schema', async () => {
    const g = await generateObject({ model: provider()('demo'), schema: Recipe, prompt: 'A recipe.', maxRetries: 0 });
    expect(Recipe.parse(g.object)).toEqual(g.object);
    const s = streamObject({ model: provider()('demo'), schema: Recipe, prompt: 'A recipe.', maxRetries: 0 });
    let partials = 0;
    for await (const _ of s.partialObjectStream) partials++; // the SDK only settles `object` once the stream is read
    expect(partials).toBeGreaterThan(1);
    expect(await s.object).toEqual(g.object);
  });

  it('a tool loop: the model calls the tool, gets its result, then answers in text', async () => {
    await toolLoop(provider()('demo'));
  });
});

describe.each(targets)("Vercel AI SDK, openai.chat('demo') on chat completions, against the $name", ({ baseURL }) => {
  const provider = () => createOpenAI({ baseURL: baseURL(), apiKey: 'no-key-needed' });

  it('streamText', async () => {
    const r = streamText({ model: provider().chat('demo'), prompt: 'Say hello.', maxRetries: 0 });
    expect(await r.text).toBe(completionText(OUTPUT_TOKENS));
    expect((await r.usage).outputTokens).toBe(OUTPUT_TOKENS);
  });

  it('generateObject: structured output (response_format json_schema) valid under the zod schema', async () => {
    const g = await generateObject({ model: provider().chat('demo'), schema: Recipe, prompt: 'A recipe.', maxRetries: 0 });
    expect(Recipe.parse(g.object)).toEqual(g.object);
  });

  it('a tool loop', async () => {
    await toolLoop(provider().chat('demo'));
  });
});

async function toolLoop(model: Parameters<typeof generateText>[0]['model']): Promise<void> {
  let called = 0;
  const r = await generateText({
    model,
    prompt: 'What is the weather in Paris?',
    maxRetries: 0,
    stopWhen: stepCountIs(4),
    tools: {
      weather: tool({
        description: 'Weather for a city',
        inputSchema: z.object({ city: z.string(), unit: z.enum(['c', 'f']) }),
        execute: async ({ city, unit }) => {
          called++;
          return { city, unit, temperature: 21 };
        },
      }),
    },
  });
  expect(called).toBe(1);
  expect(r.steps).toHaveLength(2);
  expect(r.steps[0]!.toolCalls[0]).toMatchObject({ toolName: 'weather', input: { city: 'hello', unit: 'c' } });
  expect(r.text).toBe(completionText(OUTPUT_TOKENS));
}
