// Leased quota (state.leased_quota: true), the Redis store's fast path. Where a scope is busy
// at this gateway, the gateway takes a lease: a slice of what remains of each of the scope's
// limits (requests, tokens, slots, nano-USD), reserved in Redis by one script (LEASE in
// lua.ts) exactly as admits of that size would be. Requests whose every scope holds a lease
// with room are then admitted here, synchronously, with no round trip; their settles change
// the lease's local counters, and those changes go to Redis as one flush per lease in the
// group-committed settle batch. Everything else (a quiet scope, a lease without room, a
// limit too close to its end to slice) takes the per-request script as before.
//
// Why it stays exact: a slice is reserved before anything is admitted against it, so the
// fleet can never admit more than the limits, whatever the gateways do with their slices.
// A rate slice is counted in the current Redis second and the lease admits nothing once that
// second is over (its local deadline is computed from Redis' own clock, conservatively), so
// every request admitted against it is covered by the bucket for a full 60 s. The price:
// until a lease ends, its unused part is refused to the other gateways. Near a limit a slice
// is at most LEASE_FRACTION of what remains, so the slices shrink and then stop, and the last
// requests that fit go one by one as without leases.
import type { Scope } from './scopes.js';
import type { Reservation, Usage, Verdict } from './store.js';

/** A lease granted with less than this left of its second is not worth the script. */
export const LEASE_MIN_LEFT_MS = 100;
/** A slice takes at most this share of what remains of any limit. */
export const LEASE_FRACTION = 0.25;
/** Below this many requests a second for a scope (at this gateway) per-request admits are cheap enough. */
export const LEASE_MIN_RATE = 20;
/** A lease asks for this much more than the scope's recent rate (and concurrency), for its share of the second. */
const HEADROOM = 1.5;
/** Slots a lease asks for at least (before the scope's concurrency here is known). */
const MIN_SLOTS = 8;
/** Local deadline margin, for the two clocks' rates differing slightly over one second. */
const DEADLINE_MARGIN_MS = 10;
/**
 * Settles change a lease's counters; Redis hears of them at most this much later, many
 * settles to one flush (spend and token counts are that late to show, never to count: the
 * slice holds them reserved meanwhile). A lease that ends flushes at once: others may need
 * what it did not use.
 */
export const LEASE_FLUSH_MS = 50;

/** A lease's changes that Redis has not seen yet, frozen when the flush is first sent (replays send the same). */
export interface LeaseFlush {
  seq: number;
  reqDelta: number;
  tokDelta: number;
  /** Slots to free, as '3,5-9'; '*' undoes a grant whose reply was lost (Redis reads it from the lease's state hash). */
  freed: string;
  held: number;
  heldAfter: number;
  cost: number;
}

