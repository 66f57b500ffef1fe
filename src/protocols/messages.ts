// POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API.
//
// Usage, and what "input" means. Anthropic reports the prompt in three disjoint parts:
// `input_tokens` (neither read from nor written to the cache), `cache_read_input_tokens` and
// `cache_creation_input_tokens`. OpenAI's `prompt_tokens` is the whole prompt, its
// `cached_tokens` a part of it. The gateway keeps OpenAI's rule for every API, so metrics,
// tpm windows and budgets mean the same thing whichever API a request spoke:
//
//   input             = input_tokens + cache_read_input_tokens + cache_creation_input_tokens
//   cached_input      = cache_read_input_tokens          (a part of input)
//   cache_write_input = cache_creation_input_tokens      (a part of input)
//
// and settle prices each part once (settle/index.ts costUsd). Gateways that mixed the two
// rules either billed cache reads twice or dropped them (Envoy AI Gateway #2290 and #2352,
// LiteLLM #11364).
//
// Streams: `message_start` carries the input counts (and a first output count);
// `message_delta.usage.output_tokens` is cumulative, so the last value wins and values are
// never added up. A later event's input counts, when an upstream sends them, replace the
// earlier ones the same way.
import { errors, type GatewayError } from '../errors.js';
import { KeyKind, type BodyFacts, type StreamFacts, type StreamGrammar } from '../streamtap/grammar.js';
import { isRecord, num, promptCounter, type TapUsage } from '../streamtap/tokens.js';
import type { BoundedCounter } from '../util/bounded-count.js';
import { scanUsage, type UsageKeys } from '../util/usage-scan.js';
import { usageFault } from '../settle/usage.js';
import { QUOTE } from '../util/json-bytes.js';
import { modelOf, positiveInt, spliceBody } from './openai.js';
import { freeCall, type Protocol } from './types.js';
import { parseObject, sseEvent } from './wire.js';

// ---- errors -------------------------------------------------------------------------------

/**
 * Anthropic's error type for a status (docs.anthropic.com/en/api/errors). Its SDKs pick the
 * exception class from the status (RateLimitError, AuthenticationError, ...); the type is
 * what a caller reads on it.
 */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
    case 405:
    case 408:
    case 409:
    case 415:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    case 504:
      return 'timeout_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

function anthropicError(err: GatewayError): { type: 'error'; error: { type: string; message: string } } {
  return { type: 'error', error: { type: anthropicErrorType(err.status), message: err.message } };
}

/** `{"type":"error","error":{"type","message"}}`: what @anthropic-ai/sdk reads with the status. */
export function anthropicErrorBody(err: GatewayError): string {
  return JSON.stringify(anthropicError(err));
}

/**
 * A failure after the first byte: a named `error` event, which the SDK raises (it skips
 * unnamed events). A gateway shutting down is overloaded_error, anything else api_error.
 */
export function anthropicStreamError(err: GatewayError): string {
  const type = err.status === 503 ? 'overloaded_error' : 'api_error';
  return sseEvent({ type: 'error', error: { type, message: err.message } }, 'error');
}

// ---- usage --------------------------------------------------------------------------------

/**
 * Anthropic's usage object as the gateway's counts (see the top of this file). `prev`: what
 * an earlier event of the same stream said; a field this one lacks keeps its earlier value.
 * Undefined when the object carries no count at all.
 */
export function anthropicUsage(u: unknown, prev?: TapUsage): TapUsage | undefined {
  if (!isRecord(u)) return undefined;
  const plain = num(u['input_tokens']);
  const read = num(u['cache_read_input_tokens']);
  const write = num(u['cache_creation_input_tokens']);
  const output = num(u['output_tokens']);
  if (plain === undefined && read === undefined && write === undefined && output === undefined) return undefined;
  const cachedInput = read ?? prev?.cachedInput ?? 0;
  const cacheWriteInput = write ?? prev?.cacheWriteInput ?? 0;
  const prevPlain = prev ? prev.input - prev.cachedInput - (prev.cacheWriteInput ?? 0) : 0;
  return {
    input: (plain ?? prevPlain) + cachedInput + cacheWriteInput,
    output: output ?? prev?.output ?? 0,
    cachedInput,
    reasoning: 0, // Anthropic does not report thinking tokens apart: they are in output_tokens
    cacheWriteInput,
  };
}

