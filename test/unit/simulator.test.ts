// The simulator over real sockets, driven by the official openai SDK (and raw HTTP
// where the exact wire format is the point). Timing asserts only lower bounds plus
// generous upper bounds: CI machines are slow, never early.
import http from 'node:http';
import type { ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { startProcess } from '../helpers/process.js';
import { describe, expect, it } from 'vitest';
import { until } from '../helpers/wait.js';
import { useSimulator } from '../helpers/simulator.js';
import OpenAI from 'openai';
import { encode as encodeO200k, countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { startSimulator } from '../../src/simulator/index.js';
import type { Simulator } from '../../src/simulator/index.js';
import { WORDS, completionText } from '../../src/simulator/words.js';
import { TokenStream } from '../../src/simulator/stream.js';

const TTFT = 100;
const TPOT = 20;
const TOKENS = 8;
const MSG = [{ role: 'user' as const, content: 'Say hello to the gateway, please.' }];

let sim: Simulator;
let client: OpenAI;
useSimulator({ ttftMs: TTFT, tpotMs: TPOT, outputTokens: TOKENS }, (s, c) => {
  sim = s;
  client = c;
});

/** POST JSON with fetch; returns status, headers and the raw body text. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(sim.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

/** Parse an SSE body into its data payloads (JSON objects, and the literal [DONE]). */
function sse(text: string): unknown[] {
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  return text
    .split('\n\n')
    .filter((e) => e !== '')
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      const d = e.slice(6);
      return d === '[DONE]' ? d : JSON.parse(d);
    });
}

describe('tokens', () => {
  it('every word is exactly one token in o200k_base and cl100k_base, alone and concatenated', () => {
    for (const w of WORDS) {
      expect(encodeO200k(w), w).toHaveLength(1);
      expect(encodeCl100k(w), w).toHaveLength(1);
    }
    for (let n = 1; n <= 100; n++) {
      expect(encodeO200k(completionText(n))).toHaveLength(n);
      expect(encodeCl100k(completionText(n))).toHaveLength(n);
    }
  });
});

