import { describe, expect, it, vi } from 'vitest';
import { StreamTap, countTokens, estimatePromptTokens, usageFromResponse } from '../../src/streamtap/index.js';
import { chunkGrammar } from '../../src/protocols/chat.js';
import { mulberry32 } from '../helpers/random.js';

// ---- a realistic OpenAI stream (include_usage on, so every chunk carries "usage":null) ----

function chunkJson(delta: Record<string, unknown>, finish: string | null = null): string {
  return JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1700000000,
    model: 'gpt-4o-mini',
    system_fingerprint: 'fp_1',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    usage: null,
  });
}

const USAGE_EVENT =
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],' +
  '"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":4},' +
  '"completion_tokens_details":{"reasoning_tokens":2}}}\n\n';

// Multi-byte UTF-8 on purpose (é, ö, 👋, 日本語): splits land inside characters too.
const EVENTS = [
  `data: ${chunkJson({ role: 'assistant', content: '', refusal: null })}\n\n`,
  ': keep-alive\n\n',
  `data: ${chunkJson({ content: 'Héllo' })}\n\n`,
  `data:${chunkJson({ content: ' wörld 👋' })}\n\n`, // no space after "data:"
  `data: ${chunkJson({ content: '日本語' })}\n\n`,
  `data: ${chunkJson({}, 'stop')}\n\n`,
  USAGE_EVENT,
  'data: [DONE]\n\n',
];
const USAGE_INDEX = EVENTS.indexOf(USAGE_EVENT);

type Eol = 'lf' | 'crlf' | 'cr';
function stream(eol: Eol, events = EVENTS): { input: Buffer; stripped: Buffer } {
  const conv = (s: string) => (eol === 'lf' ? s : s.replace(/\n/g, eol === 'crlf' ? '\r\n' : '\r'));
  const input = Buffer.from(events.map(conv).join(''));
  const stripped = Buffer.from(
    events
      .filter((e) => e !== USAGE_EVENT)
      .map(conv)
      .join(''),
  );
  return { input, stripped };
}

/** Feed chunks; return everything the tap wrote to the client. */
function run(tap: StreamTap, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) {
    const o = tap.push(c);
    if (o !== null) out.push(o);
  }
  const rest = tap.end();
  if (rest !== null) out.push(rest);
  return Buffer.concat(out);
}

function expectObserved(tap: StreamTap): void {
  expect(tap.contentEvents).toBe(3);
  expect(tap.finishReason).toBe('stop');
  expect(tap.sawDone).toBe(true);
  expect(tap.usage).toEqual({ input: 12, output: 7, cachedInput: 4, reasoning: 2 });
  expect(tap.upstreamError).toBeUndefined();
  expect(tap.outputText()).toBe('Héllo wörld 👋日本語');
}

