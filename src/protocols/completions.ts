// POST /v1/completions (legacy text completions): chat's chunk grammar (its `text` key) and
// usage; the request differs only in its prompt (`prompt`, counted by estimatePromptTokens).
import { chat } from './chat.js';
import type { Protocol } from './types.js';

export const completions: Protocol = {
  ...chat,
  name: 'completions',
  endpoint: 'completions',
  upstreamPath: '/completions',
  operation: 'text_completion',
};
