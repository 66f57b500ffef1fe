/** Stream tap: observes streamed (SSE) responses on the hot path; token counting helpers. */
export { StreamTap, type StreamTapOptions } from './tap.js';
export { KeyKind, type BodyFacts, type StreamFacts, type StreamGrammar, type Wire } from './grammar.js';
export { countTokens, preloadTokenizer, type TapUsage } from './tokens.js';
// The OpenAI request and usage readers live with the OpenAI protocols; re-exported for existing callers.
export { usageFromResponse } from '../protocols/openai.js';
export { estimatePromptTokens } from '../protocols/prompt-estimate.js';
