// The OpenAI Responses API (POST /responses), streamed and not, and its stored-response
// follow-ups (GET/DELETE /responses/{id}, …/cancel, …/input_items, previous_response_id).
//
// A streamed response is the real wire format: `event: <type>` plus `data: {"type", …,
// "sequence_number"}`; the head (created, in_progress, output_item.added, content_part.added),
// one delta event per token on the TokenStream's timing (each carries "sim_ts", the send stamp
// the bench compares with the gateway's measurement), and the tail (…done events, then
// response.completed, or response.incomplete when max_output_tokens cut it short).
import { LRUCache } from 'lru-cache';
import type { Answer, Invalid, Knobs } from './generate.js';
import { pickTool, reasoningTokens, structuredText } from './generate.js';
import type { StreamFormat, ToolCall } from './openai.js';
import { newId, responsesStreamError } from './openai.js';
import { WORDS_JSON, completionText, countText, tokenFragments } from './words.js';

type Body = Record<string, unknown>;

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

interface Stored {
  body: string; // the final Response object, as sent
  input: unknown[]; // the input items, with ids
  totalTokens: number; // context a follow-up carries (reported as cached input)
}

/**
 * Responses kept for follow-ups, bounded by count and bytes: a long bench run creates
 * millions (it sends store: false; clients that don't still cannot exhaust memory).
 */
export class ResponseStore {
  private readonly lru = new LRUCache<string, Stored>({
    max: 5000,
    maxSize: 32 * 1024 * 1024,
    sizeCalculation: (v) => v.body.length + 256 * v.input.length + 64,
  });

  get(id: string): Stored | undefined {
    return this.lru.get(id);
  }

  set(id: string, v: Stored): void {
    this.lru.set(id, v);
  }

  delete(id: string): boolean {
    return this.lru.delete(id);
  }

  clear(): void {
    this.lru.clear();
  }
}

/** Text a Responses input item contributes to the prompt: message content, tool outputs, call arguments. */
function itemText(item: unknown): string {
  if (typeof item === 'string') return item;
  if (!item || typeof item !== 'object') return '';
  const it = item as { content?: unknown; output?: unknown; arguments?: unknown; text?: unknown };
  if (typeof it.content === 'string') return it.content;
  let s = '';
  if (Array.isArray(it.content)) for (const part of it.content) s += itemText(part);
  if (typeof it.text === 'string') s += it.text;
  if (typeof it.output === 'string') s += it.output;
  if (typeof it.arguments === 'string') s += it.arguments;
  return s;
}

/** input_tokens: the o200k tokens of instructions and input text (no per-item framing, as chat). */
export function responsesInputTokens(body: Body): number {
  let n = typeof body.instructions === 'string' ? countText(body.instructions) : 0;
  const input = body.input;
  if (typeof input === 'string') n += countText(input);
  else if (Array.isArray(input)) for (const item of input) n += countText(itemText(item));
  return n;
}

/** The input as a list of items with ids, as GET …/input_items lists them. */
function inputItems(input: unknown): unknown[] {
  const list = typeof input === 'string' ? [{ type: 'message', role: 'user', content: input }] : Array.isArray(input) ? input : [];
  return list.map((item) => {
    const it = (item && typeof item === 'object' ? item : { type: 'message', role: 'user', content: String(item) }) as Record<
      string,
      unknown
    >;
    const content = typeof it.content === 'string' ? [{ type: 'input_text', text: it.content }] : it.content;
    return { id: typeof it.id === 'string' ? it.id : newId('msg'), type: 'message', ...it, ...(content === undefined ? {} : { content }) };
  });
}

/** Why a request body is refused (400), checked before anything is generated. */
function validate(body: Body, store: ResponseStore): Invalid | Stored | null {
  const input = body.input;
  if (input !== undefined && typeof input !== 'string' && !Array.isArray(input)) {
    return { invalid: "Invalid type for 'input': expected a string or an array of input items.", param: 'input' };
  }
  if (input === undefined && body.previous_response_id === undefined)
    return { invalid: "Missing required parameter: 'input'.", param: 'input' };
  const max = body.max_output_tokens;
  if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 1)) {
    return { invalid: "Invalid value for 'max_output_tokens': expected a positive integer.", param: 'max_output_tokens' };
  }
  if (body.tools !== undefined && !Array.isArray(body.tools))
    return { invalid: "Invalid type for 'tools': expected an array.", param: 'tools' };
  const prev = body.previous_response_id;
  if (prev === undefined || prev === null) return null;
  if (typeof prev !== 'string')
    return { invalid: "Invalid type for 'previous_response_id': expected a string.", param: 'previous_response_id' };
  return store.get(prev) ?? { invalid: `Previous response with id '${prev}' not found.`, param: 'previous_response_id' };
}

