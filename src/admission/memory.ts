// The in-process store: sliding windows of 1-second buckets for rpm and tpm, a counter for
// concurrency, spend + in-flight reservations per budget. Node runs admit() to the end
// without yielding, so "check every scope, then reserve in every scope" is atomic here.
//
// A policy reload builds a new store that adopts the old one's per-scope state objects
// (adopt()), so both stores read and write the same state: requests admitted before the
// reload settle through the old store into the state the new one admits against. For that,
// what a request holds (a concurrency slot, a budget reservation, tokens in a tpm window) is
// counted whatever the scope's limits are, and released from the object it was taken from: a
// reload may add or remove a limit between a request's admit and its settle.
import type { Scope } from './scopes.js';
import { PeriodClock } from './periods.js';
import {
  CONCURRENCY_RETRY_MS,
  WINDOW_MS,
  newVerdict,
  isAmount,
  settledUsage,
  type Reservation,
  type ScopeUsage,
  type SpendListener,
  type Store,
  type Usage,
  type Verdict,
} from './store.js';

export const BUCKET_MS = 1_000;
/**
 * Buckets per window: a 60 s window (now-60 s, now] touches 61 one-second buckets (the current
 * one and, partly, the one 60 s back), and every one of them is counted whole.
 */
export const BUCKETS = WINDOW_MS / BUCKET_MS + 1;

/** Creation order of rate windows: a reservation settles only into windows that existed when it was admitted. */
let windowSerial = 0;

/**
 * What a scope admitted (requests for rpm, tokens for tpm) per second, over the last 61
 * seconds: a ring of BUCKETS counters and their sum. Memory is the same whatever the rate or
 * the limit, and counting allocates nothing.
 *
 * An amount admitted at time t, in bucket s = floor(t / 1 s), is counted until the whole
 * bucket has left the window, i.e. until (s + 61) s: between 60 s and 61 s after t, never
 * less. So the sum is never below what an exact log of the window (now-60 s, now] holds, and
 * admitting only while `sum + need <= limit` never lets any 60 s window hold more than the
 * limit; the price is refusing up to 1 s longer than an exact log would.
 */
export class RateWindow {
  /** The amount admitted in second s, at index s % BUCKETS. */
  private readonly buckets = new Float64Array(BUCKETS);
  /** The newest second the ring has moved to: it holds seconds head-60 .. head, older ones are cleared. */
  private head = -Infinity;
  /** What counts against the limit: the sum of the buckets. */
  sum = 0;
  readonly serial = ++windowSerial;

  /** Moves the window to second `sec` (floor(now / BUCKET_MS)), dropping the buckets that left it. */
  advance(sec: number): void {
    let h = this.head;
    if (sec <= h) return;
    const b = this.buckets;
    if (sec - h >= BUCKETS) {
      b.fill(0);
      this.sum = 0;
    } else {
      while (h < sec) {
        const i = ++h % BUCKETS;
        this.sum -= b[i]!;
        b[i] = 0;
      }
    }
    this.head = sec;
  }

  /** Counts `n` in second `sec` (call advance(sec) first). */
  add(sec: number, n: number): void {
    this.buckets[sec % BUCKETS]! += n;
    this.sum += n;
  }

  /**
   * Replaces `from`, counted in second `sec`, by `to` (a settle: estimate → real tokens), if
   * that bucket is still in the ring; once it has left the window there is nothing to adjust.
   */
  adjust(sec: number, from: number, to: number): void {
    if (sec > this.head || sec <= this.head - BUCKETS) return;
    const d = to - from;
    this.buckets[sec % BUCKETS]! += d;
    this.sum += d;
  }

