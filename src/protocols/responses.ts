// POST /v1/responses (the Responses API), and POST /v1/responses/input_tokens.
//
// A streamed response is a sequence of named events (`event: response.output_text.delta`
// then `data: {"type":"response.output_text.delta",...,"delta":"..."}`). Every generated
// piece is a `*.delta` event with a string `delta`: output text, reasoning text and summary,
// function-call (and custom tool, MCP) arguments, refusals. `response.created` carries the
// response id; a complete stream ends with `response.completed`, `response.incomplete` or
// `response.failed`, whose response object holds the usage. An upstream `error` event is
// `{"type":"error","code","message","param","sequence_number"}`.
import { errors, type GatewayError } from '../errors.js';
import { KeyKind, type BodyFacts, type StreamFacts, type StreamGrammar } from '../streamtap/grammar.js';
import { promptCounter, isRecord, num, type TapUsage } from '../streamtap/tokens.js';
import { modelOf, openaiErrorBody, positiveInt, spliceBody, validateCommon } from './openai.js';
import { freeCall, type Protocol } from './types.js';
import { parseObject, sseEvent } from './wire.js';

/** input_tokens (cached included), input_tokens_details.cached_tokens, output_tokens (reasoning included), output_tokens_details.reasoning_tokens. */
export function responsesUsage(u: unknown): TapUsage | undefined {
  if (!isRecord(u)) return undefined;
  const input = num(u['input_tokens']);
  const output = num(u['output_tokens']);
  if (input === undefined && output === undefined) return undefined;
  const id = u['input_tokens_details'];
  const od = u['output_tokens_details'];
  return {
    input: input ?? 0,
    output: output ?? 0,
    cachedInput: (isRecord(id) ? num(id['cached_tokens']) : undefined) ?? 0,
    reasoning: (isRecord(od) ? num(od['reasoning_tokens']) : undefined) ?? 0,
  };
}

/** 'completed', 'failed', or why it is incomplete ('max_output_tokens', 'content_filter'). */
function finishOf(response: Record<string, unknown>): string | undefined {
  const status = response['status'];
  if (status === 'incomplete') {
    const d = response['incomplete_details'];
    return isRecord(d) && typeof d['reason'] === 'string' ? d['reason'] : 'incomplete';
  }
  return typeof status === 'string' ? status : undefined;
}

function readResponse(response: Record<string, unknown>, facts: Pick<StreamFacts, 'usage' | 'finishReason' | 'responseId'>): void {
  const usage = responsesUsage(response['usage']);
  if (usage) facts.usage = usage;
  facts.finishReason = finishOf(response) ?? facts.finishReason;
  if (typeof response['id'] === 'string' && facts.responseId === undefined) facts.responseId = response['id'];
}

export const responsesGrammar: StreamGrammar = {
  keys: [
    ['delta', KeyKind.Token],
    ['type', KeyKind.Type],
  ],
  parseTypes: ['response.created', 'response.completed', 'response.incomplete', 'response.failed', 'error'],
  doneSentinel: false,
  onEvent(event, facts) {
    const type = event['type'];
    const response = event['response'];
    switch (type) {
      case 'response.created':
        if (isRecord(response) && typeof response['id'] === 'string') facts.responseId = response['id'];
        break;
      case 'response.completed':
      case 'response.incomplete':
        if (isRecord(response)) readResponse(response, facts);
        facts.complete = true;
        break;
      case 'response.failed':
        if (isRecord(response)) {
          readResponse(response, facts);
          facts.error = response['error'] ?? { message: 'the response failed' };
        } else facts.error = { message: 'the response failed' };
        facts.complete = true;
        break;
      case 'error':
        facts.error = { code: event['code'], message: event['message'] };
        break;
    }
    return false; // usage is the API's own: nothing the gateway added, nothing to cut
  },
  collectText(event, parts) {
    const type = event['type'];
    const delta = event['delta'];
    if (typeof type === 'string' && type.endsWith('.delta') && typeof delta === 'string' && delta.length > 0) parts.push(delta);
  },
};

/** Generated text of a whole response object, for a tokenizer count when it has no usage. */
function outputText(response: Record<string, unknown>): string {
  const parts: string[] = [];
  const output = response['output'];
  if (!Array.isArray(output)) return '';
  for (const item of output) {
    if (!isRecord(item)) continue;
    if (typeof item['arguments'] === 'string') parts.push(item['arguments']);
    for (const list of [item['content'], item['summary']]) {
      if (!Array.isArray(list)) continue;
      for (const p of list) if (isRecord(p) && typeof p['text'] === 'string') parts.push(p['text']);
    }
  }
  return parts.join('');
}

