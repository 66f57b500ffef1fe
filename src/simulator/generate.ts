// Turn a parsed /chat/completions or /completions request into what to send:
// a stream plan or a JSON body, with the token count, finish reason and usage decided
// up front (the simulator knows its whole answer before it starts "generating").
import type { Meta, StreamFormat, ToolCall, Usage } from './openai.js';
import { chatCompletionBody, chatStream, completionBody, completionStream, newId, usage } from './openai.js';
import { sampleFromSchema } from './schema.js';
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
  /** tokens generated before the first chunk but never sent (hidden reasoning): each delays it by tpot */
  hiddenTokens?: number;
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

/** A request the simulator refuses, as OpenAI would: a 400 naming the parameter. */
export interface Invalid {
  invalid: string;
  param: string;
}

export const isInvalid = (a: object): a is Invalid => 'invalid' in a;

interface FunctionDef {
  name: string;
  parameters: unknown;
}

/**
 * The function tool the "model" calls, or null for a text answer. It calls one whenever tools
 * are offered, except with tool_choice "none", or when the conversation already ends in a tool
 * result (so an agent loop gets its final answer) and no call is forced.
 * Chat nests the definition in `function`; the Responses API has it flat.
 */
export function pickTool(tools: unknown, toolChoice: unknown, afterToolResult: boolean): ToolCall | null {
  if (!Array.isArray(tools) || tools.length === 0 || toolChoice === 'none') return null;
  const forced = toolChoice === 'required' || (typeof toolChoice === 'object' && toolChoice !== null);
  if (afterToolResult && !forced) return null;
  const fns: FunctionDef[] = [];
  for (const t of tools as Array<Record<string, unknown> | null>) {
    const def = (t?.type === 'function' && typeof t.function === 'object' ? t.function : t) as Record<string, unknown> | null;
    if (t?.type === 'function' && typeof def?.name === 'string') fns.push({ name: def.name, parameters: def.parameters });
  }
  const choice = toolChoice as { name?: unknown; function?: { name?: unknown } } | undefined;
  const want = choice?.function?.name ?? choice?.name;
  const fn = fns.find((f) => f.name === want) ?? fns[0];
  if (!fn) return null;
  let args = sampleFromSchema(fn.parameters ?? { type: 'object', properties: {} });
  if (typeof args !== 'object' || args === null || Array.isArray(args)) args = {};
  return { id: newId('call'), name: fn.name, arguments: JSON.stringify(args) };
}

/**
 * The JSON text a structured-output request gets, null for plain text, or why the format is
 * refused. `format` is chat's response_format or the Responses API's text.format; the schema
 * sits in format.json_schema.schema (chat) or format.schema (responses).
 */
export function structuredText(format: unknown, param: string, k: Knobs): string | null | Invalid {
  if (format === undefined || format === null) return null;
  const f = format as { type?: unknown; schema?: unknown; json_schema?: { schema?: unknown } };
  switch (f.type) {
    case 'text':
      return null;
    case 'json_object':
      return JSON.stringify({ message: completionText(Math.max(1, k.outputTokens)).trim() });
    case 'json_schema': {
      if (param === 'response_format' && (typeof f.json_schema !== 'object' || f.json_schema === null)) {
        return { invalid: "Missing required parameter: 'response_format.json_schema'.", param: 'response_format.json_schema' };
      }
      const schema = param === 'response_format' ? f.json_schema?.schema : f.schema;
      if (schema === undefined || typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
        return { invalid: `Invalid schema for ${param}: the schema must be a JSON object.`, param };
      }
      return JSON.stringify(sampleFromSchema(schema));
    }
    default:
      return {
        invalid: `Invalid value for '${param}.type': expected one of 'text', 'json_object' or 'json_schema'.`,
        param: `${param}.type`,
      };
  }
}

/** Chat's `n`: 1..128 choices. */
function choiceCount(body: Body): number | Invalid {
  const n = body.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 128) {
    return { invalid: `Invalid value for 'n': expected an integer from 1 to 128.`, param: 'n' };
  }
  return n;
}

function lastRole(messages: unknown): unknown {
  return Array.isArray(messages) ? (messages.at(-1) as { role?: unknown } | undefined)?.role : undefined;
}

export function chatAnswer(body: Body, k: Knobs): Answer | Invalid {
  const stream = body.stream === true;
  const choices = choiceCount(body);
  if (typeof choices !== 'number') return choices;
  const json = structuredText(body.response_format, 'response_format', k);
  if (json !== null && typeof json === 'object') return json;
  const m = meta('chatcmpl', body, k);
  const prompt = chatPromptTokens(body.messages);
  const call = pickTool(body.tools, body.tool_choice, lastRole(body.messages) === 'tool');
  let contents: Array<string | ToolCall>;
  let tokens: readonly string[];
  let per: number; // tokens per choice
  let finish: string;
  if (call || json !== null) {
    // Tool calls and JSON ignore max_tokens: a truncated one would be useless to test with.
    const text = call ? call.arguments : json!;
    const fragments = tokenFragments(text);
    tokens = fragments.map((f) => JSON.stringify(f));
    per = fragments.length;
    finish = call ? 'tool_calls' : 'stop';
    contents = Array.from({ length: choices }, (_, i) => (call ? { ...call, id: i === 0 ? call.id : newId('call') } : text));
  } else {
    const capped = cap(body, k.outputTokens);
    per = capped.n;
    finish = capped.finish;
    tokens = WORDS_JSON;
    // A stream sends its words one by one: the whole text is built only for a body (the
    // memory bench streams a million tokens per request).
    contents = Array.from({ length: choices }, (_, i) => (stream ? '' : completionText(per, i)));
  }
  if (k.refuse && !call && json === null) {
    // A refusal (insights' quality tests): a fixed text in every choice.
    const u = usage(prompt, REFUSAL.length * choices);
    const text = REFUSAL.join('');
    const all = Array.from({ length: choices }, () => text);
    if (!stream) return { ...nonStream(chatCompletionBody(m, all, 'stop', k.omitUsage ? undefined : u), REFUSAL.length), refused: true };
    const format = chatStream(m, all, REFUSAL_JSON, { finishReason: 'stop', ...streamUsage(body, k, u) });
    return { stream, format, tokens: REFUSAL_JSON, n: REFUSAL.length, body: '', refused: true };
  }
  // reasoning_effort: hidden reasoning, counted in completion_tokens, delaying the first token.
  const hiddenTokens = reasoningTokens(body.reasoning_effort, k.outputTokens);
  const u = usage(prompt, per * choices + hiddenTokens, hiddenTokens);
  if (!stream) return { ...nonStream(chatCompletionBody(m, contents, finish, k.omitUsage ? undefined : u), per), hiddenTokens };
  return {
    stream,
    format: chatStream(m, contents, tokens, { finishReason: finish, ...streamUsage(body, k, u) }),
    tokens,
    n: per,
    hiddenTokens,
    body: '',
  };
}

/** Reasoning tokens for an effort: low/medium/high reason for ½, 1, 2 × output_tokens; else none. */
export function reasoningTokens(effort: unknown, outputTokens: number): number {
  const factor = { low: 0.5, medium: 1, high: 2, xhigh: 2 }[String(effort)] ?? 0;
  return Math.ceil(factor * outputTokens);
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
