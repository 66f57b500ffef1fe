/**
 * Token counting: for when the upstream reports no usage, and for the protocols' prompt
 * estimates (src/protocols/), which know the request fields.
 */

// cl100k_base (GPT-4 / GPT-3.5) rather than o200k_base: for the backends that send no usage
// (self-hosted Llama, Qwen, ...) either BPE is an estimate, and cl100k's ranks take ~40% of
// o200k's memory and load in ~80 ms instead of ~190 ms. Loaded lazily, through require so
// it stays synchronous: a gateway whose policy needs prompt estimates (token limits,
// budgets) loads it at startup (preloadTokenizer); one that does not pays neither the
// memory nor the load until a backend first streams without usage.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { LRUCache } from 'lru-cache';
import { BoundedCounter, type Bpe, type CountCache } from '../util/bounded-count.js';

type BpeCount = (text: string, opts: { disallowedSpecial: Set<string> }) => number;
let bpeCount: BpeCount | undefined;

interface EncodingApi {
  countTokens: BpeCount;
  setMergeCacheSize(size: number): void;
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
  for (let i = 0; i < text.length;) {
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
  const api = GptEncoding.getEncodingApi('cl100k_base', () => cl100kRanks(load));
  // The merge cache keeps every piece it has seen (100,000 by default), so its memory follows
  // what clients send: distinct pieces of up to MAX_PIECE_CHARS each. 10,000 still holds the
  // vocabulary of ordinary traffic.
  api.setMergeCacheSize(MERGE_CACHE_PIECES);
  bpeCount = api.countTokens;
}

const MERGE_CACHE_PIECES = 10_000;

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

const bpe: Bpe = (text) => {
  if (!bpeCount) preloadTokenizer();
  return bpeCount!(text, PLAIN_TEXT);
};

/** A counter whose time is bounded (util/bounded-count.ts): one per estimate, its BPE budget shared by every text counted. */
export function tokenCounter(): BoundedCounter {
  return new BoundedCounter(bpe);
}

/**
 * Prompts repeat: an agent or chat app sends the same system prompt, tool definitions and
 * history on every turn, and only the newest message is new. Exact counts of prompt texts are
 * kept here, bounded by the characters they hold, so a repeated text costs one map lookup
 * instead of a BPE pass (and is exact even past an estimate's BPE budget). Output texts are
 * not cached: they do not repeat.
 */
const PROMPT_CACHE_CHARS = 4 * 1024 * 1024;
/** A text longer than this is not kept (one would evict many; the estimate's budget bounds its cost anyway). */
const PROMPT_CACHE_MAX_TEXT = 256 * 1024;
/** What an entry costs beyond its characters (key, node, map slot), in the same units: bounds the count of tiny entries too. */
const ENTRY_OVERHEAD = 128;
let promptCache: LRUCache<string, number> | undefined;

const promptCounts: CountCache = {
  get: (text) => promptCache?.get(text),
  set(text, tokens) {
    if (text.length > PROMPT_CACHE_MAX_TEXT) return;
    // Made on first use: lru-cache is light without `max`, but a gateway that never estimates should not hold one.
    promptCache ??= new LRUCache<string, number>({
      maxSize: PROMPT_CACHE_CHARS,
      sizeCalculation: (_n, text) => text.length + ENTRY_OVERHEAD,
    });
    promptCache.set(text, tokens);
  },
};

/** A counter for a prompt estimate: bounded like tokenCounter(), and remembering the texts it counted exactly. */
export function promptCounter(): BoundedCounter {
  return new BoundedCounter(bpe, undefined, promptCounts);
}

/** Tokens in `text` (cl100k_base), bounded in time: see util/bounded-count.ts. */
export function countTokens(text: string): number {
  return text.length === 0 ? 0 : tokenCounter().count(text);
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
