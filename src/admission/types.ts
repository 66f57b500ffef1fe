// The contract between the pipeline and admission: admit() reserves, settle() commits the
// real usage and frees the rest. settle() is called exactly once per ticket, whatever
// happened (success, upstream failure, client abort), so no reservation can leak.
import type { Identity } from '../auth/index.js';
import type { Route } from '../policy/index.js';

export interface AdmissionRequest {
  identity: Identity;
  /** The model's route; absent for a pass-through request that names no served model (no model scope applies). */
  route?: Route;
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
  /**
   * Reserves for every scope or refuses (throws a GatewayError). The memory store decides
   * synchronously and returns the ticket itself (no promise, no microtask hop); Redis returns
   * a promise.
   */
  admit(req: AdmissionRequest): Ticket | Promise<Ticket>;
  /** false when the store is unreachable and on_store_error is closed. */
  ready(): boolean;
  close(): Promise<void>;
  /**
   * A reload replaced this admission: close once the tickets it issued have settled (bounded
   * wait; unref'd timers). A no-op where nothing is held.
   */
  retire(): Promise<void>;
  /** What /admin/spend, /admin/limits and /admin/budgets/reset read (absent: nothing configured). */
  readonly admin?: AdmissionAdmin;
}

export interface AdmissionAdmin {
  spend(): Promise<SpendReport>;
  limits(): Promise<LimitsReport>;
  /** Zeroes the current period's spend of one budget; throws a 404 GatewayError for an unknown one. */
  resetBudget(scope: string, name: string): Promise<ResetReport>;
}

export interface StoreStatus {
  store: 'memory' | 'redis';
  /** Redis unreachable: serving from local limits (on_store_error: open) or refusing (closed). */
  degraded: boolean;
  /** Settles / cancels / fallback spend waiting to be written to Redis. */
  pending_ops: number;
}

export interface BudgetView {
  scope: string;
  name: string;
  period: 'day' | 'week' | 'month' | 'total';
  /** ISO time the current period began (null for total). */
  period_start: string | null;
  /** ISO time the spend resets (null for total). */
  resets_at: string | null;
  limit_usd: number;
  spend_usd: number;
  /** Worst-case cost held by requests in flight. */
  reserved_usd: number;
  remaining_usd: number;
}

export interface SpendReport extends StoreStatus {
  budgets: BudgetView[];
}

export interface LimitsReport extends StoreStatus {
  scopes: Array<{
    scope: string;
    name: string;
    rpm?: { limit: number; used: number; remaining: number };
    tpm?: { limit: number; used: number; remaining: number };
    concurrency?: { limit: number; in_use: number };
    budget?: Omit<BudgetView, 'scope' | 'name'>;
  }>;
}

export interface ResetReport {
  ok: true;
  scope: string;
  name: string;
  period: string;
  previous_spend_usd: number;
}