/** One scope's slice, admitted against until its Redis second ends. */
export class QuotaLease {
  /** What is left to admit against; Infinity where the scope has no such limit. */
  reqs: number;
  tokens: number;
  nano: number;
  /** Slots granted (Infinity: no concurrency limit) and handed out: a request takes a spare one, else slot `taken + 1`. */
  readonly slots: number;
  taken = 0;
  /** Slots their requests gave back while the lease admits: used again before it ends, not freed in Redis. */
  private readonly spare: number[] = [];
  ended = false;
  /** Requests admitted against it and not settled yet. */
  live = 0;
  // What Redis has not been told yet (see LeaseFlush).
  reqDelta = 0;
  tokDelta = 0;
  cost = 0;
  freed = '';
  /** Nano-USD this lease holds reserved in Redis now, and after the changes above. */
  held: number;
  heldAfter: number;
  seq = 0;
  /**
   * A flush of this lease is on its way and not acknowledged yet: the next one waits for it,
   * so flushes reach Redis in order (a replay after a failure keeps its place).
   */
  queued = false;
  /** It waits for the book's next flush tick. */
  ticking = false;
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly id: string,
    readonly scope: Scope,
    /** The Redis seconds its rpm and tpm counts went into (each ring's own head; flushes adjust those buckets). */
    readonly reqSecond: number,
    readonly tokSecond: number,
    /** performance.now() from which it admits nothing. */
    readonly deadline: number,
    grant: { reqs: number; tokens: number; slots: number; nano: number },
    /** Redis' rpm / tpm remaining after the grant (rate headers). */
    readonly reqRemaining: number,
    readonly tokRemaining: number,
  ) {
    const n = (x: number) => (x < 0 ? Infinity : x);
    this.reqs = n(grant.reqs);
    this.tokens = n(grant.tokens);
    this.slots = n(grant.slots);
    this.nano = n(grant.nano);
    this.held = this.heldAfter = Math.max(0, grant.nano);
  }

  /** Room for a request of this size: one request, a slot, these tokens and nano-USD, before the deadline. */
  fits(tokens: number, nano: number, now: number): boolean {
    return (
      !this.ended &&
      now < this.deadline &&
      this.reqs >= 1 &&
      this.tokens >= tokens &&
      (this.taken < this.slots || this.spare.length > 0) &&
      this.nano >= nano
    );
  }

  hasRoom(r: Reservation, now: number): boolean {
    return this.fits(r.tokens, r.nano, now);
  }

  get dirty(): boolean {
    return this.reqDelta !== 0 || this.tokDelta !== 0 || this.cost !== 0 || this.freed !== '' || this.held !== this.heldAfter;
  }

  private free(slots: string): void {
    this.freed = this.freed === '' ? slots : `${this.freed},${slots}`;
  }

  take(r: Reservation): number {
    this.reqs -= 1;
    this.tokens -= r.tokens;
    this.nano -= r.nano;
    this.live++;
    if (this.slots === Infinity) return 0;
    return this.spare.pop() ?? ++this.taken;
  }

  settle(r: Reservation, u: Usage, slot: number): void {
    this.live--;
    if (this.scope.tpm) this.tokDelta += u.tokens - r.tokens;
    if (this.scope.budget) {
      this.cost += u.costNano;
      this.heldAfter -= r.nano;
    }
    if (slot > 0) {
      if (this.ended) this.free(String(slot));
      else this.spare.push(slot);
    }
  }

  /** No more admits: what was not used goes back with the next flush. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    if (this.reqs !== Infinity) this.reqDelta -= this.reqs;
    if (this.tokens !== Infinity) this.tokDelta -= this.tokens;
    if (this.nano !== Infinity) this.heldAfter -= this.nano;
    if (this.spare.length > 0) this.free(this.spare.join(','));
    this.spare.length = 0;
    if (this.slots !== Infinity && this.taken < this.slots)
      this.free(this.taken + 1 === this.slots ? String(this.slots) : `${this.taken + 1}-${this.slots}`);
    this.reqs = this.tokens = this.nano = 0;
  }

  snapshot(): LeaseFlush {
    const f: LeaseFlush = {
      seq: ++this.seq,
      reqDelta: this.reqDelta,
      tokDelta: this.tokDelta,
      freed: this.freed,
      held: this.held,
      heldAfter: this.heldAfter,
      cost: this.cost,
    };
    this.reqDelta = this.tokDelta = this.cost = 0;
    this.freed = '';
    this.held = this.heldAfter;
    return f;
  }
}

/** What a lease asks for, per second (LEASE scales it to what is left of the second). */
export interface LeaseWant {
  reqs: number;
  /** Slots are used again within a lease: about the scope's peak concurrency here, not its rate. */
  slots: number;
  tokens: number;
  nano: number;
  /** The smallest useful slice: one average request. */
  minTokens: number;
  minNano: number;
}

export interface LeaseDeps {
  /** Runs LEASE for these scopes; answers with granted() or failed() for each, then resolves `acq`. */
  acquire(scopes: Scope[], wants: LeaseWant[], acq: { resolve(): void }): void;
  /** Puts a flush of this lease in the settle batch. */
  flush(l: QuotaLease): void;
}

/** Per scope at this gateway: its lease, and how busy it is. */
interface ScopeState {
  lease: QuotaLease | undefined;
  /** The acquisition in flight for this scope: requests that find no room wait for it (one round trip) rather than each sending a script. */
  acquiring: Acquisition | undefined;
  /** No acquisition before this (performance.now()): after a refusal, until the next second. */
  notBefore: number;
  windowStart: number;
  count: number;
  /** Requests a second in the previous window. */
  lastRate: number;
  avgTokens: number;
  avgNano: number;
  /** Requests admitted against this scope's leases and not settled; the most of them this window and the last. */
  live: number;
  peak: number;
  lastPeak: number;
}

