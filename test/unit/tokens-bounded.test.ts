// Token estimates are bounded in time whatever the input. BPE is quadratic in one pre-split
// piece, and one word of 300,000 `a` (or 40,000 CJK characters) is one piece: it froze the
// event loop for ~55 s (3 s). The bound is checked in work units, not time: no text handed to
// BPE holds a run (of whitespace or of anything else) longer than MAX_PIECE_CHARS, and no
// estimate hands BPE more than EXACT_BUDGET_CHARS characters. Ordinary text is still counted
// exactly.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { BoundedCounter, EXACT_BUDGET_CHARS, MAX_PIECE_CHARS, bpeWork } from '../../src/util/bounded-count.js';
import { countTokens } from '../../src/streamtap/tokens.js';
import { estimatePromptTokens } from '../../src/protocols/prompt-estimate.js';
import { countText } from '../../src/simulator/words.js';

/** The longest run of whitespace or of non-whitespace in `s` (what the tokenizers' pre-split can make one piece of). */
function longestRun(s: string): number {
  let best = 0;
  for (const m of s.matchAll(/\s+|\S+/gu)) best = Math.max(best, m[0].length);
  return best;
}

/** A fake BPE that records what it is handed (and counts 1 token per 4 chars). */
function recorder() {
  const seen = { calls: 0, chars: 0, longestRun: 0, loneSurrogate: false };
  const bpe = (text: string): number => {
    seen.calls++;
    seen.chars += text.length;
    seen.longestRun = Math.max(seen.longestRun, longestRun(text));
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) seen.loneSurrogate = true;
    return Math.ceil(text.length / 4);
  };
  return { seen, bpe };
}

const HOSTILE: Array<[string, string]> = [
  ['a 300k-char single word', 'a'.repeat(300_000)],
  ['40k CJK characters', '中文字'.repeat(13_334)],
  ['100k spaces', ' '.repeat(100_000)],
  ['100k newlines', '\n'.repeat(100_000)],
  ['100k punctuation', '!?'.repeat(50_000)],
  ['50k emoji (surrogate pairs)', '👋'.repeat(50_000)],
  ['a word, a space run, a word', `${'x'.repeat(5_000)}${' '.repeat(5_000)}${'y'.repeat(5_000)}`],
  ['base64-like blob', Buffer.alloc(150_000, 'gateway').toString('base64')],
];

describe('bounded token counting', () => {
  it.each(HOSTILE)(
    '%s: no text handed to BPE holds a run longer than MAX_PIECE_CHARS, and at most EXACT_BUDGET_CHARS in all',
    (_name, text) => {
      const { seen, bpe } = recorder();
      const n = new BoundedCounter(bpe).count(text);
      expect(seen.longestRun).toBeLessThanOrEqual(MAX_PIECE_CHARS);
      expect(seen.chars).toBeLessThanOrEqual(EXACT_BUDGET_CHARS);
      expect(seen.loneSurrogate).toBe(false); // slices never split a character
      // The estimate is a count: a positive integer, never below UTF-8 bytes / 4 for the part not counted.
      expect(Number.isSafeInteger(n) && n > 0).toBe(true);
    },
  );

  it('work is linear: twice the text hands BPE at most twice the characters, within one budget', () => {
    for (const unit of ['a', '中', ' ', 'ab!']) {
      const work = (len: number) => {
        const { seen, bpe } = recorder();
        new BoundedCounter(bpe, Infinity).count(unit.repeat(len));
        return seen;
      };
      const one = work(20_000);
      const two = work(40_000);
      expect(two.chars).toBeLessThanOrEqual(2 * one.chars + MAX_PIECE_CHARS);
      expect(two.longestRun).toBeLessThanOrEqual(MAX_PIECE_CHARS);
    }
  });

  it('one budget covers a whole prompt estimate, however many messages it has', () => {
    const before = bpeWork.chars;
    const messages = Array.from({ length: 200 }, () => ({ role: 'user', content: 'b'.repeat(10_000) }));
    const n = estimatePromptTokens({ messages });
    expect(bpeWork.chars - before).toBeLessThanOrEqual(EXACT_BUDGET_CHARS);
    expect(n).toBeGreaterThan((200 * 10_000) / 8); // 'bbbbbbbb' is one cl100k token: the estimate does not under-count
  });

  it('ordinary text under the budget is counted exactly as gpt-tokenizer counts it', async () => {
    const reference = (await import('gpt-tokenizer/encoding/cl100k_base')).countTokens;
    const readme = readFileSync('README.md', 'utf8').slice(0, EXACT_BUDGET_CHARS);
    const code = readFileSync('src/pipeline.ts', 'utf8');
    for (const text of [readme, code, 'Héllo wörld 👋 日本語', '    indented\n\tcode();\n\n\n', 'x'.repeat(MAX_PIECE_CHARS)]) {
      expect(countTokens(text)).toBe(reference(text, { disallowedSpecial: new Set() }));
    }
  });

  it('past the budget the estimate goes on at the measured ratio, and never below UTF-8 bytes / 4', () => {
    const english = 'The quick brown fox jumps over the lazy dog. '.repeat(10_000); // 450k chars, ~0.22 tokens/char
    const exactHead = countTokens(english.slice(0, EXACT_BUDGET_CHARS));
    const n = countTokens(english);
    const ratio = exactHead / EXACT_BUDGET_CHARS;
    expect(n).toBeGreaterThanOrEqual(Math.floor(ratio * english.length * 0.95));
    expect(n).toBeLessThanOrEqual(Math.ceil(Math.max(ratio, 0.25) * english.length * 1.05));
    // A head of whitespace cannot make a CJK tail look free.
    const tail = '語'.repeat(100_000);
    expect(countTokens(' '.repeat(EXACT_BUDGET_CHARS) + tail)).toBeGreaterThanOrEqual(Buffer.byteLength(tail) / 4);
  });

  it("the simulator counts prompts with the same bound (it runs on the gateway's event loop)", () => {
    const before = bpeWork.chars;
    expect(countText('a'.repeat(300_000))).toBeGreaterThan(300_000 / 8);
    expect(bpeWork.chars - before).toBeLessThanOrEqual(EXACT_BUDGET_CHARS);
  });
});

