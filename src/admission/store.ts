// What every state store does (Store): check every scope of a request and reserve in all of
// them, atomically (all or nothing); settle a reservation to the real usage; report usage for
// the admin API. `memory` does it in-process, `redis` in one Lua script per operation, and
// `DegradingStore` (degrading.ts) is Redis with a local memory fallback while it is away.
import type { LimitKind, Scope } from './scopes.js';
import type { PeriodWindow } from './periods.js';
import type { LeasedParts } from './lease.js';

/** Sliding window length of rpm and tpm. */
export const WINDOW_MS = 60_000;
/** After a concurrency refusal: a slot frees when some request ends, which we cannot know; ask for a short wait. */
export const CONCURRENCY_RETRY_MS = 1_000;

/** One admitted (or being admitted) request's claim on its scopes. */
export interface Reservation {
  /** Unique per request across the fleet: it names the request's entries in Redis ('' with the memory store, which needs none). */
  id: string;
  readonly scopes: readonly Scope[];
  /** Tokens reserved: prompt estimate + max output tokens. */
  readonly tokens: number;
  /** Worst-case cost, nano-USD. */
  readonly nano: number;
  /**
   * Memory store, kept from admit to settle without an object per entry: the second (1 s
   * bucket) the tokens were counted in, and the newest rate window at that time.
   */
  bucket?: number;
  gen?: number;
  /** Admitted by the local fallback while Redis was away (DegradingStore): settled there, its spend added to Redis later. */
  fallback?: boolean;
  /** Admitted against quota leases (lease.ts): settled into them, not by a script of its own. */
  leased?: LeasedParts | undefined;
}

/** The outcome of admit(). Limits are -1 where no scope has that kind of limit. */
export interface Verdict {
  ok: boolean;
  /** Index in reservation.scopes of the first scope that refused, -1 when admitted. */
  refusedAt: number;
  limit: LimitKind | undefined;
  /** When the refusing window admits again; -1 when waiting cannot help (request larger than the limit). */
  retryAfterMs: number;
  /** The tightest rpm / tpm scope: its limit and what remains after this request. */
  reqLimit: number;
  reqRemaining: number;
  tokLimit: number;
  tokRemaining: number;
  /** For a budget refusal: the refusing budget's state (nano-USD). */
  spentNano: number;
  reservedNano: number;
}

export function newVerdict(): Verdict {
  return {
    ok: true,
    refusedAt: -1,
    limit: undefined,
    retryAfterMs: 0,
    reqLimit: -1,
    reqRemaining: 0,
    tokLimit: -1,
    tokRemaining: 0,
    spentNano: 0,
    reservedNano: 0,
  };
}

export interface Usage {
  /** Real input + output tokens. */
  tokens: number;
  /** Real cost, nano-USD. */
  costNano: number;
}

/**
 * An amount a store may hold: a non-negative safe integer. Every store keeps its state in
 * such numbers (a window sum of Infinity turns into NaN at the next subtraction and is never
 * enforced again; JSON writes Infinity as null; Redis stores `inf`), so every amount is
 * checked on its way in. Reservations are clamped (NaN or too large reserves the maximum:
 * any real limit then refuses it); a settled usage that is not a valid amount commits the
 * reservation instead (see settledUsage).
 */
export function isAmount(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

/** A reservation amount: rounded, negative → 0, NaN or beyond 2^53 → Number.MAX_SAFE_INTEGER. */
export function clampAmount(x: number): number {
  if (isAmount(x)) return x;
  if (x <= 0) return 0;
  const r = Math.round(x);
  return Number.isSafeInteger(r) ? r : Number.MAX_SAFE_INTEGER;
}

/** `u` if both its amounts are valid; otherwise what was reserved (the worst case admission allowed), so no spend is lost. */
export function settledUsage(r: Reservation, u: Usage): Usage {
  if (isAmount(u.tokens) && isAmount(u.costNano)) return u;
  return { tokens: isAmount(u.tokens) ? u.tokens : r.tokens, costNano: isAmount(u.costNano) ? u.costNano : r.nano };
}

/** A scope's current state, for /admin/limits and /admin/spend. -1 where the scope has no such limit. */
export interface ScopeUsage {
  scope: Scope;
  rpmUsed: number;
  tpmUsed: number;
  inUse: number;
  spentNano: number;
  reservedNano: number;
  period: PeriodWindow | undefined;
}

/**
 * A state store as admission sees it. admit() is synchronous where the store is (memory):
 * the request path then awaits nothing. Throws StoreUnavailable when the store cannot answer.
 */
export interface Store {
  readonly name: 'memory' | 'redis';
  /** Whether reservations need a fleet-unique id (the store names its entries by it). */
  readonly namesReservations: boolean;
  /** The store is not the one of record right now (Redis away): the admin API says so. */
  readonly degraded: boolean;
  /** Operations waiting to be written to the store. */
  readonly pendingOps: number;
  admit(r: Reservation): Verdict | Promise<Verdict>;
  /** Commits the real usage and frees the rest. Never throws for the store being away (it queues). */
  settle(r: Reservation, u: Usage): void;
  /** Usage of every scope of the store's policy, in table order. */
  usage(): ScopeUsage[] | Promise<ScopeUsage[]>;
  /** Clears the current period's spend; returns what it was (nano-USD). */
  resetBudget(s: Scope): number | Promise<number>;
  /** Whether the gateway can admit (readiness). */
  ready(): boolean;
  close(): Promise<void>;
}

/** Called when committed spend of a budget scope changed; `fired` lists thresholds crossed for the first time this period. */
export type SpendListener = (scope: Scope, spentNano: number, fired: readonly number[]) => void;

export class StoreUnavailable extends Error {
  constructor(
    message: string,
    /** true when the command may have run on the server (timeout): the reservation must be cancelled later. */
    readonly maybeApplied: boolean,
  ) {
    super(message);
  }
}
