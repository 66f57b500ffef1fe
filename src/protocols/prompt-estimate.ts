// The prompt estimate of the OpenAI request bodies (chat messages, completions prompt,
// embeddings input, tool definitions), counted before sending for admission's reservations.
import { isRecord, promptCounter } from '../streamtap/tokens.js';

// OpenAI's cookbook ("How to count tokens with tiktoken"): every message costs 3 tokens of
// framing plus its fields, a name 1 more, and every reply is primed with 3 tokens.
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING = 3;
// An image part costs at least the 85 base tokens OpenAI documents for a low-detail image;
// without fetching the image we cannot know more.
const TOKENS_PER_IMAGE = 85;

/**
 * Estimated prompt tokens of a parsed chat/completions, completions or embeddings request
 * body. Used before the upstream answers (admission, reservations), so it errs on the side
 * of counting what will be sent.
 */
export function estimatePromptTokens(body: Record<string, unknown>): number {
  const c = promptCounter();
  const count = (text: string): number => c.count(text);
  let n = 0;
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const m of messages) {
      n += TOKENS_PER_MESSAGE;
      if (!isRecord(m)) continue;
      for (const key of Object.keys(m)) {
        const v = m[key];
        if (key === 'content') n += contentTokens(v, count);
        else if (typeof v === 'string') n += count(v) + (key === 'name' ? TOKENS_PER_NAME : 0);
        else if (v !== null && typeof v === 'object') n += count(JSON.stringify(v)); // tool_calls, function_call
      }
    }
    n += REPLY_PRIMING;
  }
  // Tool definitions reach the model as text; their JSON is a close stand-in.
  for (const key of ['tools', 'functions'] as const) {
    const v = body[key];
    if (v !== undefined && v !== null) n += count(JSON.stringify(v));
  }
  return n + inputTokens(body['prompt'], count) + inputTokens(body['input'], count);
}

/** A message's content: a string, or an array of parts ({type:'text',text}, images, ...). */
function contentTokens(content: unknown, count: (text: string) => number): number {
  if (typeof content === 'string') return count(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (typeof part === 'string') n += count(part);
    else if (isRecord(part)) {
      if (typeof part['text'] === 'string') n += count(part['text']);
      else if (part['type'] === 'image_url') n += TOKENS_PER_IMAGE;
    }
  }
  return n;
}

/** `prompt` (completions) or `input` (embeddings): a string, strings, or pre-tokenised ids. */
function inputTokens(v: unknown, count: (text: string) => number): number {
  if (typeof v === 'string') return count(v);
  if (!Array.isArray(v)) return 0;
  let n = 0;
  for (const el of v) {
    if (typeof el === 'string') n += count(el);
    else if (typeof el === 'number')
      n += 1; // a token id
    else if (Array.isArray(el))
      n += el.length; // a tokenised prompt
    else if (isRecord(el)) n += count(JSON.stringify(el));
  }
  return n;
}
