// What the stream tap needs to know about one API's SSE stream, and what the forwarder needs
// to know about its bodies. Each API module in src/protocols/ supplies one of each; the tap
// and the forwarder know no field names of their own.
import type { GatewayError } from '../errors.js';
import type { TapUsage } from './tokens.js';

/**
 * What a key found in an event means to the tap. Keys are matched on the bytes (quote, key,
 * quote, colon), so only listed keys cost anything and no event is parsed unless one of the
 * PARSE kinds says it is worth it.
 */
export const KeyKind = {
  /** A non-empty string value is generated output: stamps first/last token, counts a content event. */
  Token: 1,
  /** A string value is the finish reason (the last one seen wins). */
  Finish: 2,
  /** An object value makes the event worth a JSON.parse (a usage object; not `null`). */
  ParseObject: 3,
  /** An object or string value makes the event worth a JSON.parse (an error). */
  ParseValue: 4,
  /** A string value listed in the grammar's parseTypes makes the event worth a JSON.parse. */
  Type: 5,
} as const;
export type KeyKind = (typeof KeyKind)[keyof typeof KeyKind];

/** What the parsed events of one stream told the tap (a grammar's onEvent writes here). */
export interface StreamFacts {
  usage: TapUsage | undefined;
  finishReason: string | undefined;
  /** The upstream's own error (an error event, or a terminal failure): the stream failed. */
  error: unknown;
  /** The stream's own end marker arrived ([DONE], response.completed, ...): it was not cut short. */
  complete: boolean;
  /** The id the upstream gave the response it is streaming (Responses API), once seen. */
  responseId: string | undefined;
}

export interface StreamGrammar {
  /** The keys the tap looks for, and what each means. */
  readonly keys: ReadonlyArray<readonly [string, KeyKind]>;
  /** For Type keys: the values that make an event worth parsing. */
  readonly parseTypes: readonly string[];
  /** `data: [DONE]` is this stream's end marker. */
  readonly doneSentinel: boolean;
  /**
   * One parsed event (it had a ParseObject/ParseValue/listed Type key): update `facts`.
   * Returns true when the event is the usage event the gateway itself asked for, which the
   * tap cuts out when stripping.
   */
  onEvent(event: Record<string, unknown>, facts: StreamFacts): boolean;
  /** Appends the generated text of one event to `parts`: counted when the upstream sent no usage. */
  collectText(event: Record<string, unknown>, parts: string[]): void;
}

/** What a whole (non-streamed) response body says. */
export interface BodyFacts {
  usage?: TapUsage;
  finishReason?: string;
  responseId?: string;
  /** The generated text, only when there is no usage (a tokenizer then counts it). */
  text?: string;
}

/** An API's wire format as the forwarder sees it. */
export interface Wire {
  /** Undefined for an API that never streams. */
  readonly grammar: StreamGrammar | undefined;
  /** Usage, finish reason and id of a whole 2xx body; undefined when it is not this API's JSON. */
  readBody(body: Buffer): BodyFacts | undefined;
  /** The final SSE event that tells this API's SDKs the stream failed (they raise it). `events` is how many events were forwarded before. */
  streamError(err: GatewayError, events: number): string;
  /** This API's error body for a status answer (passed around unbound: it must not use `this`). */
  errorBody(this: void, err: GatewayError): string;
}
