// The simulator's Responses API over real sockets, driven by the official openai SDK (its
// stream helper checks the event order and assembles the response) and by raw HTTP where the
// wire format itself is the point. Timing asserts lower bounds only, plus generous upper ones.
import { describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { z } from 'zod';
import type { Simulator } from '../../src/simulator/index.js';
import { useSimulator } from '../helpers/simulator.js';
import { completionText } from '../../src/simulator/words.js';

const TTFT = 40;
const TPOT = 10;
const TOKENS = 6;
const INPUT = 'Say hello to the gateway, please.';
const TOOLS: OpenAI.Responses.Tool[] = [
  {
    type: 'function',
    name: 'get_weather',
    strict: true,
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        unit: { type: 'string', enum: ['c', 'f'] },
      },
      required: ['city', 'days', 'unit'],
      additionalProperties: false,
    },
  },
];

let sim: Simulator;
let client: OpenAI;
useSimulator({ ttftMs: TTFT, tpotMs: TPOT, outputTokens: TOKENS }, (s, c) => {
  sim = s;
  client = c;
});

/** The events of a streamed message output item of `n` text tokens, in order. */
const messageItemEvents = (n: number) => [
  'response.output_item.added',
  'response.content_part.added',
  ...Array<string>(n).fill('response.output_text.delta'),
  'response.output_text.done',
  'response.content_part.done',
  'response.output_item.done',
];

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(sim.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

interface Ev {
  event: string;
  data: Record<string, unknown> & { type: string; sequence_number: number };
}

/** The SSE body as (event line, parsed data) pairs; every event has both lines. */
function events(text: string): Ev[] {
  return text
    .split('\n\n')
    .filter((e) => e !== '')
    .map((e) => {
      const m = /^event: (\S+)\ndata: (.*)$/s.exec(e);
      expect(m, e).not.toBeNull();
      return { event: m![1]!, data: JSON.parse(m![2]!) as Ev['data'] };
    });
}

describe('POST /responses, not streamed', () => {
  it('answers a Response object with output text and usage, after the generation time (SDK)', async () => {
    const t0 = performance.now();
    const r = await client.responses.create({ model: 'gpt-4.1-mini', input: INPUT, instructions: 'Be brief.' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(TTFT + (TOKENS - 1) * TPOT - 1);
    expect(r.object).toBe('response');
    expect(r.status).toBe('completed');
    expect(r.model).toBe('gpt-4.1-mini');
    expect(r.instructions).toBe('Be brief.');
    expect(r.output_text).toBe(completionText(TOKENS));
    expect(r.output).toHaveLength(1);
    expect(r.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    const input = countTokens(INPUT) + countTokens('Be brief.');
    expect(r.usage).toEqual({
      input_tokens: input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: TOKENS,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: input + TOKENS,
    });
    expect(sim.stats.byPath['/v1/responses']).toBe(1);
  });

  it('max_output_tokens cuts the answer short: status incomplete, reason max_output_tokens', async () => {
    const r = await client.responses.create({ model: 'm', input: INPUT, max_output_tokens: 2 });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.output_text).toBe(completionText(2));
    expect(r.usage!.output_tokens).toBe(2);
  });

  it('counts input items: messages with content parts, tool outputs', async () => {
    const input: OpenAI.Responses.ResponseInput = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: [{ type: 'input_text', text: INPUT }] },
    ];
    const r = await client.responses.create({ model: 'm', input });
    expect(r.usage!.input_tokens).toBe(countTokens('You are terse.') + countTokens(INPUT));
    const n = await client.responses.inputTokens.count({ model: 'm', input });
    expect(n).toEqual({ object: 'response.input_tokens', input_tokens: r.usage!.input_tokens });
  });

  it('refuses bad input with a 400 in OpenAI shape, naming the parameter', async () => {
    for (const [body, param] of [
      [{ model: 'm', input: 42 }, 'input'],
      [{ model: 'm' }, 'input'],
      [{ model: 'm', input: 'x', max_output_tokens: -1 }, 'max_output_tokens'],
      [{ model: 'm', input: 'x', tools: 'nope' }, 'tools'],
      [{ model: 'm', input: 'x', text: { format: { type: 'yaml' } } }, 'text.format.type'],
      [{ model: 'm', input: 'x', text: { format: { type: 'json_schema', name: 'x' } } }, 'text.format'],
    ] as const) {
      const r = await post('/responses', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(JSON.parse(r.text).error).toMatchObject({ type: 'invalid_request_error', param });
    }
    await expect(client.responses.create({ model: 'm', input: 'x', previous_response_id: 'resp_nope' })).rejects.toMatchObject({
      status: 400,
    });
  });
});

describe('POST /responses, streamed', () => {
  it('sends the real event sequence, one token per delta on time (SDK stream helper)', async () => {
    const t0 = performance.now();
    const stream = client.responses.stream({ model: 'm', input: INPUT });
    const seen: OpenAI.Responses.ResponseStreamEvent[] = [];
    const arrivals: number[] = [];
    for await (const e of stream) {
      seen.push(e);
      if (e.type === 'response.output_text.delta') arrivals.push(performance.now());
    }
    const final = await stream.finalResponse();
    const types = seen.map((e) => e.type);
    expect(types).toEqual(['response.created', 'response.in_progress', ...messageItemEvents(TOKENS), 'response.completed']);
    expect(seen.map((e) => e.sequence_number)).toEqual(seen.map((_, i) => i));
    const deltas = seen.filter((e): e is OpenAI.Responses.ResponseTextDeltaEvent => e.type === 'response.output_text.delta');
    for (const d of deltas) expect(countTokens(d.delta)).toBe(1);
    expect(deltas.map((d) => d.delta).join('')).toBe(completionText(TOKENS));
    expect(final.output_text).toBe(completionText(TOKENS));
    expect(final.usage).toMatchObject({ output_tokens: TOKENS, input_tokens: countTokens(INPUT) });
    // Timing: first token no earlier than TTFT; send stamps TPOT apart.
    expect(arrivals[0]! - t0).toBeGreaterThanOrEqual(TTFT - 1);
    const simTs = deltas.map((d) => (d as unknown as { sim_ts: number }).sim_ts);
    for (let i = 1; i < simTs.length; i++) expect(simTs[i]! - simTs[i - 1]!).toBeGreaterThanOrEqual(TPOT);
    expect(sim.stats.completed).toBe(1);
  });

  it('wire format: event line equals data.type, deltas carry ids and sim_ts; no [DONE]', async () => {
    const r = await post(
      '/responses',
      { model: 'm', input: INPUT, stream: true },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0', 'x-sim-output-tokens': '2' },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    expect(r.text).not.toContain('[DONE]');
    const evs = events(r.text);
    for (const e of evs) expect(e.event).toBe(e.data.type);
    const added = evs.find((e) => e.event === 'response.output_item.added')!.data;
    const delta = evs.find((e) => e.event === 'response.output_text.delta')!.data;
    expect(Object.keys(delta)).toEqual([
      'type',
      'item_id',
      'output_index',
      'content_index',
      'delta',
      'logprobs',
      'sequence_number',
      'sim_ts',
    ]);
    expect(delta.item_id).toBe((added.item as { id: string }).id);
    expect((delta.sim_ts as number) % 1).not.toBe(0); // sub-millisecond precision
    const created = evs[0]!.data.response as OpenAI.Responses.Response;
    const completed = evs.at(-1)!.data.response as OpenAI.Responses.Response;
    expect(created).toMatchObject({ status: 'in_progress', output: [], usage: null });
    expect(completed.id).toBe(created.id);
    expect(completed.usage).toMatchObject({ output_tokens: 2, total_tokens: countTokens(INPUT) + 2 });
  });

  it('ends with response.incomplete when max_output_tokens cuts it', async () => {
    const r = await post(
      '/responses',
      { model: 'm', input: INPUT, stream: true, max_output_tokens: 3 },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' },
    );
    const evs = events(r.text);
    expect(evs.filter((e) => e.event === 'response.output_text.delta')).toHaveLength(3);
    expect(evs.at(-1)!.data).toMatchObject({
      type: 'response.incomplete',
      response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } },
    });
  });

  it('omitUsage: response.completed carries usage null', async () => {
    sim.configure({ omitUsage: true, ttftMs: 0, tpotMs: 0 });
    const evs = events((await post('/responses', { model: 'm', input: INPUT, stream: true })).text);
    expect((evs.at(-1)!.data.response as { usage: unknown }).usage).toBeNull();
  });
});

describe('long streams', () => {
  it('a stream of 100 million tokens starts at once: no whole text is built before its end (chat and responses)', async () => {
    for (const [path, body] of [
      ['/responses', { model: 'm', input: INPUT, stream: true }],
      ['/chat/completions', { model: 'm', messages: [{ role: 'user', content: INPUT }], stream: true }],
    ] as const) {
      const ac = new AbortController();
      const r = await fetch(sim.url + path, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'x-sim-output-tokens': '100000000', 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '1000' },
        signal: ac.signal,
      });
      const reader = r.body!.getReader();
      let text = '';
      while (!text.includes('"sim_ts":')) text += new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      await reader.cancel().catch(() => {});
      expect(text, path).toContain(' hello');
    }
  }, 20_000);
});