describe('chat completions, streamed', () => {
  it('sends role chunk, one token per chunk on time, finish chunk, [DONE] (SDK)', async () => {
    const t0 = performance.now();
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MSG, stream: true });
    const arrivals: number[] = [];
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) {
      chunks.push(c);
      if (c.choices[0]?.delta.content) arrivals.push(performance.now());
    }
    const first = chunks[0]!;
    expect(first.object).toBe('chat.completion.chunk');
    expect(first.id).toMatch(/^chatcmpl-/);
    expect(first.model).toBe('gpt-4o-mini');
    expect(first.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });

    const content = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(content).toHaveLength(TOKENS);
    for (const c of content) expect(countTokens(c.choices[0]!.delta.content!)).toBe(1);
    expect(content.map((c) => c.choices[0]!.delta.content).join('')).toBe(completionText(TOKENS));
    const last = chunks.at(-1)!;
    expect(last.choices[0]!.finish_reason).toBe('stop');
    expect(last.choices[0]!.delta).toEqual({});
    expect(chunks.some((c) => c.usage)).toBe(false);

    // Timing: first token no earlier than TTFT after the request; later ones TPOT apart.
    expect(arrivals[0]! - t0).toBeGreaterThanOrEqual(TTFT - 1);
    // Upper bounds only catch a token that never comes on time at all: a busy machine stalls for 100s of ms.
    expect(arrivals[0]! - t0).toBeLessThan(TTFT + 5000);
    const simTs = content.map((c) => (c as unknown as { sim_ts: number }).sim_ts);
    for (let i = 1; i < simTs.length; i++) expect(simTs[i]! - simTs[i - 1]!).toBeGreaterThanOrEqual(TPOT);
    const total = arrivals.at(-1)! - t0;
    expect(total).toBeGreaterThanOrEqual(TTFT + (TOKENS - 1) * TPOT - 1);
    expect(total).toBeLessThan(TTFT + (TOKENS - 1) * TPOT + 5000);
    expect(sim.stats.completed).toBe(1);
  });

  it('matches the OpenAI wire format byte for byte in shape', async () => {
    const r = await post(
      '/chat/completions',
      { model: 'm', messages: MSG, stream: true },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0', 'x-sim-output-tokens': '2' },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    expect(Number(r.headers.get('x-sim-request-ms'))).toBeGreaterThan(1.6e12);
    const events = sse(r.text);
    expect(events).toHaveLength(5); // role, 2 tokens, finish, [DONE]
    const tok = events[1] as Record<string, unknown>;
    expect(Object.keys(tok)).toEqual(['id', 'object', 'created', 'model', 'system_fingerprint', 'choices', 'sim_ts']);
    expect(tok.choices).toEqual([{ index: 0, delta: { content: ' hello' }, logprobs: null, finish_reason: null }]);
    expect(typeof tok.sim_ts).toBe('number');
    expect((tok.sim_ts as number) % 1).not.toBe(0); // sub-millisecond precision
    expect(events[3]).toMatchObject({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
  });

  it('honours stream_options.include_usage with a choices:[] usage chunk', async () => {
    const r = await post(
      '/chat/completions',
      { model: 'm', messages: MSG, stream: true, stream_options: { include_usage: true } },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' },
    );
    const events = sse(r.text);
    const usageChunk = events.at(-2) as { choices: unknown[]; usage: Record<string, number> };
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({
      prompt_tokens: countTokens(MSG[0]!.content),
      completion_tokens: TOKENS,
      total_tokens: countTokens(MSG[0]!.content) + TOKENS,
    });
    for (const e of events.slice(0, -2)) expect((e as { usage: unknown }).usage).toBeNull();
  });

  it('includeUsageAlways sends usage unasked; omitUsage never does', async () => {
    sim.configure({ includeUsageAlways: true, ttftMs: 0, tpotMs: 0 });
    let events = sse((await post('/chat/completions', { model: 'm', messages: MSG, stream: true })).text);
    expect((events.at(-2) as { usage?: unknown }).usage).toBeDefined();
    sim.configure({ includeUsageAlways: false, omitUsage: true });
    events = sse(
      (await post('/chat/completions', { model: 'm', messages: MSG, stream: true, stream_options: { include_usage: true } })).text,
    );
    expect(events.some((e) => typeof e === 'object' && (e as { usage?: unknown }).usage)).toBe(false);
    const plain = await client.chat.completions.create({ model: 'm', messages: MSG });
    expect(plain.usage).toBeUndefined();
  });

  it('max_tokens caps the answer with finish_reason length', async () => {
    const r = await post(
      '/chat/completions',
      { model: 'm', messages: MSG, stream: true, max_tokens: 3 },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' },
    );
    const events = sse(r.text);
    expect(events).toHaveLength(1 + 3 + 1 + 1);
    expect(events.at(-2)).toMatchObject({ choices: [{ finish_reason: 'length' }] });
  });

  it('streams a tool call the SDK assembles', async () => {
    sim.configure({ ttftMs: 10, tpotMs: 1 });
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: {
            type: 'object',
            properties: { city: { type: 'string' }, days: { type: 'integer' }, unit: { type: 'string', enum: ['c', 'f'] } },
          },
        },
      },
    ];
    const runner = client.chat.completions.stream({ model: 'm', messages: MSG, tools, stream_options: { include_usage: true } });
    const done = await runner.finalChatCompletion();
    const choice = done.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.type).toBe('function');
    expect(call.id).toBeTruthy();
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'hello', days: 42, unit: 'c' });
    expect(done.usage!.completion_tokens).toBe(encodeO200k(call.function.arguments).length);

    // tool_choice "none" answers with text.
    const text = await client.chat.completions.create({ model: 'm', messages: MSG, tools, tool_choice: 'none' });
    expect(text.choices[0]!.message.content).toBe(completionText(TOKENS));
  });

  it('tool-call wire format: head chunk names the call with empty arguments', async () => {
    const tools = [
      { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } },
    ];
    const r = await post(
      '/chat/completions',
      { model: 'm', messages: MSG, tools, stream: true },
      { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' },
    );
    const events = sse(r.text) as Array<{ choices: Array<{ delta: { tool_calls?: unknown[] } }> }>;
    expect(events[0]!.choices[0]!.delta.tool_calls).toEqual([
      { index: 0, id: expect.stringMatching(/^call/), type: 'function', function: { name: 'lookup', arguments: '' } },
    ]);
    expect(events[1]!.choices[0]!.delta).toEqual({ tool_calls: [{ index: 0, function: { arguments: '{"' } }] });
  });
});

