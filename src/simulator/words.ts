// Text the simulator "generates", and prompt token counting.
//
// Every word below is exactly one token in both o200k_base (gpt-4o family) and
// cl100k_base (gpt-4 / gpt-3.5), and so is any concatenation of them in this order
// (checked in test/unit/simulator.test.ts). So a client or the gateway that counts
// the streamed chunks, or re-tokenizes the assembled text, gets exactly the
// completion_tokens the simulator reports.
import { countTokens, encode, decode } from 'gpt-tokenizer/encoding/o200k_base';
import { BoundedCounter } from '../util/bounded-count.js';

export const WORDS: readonly string[] = [
  ' hello',
  ' world',
  ' the',
  ' gateway',
  ' is',
  ' a',
  ' fast',
  ' proxy',
  ' for',
  ' every',
  ' model',
  ' and',
  ' each',
  ' token',
  ' arrives',
  ' on',
  ' time',
  '.',
];

/** WORDS already JSON-encoded, so building a chunk is only string concatenation. */
export const WORDS_JSON: readonly string[] = WORDS.map((w) => JSON.stringify(w));

/** The completion text of `n` tokens, starting at word `offset` (choice `offset` of n). */
export function completionText(n: number, offset = 0): string {
  let s = '';
  for (let i = 0; i < n; i++) s += WORDS[(i + offset) % WORDS.length];
  return s;
}

/** o200k tokens of `text`, bounded in time (a simulator on the gateway's event loop must not stall it on a 300k-char word). */
export function countText(text: string): number {
  return text.length === 0 ? 0 : new BoundedCounter(countTokens).count(text);
}

/** Text of one chat message's content: a string, or an array of parts (text parts count). */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let s = '';
  for (const part of content) {
    if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
      s += (part as { text: string }).text;
    }
  }
  return s;
}

/**
 * prompt_tokens for a chat request: the o200k_base tokens of the messages' content.
 * Real OpenAI adds ~3 tokens of framing per message; the simulator deliberately does
 * not, so a test can predict the number from the content alone.
 */
export function chatPromptTokens(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let n = 0;
  for (const m of messages) {
    if (m && typeof m === 'object') n += countText(contentText((m as { content?: unknown }).content));
  }
  return n;
}

/** prompt_tokens for /completions and /embeddings inputs: string | string[] | number[] | number[][]. */
export function inputTokens(input: unknown): number {
  if (typeof input === 'string') return countText(input);
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const item of input) {
    if (typeof item === 'number') n += 1;
    else n += inputTokens(item);
  }
  return n;
}

/**
 * Split a string into one fragment per token (tool-call arguments are streamed this
 * way). Falls back to a single fragment if per-token decoding would split a character.
 */
export function tokenFragments(text: string): string[] {
  const parts = encode(text).map((t) => decode([t]));
  return parts.join('') === text && !parts.some((p) => p.includes('\uFFFD')) ? parts : [text];
}
