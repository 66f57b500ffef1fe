// Anthropic's Messages API as a protocol: usage from message_start / message_delta (output is
// cumulative: the last value, never a sum), cache reads and writes as parts of input, the cost
// of each part once (and OpenAI's cached_tokens, which prompt_tokens already include, once
// too), the tap's timing keys, error shapes, and the policies names.
import { describe, expect, it } from 'vitest';
import { StreamTap } from '../../src/streamtap/index.js';
import {
  anthropicErrorBody,
  anthropicErrorType,
  anthropicStreamError,
  anthropicUsage,
  estimateMessagesPrompt,
  messagesGrammar,
  readMessageBody,
} from '../../src/protocols/messages.js';
import { usageFromResponse } from '../../src/protocols/openai.js';
import { costUsd } from '../../src/settle/index.js';
import { usageFault } from '../../src/settle/usage.js';
import { errors } from '../../src/errors.js';
import { parsePolicies } from '../../src/config/load.js';
import { Backend } from '../../src/upstream/backends.js';

const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

// A stream as Anthropic sends it: thinking, text and tool input deltas, pings between, and two
// message_delta events (as with server tools) whose output_tokens are cumulative.
const STREAM = [
  ev('message_start', {
    type: 'message_start',
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      content: [],
      model: 'claude',
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 21, cache_creation_input_tokens: 188, cache_read_input_tokens: 1500, output_tokens: 1 },
    },
  }),
  ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } }),
  ev('ping', { type: 'ping' }),
  ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Let me think' } }),
  ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'EqQB' } }),
  ev('content_block_stop', { type: 'content_block_stop', index: 0 }),
  ev('content_block_start', { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } }),
  ev('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Hello' } }),
  ev('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: ' "world"' } }),
  ev('content_block_stop', { type: 'content_block_stop', index: 1 }),
  ev('content_block_start', {
    type: 'content_block_start',
    index: 2,
    content_block: { type: 'tool_use', id: 'toolu_1', name: 'f', input: {} },
  }),
  ev('content_block_delta', { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '' } }),
  ev('content_block_delta', {
    type: 'content_block_delta',
    index: 2,
    delta: { type: 'input_json_delta', partial_json: '{"city": "Paris"}' },
  }),
  ev('content_block_stop', { type: 'content_block_stop', index: 2 }),
  ev('message_delta', { type: 'message_delta', delta: { stop_reason: null, stop_sequence: null }, usage: { output_tokens: 40 } }),
  ev('ping', { type: 'ping' }),
  ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 57 } }),
  ev('message_stop', { type: 'message_stop' }),
];

function tapAll(text: string, split: number): StreamTap {
  let t = 0;
  const tap = new StreamTap({ grammar: messagesGrammar, stripUsage: false, now: () => ++t });
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; i += split) expect(tap.push(buf.subarray(i, i + split))).not.toBeNull();
  tap.end();
  return tap;
}

describe('the Messages stream grammar', () => {
  for (const split of [1, 7, 64, 100_000]) {
    it(`usage from message_start and the last message_delta, tokens only from deltas (chunks of ${split} bytes)`, () => {
      const tap = tapAll(STREAM.join(''), split);
      // thinking, two text deltas, one non-empty tool input delta: 4 content events; no ping, no signature, no empty start.
      expect(tap.contentEvents).toBe(4);
      expect(tap.complete).toBe(true);
      expect(tap.finishReason).toBe('tool_use');
      expect(tap.upstreamError).toBeUndefined();
      // 57, not 1 + 40 + 57: output_tokens is cumulative.
      expect(tap.usage).toEqual({ input: 21 + 188 + 1500, output: 57, cachedInput: 1500, reasoning: 0, cacheWriteInput: 188 });
      expect(tap.outputText()).toBe('Let me thinkHello "world"{"city": "Paris"}');
    });
  }

  it('a stream without message_stop is not complete; an error event is the upstream failing', () => {
    const cut = tapAll(STREAM.slice(0, 9).join(''), 50);
    expect(cut.complete).toBe(false);
    const failed = tapAll(
      STREAM.slice(0, 9).join('') + ev('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
      50,
    );
    expect(failed.upstreamError).toEqual({ type: 'overloaded_error', message: 'Overloaded' });
  });

  it('a message_delta that repeats the input counts replaces them (never adds)', () => {
    const s =
      STREAM.slice(0, 14).join('') +
      ev('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn' },
        usage: { input_tokens: 21, cache_creation_input_tokens: 188, cache_read_input_tokens: 1500, output_tokens: 9 },
      }) +
      ev('message_stop', { type: 'message_stop' });
    expect(tapAll(s, 33).usage).toEqual({ input: 1709, output: 9, cachedInput: 1500, reasoning: 0, cacheWriteInput: 188 });
  });
});