export interface ResponsesAnswer extends Answer {
  /** Call once the whole response has been sent: keeps it for follow-ups (unless store: false). */
  onSent: () => void;
}

export function responsesAnswer(body: Body, k: Knobs, store: ResponseStore): ResponsesAnswer | Invalid {
  const prev = validate(body, store);
  if (prev && 'invalid' in prev) return prev;
  const json = structuredText((body.text as { format?: unknown } | undefined)?.format, 'text.format', k);
  if (json !== null && typeof json === 'object') return json;
  const input = body.input;
  const lastType = Array.isArray(input) ? (input.at(-1) as { type?: unknown } | undefined)?.type : undefined;
  const call = pickTool(body.tools, body.tool_choice, lastType === 'function_call_output');

  let textOf: () => string;
  let tokens: readonly string[] = WORDS_JSON;
  let n: number;
  let incomplete = false;
  if (call || json !== null) {
    // Tool calls and JSON ignore max_output_tokens: a truncated one would be useless to test with.
    const fragments = tokenFragments(call ? call.arguments : json!);
    tokens = fragments.map((f) => JSON.stringify(f));
    n = fragments.length;
    const text = call ? '' : json!;
    textOf = () => text;
  } else {
    const max = typeof body.max_output_tokens === 'number' ? body.max_output_tokens : Infinity;
    n = Math.min(k.outputTokens, max);
    incomplete = max < k.outputTokens;
    // Built on first use: a stream needs its whole text only in its last events.
    textOf = lazy(() => completionText(n));
  }
  const r = reasoningPlan(body, k);
  // A follow-up carries the previous exchange as context, which a real provider caches.
  const cached = prev ? prev.totalTokens : 0;
  const inTokens = responsesInputTokens(body) + cached;
  const usage: ResponsesUsage = {
    input_tokens: inTokens,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: r.tokens + n,
    output_tokens_details: { reasoning_tokens: r.tokens },
    total_tokens: inTokens + r.tokens + n,
  };
  const id = newId('resp');
  const createdAt = Math.floor(Date.now() / 1000);
  const itemId = newId(call ? 'fc' : 'msg');
  const reasoningId = newId('rs');
  const base = responseBase(body, k, id, createdAt);
  const finalOf = lazy(() => {
    const item = call ? functionItem(itemId, call, 'completed') : messageItem(itemId, textOf(), incomplete ? 'incomplete' : 'completed');
    return {
      ...base,
      status: incomplete ? 'incomplete' : 'completed',
      completed_at: incomplete ? null : createdAt,
      incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
      output: r.tokens > 0 ? [reasoningItem(reasoningId, r.summary()), item] : [item],
      usage: k.omitUsage ? null : usage,
    };
  });
  const finalBody = lazy(() => JSON.stringify(finalOf()));
  const onSent = (): void => {
    if (body.store === false) return;
    store.set(id, { body: finalBody(), input: inputItems(input), totalTokens: usage.total_tokens });
  };
  // Summarised reasoning is streamed token by token before the answer; hidden reasoning only
  // takes its time before the first visible token.
  const streamed = r.summarised ? r.tokens : 0;
  const hiddenTokens = r.tokens - streamed;
  if (body.stream !== true) {
    return {
      stream: false,
      format: { head: '', prefix: '', suffix: '', tail: '' },
      tokens,
      n: streamed + n,
      hiddenTokens,
      body: finalBody(),
      onSent,
    };
  }
  const start = { ...base, status: 'in_progress', completed_at: null, incomplete_details: null, output: [], usage: null };
  const format = streamFormat(start, finalOf, { itemId, call, textOf, tokens, n, reasoningId, reasoning: r, incomplete });
  return { stream: true, format, tokens, n: streamed + n, hiddenTokens, body: '', onSent };
}

/** A value built on first use, then kept. */
function lazy<T>(make: () => T): () => T {
  let made = false;
  let value: T;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value;
  };
}

interface Reasoning {
  tokens: number; // reasoning tokens (0: none)
  summarised: boolean; // streamed as a summary of as many tokens; else hidden
  summary: () => string | null; // the summary text (null: hidden)
}

