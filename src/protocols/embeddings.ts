// POST /v1/embeddings: never streams, no output tokens; usage is prompt_tokens only.
import { estimatePromptTokens } from './prompt-estimate.js';
import { modelOf, openaiErrorBody, openaiStreamError, readChatBody, spliceBody, validateCommon } from './openai.js';
import type { Protocol } from './types.js';

export const embeddings: Protocol = {
  name: 'embeddings',
  endpoint: 'embeddings',
  upstreamPath: '/embeddings',
  operation: 'embeddings',
  grammar: undefined,
  validate: validateCommon,
  model: modelOf,
  stream: () => false,
  maxOutputTokens: () => 0,
  promptTokens: estimatePromptTokens,
  injectsUsage: () => false,
  upstreamBody: (raw, body, target) => spliceBody(raw, body, target, false),
  readBody: readChatBody,
  streamError: openaiStreamError,
  errorBody: openaiErrorBody,
};
