// Quality signals of response text, and reading that text from raw response bytes.
import { describe, expect, it } from 'vitest';
import {
  extractText,
  isRefusal,
  isValidJson,
  luhn,
  piiKinds,
  scoreText,
  trigramRepetition,
  wantsJson,
} from '../../src/insights/quality.js';
import { OutputSlice } from '../../src/insights/slice.js';

describe('refusals (seed 001 patterns, English and Chinese)', () => {
  it.each([
    ['I cannot help with that.', true],
    ["I'm unable to share that.", true],
    ['I’m unable to do this.', true],
    ['As an AI language model, I have no opinions.', true],
    ['作为AI助手,我无法提供任何关于入侵系统的信息。', true],
    ['抱歉，我不能回答这个问题。', true],
    ['我没有能力访问互联网。', true],
    ['Sure! Here is the recipe you asked for.', false],
    ['当然可以，这是答案。', false],
  ])('%s → %s', (text, want) => expect(isRefusal(text)).toBe(want));
});

describe('trigram repetition (seed 000: ≥ 10 words, flagged above 0.3)', () => {
  it('is 0 under 10 words and for varied text', () => {
    expect(trigramRepetition('a a a a a a a a a')).toBe(0);
    expect(trigramRepetition('one two three four five six seven eight nine ten eleven')).toBe(0);
  });
  it('counts repeated trigrams: 1 − unique/total', () => {
    // 12 words, 10 trigrams, 3 distinct ("a b c", "b c a", "c a b")
    expect(trigramRepetition('a b c a b c a b c a b c')).toBeCloseTo(1 - 3 / 10, 12);
    const s = scoreText({ text: 'the loop the loop the loop the loop the loop the loop', refusalField: false }, false, true);
    expect(s.signals).toContain('repetition');
  });
});

describe('PII: the kind, never the value', () => {
  it('finds emails, Luhn-valid cards and phones', () => {
    expect(luhn('4111111111111111')).toBe(true);
    expect(luhn('4111111111111112')).toBe(false);
    expect(piiKinds('write to jane.doe@example.com')).toEqual(['email']);
    expect(piiKinds('card 4111 1111 1111 1111 ok')).toEqual(['card']);
    expect(piiKinds('card 4111 1111 1111 1112 ok')).toEqual([]);
    expect(piiKinds('call +1 415 555 2671')).toEqual(['phone']);
    expect(piiKinds('手机 13812345678')).toEqual(['phone']);
    expect(piiKinds('call (415) 555-2671 or 415-555-2671')).toEqual(['phone']);
    expect(piiKinds('the year 2024 had 365 days')).toEqual([]);
  });
});

describe('JSON output', () => {
  it('checks validity only when JSON was asked for and the text is whole', () => {
    expect(wantsJson({ response_format: { type: 'json_object' } })).toBe(true);
    expect(wantsJson({ response_format: { type: 'json_schema', json_schema: {} } })).toBe(true);
    expect(wantsJson({ text: { format: { type: 'json_schema' } } })).toBe(true);
    expect(wantsJson({ response_format: { type: 'text' } })).toBe(false);
    expect(isValidJson('{"a":1}')).toBe(true);
    expect(isValidJson('```json\n{"a":1}\n```')).toBe(true);
    expect(isValidJson('{"a":')).toBe(false);
    const bad = { text: '{"a":', refusalField: false };
    expect(scoreText(bad, true, true).signals).toContain('invalid_json');
    expect(scoreText(bad, true, false).signals).not.toContain('invalid_json');
    expect(scoreText(bad, false, true).signals).not.toContain('invalid_json');
  });
});

describe('text from raw bytes', () => {
  it('reads chat SSE deltas, and skips usage and role-only chunks', () => {
    const sse =
      'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n' +
      'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n' +
      'data: {"choices":[{"index":0,"delta":{"content":" world"}}]}\n\n' +
      'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n' +
      'data: [DONE]\n\n';
    expect(extractText(Buffer.from(sse).toString('latin1'))).toEqual({ text: 'Hello world', refusalField: false });
  });
  it('reads whole chat bodies, structured refusals, Anthropic and Responses events', () => {
    expect(extractText('{"choices":[{"message":{"role":"assistant","content":"Hi there"}}]}').text).toBe('Hi there');
    expect(extractText('{"choices":[{"message":{"content":null,"refusal":"I will not."}}]}')).toEqual({
      text: 'I will not.',
      refusalField: true,
    });
    expect(
      extractText('event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Bonjour"}}\n\n')
        .text,
    ).toBe('Bonjour');
    expect(extractText('data: {"type":"response.output_text.delta","delta":"Hola"}\n\n').text).toBe('Hola');
  });
  it('a slice keeps head and tail by reference and says when it dropped the middle', () => {
    const s = new OutputSlice(10, 10);
    const chunks = ['0123456789', 'aaaaaaaaaa', 'bbbbbbbbbb', 'cccccccccc'].map((c) => Buffer.from(c));
    for (const c of chunks) s.push(c);
    expect(s.cut).toBe(true);
    expect(s.text()).toEqual({ head: '0123456789', tail: 'cccccccccc' });
    const whole = new OutputSlice(10, 10);
    whole.push(chunks[0]!);
    whole.push(chunks[1]!);
    expect(whole.cut).toBe(false);
    expect(whole.bytes).toBe(20);
  });
});

describe('text from raw bytes: UTF-8 across chunk edges', () => {
  it('decodes multi-byte text split between chunks', () => {
    const sse = 'data: {"choices":[{"delta":{"content":"作为AI助手，"}}]}\n\ndata: {"choices":[{"delta":{"content":"我无法回答。"}}]}\n\n';
    const bytes = Buffer.from(sse);
    const s = new OutputSlice(1 << 20, 1 << 10);
    // Cut in the middle of a three-byte character.
    const cut = bytes.indexOf(Buffer.from('助')) + 1;
    s.push(bytes.subarray(0, cut));
    s.push(bytes.subarray(cut));
    const { head, tail } = s.text();
    const x = extractText(head + tail);
    expect(x.text).toBe('作为AI助手，我无法回答。');
    expect(scoreText(x, false, true).signals).toEqual(['refusal']);
  });
});
