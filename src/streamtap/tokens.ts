/**
 * Token counting for when the upstream reports no usage, and prompt estimates for admission.
 */

// cl100k_base (GPT-4 / GPT-3.5) rather than o200k_base: for the backends that send no usage
// (self-hosted Llama, Qwen, ...) either BPE is an estimate, and cl100k's ranks take ~40% of
// o200k's memory and load in ~80 ms instead of ~190 ms. Loaded lazily, through require so
// it stays synchronous: a gateway whose policy needs prompt estimates (token limits,
// budgets) loads it at startup (preloadTokenizer); one that does not pays neither the
// memory nor the load until a backend first streams without usage.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

type BpeCount = (text: string, opts: { disallowedSpecial: Set<string> }) => number;
let bpeCount: BpeCount | undefined;

interface EncodingApi {
  countTokens: BpeCount;
}
interface GptEncodingModule {
  GptEncoding: { getEncodingApi(name: 'cl100k_base', ranks: () => Array<string | number[]>): EncodingApi };
}

/**
 * The cl100k ranks, read from gpt-tokenizer's published .tiktoken file (one "base64 rank"
 * line per token) rather than its generated JS module: that module is a 1 MB source of array
 * literals whose source, boilerplates and bytecode stay in memory (idle RSS of a gateway
 * that loads the tokenizer: 83.4 -> 72.1 MB this way; counts are identical, see the unit test). Tokens that are valid UTF-8 are strings,
 * the others byte arrays, which is the layout gpt-tokenizer's encoder takes.
 */
function cl100kRanks(load: NodeJS.Require): Array<string | number[]> {
  const text = readFileSync(load.resolve('gpt-tokenizer/data/cl100k_base.tiktoken'), 'latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const ranks: Array<string | number[]> = [];
  for (let i = 0; i < text.length; ) {
    let nl = text.indexOf('\n', i);
    if (nl < 0) nl = text.length;
    const sp = text.indexOf(' ', i);
    if (sp > i && sp < nl) {
      const bytes = Buffer.from(text.slice(i, sp), 'base64');
      let token: string | number[];
      try {
        token = utf8.decode(bytes);
      } catch {
        token = Array.from(bytes);
      }
      ranks[Number(text.slice(sp + 1, nl))] = token;
    }
    i = nl + 1;
  }
  return ranks;
}

/** Loads the tokenizer now (idempotent). */
export function preloadTokenizer(): void {
  if (bpeCount) return;
  const load = createRequire(import.meta.url);
  const { GptEncoding } = load('gpt-tokenizer/GptEncoding') as GptEncodingModule;
  bpeCount = GptEncoding.getEncodingApi('cl100k_base', () => cl100kRanks(load)).countTokens;
}

export interface TapUsage {
  /** Prompt tokens, cached ones included (OpenAI's prompt_tokens). */
  input: number;
  /** Completion tokens, reasoning ones included (OpenAI's completion_tokens). */
  output: number;
  /** The part of `input` served from the prompt cache. */
  cachedInput: number;
  /** The part of `output` spent on reasoning. */
  reasoning: number;
  /** The part of `input` written to the prompt cache (Anthropic's cache_creation_input_tokens); absent for APIs that do not report it. */
  cacheWriteInput?: number;
}

// User text may contain strings like "<|endoftext|>": count them as plain text instead of
// letting the tokenizer throw on a "disallowed special token".
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** Tokens in `text` (cl100k_base). */
export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  if (!bpeCount) preloadTokenizer();
  return bpeCount!(text, PLAIN_TEXT);
}

// OpenAI's cookbook ("How to count tokens with tiktoken"): every message costs 3 tokens of
// framing plus its fields, a name 1 more, and every reply is primed with 3 tokens.
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING = 3;
// An image part costs at least the 85 base tokens OpenAI documents for a low-detail image;
// without fetching the image we cannot know more.
const TOKENS_PER_IMAGE = 85;

/**
 * Estimated prompt tokens of a parsed chat/completions, completions or embeddings request
 * body. Used before the upstream answers (admission, reservations), so it errs on the side
 * of counting what will be sent.
 */
export function estimatePromptTokens(body: Record<string, unknown>): number {
  let n = 0;
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const m of messages) {
      n += TOKENS_PER_MESSAGE;
      if (!isRecord(m)) continue;
      for (const key of Object.keys(m)) {
        const v = m[key];
        if (key === 'content') n += contentTokens(v);
        else if (typeof v === 'string') n += countTokens(v) + (key === 'name' ? TOKENS_PER_NAME : 0);
        else if (v !== null && typeof v === 'object') n += countTokens(JSON.stringify(v)); // tool_calls, function_call
      }
    }
    n += REPLY_PRIMING;
  }
  // Tool definitions reach the model as text; their JSON is a close stand-in.
  for (const key of ['tools', 'functions'] as const) {
    const v = body[key];
    if (v !== undefined && v !== null) n += countTokens(JSON.stringify(v));
  }
  return n + inputTokens(body['prompt']) + inputTokens(body['input']);
}

/** A message's content: a string, or an array of parts ({type:'text',text}, images, ...). */
function contentTokens(content: unknown): number {
  if (typeof content === 'string') return countTokens(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (typeof part === 'string') n += countTokens(part);
    else if (isRecord(part)) {
      if (typeof part['text'] === 'string') n += countTokens(part['text']);
      else if (part['type'] === 'image_url') n += TOKENS_PER_IMAGE;
    }
  }
  return n;
}

/** `prompt` (completions) or `input` (embeddings): a string, strings, or pre-tokenised ids. */
function inputTokens(v: unknown): number {
  if (typeof v === 'string') return countTokens(v);
  if (!Array.isArray(v)) return 0;
  let n = 0;
  for (const el of v) {
    if (typeof el === 'string') n += countTokens(el);
    else if (typeof el === 'number') n += 1; // a token id
    else if (Array.isArray(el)) n += el.length; // a tokenised prompt
    else if (isRecord(el)) n += countTokens(JSON.stringify(el));
  }
  return n;
}

/**
 * A usage count as the upstream sent it: absent (undefined / null) → undefined; a number as
 * is; anything else → NaN (present but invalid). Whether a count can be trusted is decided in
 * one place, settle's boundary (settle/usage.ts usageFault), which counts a bad one as an
 * upstream fault.
 */
export function num(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'number' ? v : NaN;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