/** One LEASE script in flight: settles when its grants (or its failure) are in. */
class Acquisition {
  readonly done: Promise<void>;
  resolve!: () => void;
  constructor() {
    this.done = new Promise((r) => (this.resolve = r));
  }
}

/** Per reservation admitted against leases: the lease and slot of each of its scopes, in order. */
export interface LeasedParts {
  leases: QuotaLease[];
  slots: number[];
}

export class LeaseBook {
  private readonly states: ScopeState[] = [];
  /** The store is closing: no new lease admits anything. */
  private closing = false;
  /** Leases with changes waiting for the flush tick. */
  private ticking: QuotaLease[] = [];
  private tick: NodeJS.Timeout | undefined;

  constructor(
    scopeCount: number,
    private readonly deps: LeaseDeps,
  ) {
    for (let i = 0; i < scopeCount; i++)
      this.states.push({
        lease: undefined,
        acquiring: undefined,
        notBefore: 0,
        windowStart: -Infinity,
        count: 0,
        lastRate: 0,
        avgTokens: 0,
        avgNano: 0,
        live: 0,
        peak: 0,
        lastPeak: 0,
      });
  }

  /**
   * Admits `r` against its scopes' leases if every one has room (filling `v`), else returns
   * undefined and, on a first try, asks for a lease for the busy scopes without a usable one.
   */
  admit(r: Reservation, v: Verdict, firstTry = true): LeasedParts | undefined {
    const now = performance.now();
    const scopes = r.scopes;
    let all = true;
    for (let i = 0; i < scopes.length; i++) {
      const st = this.states[scopes[i]!.slot]!;
      if (firstTry) this.noteDemand(st, now, r);
      if (!st.lease?.hasRoom(r, now)) all = false;
    }
    if (!all) {
      if (firstTry) this.acquireFor(r, now);
      return undefined;
    }
    const parts: LeasedParts = { leases: [], slots: [] };
    for (let i = 0; i < scopes.length; i++) {
      const s = scopes[i]!;
      const st = this.states[s.slot]!;
      const l = st.lease!;
      if (++st.live > st.peak) st.peak = st.live;
      parts.leases.push(l);
      parts.slots.push(l.take(r));
      if (s.rpm) {
        const left = l.reqRemaining + l.reqs;
        if (v.reqLimit < 0 || left < v.reqRemaining) {
          v.reqLimit = s.rpm;
          v.reqRemaining = left;
        }
      }
      if (s.tpm) {
        const left = l.tokRemaining + l.tokens;
        if (v.tokLimit < 0 || left < v.tokRemaining) {
          v.tokLimit = s.tpm;
          v.tokRemaining = left;
        }
      }
    }
    return parts;
  }

  settle(r: Reservation, parts: LeasedParts, u: Usage): void {
    for (let i = 0; i < parts.leases.length; i++) {
      const l = parts.leases[i]!;
      this.states[l.scope.slot]!.live--;
      l.settle(r, u, parts.slots[i]!);
      this.schedule(l);
    }
  }

  private noteDemand(st: ScopeState, now: number, r: Reservation): void {
    const elapsed = now - st.windowStart;
    if (elapsed >= 1_000) {
      st.lastRate = elapsed < 2_000 ? (st.count * 1_000) / elapsed : 0;
      st.windowStart = now;
      st.count = 0;
      st.lastPeak = st.peak;
      st.peak = st.live;
    }
    st.count++;
    st.avgTokens += (r.tokens - st.avgTokens) / 16;
    st.avgNano += (r.nano - st.avgNano) / 16;
  }

  private rate(st: ScopeState, now: number): number {
    return Math.max(st.lastRate, (st.count * 1_000) / Math.max(now - st.windowStart, 100));
  }