describe('StreamTap: framing fuzz', () => {
  for (const eol of ['lf', 'crlf', 'cr'] as const) {
    const { input, stripped } = stream(eol);

    it(`${eol}: every single split point, stripping, output = input minus the usage event`, () => {
      for (let k = 0; k <= input.length; k++) {
        const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
        const out = run(tap, [input.subarray(0, k), input.subarray(k)]);
        if (!out.equals(stripped)) throw new Error(`split at ${k}: ${JSON.stringify(out.toString())}`);
        expectObserved(tap);
      }
    });

    it(`${eol}: every pair of split points around the usage event (three chunks)`, () => {
      const uStart = input.indexOf(
        'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[]',
      );
      expect(uStart).toBeGreaterThan(0);
      const lo = uStart - 4;
      const hi = input.indexOf('data: [DONE]') + 3;
      for (let a = lo; a < hi; a++) {
        for (let b = a; b < hi; b += 7) {
          const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
          const out = run(tap, [input.subarray(0, a), input.subarray(a, b), input.subarray(b)]);
          if (!out.equals(stripped)) throw new Error(`splits at ${a},${b}`);
          expect(tap.usage?.input).toBe(12);
        }
      }
    });

    it(`${eol}: one byte at a time and random chunkings, with and without stripping`, () => {
      const bytes = Array.from({ length: input.length }, (_, i) => input.subarray(i, i + 1));
      const t1 = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
      expect(run(t1, bytes).equals(stripped)).toBe(true);
      expectObserved(t1);

      const rnd = mulberry32(42);
      for (let r = 0; r < 200; r++) {
        const chunks: Buffer[] = [];
        for (let i = 0; i < input.length;) {
          const n = 1 + Math.floor(rnd() * 40);
          chunks.push(input.subarray(i, i + n));
          i += n;
        }
        const strip = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
        expect(run(strip, chunks).equals(stripped)).toBe(true);
        expectObserved(strip);
        const keep = new StreamTap({ grammar: chunkGrammar, stripUsage: false });
        expect(run(keep, chunks).equals(input)).toBe(true);
        expectObserved(keep);
      }
    });
  }

  it('stripUsage false returns the very same Buffer object for every chunk, at every split', () => {
    const { input } = stream('crlf');
    for (let k = 0; k <= input.length; k++) {
      const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: false });
      const a = input.subarray(0, k);
      const b = input.subarray(k);
      expect(tap.push(a)).toBe(a);
      expect(tap.push(b)).toBe(b);
      expect(tap.end()).toBeNull();
      expectObserved(tap);
    }
  });

  it('stripping: whole events per chunk go out zero-copy; only the usage event is cut', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
    const chunks = EVENTS.map((e) => Buffer.from(e));
    chunks.forEach((c, i) => {
      const out = tap.push(c);
      if (i === USAGE_INDEX) expect(out).toBeNull();
      else expect(out).toBe(c);
    });
    expect(tap.end()).toBeNull();
    expectObserved(tap);
  });

  it('several events in one chunk, usage event in the middle of it', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
    const { input, stripped } = stream('lf');
    const out = tap.push(input);
    expect(out?.equals(stripped)).toBe(true);
    expect(tap.end()).toBeNull();
    expectObserved(tap);
  });

  it('JSON.parse runs only for the usage event, not for the "usage":null on every chunk', () => {
    const spy = vi.spyOn(JSON, 'parse');
    try {
      const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
      run(
        tap,
        EVENTS.map((e) => Buffer.from(e)),
      );
      expect(spy).toHaveBeenCalledTimes(1);
      expect(tap.usage?.output).toBe(7);
    } finally {
      spy.mockRestore();
    }
  });

  it('stripping holds back only an incomplete trailing event', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
    const a = `data: ${chunkJson({ content: 'A' })}\n\n`;
    const b = `data: ${chunkJson({ content: 'B' })}\n\n`;
    const cut = 20;
    const out1 = tap.push(Buffer.from(a + b.slice(0, cut)));
    expect(out1?.toString()).toBe(a); // the complete event goes out at once
    const out2 = tap.push(Buffer.from(b.slice(cut)));
    expect(out2?.toString()).toBe(b); // the held part is released with its end
    expect(tap.contentEvents).toBe(2);
  });
});

