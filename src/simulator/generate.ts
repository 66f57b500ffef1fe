// Turn a parsed /chat/completions or /completions request into what to send:
// a stream plan or a JSON body, with the token count, finish reason and usage decided
// up front (the simulator knows its whole answer before it starts "generating").
import type { Meta, StreamFormat, ToolCall, Usage } from './openai.js';
import {
  chatCompletionBody,
  chatTextStream,
  chatToolStream,
  completionBody,
  completionStream,
  newId,
  usage,
} from './openai.js';
import { WORDS_JSON, chatPromptTokens, completionText, inputTokens, tokenFragments } from './words.js';

export interface Knobs {
  outputTokens: number;
  includeUsageAlways: boolean;
  omitUsage: boolean;
  modelName: string | undefined;
  /** Answer with a refusal instead of the usual text (tool calls are unaffected). */
  refuse?: boolean;
}

/** What the handler sends once timing and faults are applied. */
export interface Answer {
  stream: boolean;
  format: StreamFormat; // for stream
  tokens: readonly string[]; // for stream (JSON-encoded)
  n: number; // token chunks
  body: string; // for non-stream
  refused?: boolean;
}

type Body = Record<string, unknown>;

/** A refusal, one token per piece (o200k and cl100k alike). */
const REFUSAL = ['I', ' cannot', ' help', ' with', ' that', '.'];
const REFUSAL_JSON = REFUSAL.map((w) => JSON.stringify(w));

function cap(body: Body, outputTokens: number): { n: number; finish: 'stop' | 'length' } {
  const max = body.max_completion_tokens ?? body.max_tokens;
  if (typeof max === 'number' && max >= 0 && max < outputTokens) return { n: Math.floor(max), finish: 'length' };
  return { n: outputTokens, finish: 'stop' };
}

function streamUsage(body: Body, k: Knobs, u: Usage): { usage: Usage | undefined; usageNull: boolean } {
  const opts = body.stream_options as { include_usage?: unknown } | undefined;
  const requested = opts?.include_usage === true;
  return { usage: !k.omitUsage && (requested || k.includeUsageAlways) ? u : undefined, usageNull: requested && !k.omitUsage };
}

function meta(prefix: string, body: Body, k: Knobs): Meta {
  const model = k.modelName ?? (typeof body.model === 'string' ? body.model : 'simulator');
  return { id: newId(prefix), created: Math.floor(Date.now() / 1000), model };
}

/** A placeholder value for a JSON-schema property, so tool arguments parse and look plausible. */
function sample(schema: unknown): unknown {
  const s = (schema ?? {}) as { type?: unknown; enum?: unknown[] };
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  switch (s.type) {
    case 'number':
    case 'integer':
      return 42;
    case 'boolean':
      return true;
    case 'array':
      return [];
    case 'object':
      return {};
    default:
      return 'hello';
  }
}

/** The tool the "model" calls, or null for a text answer. */
function pickTool(body: Body): ToolCall | null {
  const tools = body.tools;
  if (!Array.isArray(tools) || tools.length === 0 || body.tool_choice === 'none') return null;
  type Fn = { name?: unknown; parameters?: { properties?: Record<string, unknown> } };
  const fns = tools.map((t) => (t as { function?: Fn })?.function).filter((f): f is Fn => typeof f?.name === 'string');
  const forced = (body.tool_choice as { function?: { name?: unknown } } | undefined)?.function?.name;
  const fn = fns.find((f) => f.name === forced) ?? fns[0];
  if (!fn) return null;
  const args: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(fn.parameters?.properties ?? {})) args[key] = sample(schema);
  return { id: newId('call'), name: fn.name as string, arguments: JSON.stringify(args) };
}

export function chatAnswer(body: Body, k: Knobs): Answer {
  const stream = body.stream === true;
  const m = meta('chatcmpl', body, k);
  const prompt = chatPromptTokens(body.messages);
  const call = pickTool(body);
  if (call) {
    // Tool calls ignore max_tokens: a truncated call would be useless to test with.
    const fragments = tokenFragments(call.arguments);
    const u = usage(prompt, fragments.length);
    if (!stream) return nonStream(chatCompletionBody(m, call, 'tool_calls', k.omitUsage ? undefined : u), fragments.length);
    const format = chatToolStream(m, call, { finishReason: 'tool_calls', ...streamUsage(body, k, u) });
    return { stream, format, tokens: fragments.map((f) => JSON.stringify(f)), n: fragments.length, body: '' };
  }
  if (k.refuse) {
    const u = usage(prompt, REFUSAL.length);
    if (!stream) return { ...nonStream(chatCompletionBody(m, REFUSAL.join(''), 'stop', k.omitUsage ? undefined : u), REFUSAL.length), refused: true };
    const format = chatTextStream(m, { finishReason: 'stop', ...streamUsage(body, k, u) });
    return { stream, format, tokens: REFUSAL_JSON, n: REFUSAL.length, body: '', refused: true };
  }
  const { n, finish } = cap(body, k.outputTokens);
  const u = usage(prompt, n);
  if (!stream) return nonStream(chatCompletionBody(m, completionText(n), finish, k.omitUsage ? undefined : u), n);
  return { stream, format: chatTextStream(m, { finishReason: finish, ...streamUsage(body, k, u) }), tokens: WORDS_JSON, n, body: '' };
}

export function completionAnswer(body: Body, k: Knobs): Answer {
  const stream = body.stream === true;
  const m = meta('cmpl', body, k);
  const { n, finish } = cap(body, k.outputTokens);
  const u = usage(inputTokens(body.prompt), n);
  if (!stream) return nonStream(completionBody(m, completionText(n), finish, k.omitUsage ? undefined : u), n);
  return { stream, format: completionStream(m, { finishReason: finish, ...streamUsage(body, k, u) }), tokens: WORDS_JSON, n, body: '' };
}

const NO_FORMAT: StreamFormat = { head: '', prefix: '', suffix: '', tail: '' };
function nonStream(body: string, n: number): Answer {
  return { stream: false, format: NO_FORMAT, tokens: WORDS_JSON, n, body };
}