// ---- the stream ---------------------------------------------------------------------------

/**
 * Every event is named (`event: x` then `data: {"type":"x",...}`). Tokens: `text` (text_delta),
 * `thinking` (thinking_delta), `partial_json` (input_json_delta); the empty `"text":""` of a
 * content_block_start is no token, and `ping` carries none. `stop_reason` is the finish
 * reason (null until message_delta). `usage` objects (message_start's, message_delta's) are
 * parsed; so are `message_stop` (the end marker) and `error` events.
 */
export const messagesGrammar: StreamGrammar = {
  keys: [
    ['text', KeyKind.Token],
    ['thinking', KeyKind.Token],
    ['partial_json', KeyKind.Token],
    ['stop_reason', KeyKind.Finish],
    ['usage', KeyKind.ParseObject],
    ['type', KeyKind.Type],
  ],
  parseTypes: ['message_stop', 'error'],
  doneSentinel: false,
  onEvent(event, facts: StreamFacts) {
    switch (event['type']) {
      case 'message_start': {
        const msg = event['message'];
        const u = isRecord(msg) ? anthropicUsage(msg['usage']) : undefined;
        if (u) facts.usage = u;
        break;
      }
      case 'message_delta': {
        const u = anthropicUsage(event['usage'], facts.usage);
        if (u) facts.usage = u;
        break;
      }
      case 'message_stop':
        facts.complete = true;
        break;
      case 'error':
        facts.error = event['error'] ?? event;
        break;
    }
    return false; // the gateway never asks for usage itself: nothing is cut
  },
  collectText(event, parts) {
    if (event['type'] !== 'content_block_delta') return;
    const d = event['delta'];
    if (!isRecord(d)) return;
    for (const key of ['text', 'thinking', 'partial_json'] as const) {
      const v = d[key];
      if (typeof v === 'string' && v.length > 0) parts.push(v);
    }
  },
};

// The byte scan's four slots, filled with Anthropic's keys: the "reasoning" slot carries the
// cache writes (Anthropic reports no reasoning count), remapped below.
const MESSAGE_KEYS: UsageKeys = {
  input: '"input_tokens"',
  output: '"output_tokens"',
  cached: '"cache_read_input_tokens"',
  reasoning: '"cache_creation_input_tokens"',
};
const STOP_REASON = Buffer.from('"stop_reason":"');

/**
 * stop_reason by its last occurrence: Anthropic writes it after the content, where a tool's
 * input object could hold a key of that name too. Stop reasons are plain words (no escapes).
 */
function stopReason(body: Buffer): string | undefined {
  const at = body.lastIndexOf(STOP_REASON);
  if (at < 0) return undefined;
  const from = at + STOP_REASON.length;
  const end = body.indexOf(QUOTE, from);
  return end > from && end - from <= 64 ? body.toString('latin1', from, end) : undefined;
}

/**
 * A whole message: usage and stop_reason by byte scan (util/usage-scan.ts: no full parse of
 * the content just to read five numbers), else one full parse, which also gives the text to
 * count when there is no usage.
 */
export function readMessageBody(body: Buffer): BodyFacts | undefined {
  const s = scanUsage(body, MESSAGE_KEYS);
  if (s) {
    const { input: plain, output, cachedInput: read, reasoning: write } = s.usage;
    const usage: TapUsage = { input: plain + read + write, output, cachedInput: read, reasoning: 0, cacheWriteInput: write };
    if (usageFault(usage) === undefined) return { usage, finishReason: stopReason(body) };
  }
  const json = parseObject(body);
  if (!json) return undefined;
  const usage = anthropicUsage(json['usage']);
  const finishReason = typeof json['stop_reason'] === 'string' ? json['stop_reason'] : undefined;
  if (usage) return { usage, finishReason };
  let text = '';
  const content = json['content'];
  if (Array.isArray(content)) {
    for (const b of content) {
      if (!isRecord(b)) continue;
      if (typeof b['text'] === 'string') text += b['text'];
      else if (typeof b['thinking'] === 'string') text += b['thinking'];
      else if (b['type'] === 'tool_use' && b['input'] !== undefined) text += JSON.stringify(b['input']);
    }
  }
  return { finishReason, text };
}

