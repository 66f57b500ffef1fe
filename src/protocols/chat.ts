// POST /v1/chat/completions.
import { KeyKind, type StreamGrammar } from '../streamtap/grammar.js';
import { isRecord } from '../streamtap/tokens.js';
import { estimatePromptTokens } from './prompt-estimate.js';
import {
  modelOf,
  openaiErrorBody,
  openaiStreamError,
  positiveInt,
  readChatBody,
  spliceBody,
  usageFromResponse,
  validateCommon,
} from './openai.js';
import type { Protocol } from './types.js';

/**
 * A chat.completion.chunk (and a legacy text_completion chunk) stream. Token keys: chat
 * content, reasoning (reasoning_content: DeepSeek/vLLM; reasoning: OpenRouter/Ollama),
 * refusals, tool-call arguments, legacy completions `text`. Usage comes in a last event with
 * `choices: []` (asked for with stream_options.include_usage); `data: [DONE]` ends the stream;
 * an upstream error is `data: {"error":{...}}`.
 */
export const chunkGrammar: StreamGrammar = {
  keys: [
    ['content', KeyKind.Token],
    ['reasoning_content', KeyKind.Token],
    ['reasoning', KeyKind.Token],
    ['refusal', KeyKind.Token],
    ['arguments', KeyKind.Token],
    ['text', KeyKind.Token],
    ['finish_reason', KeyKind.Finish],
    ['usage', KeyKind.ParseObject],
    ['error', KeyKind.ParseValue],
  ],
  parseTypes: [],
  doneSentinel: true,
  onEvent(event, facts) {
    const err = event['error'];
    if (err !== undefined && err !== null) facts.error = err;
    const usage = usageFromResponse(event);
    if (usage === undefined) return false;
    facts.usage = usage;
    const choices = event['choices'];
    return choices === undefined || (Array.isArray(choices) && choices.length === 0);
  },
  collectText(event, parts) {
    const choices = event['choices'];
    if (!Array.isArray(choices)) return;
    for (const choice of choices) {
      if (!isRecord(choice)) continue;
      pushStr(choice['text'], parts);
      const delta = choice['delta'];
      if (!isRecord(delta)) continue;
      pushStr(delta['reasoning_content'], parts);
      pushStr(delta['reasoning'], parts);
      pushStr(delta['content'], parts);
      pushStr(delta['refusal'], parts);
      const calls = delta['tool_calls'];
      if (Array.isArray(calls)) for (const c of calls) if (isRecord(c)) pushFunction(c['function'], parts);
      pushFunction(delta['function_call'], parts);
    }
  },
};

function pushFunction(fn: unknown, parts: string[]): void {
  if (!isRecord(fn)) return;
  pushStr(fn['name'], parts);
  pushStr(fn['arguments'], parts);
}

function pushStr(v: unknown, parts: string[]): void {
  if (typeof v === 'string' && v.length > 0) parts.push(v);
}

function clientAskedForUsage(body: Record<string, unknown>): boolean {
  const so = body.stream_options;
  return isRecord(so) && so.include_usage === true;
}

const OUTPUT_CAPS = ['max_completion_tokens', 'max_tokens'] as const;

export const chat: Protocol = {
  name: 'chat',
  endpoint: 'chat/completions',
  upstreamPath: '/chat/completions',
  operation: 'chat',
  grammar: chunkGrammar,
  validate: validateCommon,
  model: modelOf,
  stream: (body) => body.stream === true,
  maxOutputTokens: (body) => positiveInt(body, OUTPUT_CAPS),
  promptTokens: estimatePromptTokens,
  injectsUsage: (body, stream) => stream && !clientAskedForUsage(body),
  upstreamBody(raw, body, target, stream) {
    return spliceBody(raw, body, target, stream && !clientAskedForUsage(body));
  },
  readBody: readChatBody,
  streamError: openaiStreamError,
  errorBody: openaiErrorBody,
};