/** The summary's words start this far into the word cycle, so they differ from the answer's. */
const SUMMARY_OFFSET = 3;

/**
 * reasoning.effort low/medium/high makes the model reason for half/one/two times output_tokens
 * before answering (minimal, none or no effort: not at all). With reasoning.summary set, that
 * reasoning is streamed as a summary of exactly as many tokens, so a client can count it;
 * otherwise it stays hidden and only delays the first token.
 */
function reasoningPlan(body: Body, k: Knobs): Reasoning {
  const opts = body.reasoning as { effort?: unknown; summary?: unknown } | undefined;
  const tokens = reasoningTokens(opts?.effort, k.outputTokens);
  const summarised = tokens > 0 && typeof opts?.summary === 'string' && opts.summary !== 'none';
  return { tokens, summarised, summary: summarised ? lazy(() => completionText(tokens, SUMMARY_OFFSET)) : () => null };
}

function reasoningItem(id: string, summary: string | null): Record<string, unknown> {
  return { id, type: 'reasoning', summary: summary === null ? [] : [{ type: 'summary_text', text: summary }] };
}

/** The Response fields every state shares; the request's settings echoed back. */
function responseBase(body: Body, k: Knobs, id: string, createdAt: number): Record<string, unknown> {
  const echo = (key: string, def: unknown): unknown => (body[key] === undefined ? def : body[key]);
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    background: false,
    error: null,
    incomplete_details: null,
    instructions: echo('instructions', null),
    max_output_tokens: echo('max_output_tokens', null),
    max_tool_calls: null,
    model: k.modelName ?? (typeof body.model === 'string' ? body.model : 'simulator'),
    output: [],
    parallel_tool_calls: echo('parallel_tool_calls', true),
    previous_response_id: echo('previous_response_id', null),
    reasoning: { effort: null, summary: null, ...(typeof body.reasoning === 'object' ? body.reasoning : {}) },
    service_tier: 'default',
    store: echo('store', true),
    temperature: echo('temperature', 1),
    text: { format: (body.text as { format?: unknown } | undefined)?.format ?? { type: 'text' }, verbosity: 'medium' },
    tool_choice: echo('tool_choice', 'auto'),
    tools: echo('tools', []),
    top_p: echo('top_p', 1),
    truncation: echo('truncation', 'disabled'),
    usage: null,
    user: echo('user', null),
    metadata: echo('metadata', {}),
  };
}

const outputText = (text: string) => ({ type: 'output_text', annotations: [], logprobs: [], text });

function messageItem(id: string, text: string, status: string): Record<string, unknown> {
  return { id, type: 'message', status, content: status === 'in_progress' ? [] : [outputText(text)], role: 'assistant' };
}

function functionItem(id: string, call: ToolCall, status: string): Record<string, unknown> {
  return {
    id,
    type: 'function_call',
    status,
    arguments: status === 'in_progress' ? '' : call.arguments,
    call_id: call.id,
    name: call.name,
  };
}