// ---- the request --------------------------------------------------------------------------

/** An image or document block: at least the cost of a small image (without fetching it we cannot know more). */
const TOKENS_PER_MEDIA = 85;
/** Role framing per message, as for chat (an estimate: Anthropic's tokenizer is not public). */
const TOKENS_PER_MESSAGE = 3;

function blocksTokens(content: unknown, c: BoundedCounter): number {
  if (typeof content === 'string') return c.count(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const b of content) {
    if (typeof b === 'string') n += c.count(b);
    else if (!isRecord(b)) continue;
    else if (typeof b['text'] === 'string') n += c.count(b['text']);
    else if (typeof b['thinking'] === 'string') n += c.count(b['thinking']);
    else if (b['type'] === 'image' || b['type'] === 'document') n += TOKENS_PER_MEDIA;
    else if (b['type'] === 'tool_use')
      n += c.count(JSON.stringify(b['input'] ?? {})) + (typeof b['name'] === 'string' ? c.count(b['name']) : 0);
    else if (b['type'] === 'tool_result') n += blocksTokens(b['content'], c);
  }
  return n;
}

/** Estimated prompt tokens of a Messages request: system, messages, tool definitions. */
export function estimateMessagesPrompt(body: Record<string, unknown>): number {
  // One bounded counter for the whole estimate (its BPE budget shared by every block), which
  // remembers the texts it counted: system prompts and history repeat from turn to turn.
  const c = promptCounter();
  let n = blocksTokens(body['system'], c);
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const m of messages) {
      n += TOKENS_PER_MESSAGE;
      if (isRecord(m)) n += blocksTokens(m['content'], c);
    }
  }
  const tools = body['tools'];
  if (tools !== undefined && tools !== null) n += c.count(JSON.stringify(tools));
  return n;
}

function validateStream(body: Record<string, unknown>): void {
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw errors.invalidParam('stream', "'stream' must be a boolean.");
}

function validateMessages(body: Record<string, unknown>): void {
  validateStream(body);
  // Anthropic requires max_tokens; the gateway also reserves by it.
  const max = body.max_tokens;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1)
    throw errors.invalidParam('max_tokens', "'max_tokens' is required and must be a positive integer.");
  if (!Array.isArray(body.messages)) throw errors.invalidParam('messages', "'messages' is required and must be an array.");
}

const MAX_TOKENS = ['max_tokens'] as const;

export const messages: Protocol = {
  name: 'messages',
  endpoint: 'messages',
  upstreamPath: '/messages',
  operation: 'chat',
  grammar: messagesGrammar,
  validate: validateMessages,
  model: modelOf,
  stream: (body) => body.stream === true,
  maxOutputTokens: (body) => positiveInt(body, MAX_TOKENS),
  promptTokens: estimateMessagesPrompt,
  // Anthropic always streams usage: nothing to ask for, nothing to cut.
  injectsUsage: () => false,
  upstreamBody: (raw, body, target) => spliceBody(raw, body, target, false),
  readBody: readMessageBody,
  streamError: anthropicStreamError,
  errorBody: anthropicErrorBody,
};

/**
 * POST /v1/messages/count_tokens: routed by model to a deployment that serves messages, under
 * the key, the allow-list and the request limits. Anthropic does not bill it, so it reserves
 * and spends nothing (no prompt estimate, no output) and its answer counts no tokens.
 */
export const countMessageTokens: Protocol = freeCall(messages, {
  name: 'messages_count_tokens',
  api: 'messages',
  endpoint: 'messages/count_tokens',
  upstreamPath: '/messages/count_tokens',
  validate: (body) => {
    if (!Array.isArray(body.messages)) throw errors.invalidParam('messages', "'messages' is required and must be an array.");
  },
});