  private acquireFor(r: Reservation, now: number): void {
    let scopes: Scope[] | undefined;
    let wants: LeaseWant[] | undefined;
    let acq: Acquisition | undefined;
    if (this.closing) return;
    for (const s of r.scopes) {
      const st = this.states[s.slot]!;
      const l = st.lease;
      // A lease too small for this request but not for the average one is kept (the request goes by script).
      if ((l && l.fits(st.avgTokens, st.avgNano, now)) || st.acquiring || now < st.notBefore) continue;
      const rate = this.rate(st, now);
      if (rate < LEASE_MIN_RATE) continue;
      if (l) this.endLease(l);
      st.acquiring = acq ??= new Acquisition();
      const reqs = Math.ceil(rate * HEADROOM);
      (scopes ??= []).push(s);
      (wants ??= []).push({
        reqs,
        slots: Math.min(reqs, Math.ceil(Math.max(st.peak, st.lastPeak, MIN_SLOTS) * HEADROOM)),
        tokens: Math.ceil(reqs * st.avgTokens),
        nano: Math.ceil(reqs * st.avgNano),
        minTokens: Math.ceil(st.avgTokens),
        minNano: Math.ceil(st.avgNano),
      });
    }
    if (scopes) this.deps.acquire(scopes, wants!, acq!);
  }

  /** The acquisitions in flight for r's scopes, once they are all in; undefined if none. */
  pending(r: Reservation): Promise<unknown> | undefined {
    let one: Acquisition | undefined;
    let all: Promise<void>[] | undefined;
    for (const s of r.scopes) {
      const a = this.states[s.slot]!.acquiring;
      if (!a || a === one) continue;
      if (!one) one = a;
      else (all ??= [one.done]).push(a.done);
    }
    return all ? Promise.all(all) : one?.done;
  }

  /** LEASE answered: one grant per scope (not granted: all zero). `sentAt` is when it was sent, so the deadline is never late. */
  granted(scope: Scope, lease: QuotaLease | undefined, sentAt: number, leftMs: number): void {
    const st = this.states[scope.slot]!;
    st.acquiring = undefined;
    if (!lease) {
      st.notBefore = sentAt + leftMs;
      return;
    }
    if (this.closing) {
      // Granted while the store closes: everything goes back at once.
      this.endLease(lease);
      return;
    }
    if (st.lease) this.endLease(st.lease);
    st.lease = lease;
    lease.timer = setTimeout(() => this.endLease(lease), Math.max(0, lease.deadline - performance.now()));
    lease.timer.unref();
  }

  /** The deadline a lease granted with `leftMs` of its second left gets, if LEASE was sent at `sentAt`. */
  static deadline(sentAt: number, leftMs: number): number {
    return sentAt + leftMs - DEADLINE_MARGIN_MS;
  }

  /** LEASE failed: no acquisition for these scopes for a moment. */
  failed(scopes: readonly Scope[]): void {
    const until = performance.now() + 1_000;
    for (const s of scopes) {
      const st = this.states[s.slot]!;
      st.acquiring = undefined;
      st.notBefore = until;
    }
  }

  private endLease(l: QuotaLease): void {
    l.end();
    const st = this.states[l.scope.slot]!;
    if (st.lease === l) st.lease = undefined;
    this.flushNow(l);
  }

  private flushNow(l: QuotaLease): void {
    if (l.queued || !l.dirty) return;
    l.queued = true;
    this.deps.flush(l);
  }

  /** At the next flush tick. */
  private schedule(l: QuotaLease): void {
    if (l.ticking || l.queued) return;
    l.ticking = true;
    this.ticking.push(l);
    if (!this.tick) {
      this.tick = setTimeout(() => this.flushTicking(), LEASE_FLUSH_MS);
      this.tick.unref();
    }
  }

  private flushTicking(): void {
    this.tick = undefined;
    const list = this.ticking;
    this.ticking = [];
    for (const l of list) {
      l.ticking = false;
      this.flushNow(l);
    }
  }

  /** A flush of `l` was written: the changes made since may go. */
  flushed(l: QuotaLease): void {
    l.queued = false;
    if (!l.dirty) return;
    if (l.ended) this.flushNow(l);
    else this.schedule(l);
  }

  /** The store is closing: leases granted from now on are ended at once. */
  close(): void {
    this.closing = true;
  }

  /** Ends every lease and flushes every change (closing): what they hold unused goes back. */
  endAll(): void {
    this.closing = true;
    for (const st of this.states) if (st.lease) this.endLease(st.lease);
    clearTimeout(this.tick);
    this.flushTicking();
  }
}
