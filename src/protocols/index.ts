// The APIs the gateway governs, by name. Adding an API: one module implementing Protocol, one line here.
import { chat } from './chat.js';
import { completions } from './completions.js';
import { embeddings } from './embeddings.js';
import { countMessageTokens, messages } from './messages.js';
import { responses, responsesInputTokens } from './responses.js';
import type { Protocol } from './types.js';

export type { Protocol, UpstreamModel } from './types.js';

export const protocols = {
  chat,
  completions,
  embeddings,
  messages,
  messages_count_tokens: countMessageTokens,
  responses,
  responsesInputTokens,
} as const satisfies Record<string, Protocol>;

export type ProtocolName = keyof typeof protocols;

export function protocolByName(name: string): Protocol | undefined {
  return Object.hasOwn(protocols, name) ? protocols[name as ProtocolName] : undefined;
}