describe('StreamTap: event classification', () => {
  const feed = (events: string[], strip = false) => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: strip });
    const out = run(
      tap,
      events.map((e) => Buffer.from(e)),
    );
    return { tap, out: out.toString() };
  };

  it('role-only first delta is not a token; comments and keep-alives pass through', () => {
    const events = [
      ': OPENROUTER PROCESSING\n\n',
      `data: ${chunkJson({ role: 'assistant', content: '' })}\n\n`,
      ':\n\n',
      'data: [DONE]\n\n',
    ];
    const { tap, out } = feed(events, true);
    expect(out).toBe(events.join(''));
    expect(tap.contentEvents).toBe(0);
    expect(tap.firstTokenAt).toBeUndefined();
    expect(tap.sawDone).toBe(true);
  });

  it('a data event preceded by a comment or other fields in the same event is still classified', () => {
    const events = [
      `: ping\ndata: ${chunkJson({ content: 'A' })}\n\n`,
      `id: 7\nevent: message\ndata: ${chunkJson({ content: 'B' }, 'stop')}\n\n`,
      ': ping\ndata: [DONE]\n\n',
    ];
    const { tap, out } = feed(events, true);
    expect(out).toBe(events.join(''));
    expect(tap.contentEvents).toBe(2);
    expect(tap.finishReason).toBe('stop');
    expect(tap.sawDone).toBe(true);
  });

  it('firstTokenAt / lastTokenAt / contentEvents follow a fake clock, read once per push', () => {
    let t = 1000;
    let calls = 0;
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: false, now: () => (calls++, (t += 10)) });
    tap.push(Buffer.from(`data: ${chunkJson({ role: 'assistant', content: '' })}\n\n`)); // no token: clock not read
    expect(calls).toBe(0);
    tap.push(Buffer.from(`data: ${chunkJson({ content: 'a' })}\n\ndata: ${chunkJson({ content: 'b' })}\n\n`)); // t=1010
    expect(tap.firstTokenAt).toBe(1010);
    expect(tap.lastTokenAt).toBe(1010);
    tap.push(Buffer.from(`data: ${chunkJson({ content: 'c' })}`)); // incomplete: not counted yet
    expect(tap.contentEvents).toBe(2);
    tap.push(Buffer.from('\n\n')); // t=1020
    tap.push(Buffer.from(`data: ${chunkJson({}, 'length')}\n\ndata: [DONE]\n\n`)); // no token
    expect(calls).toBe(2);
    expect(tap.firstTokenAt).toBe(1010);
    expect(tap.lastTokenAt).toBe(1020);
    expect(tap.contentEvents).toBe(3);
    expect(tap.finishReason).toBe('length');
    expect(tap.usage).toBeUndefined();
  });

  it('tool-call argument streaming counts argument pieces, not the name-only delta', () => {
    const call = (fn: Record<string, string>, extra: Record<string, unknown> = {}) =>
      chunkJson({ tool_calls: [{ index: 0, ...extra, function: fn }] });
    const { tap } = feed([
      `data: ${chunkJson({ role: 'assistant', content: null })}\n\n`,
      `data: ${call({ name: 'get_weather', arguments: '' }, { id: 'call_1', type: 'function' })}\n\n`,
      `data: ${call({ arguments: '{"city":' })}\n\n`,
      `data: ${call({ arguments: ' "Paris"}' })}\n\n`,
      `data: ${chunkJson({}, 'tool_calls')}\n\n`,
      'data: [DONE]\n\n',
    ]);
    expect(tap.contentEvents).toBe(2);
    expect(tap.finishReason).toBe('tool_calls');
    expect(tap.outputText()).toBe('get_weather{"city": "Paris"}');
  });

  it('reasoning_content and reasoning deltas are tokens', () => {
    const { tap } = feed([
      `data: ${chunkJson({ role: 'assistant', reasoning_content: 'Think' })}\n\n`,
      `data: ${chunkJson({ reasoning: ' more' })}\n\n`,
      `data: ${chunkJson({ content: 'Done.' })}\n\n`,
      `data: ${chunkJson({}, 'stop')}\n\n`,
    ]);
    expect(tap.contentEvents).toBe(3);
    expect(tap.outputText()).toBe('Think moreDone.');
    expect(tap.sawDone).toBe(false);
  });

  it('legacy /v1/completions chunks: choices[].text', () => {
    const c = (text: string, finish: string | null = null) =>
      JSON.stringify({ id: 'cmpl-1', object: 'text_completion', choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] });
    const { tap } = feed([`data: ${c('Once')}\n\n`, `data: ${c(' upon')}\n\n`, `data: ${c('', 'length')}\n\n`, 'data: [DONE]\n\n']);
    expect(tap.contentEvents).toBe(2);
    expect(tap.finishReason).toBe('length');
    expect(tap.outputText()).toBe('Once upon');
  });

  it('patterns inside content cannot match: quotes in JSON strings are escaped', () => {
    const { tap } = feed([
      `data: ${chunkJson({ role: 'assistant', content: '', x: '"content":"x"' })}\n\n`,
      `data: ${chunkJson({ content: 'he said "finish_reason":"evil", "usage":{"prompt_tokens":1}, "error":{}' })}\n\n`,
    ]);
    expect(tap.contentEvents).toBe(1);
    expect(tap.finishReason).toBeUndefined();
    expect(tap.usage).toBeUndefined();
    expect(tap.upstreamError).toBeUndefined();
  });

  it('whitespace after colons (pretty servers) is tolerated', () => {
    const { tap } = feed([
      'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}\n\n',
      'data: {"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason" : "stop"}]}\n\n',
      'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}\n\n',
    ]);
    expect(tap.contentEvents).toBe(1);
    expect(tap.finishReason).toBe('stop');
    expect(tap.usage).toEqual({ input: 5, output: 1, cachedInput: 0, reasoning: 0 });
  });

  it('multi-line data joins with \\n and is parsed as one JSON', () => {
    const ev = 'data: {"choices":[],\ndata: "usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n';
    const { tap, out } = feed([`data: ${chunkJson({ content: 'x' })}\n\n`, ev], true);
    expect(tap.usage).toEqual({ input: 3, output: 2, cachedInput: 0, reasoning: 0 });
    expect(out).toBe(`data: ${chunkJson({ content: 'x' })}\n\n`);
  });

  it('usage attached to a chunk that still has choices is recorded but never cut', () => {
    const ev = `data: {"choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4}}\n\n`;
    const { tap, out } = feed([ev], true);
    expect(out).toBe(ev);
    expect(tap.usage).toEqual({ input: 9, output: 4, cachedInput: 0, reasoning: 0 });
    expect(tap.contentEvents).toBe(1);
  });

  it('an upstream error event is captured, parsed', () => {
    const { tap, out } = feed(
      [
        `data: ${chunkJson({ content: 'partial' })}\n\n`,
        'data: {"error":{"message":"The server is overloaded","type":"server_error","param":null,"code":null}}\n\n',
      ],
      true,
    );
    expect(tap.upstreamError).toEqual({ message: 'The server is overloaded', type: 'server_error', param: null, code: null });
    expect(out).toContain('"error"'); // errors are never stripped
    expect(tap.sawDone).toBe(false);
  });

  it('end(): an event left without its blank line is observed and, when stripping, released', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true });
    const a = Buffer.from(`data: ${chunkJson({ content: 'z' })}\n\n`);
    expect(tap.push(a)).toBe(a);
    expect(tap.push(Buffer.from('data: [DONE]'))).toBeNull();
    expect(tap.end()?.toString()).toBe('data: [DONE]');
    expect(tap.sawDone).toBe(true);
    expect(tap.end()).toBeNull();
  });
});

