// OpenAI wire format: ids, error bodies, usage, stream chunk pieces and whole bodies.
// Stream pieces are built once per request as strings, so emitting a token is a
// single concatenation (see stream.ts).

export interface Meta {
  id: string;
  created: number; // unix seconds, as OpenAI sends it
  model: string;
}

let seq = 0;
const tag = Math.random().toString(36).slice(2, 8);
/** Unique enough within and across simulator processes; cheaper than randomUUID. */
export const newId = (prefix: string): string => `${prefix}-sim${tag}${(++seq).toString(36)}`;

export const nowMs = (): number => performance.timeOrigin + performance.now();

export function errorBody(message: string, type: string, code: string | null = null, param: string | null = null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

/** The error body OpenAI sends for a given status (what SDKs and the gateway parse). */
export function errorForStatus(status: number): string {
  if (status === 429) return errorBody('Rate limit reached (simulated).', 'requests', 'rate_limit_exceeded');
  if (status === 401) return errorBody('Incorrect API key provided (simulated).', 'invalid_request_error', 'invalid_api_key');
  if (status === 404) return errorBody('Not found (simulated).', 'invalid_request_error', 'not_found');
  if (status >= 500) return errorBody('The server had an error while processing your request (simulated).', 'server_error');
  return errorBody(`Simulated error ${status}.`, 'invalid_request_error');
}

export const CONTEXT_LENGTH_BODY = errorBody(
  "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. " +
    'Please reduce the length of the messages.',
  'invalid_request_error',
  'context_length_exceeded',
  'messages',
);

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number; audio_tokens: number };
  completion_tokens_details: {
    reasoning_tokens: number;
    audio_tokens: number;
    accepted_prediction_tokens: number;
    rejected_prediction_tokens: number;
  };
}

/** `completion` includes `reasoning` (hidden reasoning tokens), as OpenAI counts them. */
export function usage(prompt: number, completion: number, reasoning = 0): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: reasoning,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

/**
 * A stream as strings. Token chunk i is
 *   prefix + tokens[i % tokens.length] + suffix + <sim_ts> + '}\n\n'
 * `head` goes right after the headers, `tail` (finish chunk, usage chunk, [DONE]) at the end.
 */
export interface StreamFormat {
  head: string;
  prefix: string;
  suffix: string;
  tail: string;
  /**
   * Token chunk i when one prefix/suffix pair cannot express it (a sequence number per event,
   * or one chunk per choice with n > 1). Built once per request; `ts` is the send stamp.
   */
  render?: (i: number, ts: number) => string;
  /** Builds the tail when it is due, instead of `tail` (a long answer's closing events carry its whole text). */
  end?: () => string;
  /** The in-stream error event after `sent` token chunks (error_mid_stream); default: chat's `data: {"error":…}`. */
  error?: (sent: number) => string;
}

const STREAM_ERROR_MESSAGE = 'The server had an error while processing your request (simulated).';

/** How chat and completions streams report a failure once the status is sent: a data event with `error`. */
export const CHAT_STREAM_ERROR = `data: ${errorBody(STREAM_ERROR_MESSAGE, 'server_error')}\n\n`;

/** The Responses API's in-stream error event, with its place in the sequence. */
export function responsesStreamError(seq: number): string {
  return `event: error\ndata: ${JSON.stringify({ type: 'error', code: 'server_error', message: STREAM_ERROR_MESSAGE, param: null, sequence_number: seq })}\n\n`;
}

export interface StreamOpts {
  finishReason: string;
  /** usage object for the final usage-only chunk; undefined = no usage chunk */
  usage: Usage | undefined;
  /** OpenAI puts "usage":null on every chunk when include_usage was requested */
  usageNull: boolean;
}

function envelope(meta: Meta, object: string): string {
  return `data: {"id":${JSON.stringify(meta.id)},"object":"${object}","created":${meta.created},"model":${JSON.stringify(meta.model)},"system_fingerprint":"fp_sim","choices":`;
}

function tailOf(env: string, finishChunk: string, o: StreamOpts): string {
  const usageChunk = o.usage ? `${env}[],"usage":${JSON.stringify(o.usage)}}\n\n` : '';
  return finishChunk + usageChunk + 'data: [DONE]\n\n';
}

export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** What one chat choice says: text (plain or JSON), or a tool call. */
export type ChatContent = string | ToolCall;

