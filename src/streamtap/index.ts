/** Stream tap: observes streamed (SSE) responses on the hot path; token counting helpers. */
export { StreamTap, type StreamTapOptions } from './tap.js';
export { countTokens, estimatePromptTokens, preloadTokenizer, usageFromResponse, type TapUsage } from './tokens.js';