/** A non-streamed Response object. Parsed whole: its id is needed too, and it is read once per request. */
function readResponseBody(body: Buffer): BodyFacts | undefined {
  const json = parseObject(body);
  if (!json) return undefined;
  const facts: BodyFacts = {};
  readResponse(json, facts as Pick<StreamFacts, 'usage' | 'finishReason' | 'responseId'>);
  if (!facts.usage) facts.text = outputText(json);
  return facts;
}

/**
 * The Responses API's own error event, with an `error` object as well: openai-node and
 * openai-python raise any stream event whose data has a truthy `error` (an APIError with
 * its code and message), and clients that read the event's `type` see a standard `error`.
 */
function responsesStreamError(err: GatewayError, events: number): string {
  const e = err.body().error;
  return sseEvent({ type: 'error', code: e.code, message: e.message, param: e.param, sequence_number: events, error: e }, 'error');
}

/** Tokens of `input`: a string, or items (messages with string or part content, tool outputs, ...). */
function inputTokens(input: unknown, count: (text: string) => number): number {
  if (typeof input === 'string') return count(input);
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const item of input) {
    if (typeof item === 'string') n += count(item);
    else if (!isRecord(item)) continue;
    else if (typeof item['content'] === 'string') n += 3 + count(item['content']);
    else if (Array.isArray(item['content'])) {
      n += 3;
      for (const p of item['content']) {
        if (isRecord(p) && typeof p['text'] === 'string') n += count(p['text']);
        else if (isRecord(p) && p['type'] === 'input_image') n += 85; // OpenAI's low-detail base cost
      }
    } else n += count(JSON.stringify(item)); // function_call_output, reasoning items, ...
  }
  return n;
}

function promptTokens(body: Record<string, unknown>): number {
  // One bounded counter for the whole estimate: its BPE budget is shared by every piece.
  const c = promptCounter();
  const count = (text: string): number => c.count(text);
  let n = inputTokens(body['input'], count);
  if (typeof body['instructions'] === 'string') n += count(body['instructions']);
  if (Array.isArray(body['tools'])) n += count(JSON.stringify(body['tools']));
  return n;
}

/** The fields the gateway reads or routes on must have their documented types; the upstream checks the rest. */
function validate(body: Record<string, unknown>): void {
  validateCommon(body);
  const input = body['input'];
  if (input !== undefined && typeof input !== 'string' && !Array.isArray(input))
    throw errors.invalidParam('input', "'input' must be a string or an array of input items.");
  const cap = body['max_output_tokens'];
  if (cap !== undefined && cap !== null && !(typeof cap === 'number' && Number.isInteger(cap) && cap > 0)) {
    throw errors.invalidParam('max_output_tokens', "'max_output_tokens' must be a positive integer.");
  }
  const prev = body['previous_response_id'];
  if (prev !== undefined && prev !== null && (typeof prev !== 'string' || prev.length === 0 || prev.length > 256)) {
    throw errors.invalidParam('previous_response_id', "'previous_response_id' must be a response id (a string).");
  }
  const instructions = body['instructions'];
  if (instructions !== undefined && instructions !== null && typeof instructions !== 'string')
    throw errors.invalidParam('instructions', "'instructions' must be a string.");
  if (body['tools'] !== undefined && !Array.isArray(body['tools'])) throw errors.invalidParam('tools', "'tools' must be an array.");
}

const OUTPUT_CAP = ['max_output_tokens'] as const;

export const responses: Protocol = {
  name: 'responses',
  endpoint: 'responses',
  upstreamPath: '/responses',
  operation: 'responses',
  grammar: responsesGrammar,
  validate,
  model: modelOf,
  stream: (body) => body.stream === true,
  maxOutputTokens: (body) => positiveInt(body, OUTPUT_CAP),
  promptTokens,
  injectsUsage: () => false,
  upstreamBody: (raw, body, target) => spliceBody(raw, body, target, false),
  readBody: readResponseBody,
  streamError: responsesStreamError,
  errorBody: openaiErrorBody,
  continues: (body) => (typeof body['previous_response_id'] === 'string' ? body['previous_response_id'] : undefined),
  recordsResponses: true,
};

/** POST /v1/responses/input_tokens: counts a prompt upstream; generates nothing and costs nothing. */
export const responsesInputTokens: Protocol = freeCall(responses, {
  name: 'responses.input_tokens',
  // Served by the backends that serve the Responses API (their `apis:`).
  api: 'responses',
  endpoint: 'responses/input_tokens',
  upstreamPath: '/responses/input_tokens',
  operation: 'responses.input_tokens',
  streamError: responsesStreamError,
  recordsResponses: false,
});