/** The pieces of one choice's chunks; the token goes between prefix and suffix. */
interface ChoicePieces {
  head: string;
  prefix: string;
  suffix: string; // up to and including the choice's closing bracket, before ,"sim_ts":
  finish: string;
}

function choicePieces(env: string, index: number, content: ChatContent, un: string, finishReason: string): ChoicePieces {
  const open = `${env}[{"index":${index},"delta":`;
  const rest = `,"logprobs":null,"finish_reason":null}]${un}`;
  const finish = `${open}{},"logprobs":null,"finish_reason":"${finishReason}"}]${un}}\n\n`;
  if (typeof content === 'string') {
    return { head: `${open}{"role":"assistant","content":""}${rest}}\n\n`, prefix: `${open}{"content":`, suffix: `}${rest}`, finish };
  }
  const first = {
    role: 'assistant',
    content: null,
    tool_calls: [{ index: 0, id: content.id, type: 'function', function: { name: content.name, arguments: '' } }],
  };
  return {
    head: `${open}${JSON.stringify(first)}${rest}}\n\n`,
    prefix: `${open}{"tool_calls":[{"index":0,"function":{"arguments":`,
    suffix: `}}]}${rest}`,
    finish,
  };
}

/**
 * chat.completion.chunk stream of one or more choices (n). A text choice starts with a role
 * chunk; a tool-call choice with a chunk naming the call, then argument fragments. With n > 1,
 * every token tick carries one chunk per choice, choice c taking tokens from offset c.
 */
export function chatStream(meta: Meta, contents: readonly ChatContent[], tokens: readonly string[], o: StreamOpts): StreamFormat {
  const env = envelope(meta, 'chat.completion.chunk');
  const un = o.usageNull ? ',"usage":null' : '';
  const pieces = contents.map((c, i) => choicePieces(env, i, c, un, o.finishReason));
  const finishes = pieces.map((p) => p.finish).join('');
  const usageChunk = o.usage ? `${env}[],"usage":${JSON.stringify(o.usage)}}\n\n` : '';
  const fmt: StreamFormat = {
    head: pieces.map((p) => p.head).join(''),
    prefix: pieces[0]!.prefix,
    suffix: `${pieces[0]!.suffix},"sim_ts":`,
    tail: finishes + usageChunk + 'data: [DONE]\n\n',
  };
  if (pieces.length > 1) {
    const len = tokens.length;
    fmt.render = (i, ts) => {
      let out = '';
      for (let c = 0; c < pieces.length; c++)
        out += pieces[c]!.prefix + tokens[(i + c) % len] + pieces[c]!.suffix + ',"sim_ts":' + ts + '}\n\n';
      return out;
    };
  }
  return fmt;
}

/** Legacy text_completion stream: no role chunk, text in choices[].text. */
export function completionStream(meta: Meta, o: StreamOpts): StreamFormat {
  const env = envelope(meta, 'text_completion');
  const un = o.usageNull ? ',"usage":null' : '';
  return {
    head: '',
    prefix: `${env}[{"text":`,
    suffix: `,"index":0,"logprobs":null,"finish_reason":null}]${un},"sim_ts":`,
    tail: tailOf(env, `${env}[{"text":"","index":0,"logprobs":null,"finish_reason":"${o.finishReason}"}]${un}}\n\n`, o),
  };
}

function chatMessage(content: ChatContent): Record<string, unknown> {
  if (typeof content === 'string') return { role: 'assistant', content, refusal: null, annotations: [] };
  return {
    role: 'assistant',
    content: null,
    refusal: null,
    annotations: [],
    tool_calls: [{ id: content.id, type: 'function', function: { name: content.name, arguments: content.arguments } }],
  };
}

/** A chat.completion body with one choice per content (n). */
export function chatCompletionBody(meta: Meta, contents: readonly ChatContent[], finishReason: string, u: Usage | undefined): string {
  return JSON.stringify({
    id: meta.id,
    object: 'chat.completion',
    created: meta.created,
    model: meta.model,
    system_fingerprint: 'fp_sim',
    choices: contents.map((c, index) => ({ index, message: chatMessage(c), logprobs: null, finish_reason: finishReason })),
    ...(u ? { usage: u } : {}),
  });
}

export function completionBody(meta: Meta, text: string, finishReason: string, u: Usage | undefined): string {
  return JSON.stringify({
    id: meta.id,
    object: 'text_completion',
    created: meta.created,
    model: meta.model,
    system_fingerprint: 'fp_sim',
    choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason }],
    ...(u ? { usage: u } : {}),
  });
}