describe('usage and cost: input means the whole prompt for both APIs, each part priced once', () => {
  const pricing = { input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_per_mtok: 3.75 };

  it('Anthropic: input_tokens excludes the cache; reads and writes are added to input once and priced at their own rates', () => {
    // Envoy AI Gateway #2290/#2352 and LiteLLM #11364: cache tokens dropped or counted twice.
    const u = anthropicUsage({ input_tokens: 100, cache_read_input_tokens: 400, cache_creation_input_tokens: 500, output_tokens: 50 })!;
    expect(u).toEqual({ input: 1000, output: 50, cachedInput: 400, reasoning: 0, cacheWriteInput: 500 });
    expect(costUsd(pricing, u)).toBeCloseTo((100 * 3 + 400 * 0.3 + 500 * 3.75 + 50 * 15) / 1e6, 12);
  });

  it('OpenAI: prompt_tokens includes cached_tokens; the cached part is priced once, at the cached rate', () => {
    const u = usageFromResponse({ usage: { prompt_tokens: 1000, completion_tokens: 50, prompt_tokens_details: { cached_tokens: 400 } } })!;
    expect(u.input).toBe(1000);
    expect(costUsd(pricing, u)).toBeCloseTo((600 * 3 + 400 * 0.3 + 50 * 15) / 1e6, 12);
  });

  it('the same prompt costs the same through either API', () => {
    const viaOpenAI = usageFromResponse({
      usage: { prompt_tokens: 900, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 800 } },
    })!;
    const viaAnthropic = anthropicUsage({
      input_tokens: 100,
      cache_read_input_tokens: 800,
      cache_creation_input_tokens: 0,
      output_tokens: 10,
    })!;
    expect(viaAnthropic.input).toBe(viaOpenAI.input);
    expect(costUsd(pricing, viaAnthropic)).toBeCloseTo(costUsd(pricing, viaOpenAI), 15);
  });

  it('cache writes default to the input price, cache reads too', () => {
    const u = anthropicUsage({ input_tokens: 10, cache_read_input_tokens: 20, cache_creation_input_tokens: 30, output_tokens: 0 })!;
    expect(costUsd({ input_per_mtok: 2, output_per_mtok: 0 }, u)).toBeCloseTo((60 * 2) / 1e6, 15);
  });

  it('a non-streamed message: usage and stop_reason; text only when usage is missing', () => {
    const body = {
      id: 'msg',
      type: 'message',
      content: [{ type: 'text', text: 'hi there' }],
      stop_reason: 'end_turn',
      usage: { input_tokens: 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 7, output_tokens: 2 },
    };
    expect(readMessageBody(Buffer.from(JSON.stringify(body)))).toEqual({
      usage: { input: 12, output: 2, cachedInput: 0, reasoning: 0, cacheWriteInput: 7 },
      finishReason: 'end_turn',
    });
    const { usage: _u, ...bare } = body;
    expect(readMessageBody(Buffer.from(JSON.stringify(bare)))).toEqual({ finishReason: 'end_turn', text: 'hi there' });
    expect(readMessageBody(Buffer.from('not json'))).toBeUndefined();
  });

  it('the byte scan of a whole message reads what a full parse reads (nested usage and stop_reason keys in a tool input included)', () => {
    const bodies = [
      {
        id: 'm',
        type: 'message',
        content: [{ type: 'text', text: 'a "usage": {"input_tokens": 9} \\"stop_reason\\"' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 3, cache_creation_input_tokens: 4, cache_read_input_tokens: 5, output_tokens: 6 },
      },
      {
        id: 'm',
        type: 'message',
        content: [
          { type: 'tool_use', id: 't', name: 'f', input: { stop_reason: 'fake', usage: { input_tokens: 1000, output_tokens: 1000 } } },
        ],
        stop_reason: 'tool_use',
        usage: {
          input_tokens: 10,
          output_tokens: 20,
          cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
          service_tier: 'standard',
        },
      },
      {
        id: 'm',
        type: 'message',
        content: [],
        stop_reason: 'max_tokens',
        usage: { input_tokens: 1, output_tokens: 2, cache_read_input_tokens: null },
      },
    ];
    for (const b of bodies) {
      const text = JSON.stringify(b, null, b.content.length === 0 ? 2 : undefined);
      const parsed = JSON.parse(text) as { usage: unknown; stop_reason: string };
      expect(readMessageBody(Buffer.from(text))).toEqual({ usage: anthropicUsage(parsed.usage), finishReason: parsed.stop_reason });
    }
  });

  it('an untrusted count is refused at settle boundary (the estimate is used instead)', () => {
    expect(usageFault(anthropicUsage({ input_tokens: 1, cache_creation_input_tokens: 1.5, output_tokens: 1 }))).toBeDefined();
    expect(usageFault({ input: 10, output: 1, cachedInput: 0, reasoning: 0, cacheWriteInput: 1e12 })).toBe('cache_creation_input_tokens');
    // parts of input larger than input: not a count to trust
    expect(usageFault({ input: 10, output: 1, cachedInput: 6, reasoning: 0, cacheWriteInput: 6 })).toBeDefined();
    expect(usageFault(anthropicUsage({ input_tokens: 1, cache_read_input_tokens: -5, output_tokens: 1 }))).toBeDefined();
    expect(usageFault(anthropicUsage({ input_tokens: 'x', output_tokens: 1 }))).toBeDefined();
    expect(
      usageFault(anthropicUsage({ input_tokens: 1, cache_read_input_tokens: 2, cache_creation_input_tokens: 3, output_tokens: 1 })),
    ).toBeUndefined();
  });

  it('the prompt estimate counts system, message blocks and tools', () => {
    const small = estimateMessagesPrompt({ messages: [{ role: 'user', content: 'hi' }] });
    const more = estimateMessagesPrompt({
      system: [{ type: 'text', text: 'You are a helpful assistant.' }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'hi' },
            { type: 'image', source: {} },
          ],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'sunny and warm' }] },
      ],
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
    });
    expect(small).toBeGreaterThan(0);
    expect(more).toBeGreaterThan(small + 85);
  });
});