describe('token counting', () => {
  it('outputText + countTokens on a stream without usage', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: false });
    const { input } = stream(
      'lf',
      EVENTS.filter((e) => e !== USAGE_EVENT),
    );
    run(tap, [input.subarray(0, 333), input.subarray(333)]);
    expect(tap.usage).toBeUndefined();
    const text = tap.outputText();
    expect(text).toBe('Héllo wörld 👋日本語');
    expect(countTokens(text)).toBe(12); // cl100k_base
  });

  it('countTokens uses cl100k_base and treats special-token strings as text', () => {
    expect(countTokens('')).toBe(0);
    expect(countTokens('hello world')).toBe(2);
    expect(countTokens('You are a helpful assistant.')).toBe(6);
    expect(countTokens('a <|endoftext|> b')).toBeGreaterThan(3);
  });

  it("the ranks read from the .tiktoken file count exactly like gpt-tokenizer's own cl100k module", async () => {
    const reference = (await import('gpt-tokenizer/encoding/cl100k_base')).countTokens;
    const samples = [
      'The quick brown fox jumps over the lazy dog.',
      'Héllo wörld 👋日本語 — naïve café, Ελληνικά, русский, العربية, हिन्दी',
      'function f(x) { return x ** 2; } // code\n\tindent  \r\n',
      '   leading and trailing spaces   ',
      '💩🤖👍🏽🏳️‍🌈 emoji sequences',
      '\u0000\u0001 control chars and \uFFFD replacement',
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      '1234567890 3.14159 1e10 0xdeadbeef',
      'https://example.com/path?query=1&x=%20#frag',
    ];
    let long = '';
    // A space every 100 characters: longer runs are counted in slices by design (util/bounded-count.ts).
    for (let i = 0; i < 2000; i++) long += (i % 100 === 99 ? ' ' : '') + String.fromCodePoint(32 + ((i * 7919) % 20000));
    samples.push(long);
    for (const text of samples) expect(countTokens(text)).toBe(reference(text));
  });

  it('estimatePromptTokens: messages (string and parts), name, image, tools; +3 per message +3', () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    ];
    const body = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' }, // 3 + 1 + 6
        {
          role: 'user', // 3 + 1
          name: 'bob', // 1 + 1
          content: [
            { type: 'text', text: 'What is 2+2?' }, // 7
            { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, // 85
          ],
        },
      ],
      tools,
    };
    const toolTokens = countTokens(JSON.stringify(tools));
    expect(toolTokens).toBe(29);
    expect(estimatePromptTokens(body)).toBe(10 + 98 + 3 + 29);
  });

  it('estimatePromptTokens: prompt and input as strings, arrays and token ids', () => {
    expect(estimatePromptTokens({ model: 'x', prompt: 'hello world' })).toBe(2);
    expect(estimatePromptTokens({ model: 'x', input: ['hello world', 'Hi there'] })).toBe(4);
    expect(estimatePromptTokens({ model: 'x', input: [[1, 2, 3], [4]] })).toBe(4);
    expect(estimatePromptTokens({ model: 'x' })).toBe(0);
  });

  it('usageFromResponse maps chat and embeddings usage', () => {
    expect(
      usageFromResponse({
        object: 'chat.completion',
        usage: {
          prompt_tokens: 2006,
          completion_tokens: 300,
          total_tokens: 2306,
          prompt_tokens_details: { cached_tokens: 1920 },
          completion_tokens_details: { reasoning_tokens: 128 },
        },
      }),
    ).toEqual({ input: 2006, output: 300, cachedInput: 1920, reasoning: 128 });
    expect(usageFromResponse({ object: 'list', usage: { prompt_tokens: 8, total_tokens: 8 } })).toEqual({
      input: 8,
      output: 0,
      cachedInput: 0,
      reasoning: 0,
    });
    expect(usageFromResponse({ object: 'chat.completion' })).toBeUndefined();
    expect(usageFromResponse({ usage: null })).toBeUndefined();
    expect(usageFromResponse('nope')).toBeUndefined();
  });
});
