// The contract between the pipeline and admission: admit() reserves, settle() commits the
// real usage and frees the rest. settle() is called exactly once per ticket, whatever
// happened (success, upstream failure, client abort), so no reservation can leak.
import type { Identity } from '../auth/index.js';
import type { Route } from '../policy/index.js';

export interface AdmissionRequest {
  identity: Identity;
  route: Route;
  /** Prompt tokens estimated with a tokenizer. */
  promptTokens: number;
  /** Output tokens the request may produce (max_tokens or the configured default). */
  maxOutputTokens: number;
  /** Worst-case cost in USD, at the highest price along the route's fallback chain. */
  worstCaseUsd: number;
}

export interface SettledUsage {
  /** The model that served the request (may differ from the route after a fallback). */
  servedModel: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface Ticket {
  /** x-ratelimit-* headers for the response. */
  readonly headers: Record<string, string>;
  settle(usage: SettledUsage): void;
}

export interface Admission {
  /** Resolves a ticket, or throws a GatewayError (429 rate_limit_exceeded / insufficient_quota, 503). */
  admit(req: AdmissionRequest): Promise<Ticket>;
  /** false when the store is unreachable and on_store_error is closed. */
  ready(): boolean;
  close(): Promise<void>;
}