describe('function calls', () => {
  it('streams a function call: arguments one token per delta, a call the SDK assembles', async () => {
    sim.configure({ ttftMs: 5, tpotMs: 1 });
    const stream = client.responses.stream({ model: 'm', input: 'What is the weather in Paris?', tools: TOOLS });
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    const final = await stream.finalResponse();
    expect(types.slice(0, 3)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added']);
    expect(types.slice(-3)).toEqual(['response.function_call_arguments.done', 'response.output_item.done', 'response.completed']);
    const deltas = types.filter((t) => t === 'response.function_call_arguments.delta').length;
    const call = final.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed' });
    expect(call.call_id).toBeTruthy();
    expect(JSON.parse(call.arguments)).toEqual({ city: 'hello', days: 7, unit: 'c' });
    expect(deltas).toBe(countTokens(call.arguments));
    expect(final.usage!.output_tokens).toBe(deltas);
  });

  it('answers with text once the input ends in the tool result; tool_choice none never calls', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const first = await client.responses.create({ model: 'm', input: 'Weather in Paris?', tools: TOOLS });
    const call = first.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    expect(call.type).toBe('function_call');
    const second = await client.responses.create({
      model: 'm',
      tools: TOOLS,
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        call,
        { type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' },
      ],
    });
    expect(second.output_text).toBe(completionText(TOKENS));
    const none = await client.responses.create({ model: 'm', input: 'x', tools: TOOLS, tool_choice: 'none' });
    expect(none.output[0]!.type).toBe('message');
  });
});

