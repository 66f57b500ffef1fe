// The in-process store: exact sliding-window logs for rpm and tpm, a counter for
// concurrency, spend + in-flight reservations per budget. Node runs admit() to the end
// without yielding, so "check every scope, then reserve in every scope" is atomic here.
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
    const x = new TokenEntry(now, tokens);
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
  reserved = 0;
  /** Bit i set: threshold i has fired this period. */
  fired = 0;

  /** Moves to the period containing `now`; a new period starts with no spend and no alerts. */
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
  rpm: RequestLog | undefined;
  tpm: TokenLog | undefined;
  inUse: number;
  budget: BudgetState | undefined;
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

  constructor(
    private readonly scopes: readonly Scope[],
    private readonly thresholds: readonly number[],
    private readonly onSpend: SpendListener | undefined,
    /** Monotonic ms for rate windows; wall-clock ms for budget periods. */
    private readonly mono: () => number = () => performance.now(),
    private readonly wall: () => number = () => Date.now(),
  ) {
    this.states = scopes.map((s) => ({
      rpm: s.rpm ? new RequestLog(s.rpm) : undefined,
      tpm: s.tpm ? new TokenLog() : undefined,
      inUse: 0,
      budget: s.budget ? new BudgetState() : undefined,
    }));
  }

  admit(r: Reservation): Verdict {
    const v = newVerdict();
    const now = this.mono();
    const wall = this.wall();
    const scopes = r.scopes;
    // Pass 1: check every scope (and gather the tightest remaining for the headers).
    for (let i = 0; i < scopes.length; i++) {
      const s = scopes[i]!;
      const st = this.states[s.slot]!;
      if (st.rpm) {
        st.rpm.trim(now);
        const rem = s.rpm - st.rpm.count - 1;
        if (v.reqLimit < 0 || rem < v.reqRemaining) {
          v.reqLimit = s.rpm;
          v.reqRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'rpm', st.rpm.retryAfter(now));
      }
      if (st.tpm) {
        st.tpm.trim(now);
        const rem = s.tpm - st.tpm.sum - r.tokens;
        if (v.tokLimit < 0 || rem < v.tokRemaining) {
          v.tokLimit = s.tpm;
          v.tokRemaining = rem;
        }
        if (rem < 0 && v.ok) refuse(v, i, 'tpm', st.tpm.retryAfter(now, r.tokens, s.tpm));
      }
      if (s.concurrency && st.inUse >= s.concurrency && v.ok) refuse(v, i, 'concurrency', CONCURRENCY_RETRY_MS);
      const b = st.budget;
      if (b) {
        b.roll(s, this.clock, wall);
        if (b.spent + b.reserved + r.nano > s.budget!.nano && v.ok) {
          refuse(v, i, 'budget', -1);
          v.spentNano = b.spent;
          v.reservedNano = b.reserved;
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
      if (s.concurrency) st.inUse++;
      if (st.budget) st.budget.reserved += r.nano;
    }
    r.handle = entries;
    return v;
  }

  /** Frees the reservation and commits the real usage. Never throws. */
  settle(r: Reservation, u: Usage): void {
    const entries = r.handle as TokenEntry[] | undefined;
    let t = 0;
    let wall = 0;
    for (const s of r.scopes) {
      const st = this.states[s.slot]!;
      if (st.tpm && entries) st.tpm.adjust(entries[t++]!, u.tokens);
      if (s.concurrency) st.inUse = Math.max(0, st.inUse - 1);
      const b = st.budget;
      if (!b) continue;
      b.reserved = Math.max(0, b.reserved - r.nano);
      if (u.costNano <= 0) continue;
      wall ||= this.wall();
      b.roll(s, this.clock, wall);
      b.spent += u.costNano;
      this.dirty = true;
      this.afterSpend(s, b);
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
      st.budget?.roll(s, this.clock, wall);
      return {
        scope: s,
        rpmUsed: st.rpm ? st.rpm.count : -1,
        tpmUsed: st.tpm ? st.tpm.sum : -1,
        inUse: s.concurrency ? st.inUse : -1,
        spentNano: st.budget ? st.budget.spent : -1,
        reservedNano: st.budget ? st.budget.reserved : -1,
        period: st.budget ? { id: st.budget.periodId, start: st.budget.start, end: st.budget.end } : undefined,
      };
    });
  }

  /** Zeroes a budget's spend (and its alerts) for the current period; returns the spend it had. */
  resetBudget(s: Scope): number {
    const b = this.states[s.slot]?.budget;
    if (!b) return 0;
    b.roll(s, this.clock, this.wall());
    const before = b.spent;
    b.spent = 0;
    b.fired = 0;
    this.dirty = true;
    this.onSpend?.(s, 0, NONE);
    return before;
  }

  /** Overwrites the current period's spend of budgets (fallback seeding, state file load). */
  setSpent(s: Scope, periodId: string, spentNano: number, alerted: readonly number[] = []): boolean {
    const b = this.states[s.slot]?.budget;
    if (!b) return false;
    b.roll(s, this.clock, this.wall());
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
      const b = this.states[s.slot]!.budget;
      if (!b) continue;
      b.roll(s, this.clock, wall);
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

function refuse(v: Verdict, i: number, limit: Verdict['limit'], retryAfterMs: number): void {
  v.ok = false;
  v.refusedAt = i;
  v.limit = limit;
  v.retryAfterMs = retryAfterMs;
}