describe('other endpoints', () => {
  it('non-stream chat returns a chat.completion with usage, after the generation time', async () => {
    const t0 = performance.now();
    const res = await client.chat.completions.create({ model: 'gpt-4o', messages: MSG });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(TTFT + (TOKENS - 1) * TPOT - 1);
    expect(res.object).toBe('chat.completion');
    expect(res.choices[0]!.message).toMatchObject({ role: 'assistant', content: completionText(TOKENS) });
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage).toMatchObject({ prompt_tokens: countTokens(MSG[0]!.content), completion_tokens: TOKENS });
  });

  it('per-request headers override timing and length; modelName overrides the echo', async () => {
    sim.configure({ modelName: 'sim-fixed' });
    const res = await client.chat.completions.create(
      { model: 'whatever', messages: MSG },
      { headers: { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0', 'x-sim-output-tokens': '3' } },
    );
    expect(res.usage!.completion_tokens).toBe(3);
    expect(res.model).toBe('sim-fixed');
    sim.configure({ modelName: undefined });
  });

  it('legacy completions, plain and streamed', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0 });
    const res = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Once upon a time' });
    expect(res.object).toBe('text_completion');
    expect(res.choices[0]!.text).toBe(completionText(TOKENS));
    expect(res.usage).toMatchObject({ prompt_tokens: countTokens('Once upon a time'), completion_tokens: TOKENS });
    const stream = await client.completions.create({ model: 'i', prompt: 'x', stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(text).toBe(completionText(TOKENS));
  });

  it('embeddings are deterministic unit vectors, dimensions honoured (base64 and float)', async () => {
    sim.configure({ ttftMs: 0 });
    const a = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['hello world', 'other'] });
    expect(a.data).toHaveLength(2);
    expect(a.data[0]!.embedding).toHaveLength(8);
    expect(a.usage.prompt_tokens).toBe(countTokens('hello world') + countTokens('other'));
    const norm = Math.hypot(...a.data[0]!.embedding);
    expect(norm).toBeCloseTo(1, 5);
    const b = await client.embeddings.create({ model: 'e', input: 'hello world', encoding_format: 'float' });
    expect(b.data[0]!.embedding).toEqual(a.data[0]!.embedding); // float32 round-trips exactly
    expect(a.data[1]!.embedding).not.toEqual(a.data[0]!.embedding);
    const c = await client.embeddings.create({ model: 'e', input: 'x', dimensions: 64 });
    expect(c.data[0]!.embedding).toHaveLength(64);
  });

  it('lists models; unknown paths get an OpenAI-shaped 404', async () => {
    const models = await client.models.list();
    expect(models.data[0]).toMatchObject({ id: 'simulator', object: 'model' });
    const r = await post('/nope', {});
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toEqual({
      error: { message: 'Invalid URL (POST /v1/nope)', type: 'invalid_request_error', param: null, code: null },
    });
  });

  it('records the last request headers and body (proves which key was sent)', async () => {
    const keyed = new OpenAI({ baseURL: sim.url, apiKey: 'sk-provider', maxRetries: 0 });
    await keyed.chat.completions.create({ model: 'm', messages: MSG }, { headers: { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' } });
    expect(sim.stats.lastRequest!.headers.authorization).toBe('Bearer sk-provider');
    expect(sim.stats.lastRequest!.body).toMatchObject({ model: 'm', messages: MSG });
    expect(sim.stats.byPath['/v1/chat/completions']).toBe(1);
  });
});

describe('faults', () => {
  it('status: replies with the status, OpenAI error body and retry-after', async () => {
    sim.configure({ fault: { kind: 'status', status: 503, retryAfterS: 2 } });
    const r = await post('/chat/completions', { model: 'm', messages: MSG });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('2');
    expect(JSON.parse(r.text).error.type).toBe('server_error');
    await expect(client.chat.completions.create({ model: 'm', messages: MSG })).rejects.toMatchObject({ status: 503 });
    // rate 0 never fires; a custom body is sent as given
    sim.configure({ fault: { kind: 'status', status: 429, rate: 0 } });
    expect((await post('/chat/completions', { model: 'm', messages: MSG }, { 'x-sim-ttft-ms': '0', 'x-sim-tpot-ms': '0' })).status).toBe(
      200,
    );
    const custom = await post(
      '/chat/completions',
      { model: 'm', messages: MSG },
      { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 418, body: { hi: 1 } }) },
    );
    expect([custom.status, custom.text]).toEqual([418, '{"hi":1}']);
    expect(sim.stats.faults).toBe(3);
  });

  it('errorRate 1 fails every request with errorStatus', async () => {
    sim.configure({ errorRate: 1, errorStatus: 502 });
    await expect(client.chat.completions.create({ model: 'm', messages: MSG })).rejects.toBeInstanceOf(OpenAI.InternalServerError);
  });

  it('context_length: 400 with code context_length_exceeded', async () => {
    const err = await client.chat.completions
      .create({ model: 'm', messages: MSG }, { headers: { 'x-sim-fault': '{"kind":"context_length"}' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('context_length_exceeded');
  });

  it('hang: never answers; the client giving up counts as aborted', async () => {
    sim.configure({ fault: { kind: 'hang' } });
    await expect(client.chat.completions.create({ model: 'm', messages: MSG }, { timeout: 200 })).rejects.toBeInstanceOf(
      OpenAI.APIConnectionTimeoutError,
    );
    await until(() => sim.stats.aborted === 1);
    expect(sim.stats.completed).toBe(0);
  });

  it('reset: the socket is destroyed before headers', async () => {
    sim.configure({ fault: { kind: 'reset' } });
    await expect(client.chat.completions.create({ model: 'm', messages: MSG })).rejects.toBeInstanceOf(OpenAI.APIConnectionError);
    expect(sim.stats.aborted).toBe(0); // the simulator's doing, not the client's
  });

  it('die_mid_stream: headers and N token chunks, then the connection drops', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 1 });
    const stream = await client.chat.completions.create(
      { model: 'm', messages: MSG, stream: true },
      { headers: { 'x-sim-fault': '{"kind":"die_mid_stream","afterChunks":3}' } },
    );
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) if (c.choices[0]?.delta.content) got.push(c.choices[0].delta.content);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(got).toHaveLength(3);
    // non-stream: half a body, then the drop
    await expect(
      client.chat.completions.create(
        { model: 'm', messages: MSG },
        { headers: { 'x-sim-fault': '{"kind":"die_mid_stream","afterChunks":0}' } },
      ),
    ).rejects.toThrow();
  });

  it('slow_first_token: delays only the first token', async () => {
    const t0 = performance.now();
    const stream = await client.chat.completions.create(
      { model: 'm', messages: MSG, stream: true },
      { headers: { 'x-sim-fault': '{"kind":"slow_first_token","ttftMs":300}', 'x-sim-output-tokens': '2' } },
    );
    let first = 0;
    for await (const c of stream) if (c.choices[0]?.delta.content && !first) first = performance.now() - t0;
    expect(first).toBeGreaterThanOrEqual(299);
  });

  it('fail_times: the next N requests fail, then succeed (the SDK retries through it)', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 0, fault: { kind: 'fail_times', times: 2, status: 503, retryAfterS: 0.01 } });
    const retrying = new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 2 });
    const res = await retrying.chat.completions.create({ model: 'm', messages: MSG });
    expect(res.choices[0]!.message.content).toBe(completionText(TOKENS));
    expect(sim.stats.requests).toBe(3);
    expect(sim.stats.faults).toBe(2);
    // the same via a header: counted per distinct header value, so retries see it run out
    const h = { 'x-sim-fault': JSON.stringify({ kind: 'fail_times', times: 1, status: 429, retryAfterS: 0.01 }) };
    expect((await retrying.chat.completions.create({ model: 'm', messages: MSG }, { headers: h })).choices).toHaveLength(1);
    expect(sim.stats.requests).toBe(5);
  });

  it('rejects an invalid fault', async () => {
    expect(() => sim.configure({ fault: { kind: 'nope' } as never })).toThrow(/unknown fault kind/);
    const r = await post('/chat/completions', { model: 'm', messages: MSG }, { 'x-sim-fault': '{"kind":"status"}' });
    expect(r.status).toBe(400);
  });
});

