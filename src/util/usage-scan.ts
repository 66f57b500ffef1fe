// Usage (and a finish reason) of a non-streamed response, read without parsing the whole
// body. Which keys hold the counts is the API's business (src/protocols/); this only reads bytes.
//
// The body is forwarded as the upstream's bytes; the gateway only needs its `usage` object
// and, for chat, the first choice's `finish_reason`. OpenAI, vLLM, Ollama and llama.cpp put `usage`
// near the end, so a native Buffer.lastIndexOf finds it and its four counts are read from
// the bytes: a full JSON.parse built the whole response as objects (content included) just
// to read four numbers. Inside a JSON string a quote is always escaped, so a match for `"usage"`
// is always a real string token; preceded by `{`/`,` and followed by `:` it is a key. The
// last such key is taken as the response's usage (no known server puts a nested `usage`
// object after the top-level one). When the scan cannot read plain integer counts, it
// returns undefined and the caller parses the body in full.
import type { TapUsage } from '../streamtap/tokens.js';
import { BACKSLASH, CLOSE_BRACE, CLOSE_BRACKET, COLON, COMMA, OPEN_BRACE, OPEN_BRACKET, QUOTE, isSpace, stringEnd } from './json-bytes.js';

const USAGE_KEY = Buffer.from('"usage"');

export interface BodySummary {
  usage: TapUsage;
  finishReason: string | undefined;
}

/**
 * The keys of one API's usage object, quotes included (e.g. '"prompt_tokens"'). Each must
 * occur once in the object: the cached and reasoning counts sit in their own details objects.
 */
export interface UsageKeys {
  input: string;
  output: string;
  cached: string;
  reasoning: string;
  /** A string-valued key read from the body (its first occurrence), e.g. Buffer.from('"finish_reason"'). */
  finish?: Buffer;
}

/**
 * The non-negative integer after `key` in the usage object's text: undefined when the key
 * is absent, null when its value is not a plain integer (or the key occurs twice). The
 * object is a few hundred bytes: one latin1 string and string searches beat a native call
 * per key.
 */
function countAfter(usage: string, key: string): number | undefined | null {
  const at = usage.indexOf(key);
  if (at < 0) return undefined;
  if (usage.indexOf(key, at + key.length) >= 0) return null;
  let i = at + key.length;
  while (isSpace(usage.charCodeAt(i))) i++;
  if (usage.charCodeAt(i) !== COLON) return null;
  i++;
  while (isSpace(usage.charCodeAt(i))) i++;
  let n = 0;
  const first = i;
  for (; i < usage.length; i++) {
    const d = usage.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  if (i === first || i - first > 15) return null;
  const next = usage.charCodeAt(i);
  return next === COMMA || next === CLOSE_BRACE || isSpace(next) ? n : null;
}

/**
 * Where the value of the key token found at `at` starts, or -1 unless that token really is
 * an object key. An unescaped `"usage"` can only be a string token (quotes inside strings
 * are always escaped); preceded by `{` or `,` and followed by `:` it is a key.
 */
function valueAfterKey(body: Buffer, at: number, keyLength: number): number {
  let p = at - 1;
  while (p >= 0 && isSpace(body[p])) p--;
  if (p < 0 || (body[p] !== OPEN_BRACE && body[p] !== COMMA)) return -1;
  let i = at + keyLength;
  while (isSpace(body[i])) i++;
  if (body[i] !== COLON) return -1;
  i++;
  while (isSpace(body[i])) i++;
  return i < body.length ? i : -1;
}

/** Index just past the object that opens at `start`, skipping braces inside strings; -1 if it does not close. */
function objectEnd(body: Buffer, start: number): number {
  let depth = 0;
  for (let i = start; i < body.length; i++) {
    const b = body[i];
    if (b === QUOTE) {
      const e = stringEnd(body, i);
      if (e < 0) return -1;
      i = e - 1;
    } else if (b === OPEN_BRACE) depth++;
    else if (b === CLOSE_BRACE && --depth === 0) return i + 1;
  }
  return -1;
}

/**
 * Whether the key at `at` belongs to the top-level object. When the value that follows it is
 * the top-level object's last (only whitespace and the closing brace after it) that is
 * plain; otherwise walk from the start, counting brackets and jumping over strings natively.
 * Without this a response with no top-level usage but one nested in another object (found
 * by the property test) was billed from the nested one, where a full parse finds none.
 */
function isTopLevel(body: Buffer, at: number, valueEnd: number): boolean {
  let i = valueEnd;
  while (isSpace(body[i])) i++;
  if (body[i] === CLOSE_BRACE) {
    i++;
    while (isSpace(body[i])) i++;
    if (i === body.length) return true;
  }
  let depth = 0;
  for (let p = 0; p < at; p++) {
    const b = body[p];
    if (b === QUOTE) {
      const e = stringEnd(body, p);
      if (e < 0 || e > at) return false;
      p = e - 1;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) depth++;
    else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return depth === 1;
}

/** Usage and the first finish key's value from a JSON response body, or undefined when a full parse is needed. */
export function scanUsage(body: Buffer, keys: UsageKeys): BodySummary | undefined {
  const u = body.lastIndexOf(USAGE_KEY);
  if (u < 0) return undefined;
  const start = valueAfterKey(body, u, USAGE_KEY.length);
  if (start < 0 || body[start] !== OPEN_BRACE) return undefined;
  const end = objectEnd(body, start);
  if (end < 0 || !isTopLevel(body, u, end)) return undefined;
  const text = body.toString('latin1', start, end);
  const input = countAfter(text, keys.input);
  const output = countAfter(text, keys.output);
  // Both counts must be plain integers; anything else (floats, strings, absent) takes the full parse.
  if (input === undefined || input === null || output === undefined || output === null) return undefined;
  const cached = countAfter(text, keys.cached);
  const reasoning = countAfter(text, keys.reasoning);
  if (cached === null || reasoning === null) return undefined;
  const usage: TapUsage = { input, output, cachedInput: cached ?? 0, reasoning: reasoning ?? 0 };

  let finishReason: string | undefined;
  const key = keys.finish;
  const f = key ? body.indexOf(key) : -1;
  if (key && f >= 0) {
    const v = valueAfterKey(body, f, key.length);
    if (v < 0) return undefined;
    if (body[v] === QUOTE) {
      const close = body.indexOf(QUOTE, v + 1);
      if (close < 0) return undefined;
      // finish_reason values are plain words; an escape means something unusual: parse in full.
      for (let i = v + 1; i < close; i++) if (body[i] === BACKSLASH) return undefined;
      finishReason = body.toString('utf8', v + 1, close);
    }
  }
  return { usage, finishReason };
}
