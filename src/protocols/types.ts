// One interface every API implements (chat, completions, embeddings, responses; Anthropic
// messages later). The pipeline, the stream tap, routing and settle are generic: everything
// that depends on an API's field names lives behind this interface, one module per API, so
// adding an API means adding one file and listing it in index.ts. The shape follows Envoy AI
// Gateway's translator: request in, upstream body out, response events classified.
import type { GatewayError } from '../errors.js';
import type { Wire } from '../streamtap/grammar.js';

/** The deployment a body is built for: its model name as text and as a JSON string token. */
export interface UpstreamModel {
  upstreamModel: string;
  upstreamModelJson: Buffer;
}

export interface Protocol extends Wire {
  /** Short name, e.g. 'chat', 'responses'. */
  readonly name: string;
  /** The log line's `endpoint` value. */
  readonly endpoint: string;
  /** Path of the call relative to a backend's base_url, e.g. '/chat/completions'. */
  readonly upstreamPath: string;
  /** OpenTelemetry GenAI operation name (span name). */
  readonly operation: string;
  /**
   * The API a backend must serve to take this call (its `apis:`), when it is not `name`
   * (messages/count_tokens goes to backends that serve messages).
   */
  readonly api?: string;

  /**
   * Checks the types of the fields the gateway reads or relies on, and throws the API's
   * 400 (errors.invalidParam) for a wrong one: such a request is never forwarded.
   */
  validate(body: Record<string, unknown>): void;
  /** The model the client asked for ('' when absent or not a string). */
  model(body: Record<string, unknown>): string;
  /** Whether the client asked for a stream (always false for an API that never streams). */
  stream(body: Record<string, unknown>): boolean;
  /** The output-token cap the client set; undefined when none (the route's default applies); 0 for an API with no output (embeddings). */
  maxOutputTokens(body: Record<string, unknown>): number | undefined;
  /** Prompt tokens by tokenizer, before sending (admission's reservations; streams without usage). */
  promptTokens(body: Record<string, unknown>): number;
  /**
   * The gateway adds a request for usage to a stream the client did not ask usage for
   * (chat's stream_options.include_usage), and the tap then removes the event it brings.
   */
  injectsUsage(body: Record<string, unknown>, stream: boolean): boolean;
  /**
   * The upstream body: the client's bytes with the deployment's model spliced in (and usage
   * asked for when injectsUsage), serialised again only when the layout is unusual.
   */
  upstreamBody(raw: Buffer, body: Record<string, unknown>, target: UpstreamModel, stream: boolean): Buffer | string;
  /** The id of a stored response this request continues (Responses' previous_response_id): it must go where that response is. */
  continues?(body: Record<string, unknown>): string | undefined;
  /** The upstream stores what it answers under an id (Responses API): the gateway remembers which deployment holds it. */
  readonly recordsResponses?: boolean;
}

/**
 * A call on `base`'s API that generates nothing and costs nothing (a token count): never
 * streamed, nothing reserved (no prompt estimate, no output), and its answer counts no tokens.
 */
export function freeCall(base: Protocol, own: Partial<Protocol> & Pick<Protocol, 'name' | 'api' | 'endpoint' | 'upstreamPath'>): Protocol {
  return {
    ...base,
    grammar: undefined,
    stream: () => false,
    maxOutputTokens: () => 0,
    promptTokens: () => 0,
    readBody: () => ({ usage: { input: 0, output: 0, cachedInput: 0, reasoning: 0 } }),
    ...own,
  };
}

export type { GatewayError };
