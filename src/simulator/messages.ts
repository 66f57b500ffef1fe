// Anthropic's Messages API for the simulator: POST /v1/messages (streamed and not, text or a
// tool_use block) and POST /v1/messages/count_tokens. Usage as Anthropic reports it:
// input_tokens excludes the cache, whose reads and writes come in their own fields (set per
// request with x-sim-cache-read-tokens / x-sim-cache-write-tokens); a stream carries the
// input counts in message_start and the cumulative output_tokens in message_delta.
import type { Answer, Invalid, Knobs } from './generate.js';
import type { StreamFormat } from './openai.js';
import { newId } from './openai.js';
import { sampleFromSchema } from './schema.js';
import { WORDS_JSON, chatPromptTokens, completionText, countText, tokenFragments } from './words.js';

type Body = Record<string, unknown>;

export interface CacheKnobs {
  cacheRead: number;
  cacheWrite: number;
}

/** Anthropic's error body. */
export function anthropicErrorBody(message: string, type = 'invalid_request_error'): string {
  return JSON.stringify({ type: 'error', error: { type, message } });
}

/** The error body Anthropic sends for a status (a status fault on /v1/messages). */
export function anthropicErrorForStatus(status: number): string {
  const type =
    status === 400
      ? 'invalid_request_error'
      : status === 401
        ? 'authentication_error'
        : status === 403
          ? 'permission_error'
          : status === 404
            ? 'not_found_error'
            : status === 413
              ? 'request_too_large'
              : status === 429
                ? 'rate_limit_error'
                : status === 529 || status === 503
                  ? 'overloaded_error'
                  : 'api_error';
  return anthropicErrorBody(`Simulated error ${status}.`, type);
}

function systemText(system: unknown): string {
  if (typeof system === 'string') return system;
  if (!Array.isArray(system)) return '';
  let s = '';
  for (const b of system)
    if (b && typeof b === 'object' && typeof (b as { text?: unknown }).text === 'string') s += (b as { text: string }).text;
  return s;
}

/** input_tokens: the o200k tokens of the system prompt and the messages' text (no framing, so tests can predict it). */
export function messagesPromptTokens(body: Body): number {
  return countText(systemText(body.system)) + chatPromptTokens(body.messages);
}

interface ToolUse {
  id: string;
  name: string;
  input: string; // JSON
}

/**
 * The tool the "model" calls, or null for text: it calls one whenever tools are offered,
 * except with tool_choice none, or when the last message returns a tool result and no call
 * is forced (tool_choice any / tool), so an agent loop gets its final answer.
 */
function pickTool(body: Body): ToolUse | null {
  const tools = body.tools;
  if (!Array.isArray(tools) || tools.length === 0) return null;
  const choice = (body.tool_choice ?? { type: 'auto' }) as { type?: unknown; name?: unknown };
  if (choice.type === 'none') return null;
  const forced = choice.type === 'any' || choice.type === 'tool';
  const last = Array.isArray(body.messages) ? (body.messages.at(-1) as { role?: unknown; content?: unknown } | undefined) : undefined;
  const afterResult =
    last?.role === 'user' &&
    Array.isArray(last.content) &&
    last.content.some((b) => (b as { type?: unknown } | null)?.type === 'tool_result');
  if (afterResult && !forced) return null;
  const defs = tools.filter(
    (t): t is { name: string; input_schema?: unknown } =>
      !!t && typeof t === 'object' && typeof (t as { name?: unknown }).name === 'string',
  );
  const def = defs.find((t) => t.name === choice.name) ?? defs[0];
  if (!def) return null;
  let input = sampleFromSchema(def.input_schema ?? { type: 'object', properties: {} });
  if (typeof input !== 'object' || input === null || Array.isArray(input)) input = {};
  return { id: newId('toolu'), name: def.name, input: JSON.stringify(input) };
}

function ev(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function messagesAnswer(body: Body, k: Knobs, cache: CacheKnobs): Answer | Invalid {
  const max = body.max_tokens;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1)
    return { invalid: 'max_tokens: Field required (a positive integer)', param: 'max_tokens' };
  if (!Array.isArray(body.messages)) return { invalid: 'messages: Field required', param: 'messages' };
  const stream = body.stream === true;
  const id = newId('msg');
  const model = k.modelName ?? (typeof body.model === 'string' ? body.model : 'simulator');
  const tool = pickTool(body);
  let n: number;
  let tokens: readonly string[];
  let stop: string;
  let block: Record<string, unknown>;
  let text = '';
  if (tool) {
    // A truncated tool input would be useless to test with: max_tokens does not cut it.
    const fragments = tokenFragments(tool.input);
    tokens = fragments.map((f) => JSON.stringify(f));
    n = fragments.length;
    stop = 'tool_use';
    block = { type: 'tool_use', id: tool.id, name: tool.name, input: JSON.parse(tool.input) as unknown };
  } else {
    n = Math.min(k.outputTokens, max);
    stop = n < k.outputTokens ? 'max_tokens' : 'end_turn';
    tokens = WORDS_JSON;
    text = completionText(n);
    block = { type: 'text', text };
  }
  const usage = k.omitUsage
    ? undefined
    : {
        input_tokens: messagesPromptTokens(body),
        cache_creation_input_tokens: cache.cacheWrite,
        cache_read_input_tokens: cache.cacheRead,
        output_tokens: n,
      };
  if (!stream) {
    const msg = {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: [block],
      stop_reason: stop,
      stop_sequence: null,
      ...(usage ? { usage } : {}),
    };
    return { stream: false, format: { head: '', prefix: '', suffix: '', tail: '' }, tokens, n, body: JSON.stringify(msg) };
  }
  const startUsage = usage ? { ...usage, output_tokens: 1 } : undefined;
  const startBlock = tool ? { type: 'tool_use', id: tool.id, name: tool.name, input: {} } : { type: 'text', text: '' };
  const deltaOpen = tool
    ? 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":'
    : 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":';
  const format: StreamFormat = {
    head:
      ev('message_start', {
        type: 'message_start',
        message: {
          id,
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          ...(startUsage ? { usage: startUsage } : {}),
        },
      }) +
      ev('content_block_start', { type: 'content_block_start', index: 0, content_block: startBlock }) +
      ev('ping', { type: 'ping' }),
    prefix: deltaOpen,
    suffix: '},"sim_ts":',
    tail:
      ev('content_block_stop', { type: 'content_block_stop', index: 0 }) +
      ev('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stop, stop_sequence: null },
        ...(usage ? { usage: { output_tokens: n } } : {}),
      }) +
      ev('message_stop', { type: 'message_stop' }),
  };
  return { stream: true, format, tokens, n, body: '' };
}

/** POST /v1/messages/count_tokens. */
export function countTokensBody(body: Body): string {
  return JSON.stringify({ input_tokens: messagesPromptTokens(body) });
}