describe('lifecycle', () => {
  it('a client abort stops the stream and counts as aborted', async () => {
    sim.configure({ ttftMs: 0, tpotMs: 30, outputTokens: 100 });
    const ac = new AbortController();
    const stream = await client.chat.completions.create({ model: 'm', messages: MSG, stream: true }, { signal: ac.signal });
    let n = 0;
    await (async () => {
      for await (const c of stream) {
        if (c.choices[0]?.delta.content && ++n === 2) ac.abort();
      }
    })().catch(() => {});
    await until(() => sim.stats.aborted === 1);
    expect(sim.stats.completed).toBe(0);
  });

  it('is driven over HTTP: POST /_sim/config, GET and DELETE /_sim/stats', async () => {
    const base = sim.url.replace(/\/v1$/, '');
    const cfg = await fetch(base + '/_sim/config', {
      method: 'POST',
      body: JSON.stringify({ ttftMs: 0, tpotMs: 0, outputTokens: 2, fault: { kind: 'fail_times', times: 1, status: 500 } }),
    });
    expect(cfg.status).toBe(200);
    expect((await post('/chat/completions', { model: 'm', messages: MSG })).status).toBe(500);
    const ok = await client.chat.completions.create({ model: 'm', messages: MSG });
    expect(ok.usage!.completion_tokens).toBe(2);
    const stats = (await (await fetch(base + '/_sim/stats')).json()) as { requests: number; completed: number };
    expect(stats).toMatchObject({ requests: 2, completed: 1 });
    await fetch(base + '/_sim/stats', { method: 'DELETE' });
    expect(sim.stats.requests).toBe(0);
    const bad = await fetch(base + '/_sim/config', { method: 'POST', body: JSON.stringify({ errorRate: 2 }) });
    expect(bad.status).toBe(400);
  });

  it('serves 1000 concurrent streams on time', async () => {
    sim.configure({ ttftMs: 50, tpotMs: 10, outputTokens: 8 });
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const body = JSON.stringify({ model: 'm', messages: MSG, stream: true });
    const one = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(
          sim.url + '/chat/completions',
          { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
          (res) => {
            let n = 0;
            res.setEncoding('utf8');
            res.on('data', (d: string) => (n += d.split('"content":" ').length - 1 + d.split('"content":".').length - 1));
            res.on('end', () => resolve(n));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const t0 = performance.now();
    const counts = await Promise.all(Array.from({ length: 1000 }, one));
    expect(counts.every((n) => n === 8)).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(50 + 7 * 10 - 1);
    expect(sim.stats.completed).toBe(1000);
    agent.destroy();
  }, 30_000);

  it('holds the next token while the socket is full (write() === false) until drain', async () => {
    class FakeRes extends EventEmitter {
      writes: string[] = [];
      ok = false;
      socket = null;
      write(s: string) {
        this.writes.push(s);
        return this.ok;
      }
      end(s: string) {
        this.writes.push(s);
      }
    }
    const res = new FakeRes();
    const format = { head: 'H', prefix: 'P', suffix: 'S', tail: 'T' };
    const stream = new TokenStream(res as unknown as ServerResponse, { format, tokens: ['"a"'], n: 3, ttftMs: 0, tpotMs: 2 });
    stream.start(performance.timeOrigin + performance.now());
    // Head + first token (when they go out depends on the machine's load), then blocked on
    // drain: well past two more token times, nothing more is written.
    await until(() => res.writes.length >= 2);
    await new Promise((r) => setTimeout(r, 40));
    expect(res.writes).toHaveLength(2);
    res.ok = true;
    res.emit('drain');
    expect(res.writes).toHaveLength(3); // the overdue token goes out at once
    await until(() => res.writes.at(-1) === 'T');
    expect(res.writes).toHaveLength(5);
    expect(res.writes[1]).toMatch(/^P"a"S[\d.]+}\n\n$/);
  });

  it('close() destroys open sockets and leaves no timers behind', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const s = await startSimulator({ ttftMs: 10_000 });
    const agent = new http.Agent({ keepAlive: false });
    const errors: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      errors.push(
        new Promise((resolve) => {
          const req = http.request(s.url + '/chat/completions', { method: 'POST', agent }, (res) => {
            res.on('data', () => {});
            res.on('error', resolve);
            res.on('close', resolve);
          });
          req.on('error', resolve);
          req.end(JSON.stringify({ model: 'm', messages: MSG, stream: i % 2 === 0 }));
        }),
      );
    }
    await until(() => s.stats.requests === 5);
    await new Promise((r) => setTimeout(r, 20));
    expect(timers()).toBeGreaterThan(before);
    await s.close();
    await Promise.all(errors);
    expect(timers()).toBeLessThanOrEqual(before);
    agent.destroy();
  });

  const cli = new URL('../../dist/simulator/cli.js', import.meta.url);
  it.skipIf(!existsSync(cli))('CLI prints its url and exits cleanly on SIGTERM (needs npm run build)', async () => {
    const sim = await startProcess(
      process.execPath,
      [cli.pathname, '--port', '0', '--ttft-ms', '0', '--tpot-ms', '0', '--output-tokens', '3', '--error-rate', '0'],
      {
        ready: (_line, obj) => obj !== undefined,
      },
    );
    const { url, port } = sim.readyLine as { url: string; port: number };
    expect(url).toBe(`http://127.0.0.1:${port}/v1`);
    const c = new OpenAI({ baseURL: url, apiKey: 'x', maxRetries: 0 });
    expect((await c.chat.completions.create({ model: 'm', messages: MSG })).usage!.completion_tokens).toBe(3);
    expect(await sim.stop('SIGTERM')).toBe(0);
  });
});