describe('prompt texts counted before cost no BPE the next time', () => {
  it('a counter with a cache returns the same counts, and a repeated text is not handed to BPE again', () => {
    const { seen, bpe } = recorder();
    const cache = new Map<string, number>();
    const first = new BoundedCounter(bpe, EXACT_BUDGET_CHARS, { get: (t) => cache.get(t), set: (t, n) => cache.set(t, n) });
    const system = 'You are a careful assistant. '.repeat(40);
    const n1 = first.count(system);
    const calls = seen.calls;
    expect(calls).toBeGreaterThan(0);
    const second = new BoundedCounter(bpe, EXACT_BUDGET_CHARS, { get: (t) => cache.get(t), set: (t, n) => cache.set(t, n) });
    expect(second.count(system)).toBe(n1);
    expect(seen.calls).toBe(calls);
  });

  it('a cached text counts toward the ratio the rest of an estimate is extrapolated at', () => {
    const cache = new Map<string, number>([['one token per character', 23]]);
    // No BPE budget at all: everything not cached is extrapolated.
    const c = new BoundedCounter(() => 0, 0, { get: (t) => cache.get(t), set: (t, n) => cache.set(t, n) });
    expect(c.count('one token per character')).toBe(23);
    expect(c.count('y'.repeat(40))).toBe(40); // at the cached text's 1 token/char, not bytes/4 (10)
  });

  it('only texts counted exactly are kept: the part past the budget is extrapolated and not cached', () => {
    const { bpe } = recorder();
    const cache = new Map<string, number>();
    const c = new BoundedCounter(bpe, 100, { get: (t) => cache.get(t), set: (t, n) => cache.set(t, n) });
    c.count('a b '.repeat(20)); // 80 chars, exact
    c.count('c d '.repeat(20)); // crosses the budget
    expect([...cache.keys()]).toEqual(['a b '.repeat(20)]);
  });

  it('estimatePromptTokens gives the same count for a repeated prompt, without BPE work the second time', () => {
    const body = {
      model: 'm',
      messages: [
        { role: 'system', content: 'Answer in the style of a ship captain, precisely and briefly. '.repeat(30) },
        { role: 'user', content: 'What is the tide doing at the harbour mouth this evening?' },
      ],
    };
    const a = estimatePromptTokens(body);
    const before = bpeWork.calls;
    const b = estimatePromptTokens(structuredClone(body));
    expect(b).toBe(a);
    expect(bpeWork.calls).toBe(before);
    expect(a).toBe(
      countTokens(body.messages[0]!.content) +
        countTokens(body.messages[1]!.content) +
        countTokens('system') +
        countTokens('user') +
        2 * 3 +
        3,
    );
  });
});
