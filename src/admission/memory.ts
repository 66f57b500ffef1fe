// The in-process store: exact sliding-window logs for rpm and tpm, a counter for
// concurrency, spend + in-flight reservations per budget. Node runs admit() to the end
// without yielding, so "check every scope, then reserve in every scope" is atomic here.
//
// A policy reload builds a new store that adopts the old one's per-scope state objects
// (adopt()), so both stores read and write the same state: requests admitted before the
// reload settle through the old store into the state the new one admits against. For that,
// what a request holds (a concurrency slot, a budget reservation, a tpm entry) is counted
// whatever the scope's limits are, and released from the object it was taken from: a reload
// may add or remove a limit between a request's admit and its settle.
import type { Scope } from './scopes.js';
import { PeriodClock } from './periods.js';
import {
  CONCURRENCY_RETRY_MS,
  WINDOW_MS,
  newVerdict,
  type Reservation,
  type ScopeUsage,
  type SpendListener,
  type Usage,
  type Verdict,
} from './store.js';

/** Timestamps of the requests admitted in the last 60 s, in a ring of `limit` slots (never more can be inside). */
export class RequestLog {
  private readonly ts: Float64Array;
  private head = 0;
  count = 0;

  constructor(readonly limit: number) {
    this.ts = new Float64Array(limit);
  }

  trim(now: number): void {
    const cut = now - WINDOW_MS;
    while (this.count > 0 && this.ts[this.head]! <= cut) {
      this.head = (this.head + 1) % this.limit;
      this.count--;
    }
  }

  /** A log with another capacity holding the newest of these timestamps (a reload changed the rpm). */
  resized(limit: number, now: number): RequestLog {
    this.trim(now);
    const out = new RequestLog(limit);
    for (let i = Math.max(0, this.count - limit); i < this.count; i++) out.push(this.ts[(this.head + i) % this.limit]!);
    return out;
  }

  /** ms until the oldest entry leaves the window (call when full). */
  retryAfter(now: number): number {
    return this.ts[this.head]! + WINDOW_MS - now;
  }

  push(now: number): void {
    this.ts[(this.head + this.count) % this.limit] = now;
    this.count++;
  }
}

export class TokenEntry {
  live = true;
  constructor(
    /** The log it was pushed to: settle adjusts that one, even if a reload has replaced it since. */
    readonly log: TokenLog,
    readonly at: number,
    public tokens: number,
  ) {}
}

/** Token reservations of the last 60 s, oldest first, with their running sum. */
export class TokenLog {
  private entries: TokenEntry[] = [];
  private head = 0;
  sum = 0;

  trim(now: number): void {
    const cut = now - WINDOW_MS;
    const e = this.entries;
    while (this.head < e.length && e[this.head]!.at <= cut) {
      const x = e[this.head++]!;
      x.live = false;
      this.sum -= x.tokens;
    }
    if (this.head === e.length) {
      e.length = 0;
      this.head = 0;
      this.sum = 0; // self-healing: an empty window holds nothing
    } else if (this.head > 1024 && this.head * 2 > e.length) {
      this.entries = e.slice(this.head);
      this.head = 0;
    }
  }

  /** ms until `need` more tokens fit under `limit`; -1 if they never can. */
  retryAfter(now: number, need: number, limit: number): number {
    if (need > limit) return -1;
    let s = this.sum;
    for (let i = this.head; i < this.entries.length; i++) {
      const x = this.entries[i]!;
      s -= x.tokens;
      if (s + need <= limit) return x.at + WINDOW_MS - now;
    }
    return WINDOW_MS;
  }

  push(now: number, tokens: number): TokenEntry {
    const x = new TokenEntry(this, now, tokens);
    this.entries.push(x);
    this.sum += tokens;
    return x;
  }

  /** Settle an entry to the real count (only counts while it is still inside the window). */
  adjust(x: TokenEntry, tokens: number): void {
    if (x.live) this.sum += tokens - x.tokens;
    x.tokens = tokens;
  }
}

export class BudgetState {
  periodId = '';
  start = 0;
  end = 0;
  spent = 0;
  /** Bit i set: threshold i has fired this period. */
  fired = 0;

  /**
   * Moves to the period containing `now`; a new period starts with no spend and no alerts.
   * `scope` must be the state's own (ScopeState.scope): another policy's period would reset it.
   */
  roll(scope: Scope, clock: PeriodClock, now: number): void {
    if (now >= this.start && now < this.end) return;
    const w = clock.at(scope.budget!.period, now);
    if (w.id !== this.periodId) {
      this.periodId = w.id;
      this.spent = 0;
      this.fired = 0;
    }
    this.start = w.start;
    this.end = w.end;
  }
}

interface ScopeState {
  /** The configuration this state is kept for: the scope of the newest store that adopted it. */
  scope: Scope;
  rpm: RequestLog | undefined;
  tpm: TokenLog | undefined;
  /** Requests admitted and not settled (counted with or without a concurrency limit). */
  inUse: number;
  /** Worst-case cost they hold, nano-USD (counted with or without a budget). */
  reserved: number;
  budget: BudgetState | undefined;
}

