import { describe, expect, it } from 'vitest';
import { summariseBody } from '../../src/streamtap/body.js';
import { usageFromResponse } from '../../src/streamtap/index.js';

const openaiBody = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1700000000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: {
      prompt_tokens: 12,
      completion_tokens: 7,
      total_tokens: 19,
      prompt_tokens_details: { cached_tokens: 4, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 2, audio_tokens: 0 },
    },
    system_fingerprint: 'fp_1',
    ...extra,
  });

/** What a full parse gives: the reference the scan must agree with whenever it answers. */
function fullParse(text: string) {
  const json = JSON.parse(text) as { choices?: Array<{ finish_reason?: unknown }> };
  const f = json.choices?.[0]?.finish_reason;
  return { usage: usageFromResponse(json), finishReason: typeof f === 'string' ? f : undefined };
}

describe('summariseBody (usage without a full parse)', () => {
  it('reads usage, cached and reasoning tokens and finish_reason from an OpenAI response', () => {
    expect(summariseBody(Buffer.from(openaiBody('Hello')))).toEqual({
      usage: { input: 12, output: 7, cachedInput: 4, reasoning: 2 },
      finishReason: 'stop',
    });
  });

  it('is not fooled by "usage" or "finish_reason" inside the content (escaped quotes)', () => {
    const tricky = 'a "usage": {"prompt_tokens": 999} and "finish_reason": "length" } {';
    for (const text of [openaiBody(tricky), openaiBody('x', { note: tricky })]) {
      expect(summariseBody(Buffer.from(text))).toEqual(fullParse(text));
    }
  });

  it('hands over to a full parse when it cannot be sure', () => {
    // A nested object after usage that has its own "usage" key: the last one is not the top-level usage.
    expect(summariseBody(Buffer.from('{"choices":[],"usage":{"prompt_tokens":1},"x":{"usage":{"foo":1}}}'))).toBeUndefined();
    // No usage at all (tokens must be estimated from the content).
    expect(summariseBody(Buffer.from('{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}'))).toBeUndefined();
    // usage is null / not an object, or broken JSON.
    expect(summariseBody(Buffer.from('{"choices":[],"usage":null}'))).toBeUndefined();
    expect(summariseBody(Buffer.from('{"choices":[],"usage":{"prompt_tokens":1,'))).toBeUndefined();
    // A value "usage" (not a key).
    expect(summariseBody(Buffer.from('{"kind":"usage"}'))).toBeUndefined();
    // Counts that are not plain integers, or only one of the two counts.
    expect(summariseBody(Buffer.from('{"choices":[],"usage":{"prompt_tokens":1.5,"completion_tokens":2}}'))).toBeUndefined();
    expect(summariseBody(Buffer.from('{"choices":[],"usage":{"prompt_tokens":"3","completion_tokens":2}}'))).toBeUndefined();
    expect(summariseBody(Buffer.from('{"choices":[],"usage":{"completion_tokens":2}}'))).toBeUndefined();
    // Not JSON at all.
    expect(summariseBody(Buffer.from('<html>usage</html>'))).toBeUndefined();
  });

  it('finish_reason null reads as none; whitespace and pretty-printing are fine', () => {
    const text = JSON.stringify(
      { choices: [{ index: 0, text: 'x', finish_reason: null }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } },
      null,
      2,
    );
    expect(summariseBody(Buffer.from(text))).toEqual({
      usage: { input: 3, output: 1, cachedInput: 0, reasoning: 0 },
      finishReason: undefined,
    });
  });

  it('agrees with a full parse on random bodies whenever it answers', () => {
    const pieces = ['"', '\\', '{', '}', 'usage', '"usage":', 'finish_reason', ':', ',', ' ', 'é', '😀', '\n', 'a'];
    let seed = 42;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    let answered = 0;
    for (let i = 0; i < 2000; i++) {
      let content = '';
      for (let k = rand(12); k > 0; k--) content += pieces[rand(pieces.length)];
      const extra = rand(3) === 0 ? { tail: content } : {};
      const text = openaiBody(content, extra);
      const got = summariseBody(Buffer.from(text));
      if (got) {
        answered++;
        expect(got).toEqual(fullParse(text));
      }
    }
    // Most bodies are answered by the scan (else it saves nothing).
    expect(answered).toBeGreaterThan(1500);
  });

  it("a usage object nested in another object is not the response's usage (found by the property test)", () => {
    const nested =
      '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"extra":{"usage":{"prompt_tokens":12,"completion_tokens":1000}},"service_tier":"default"}';
    const s = summariseBody(Buffer.from(nested));
    expect(s === undefined || s.usage === fullParse(nested).usage).toBe(true);
    expect(fullParse(nested).usage).toBeUndefined();
    // The top-level one is still read when a nested one comes after it.
    const both =
      '{"usage":{"prompt_tokens":3,"completion_tokens":4},"choices":[],"extra":{"usage":{"prompt_tokens":12,"completion_tokens":1000}}}';
    expect(summariseBody(Buffer.from(both))?.usage ?? fullParse(both).usage).toEqual({ input: 3, output: 4, cachedInput: 0, reasoning: 0 });
  });
});