/** One SSE event: `event:` names it, the JSON repeats it as "type" first. */
function event(type: string, seq: number, fields: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...fields, sequence_number: seq })}\n\n`;
}

interface StreamParts {
  itemId: string;
  call: ToolCall | null;
  textOf: () => string;
  tokens: readonly string[]; // the answer's tokens, JSON-encoded
  n: number; // answer tokens
  reasoningId: string;
  reasoning: Reasoning;
  incomplete: boolean;
}

const SIM_TS = ',"sim_ts":';

/**
 * The stream: head now, token events rendered as they go, and the events that carry whole
 * texts (a summary's end, the answer's end, response.completed) built only when they are due,
 * so a long stream holds no copy of its text meanwhile. The answer is output item 0, or 1 after
 * a reasoning item. Summarised reasoning streams first (reasoning_summary_text.delta); the
 * events that close it and open the answer ride in front of the answer's first delta.
 */
function streamFormat(start: Record<string, unknown>, finalOf: () => Record<string, unknown>, p: StreamParts): StreamFormat {
  const { itemId, call, textOf, tokens, n, reasoningId, reasoning, incomplete } = p;
  const out = reasoning.tokens > 0 ? 1 : 0;
  const summaryN = reasoning.summarised ? reasoning.tokens : 0;
  const r = { item_id: reasoningId, output_index: 0, summary_index: 0 };
  let seq = 0;
  let head = event('response.created', seq++, { response: start });
  head += event('response.in_progress', seq++, { response: start });
  if (out === 1) {
    head += event('response.output_item.added', seq++, { output_index: 0, item: reasoningItem(reasoningId, null) });
    if (summaryN > 0) head += event('response.reasoning_summary_part.added', seq++, { ...r, part: { type: 'summary_text', text: '' } });
  }
  const firstSummary = seq;
  const openingSeq = firstSummary + summaryN;
  // Close the reasoning item (after its summary, if any), then open the answer's item.
  const opening = (): string => {
    let o = '';
    let q = openingSeq;
    if (out === 1) {
      const summary = reasoning.summary();
      if (summary !== null) {
        o += event('response.reasoning_summary_text.done', q++, { ...r, text: summary });
        o += event('response.reasoning_summary_part.done', q++, { ...r, part: { type: 'summary_text', text: summary } });
      }
      o += event('response.output_item.done', q++, { output_index: 0, item: reasoningItem(reasoningId, summary) });
    }
    if (call) {
      o += event('response.output_item.added', q++, { output_index: out, item: functionItem(itemId, call, 'in_progress') });
    } else {
      o += event('response.output_item.added', q++, { output_index: out, item: messageItem(itemId, '', 'in_progress') });
      o += event('response.content_part.added', q++, { item_id: itemId, output_index: out, content_index: 0, part: outputText('') });
    }
    return o;
  };
  const openingCount = (out === 1 ? (summaryN > 0 ? 3 : 1) : 0) + (call ? 1 : 2);
  const firstAnswer = openingSeq + openingCount;
  const prefix = call
    ? `event: response.function_call_arguments.delta\ndata: {"type":"response.function_call_arguments.delta","item_id":${JSON.stringify(itemId)},"output_index":${out},"delta":`
    : `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":${JSON.stringify(itemId)},"output_index":${out},"content_index":0,"delta":`;
  const mid = call ? ',"sequence_number":' : ',"logprobs":[],"sequence_number":';
  const end = (): string => {
    let q = firstAnswer + n;
    const where = { item_id: itemId, output_index: out };
    const final = finalOf();
    let tail = '';
    if (call) {
      tail += event('response.function_call_arguments.done', q++, { ...where, name: call.name, arguments: call.arguments });
    } else {
      const text = textOf();
      tail += event('response.output_text.done', q++, { ...where, content_index: 0, text, logprobs: [] });
      tail += event('response.content_part.done', q++, { ...where, content_index: 0, part: outputText(text) });
    }
    tail += event('response.output_item.done', q++, { output_index: out, item: (final.output as unknown[])[out] });
    return tail + event(incomplete ? 'response.incomplete' : 'response.completed', q, { response: final });
  };
  // error_mid_stream: the error event takes the sequence number the next delta would have had.
  const error = (sent: number): string =>
    responsesStreamError(summaryN > 0 && sent <= summaryN ? firstSummary + sent : firstAnswer + sent - summaryN);

  const len = tokens.length;
  const WL = WORDS_JSON.length;
  if (summaryN === 0) {
    // The answer's opening goes out with the headers, as before any token.
    return {
      head: head + opening(),
      prefix,
      suffix: `${mid}0${SIM_TS}`,
      tail: '',
      end,
      error,
      // The sequence number grows with each delta, so each one is rendered, still by concatenation.
      render: (i, ts) => prefix + tokens[i % len] + mid + (firstAnswer + i) + SIM_TS + ts + '}\n\n',
    };
  }
  const summaryPrefix = `event: response.reasoning_summary_text.delta\ndata: {"type":"response.reasoning_summary_text.delta","item_id":${JSON.stringify(reasoningId)},"output_index":0,"summary_index":0,"delta":`;
  return {
    head,
    prefix: summaryPrefix,
    suffix: `,"sequence_number":0${SIM_TS}`,
    tail: '',
    end,
    error,
    render: (i, ts) => {
      if (i < summaryN)
        return summaryPrefix + WORDS_JSON[(i + SUMMARY_OFFSET) % WL] + ',"sequence_number":' + (firstSummary + i) + SIM_TS + ts + '}\n\n';
      const j = i - summaryN;
      return (j === 0 ? opening() : '') + prefix + tokens[j % len] + mid + (firstAnswer + j) + SIM_TS + ts + '}\n\n';
    },
  };
}

/** An id from a follow-up path, bounded: ids are ours, short and URL-safe. */
export function responseIdFrom(raw: string): string | null {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    return null;
  }
  return id.length > 0 && id.length <= 128 ? id : null;
}