function newState(s: Scope): ScopeState {
  return {
    scope: s,
    rpm: s.rpm ? new RequestLog(s.rpm) : undefined,
    tpm: s.tpm ? new TokenLog() : undefined,
    inUse: 0,
    reserved: 0,
    budget: s.budget ? new BudgetState() : undefined,
  };
}

export interface PersistedBudget {
  period: string;
  spent_nano: number;
  spent_usd: number;
  alerted: number[];
}

export class MemoryStore {
  readonly name = 'memory';
  private readonly states: ScopeState[];
  readonly clock = new PeriodClock();
  /** Set when committed spend changed since the last snapshot. */
  dirty = false;
  /** The store that adopted this one's state (a reload): spend alerts and `dirty` are its business now. */
  private successor: MemoryStore | undefined;

  constructor(
    private readonly scopes: readonly Scope[],
    private readonly thresholds: readonly number[],
    private readonly onSpend: SpendListener | undefined,
    /** Monotonic ms for rate windows; wall-clock ms for budget periods. */
    private readonly mono: () => number = () => performance.now(),
    private readonly wall: () => number = () => Date.now(),
  ) {
    this.states = scopes.map(newState);
  }

  /**
   * Takes over the state of the store a reload replaces, for every scope that still exists
   * (same `kind:name`). The state objects are shared, not copied: requests the old store
   * admitted settle through it into this same state. Only what the new policy changed is
   * rebuilt: a new rpm keeps the timestamps, a new budget period starts a fresh spend, a
   * removed limit drops its state. Returns the ids of the scopes carried over.
   */
  adopt(prev: MemoryStore): Set<string> {
    const now = this.mono();
    const old = new Map(prev.scopes.map((s) => [s.id, prev.states[s.slot]!]));
    const carried = new Set<string>();
    for (const s of this.scopes) {
      const st = old.get(s.id);
      if (!st) continue;
      this.reconfigure(st, s, prev.thresholds, now);
      this.states[s.slot] = st;
      carried.add(s.id);
    }
    prev.successor = this;
    return carried;
  }

  private reconfigure(st: ScopeState, s: Scope, oldThresholds: readonly number[], now: number): void {
    if (!s.rpm) st.rpm = undefined;
    else if (!st.rpm) st.rpm = new RequestLog(s.rpm);
    else if (st.rpm.limit !== s.rpm) st.rpm = st.rpm.resized(s.rpm, now);
    if (!s.tpm) st.tpm = undefined;
    else st.tpm ??= new TokenLog(); // a token log does not depend on the limit
    const before = st.scope.budget;
    if (!s.budget) st.budget = undefined;
    // Spend of a day is not spend of a month: another period starts from nothing.
    else if (!st.budget || before?.period !== s.budget.period) st.budget = new BudgetState();
    else {
      const b = st.budget;
      b.fired = remapFired(b.fired, oldThresholds, this.thresholds);
      // A raised limit re-arms the thresholds the spend is now below.
      this.thresholds.forEach((th, i) => {
        if (b.spent < th * s.budget!.nano) b.fired &= ~(1 << i);
      });
    }
    st.scope = s;
  }

  /** The store that owns the shared state now (this one, unless a reload adopted it). */
  private owner(): MemoryStore {
    let m: MemoryStore = this;
    while (m.successor) m = m.successor;
    return m;
  }

  admit(r: Reservation): Verdict {
    const v = newVerdict();
    const now = this.mono();
    const wall = this.wall();
    const scopes = r.scopes;
    // Pass 1: check every scope (and gather the tightest remaining for the headers). Limits
    // come from the state's own configuration (st.scope: the same as s unless a reload
    // reconfigured the state after this store was replaced).
    for (let i = 0; i < scopes.length; i++) {
      const st = this.states[scopes[i]!.slot]!;
      const c = st.scope;
      if (st.rpm) {
        st.rpm.trim(now);
        const rem = st.rpm.limit - st.rpm.count - 1;
        if (v.reqLimit < 0 || rem < v.reqRemaining) {
          v.reqLimit = st.rpm.limit;
          v.reqRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'rpm', st.rpm.retryAfter(now));
      }
      if (st.tpm) {
        st.tpm.trim(now);
        const rem = c.tpm - st.tpm.sum - r.tokens;
        if (v.tokLimit < 0 || rem < v.tokRemaining) {
          v.tokLimit = c.tpm;
          v.tokRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'tpm', st.tpm.retryAfter(now, r.tokens, c.tpm));
      }
      if (c.concurrency && st.inUse >= c.concurrency && v.ok) refuse(v, i, 'concurrency', CONCURRENCY_RETRY_MS);
      const b = st.budget;
      if (b) {
        b.roll(c, this.clock, wall);
        if (b.spent + st.reserved + r.nano > c.budget!.nano && v.ok) {
          refuse(v, i, 'budget', -1);
          v.spentNano = b.spent;
          v.reservedNano = st.reserved;
        }
      }
    }
    if (!v.ok) return v;
    // Pass 2: reserve in every scope.
    let entries: TokenEntry[] | undefined;
    for (const s of scopes) {
      const st = this.states[s.slot]!;
      st.rpm?.push(now);
      if (st.tpm) (entries ??= []).push(st.tpm.push(now, r.tokens));
      st.inUse++;
      st.reserved += r.nano;
    }
    r.handle = entries;
    return v;
  }