describe('structured output (text.format json_schema)', () => {
  const Event = z.object({
    name: z.string(),
    date: z.string(),
    attendees: z.array(z.object({ name: z.string(), role: z.enum(['host', 'guest']), age: z.number().int().min(18).max(120) })),
    location: z.object({ city: z.string(), indoor: z.boolean() }),
    notes: z.string().nullable(),
  });

  it('yields JSON valid under the schema, streamed and not', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const format = { type: 'json_schema' as const, name: 'event', strict: true, schema: z.toJSONSchema(Event) as Record<string, unknown> };
    const r = await client.responses.create({ model: 'm', input: 'Plan an event.', text: { format } });
    const parsed = Event.parse(JSON.parse(r.output_text));
    expect(parsed.attendees.length).toBeGreaterThan(0);
    const stream = client.responses.stream({ model: 'm', input: 'Plan an event.', text: { format } });
    const final = await stream.finalResponse();
    expect(Event.parse(JSON.parse(final.output_text))).toEqual(parsed);
    expect(final.usage!.output_tokens).toBe(countTokens(final.output_text));
  });

  it('json_object yields a JSON object', async () => {
    const r = await client.responses.create({ model: 'm', input: 'Reply in JSON.', text: { format: { type: 'json_object' } } });
    expect(typeof JSON.parse(r.output_text)).toBe('object');
  });
});

describe('reasoning', () => {
  it('with a summary: reasoning deltas stream first, then the answer; usage counts both', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 1 });
    const stream = client.responses.stream({ model: 'm', input: INPUT, reasoning: { effort: 'low', summary: 'auto' } });
    const seen: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) seen.push(e);
    const final = await stream.finalResponse();
    const R = Math.ceil(TOKENS / 2);
    const types = seen.map((e) => e.type);
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.reasoning_summary_part.added',
      ...Array<string>(R).fill('response.reasoning_summary_text.delta'),
      'response.reasoning_summary_text.done',
      'response.reasoning_summary_part.done',
      'response.output_item.done',
      ...messageItemEvents(TOKENS),
      'response.completed',
    ]);
    expect(seen.map((e) => e.sequence_number)).toEqual(seen.map((_, i) => i));
    const summary = seen.filter(
      (e): e is OpenAI.Responses.ResponseReasoningSummaryTextDeltaEvent => e.type === 'response.reasoning_summary_text.delta',
    );
    for (const d of summary) expect(countTokens(d.delta)).toBe(1);
    expect(final.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    expect((final.output[0] as OpenAI.Responses.ResponseReasoningItem).summary[0]!.text).toBe(summary.map((d) => d.delta).join(''));
    expect(final.output_text).toBe(completionText(TOKENS));
    expect(final.usage).toMatchObject({ output_tokens: R + TOKENS, output_tokens_details: { reasoning_tokens: R } });
  });

  it('a function call after summarised reasoning is output item 1, assembled by the SDK', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const final = await client.responses
      .stream({ model: 'm', input: 'Weather?', tools: TOOLS, reasoning: { effort: 'medium', summary: 'concise' } })
      .finalResponse();
    expect(final.output.map((o) => o.type)).toEqual(['reasoning', 'function_call']);
    expect(JSON.parse((final.output[1] as OpenAI.Responses.ResponseFunctionToolCall).arguments)).toEqual({
      city: 'hello',
      days: 7,
      unit: 'c',
    });
    expect(final.usage!.output_tokens_details.reasoning_tokens).toBe(TOKENS);
  });

  it('hidden reasoning (no summary) delays the first token by its tokens; counted, not streamed', async () => {
    const t0 = performance.now();
    const r = await post('/responses', { model: 'm', input: INPUT, stream: true, reasoning: { effort: 'high' } });
    const evs = events(r.text);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(TTFT + 2 * TOKENS * TPOT + (TOKENS - 1) * TPOT - 1);
    expect(evs.some((e) => e.event.startsWith('response.reasoning'))).toBe(false);
    expect(evs.filter((e) => e.event === 'response.output_text.delta')).toHaveLength(TOKENS);
    const done = evs.at(-1)!.data.response as OpenAI.Responses.Response;
    expect(done.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    expect(done.usage).toMatchObject({ output_tokens: 3 * TOKENS, output_tokens_details: { reasoning_tokens: 2 * TOKENS } });
    const plain = await client.responses.create({ model: 'm', input: INPUT, reasoning: { effort: 'minimal' } });
    expect(plain.usage!.output_tokens_details.reasoning_tokens).toBe(0);
  });
});

