// What the OpenAI APIs share: the usage object of chat, completions and embeddings, the error
// body, the request fields every API reads the same way, and the upstream body splice.
import { errors, type GatewayError } from '../errors.js';
import { isRecord, num, type TapUsage } from '../streamtap/tokens.js';
import type { BodyFacts } from '../streamtap/grammar.js';
import { scanUsage, type BodySummary, type UsageKeys } from '../util/usage-scan.js';
import { MAX_WALK_DEPTH, rewriteBody, tooDeepToWalk } from '../upstream/body.js';
import type { UpstreamModel } from './types.js';
import { parseObject, sseEvent } from './wire.js';
import { usageFault } from '../settle/usage.js';

/** OpenAI's error body: the SDKs map it (with the status) to their own exception classes. */
export function openaiErrorBody(err: GatewayError): string {
  return JSON.stringify(err.body());
}

/** `data: {"error":{...}}`: openai-node and openai-python raise any event whose data has an `error`. */
export function openaiStreamError(err: GatewayError): string {
  return sseEvent(err.body());
}

export function modelOf(body: Record<string, unknown>): string {
  return typeof body.model === 'string' ? body.model : '';
}

/** The checks every OpenAI API shares: a stream flag, if present, is a boolean. */
export function validateCommon(body: Record<string, unknown>): void {
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw errors.invalidParam('stream', "'stream' must be a boolean.");
}

/** The first of `fields` holding a positive integer (the client's output cap), else undefined. */
export function positiveInt(body: Record<string, unknown>, fields: readonly string[]): number | undefined {
  for (const field of fields) {
    const v = body[field];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return undefined;
}

const USAGE_OPTION = { include_usage: true };

/**
 * The client's bytes with the deployment's model spliced in (upstream/body.ts) and, when
 * `addUsage`, stream_options.include_usage added; serialised again only for an unusual layout
 * or when the client's own stream_options would be a duplicate key next to ours.
 */
export function spliceBody(raw: Buffer, body: Record<string, unknown>, t: UpstreamModel, addUsage: boolean): Buffer | string {
  const spliced = addUsage && body.stream_options !== undefined ? undefined : rewriteBody(raw, t.upstreamModelJson, addUsage);
  if (spliced !== undefined) return spliced;
  // JSON.stringify would overflow the stack on a 100k-deep body (JSON.parse took it): the client's 400.
  if (tooDeepToWalk(raw)) throw errors.tooDeep(MAX_WALK_DEPTH);
  const json: Record<string, unknown> = { ...body, model: t.upstreamModel };
  if (addUsage) json.stream_options = { ...(isRecord(body.stream_options) ? body.stream_options : {}), ...USAGE_OPTION };
  return JSON.stringify(json);
}

/**
 * The usage of a chat/completions/embeddings response (or stream event) object:
 * prompt_tokens, completion_tokens (absent for embeddings), prompt_tokens_details.cached_tokens,
 * completion_tokens_details.reasoning_tokens. Undefined when there is no usable usage.
 */
export function usageFromResponse(json: unknown): TapUsage | undefined {
  if (!isRecord(json)) return undefined;
  const u = json['usage'];
  if (!isRecord(u)) return undefined;
  const input = num(u['prompt_tokens']);
  const output = num(u['completion_tokens']);
  if (input === undefined && output === undefined) return undefined;
  const pd = u['prompt_tokens_details'];
  const cd = u['completion_tokens_details'];
  return {
    input: input ?? 0,
    output: output ?? 0,
    cachedInput: (isRecord(pd) ? num(pd['cached_tokens']) : undefined) ?? 0,
    reasoning: (isRecord(cd) ? num(cd['reasoning_tokens']) : undefined) ?? 0,
  };
}

// cached_tokens only occurs in prompt_tokens_details, reasoning_tokens only in completion_tokens_details.
const CHAT_KEYS: UsageKeys = {
  input: '"prompt_tokens"',
  output: '"completion_tokens"',
  cached: '"cached_tokens"',
  reasoning: '"reasoning_tokens"',
  finish: Buffer.from('"finish_reason"'),
};

/** Usage and the first finish_reason of a chat/completions body by byte scan; undefined when a full parse is needed. */
export function summariseChatBody(body: Buffer): BodySummary | undefined {
  return scanUsage(body, CHAT_KEYS);
}

/** A whole chat/completions/embeddings body: the byte scan, else one full parse. */
export function readChatBody(body: Buffer): BodyFacts | undefined {
  const s = summariseChatBody(body);
  // A count the settle boundary would refuse: parse in full, for the text to estimate from.
  if (s && usageFault(s.usage) === undefined) return { usage: s.usage, finishReason: s.finishReason };
  // A non-JSON 2xx body is passed through untouched; tokens are then estimated.
  const json = parseObject(body);
  if (!json) return undefined;
  const usage = usageFromResponse(json);
  const choices = Array.isArray(json.choices) ? (json.choices as unknown[]) : [];
  const first = choices[0];
  const finishReason = isRecord(first) && typeof first.finish_reason === 'string' ? first.finish_reason : undefined;
  if (usage && usageFault(usage) === undefined) return { usage, finishReason };
  let text = '';
  for (const c of choices) {
    if (!isRecord(c)) continue;
    const content = isRecord(c.message) ? c.message.content : undefined;
    text += typeof content === 'string' ? content : typeof c.text === 'string' ? c.text : '';
  }
  return { usage, finishReason, text };
}