  /** Frees the reservation and commits the real usage. Never throws. */
  settle(r: Reservation, u: Usage): void {
    const entries = r.handle as TokenEntry[] | undefined;
    if (entries) for (const x of entries) x.log.adjust(x, u.tokens);
    let wall = 0;
    let owner: MemoryStore | undefined;
    for (const s of r.scopes) {
      const st = this.states[s.slot]!;
      st.inUse = Math.max(0, st.inUse - 1);
      st.reserved = Math.max(0, st.reserved - r.nano);
      const b = st.budget;
      if (!b || u.costNano <= 0) continue;
      wall ||= this.wall();
      b.roll(st.scope, this.clock, wall);
      b.spent += u.costNano;
      owner ??= this.owner();
      owner.dirty = true;
      owner.afterSpend(st.scope, b);
    }
  }

  /** Fires each threshold the new spend crosses for the first time this period. */
  private afterSpend(s: Scope, b: BudgetState): void {
    if (!this.onSpend) return;
    let fired: number[] | undefined;
    for (let i = 0; i < this.thresholds.length; i++) {
      const th = this.thresholds[i]!;
      if (!(b.fired & (1 << i)) && b.spent >= th * s.budget!.nano && s.budget!.nano > 0) {
        b.fired |= 1 << i;
        (fired ??= []).push(th);
      }
    }
    this.onSpend(s, b.spent, fired ?? NONE);
  }

  usage(): ScopeUsage[] {
    const now = this.mono();
    const wall = this.wall();
    return this.scopes.map((s) => {
      const st = this.states[s.slot]!;
      st.rpm?.trim(now);
      st.tpm?.trim(now);
      st.budget?.roll(st.scope, this.clock, wall);
      return {
        scope: s,
        rpmUsed: st.rpm ? st.rpm.count : -1,
        tpmUsed: st.tpm ? st.tpm.sum : -1,
        inUse: s.concurrency ? st.inUse : -1,
        spentNano: st.budget ? st.budget.spent : -1,
        reservedNano: st.budget ? st.reserved : -1,
        period: st.budget ? { id: st.budget.periodId, start: st.budget.start, end: st.budget.end } : undefined,
      };
    });
  }

  /** Zeroes a budget's spend (and its alerts) for the current period; returns the spend it had. */
  resetBudget(s: Scope): number {
    const st = this.states[s.slot];
    const b = st?.budget;
    if (!b) return 0;
    b.roll(st.scope, this.clock, this.wall());
    const before = b.spent;
    b.spent = 0;
    b.fired = 0;
    this.dirty = true;
    this.onSpend?.(s, 0, NONE);
    return before;
  }

  /** Overwrites the current period's spend of budgets (fallback seeding, state file load). */
  setSpent(s: Scope, periodId: string, spentNano: number, alerted: readonly number[] = []): boolean {
    const st = this.states[s.slot];
    const b = st?.budget;
    if (!b) return false;
    b.roll(st.scope, this.clock, this.wall());
    if (b.periodId !== periodId) return false;
    b.spent = spentNano;
    b.fired = 0;
    this.thresholds.forEach((th, i) => {
      if (alerted.includes(th)) b.fired |= 1 << i;
    });
    return true;
  }

  /** The budget part of the state, as written to the state file. */
  snapshot(): Record<string, PersistedBudget> {
    const out: Record<string, PersistedBudget> = {};
    const wall = this.wall();
    for (const s of this.scopes) {
      const st = this.states[s.slot]!;
      const b = st.budget;
      if (!b) continue;
      b.roll(st.scope, this.clock, wall);
      out[s.id] = {
        period: b.periodId,
        spent_nano: b.spent,
        spent_usd: b.spent / 1e9,
        alerted: this.thresholds.filter((_, i) => b.fired & (1 << i)),
      };
    }
    return out;
  }
}

const NONE: readonly number[] = Object.freeze([]);

/** Fired-threshold bits re-indexed for a new budget_alerts list (a threshold that fired stays fired). */
function remapFired(fired: number, from: readonly number[], to: readonly number[]): number {
  if (!fired || (from.length === to.length && from.every((t, i) => t === to[i]))) return fired;
  let out = 0;
  to.forEach((t, i) => {
    const j = from.indexOf(t);
    if (j >= 0 && fired & (1 << j)) out |= 1 << i;
  });
  return out;
}

function refuse(v: Verdict, i: number, limit: Verdict['limit'], retryAfterMs: number): void {
  v.ok = false;
  v.refusedAt = i;
  v.limit = limit;
  v.retryAfterMs = retryAfterMs;
}