describe('stored responses and follow-ups', () => {
  it('retrieve, input_items, previous_response_id (its context counted as cached input), delete', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const first = await client.responses.create({ model: 'm', input: INPUT });
    expect((await client.responses.retrieve(first.id)).output_text).toBe(first.output_text);
    const items = await client.responses.inputItems.list(first.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user', content: [{ type: 'input_text', text: INPUT }] });

    const next = await client.responses.create({ model: 'm', input: 'And again.', previous_response_id: first.id });
    expect(next.previous_response_id).toBe(first.id);
    expect(next.usage!.input_tokens_details.cached_tokens).toBe(first.usage!.total_tokens);
    expect(next.usage!.input_tokens).toBe(first.usage!.total_tokens + countTokens('And again.'));

    await expect(client.responses.cancel(first.id)).rejects.toMatchObject({ status: 400 });
    await client.responses.delete(first.id);
    await expect(client.responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.create({ model: 'm', input: 'x', previous_response_id: first.id })).rejects.toMatchObject({
      status: 400,
    });
  });

  it('a streamed response is stored once it completed; store: false is not stored', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const final = await client.responses.stream({ model: 'm', input: INPUT }).finalResponse();
    expect((await client.responses.retrieve(final.id)).status).toBe('completed');
    const unstored = await client.responses.create({ model: 'm', input: INPUT, store: false });
    await expect(client.responses.retrieve(unstored.id)).rejects.toMatchObject({ status: 404 });
  });
});

describe('faults', () => {
  it('a status fault answers in OpenAI error shape, which the SDK raises', async () => {
    const c = client.withOptions({ defaultHeaders: { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 429, retryAfterS: 1 }) } });
    await expect(c.responses.create({ model: 'm', input: INPUT })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('error_mid_stream: after N deltas an `error` event in sequence ends the stream; not streamed, a 500', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0, fault: { kind: 'error_mid_stream', afterChunks: 2 } });
    const r = await post('/responses', { model: 'm', input: INPUT, stream: true });
    expect(r.status).toBe(200);
    const evs = events(r.text);
    expect(evs.filter((e) => e.event === 'response.output_text.delta')).toHaveLength(2);
    const last = evs.at(-1)!;
    expect(last.event).toBe('error');
    expect(last.data).toMatchObject({ type: 'error', code: 'server_error', param: null });
    expect(evs.map((e) => e.data.sequence_number)).toEqual(evs.map((_, i) => i));
    expect(evs.some((e) => e.event === 'response.completed')).toBe(false);
    await expect(client.responses.create({ model: 'm', input: INPUT })).rejects.toBeInstanceOf(OpenAI.InternalServerError);
    // In a summarised reasoning phase, too.
    const rs = events(
      (await post('/responses', { model: 'm', input: INPUT, stream: true, reasoning: { effort: 'medium', summary: 'auto' } })).text,
    );
    expect(rs.at(-1)!.event).toBe('error');
    expect(rs.map((e) => e.data.sequence_number)).toEqual(rs.map((_, i) => i));
  });

  it('die_mid_stream drops the connection after N deltas: no response.completed, the SDK raises', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 1, fault: { kind: 'die_mid_stream', afterChunks: 3 } });
    const r = await fetch(sim.url + '/responses', { method: 'POST', body: JSON.stringify({ model: 'm', input: INPUT, stream: true }) });
    const text = await r.text().catch(() => null); // undici may raise "terminated" instead
    if (text !== null) {
      expect(text).not.toContain('response.completed');
      expect(text.split('event: response.output_text.delta').length - 1).toBe(3);
    }
    const stream = client.responses.stream({ model: 'm', input: INPUT });
    await expect(stream.finalResponse()).rejects.toThrow();
    expect(sim.stats.faults).toBe(2);
  });
});