  /**
   * ms from `now` until `need` more fits under `limit` as the oldest buckets leave, one per
   * second (the moment a bucket stops counting, so never early); -1 if it never can.
   * Call advance() to now's second first.
   */
  retryAfter(now: number, need: number, limit: number): number {
    if (need > limit) return -1;
    let left = this.sum;
    for (let k = 1; k <= BUCKETS; k++) {
      // Oldest first: second head-60+(k-1), which stops counting at second head+k.
      left -= this.buckets[(this.head + k) % BUCKETS]!;
      if (left + need <= limit) return (this.head + k) * BUCKET_MS - now;
    }
    return (this.head + BUCKETS) * BUCKET_MS - now;
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
  rpm: RateWindow | undefined;
  tpm: RateWindow | undefined;
  /** Requests admitted and not settled (counted with or without a concurrency limit). */
  inUse: number;
  /** Worst-case cost they hold, nano-USD (counted with or without a budget). */
  reserved: number;
  budget: BudgetState | undefined;
}

function newState(s: Scope): ScopeState {
  return {
    scope: s,
    rpm: s.rpm ? new RateWindow() : undefined,
    tpm: s.tpm ? new RateWindow() : undefined,
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

export class MemoryStore implements Store {
  readonly name = 'memory';
  readonly namesReservations = false;
  readonly degraded = false;
  readonly pendingOps = 0;
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
   * rebuilt: a new rpm or tpm keeps the window (its buckets do not depend on the limit), a new
   * budget period starts a fresh spend, a removed limit drops its state. Returns the ids of
   * the scopes carried over.
   */
  adopt(prev: MemoryStore): Set<string> {
    const old = new Map(prev.scopes.map((s) => [s.id, prev.states[s.slot]!]));
    const carried = new Set<string>();
    for (const s of this.scopes) {
      const st = old.get(s.id);
      if (!st) continue;
      this.reconfigure(st, s, prev.thresholds);
      this.states[s.slot] = st;
      carried.add(s.id);
    }
    prev.successor = this;
    return carried;
  }

  private reconfigure(st: ScopeState, s: Scope, oldThresholds: readonly number[]): void {
    // A window does not depend on the limit: a changed rpm / tpm keeps its buckets.
    if (!s.rpm) st.rpm = undefined;
    else st.rpm ??= new RateWindow();
    if (!s.tpm) st.tpm = undefined;
    else st.tpm ??= new RateWindow();
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
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- a walk down the successor chain starts here
    let m: MemoryStore = this;
    while (m.successor) m = m.successor;
    return m;
  }

  admit(r: Reservation): Verdict {
    const v = newVerdict();
    const now = this.mono();
    const sec = Math.floor(now / BUCKET_MS);
    const wall = this.wall();
    const scopes = r.scopes;
    // Pass 1: check every scope (and gather the tightest remaining for the headers). Limits
    // come from the state's own configuration (st.scope: the same as s unless a reload
    // reconfigured the state after this store was replaced).
    for (let i = 0; i < scopes.length; i++) {
      const st = this.states[scopes[i]!.slot]!;
      const c = st.scope;
      const rpm = st.rpm;
      if (rpm) {
        rpm.advance(sec);
        const rem = c.rpm - rpm.sum - 1;
        if (v.reqLimit < 0 || rem < v.reqRemaining) {
          v.reqLimit = c.rpm;
          v.reqRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'rpm', rpm.retryAfter(now, 1, c.rpm));
      }
      const tpm = st.tpm;
      if (tpm) {
        tpm.advance(sec);
        const rem = c.tpm - tpm.sum - r.tokens;
        if (v.tokLimit < 0 || rem < v.tokRemaining) {
          v.tokLimit = c.tpm;
          v.tokRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'tpm', tpm.retryAfter(now, r.tokens, c.tpm));
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
    // Pass 2: reserve in every scope. Settle finds the tokens by second: the windows that
    // existed now (serial <= gen) got them in bucket `sec`.
    for (let i = 0; i < scopes.length; i++) {
      const st = this.states[scopes[i]!.slot]!;
      st.rpm?.add(sec, 1);
      st.tpm?.add(sec, r.tokens);
      st.inUse++;
      st.reserved += r.nano;
    }
    r.bucket = sec;
    r.gen = windowSerial;
    return v;
  }

  /** Frees the reservation and commits the real usage (a non-finite one commits the reservation instead). Never throws. */
  settle(r: Reservation, given: Usage): void {
    const u = settledUsage(r, given);
    const sec = r.bucket ?? -Infinity;
    const gen = r.gen ?? 0;
    let wall = 0;
    let owner: MemoryStore | undefined;
    const scopes = r.scopes;
    for (let i = 0; i < scopes.length; i++) {
      const st = this.states[scopes[i]!.slot]!;
      // A window created since (a reload added the limit) never counted this request.
      const tpm = st.tpm;
      if (tpm && tpm.serial <= gen) tpm.adjust(sec, r.tokens, u.tokens);
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
    const sec = Math.floor(this.mono() / BUCKET_MS);
    const wall = this.wall();
    return this.scopes.map((s) => {
      const st = this.states[s.slot]!;
      st.rpm?.advance(sec);
      st.tpm?.advance(sec);
      st.budget?.roll(st.scope, this.clock, wall);
      return {
        scope: s,
        rpmUsed: st.rpm ? st.rpm.sum : -1,
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

  ready(): boolean {
    return true;
  }

  /** Nothing to close: the state file, when there is one, is the engine's. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Overwrites the current period's spend of budgets (fallback seeding, state file load). */
  setSpent(s: Scope, periodId: string, spentNano: number, alerted: readonly number[] = []): boolean {
    const st = this.states[s.slot];
    const b = st?.budget;
    if (!b || !isAmount(spentNano)) return false;
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