describe("errors in Anthropic's shape", () => {
  it('types by status, as the SDK and Anthropic docs name them', () => {
    const got = Object.fromEntries([400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529].map((s) => [s, anthropicErrorType(s)]));
    expect(got).toEqual({
      400: 'invalid_request_error',
      401: 'authentication_error',
      403: 'permission_error',
      404: 'not_found_error',
      413: 'request_too_large',
      429: 'rate_limit_error',
      500: 'api_error',
      502: 'api_error',
      503: 'overloaded_error',
      504: 'timeout_error',
      529: 'overloaded_error',
    });
  });

  it('an error body and a named error event the SDK raises', () => {
    expect(JSON.parse(anthropicErrorBody(errors.badKey()))).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: 'Incorrect API key provided.' },
    });
    const e = anthropicStreamError(errors.midStream('b', 'cut'));
    expect(e.startsWith('event: error\ndata: ')).toBe(true);
    expect(JSON.parse(e.slice('event: error\ndata: '.length))).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    expect(anthropicStreamError(errors.shuttingDown())).toContain('"overloaded_error"');
  });
});

describe('policies: type anthropic, apis, cache_write_per_mtok', () => {
  const yaml = (backends: string) => `
backends:
${backends}
models:
  m: { deployments: [{ backend: a }], pricing: { input_per_mtok: 3, cache_write_per_mtok: 3.75 } }
`;

  it('an anthropic backend: x-api-key with the provider key, anthropic-version by default, serves messages', () => {
    const p = parsePolicies(yaml('  a: { type: anthropic, base_url: "https://api.anthropic.com/v1", api_key: sk-ant }'), 'p.yaml', {});
    const b = new Backend('a', 'https://api.anthropic.com/v1', p.backends.a!);
    expect(b.injectedHeaders).toEqual({ 'x-api-key': 'sk-ant' });
    expect(b.defaultHeaders).toEqual({ 'anthropic-version': '2023-06-01' });
    expect([...b.apis]).toEqual(['messages']);
    expect(b.system).toBe('anthropic');
    expect(p.models.m!.pricing.cache_write_per_mtok).toBe(3.75);
    void b.pool.close();
  });

  it('apis: defaults by type, overridable; an unknown API is refused', () => {
    const p = parsePolicies(
      yaml('  a: { base_url: "http://127.0.0.1:8000/v1" }\n  v: { base_url: "http://127.0.0.1:8001/v1", apis: [chat, messages] }'),
      'p.yaml',
      {},
    );
    const a = new Backend('a', 'http://127.0.0.1:8000/v1', p.backends.a!);
    const v = new Backend('v', 'http://127.0.0.1:8001/v1', p.backends.v!);
    expect([...a.apis].sort()).toEqual(['chat', 'completions', 'embeddings', 'responses']);
    expect(v.serves('messages') && v.serves('chat') && !v.serves('embeddings')).toBe(true);
    expect(a.injectedHeaders).toEqual({});
    void a.pool.close();
    void v.pool.close();
    expect(() => parsePolicies(yaml('  a: { base_url: "http://127.0.0.1:8000/v1", apis: [chat, sms] }'), 'p.yaml', {})).toThrow(/apis/);
  });
});
