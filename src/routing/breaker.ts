// One circuit breaker per deployment: a rolling window of outcomes in fixed time buckets
// (a ring, never a growing array), and the closed → open → half-open → closed machine.
// Pure logic with an injected clock (every method takes `now` in ms), so the unit tests
// drive it with a fake one. Every outcome is O(1): one bucket increment, one comparison.
//
//   closed ──(≥ min_requests in window and error rate ≥ error_rate)──▶ open
//   open ──(cooldown elapsed; checked lazily when traffic or the admin view asks)──▶ half_open
//   half_open ──(half_open_probes probes all succeed)──▶ closed (window cleared)
//   half_open ──(any probe fails)──▶ open, cooldown = cooldown_s × consecutive openings ≤ max_cooldown_s
//
// Cooldown growth follows Envoy's outlier ejection time (base × ejections, capped). The count
// of consecutive openings is forgotten once the breaker has stayed closed for max_cooldown_s.
import type { CircuitBreakerConfig } from '../config/schema.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

/** llm_gateway_circuit_state values. */
export const STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * What one upstream attempt means for its deployment. `neutral` is neither health nor
 * sickness (the client's own 4xx, the client leaving, our own deadline): it only frees a probe slot.
 */
export type Outcome = 'success' | 'local_error' | 'status_error' | 'neutral';

export type TransitionReason = 'error_rate' | 'cooldown_elapsed' | 'probes_succeeded' | 'probe_failed' | 'forced';

export interface Transition {
  from: CircuitState;
  to: CircuitState;
  reason: TransitionReason;
  /** Window error rate when it happened (0..1). */
  errorRate: number;
  requests: number;
  localErrors: number;
  statusErrors: number;
  /** The cooldown now running (open), else 0. */
  cooldownMs: number;
  openings: number;
}

/** The right to send one request through a breaker; handed back with its outcome. */
export interface Permit {
  readonly probe: boolean;
  /** Breaker generation at grant time: probe results from an earlier period are ignored. */
  readonly gen: number;
  settled: boolean;
}

/** Outcome counts over the last window_s, in buckets; sums kept incrementally. */
export class RollingWindow {
  readonly buckets: number;
  readonly bucketMs: number;
  private readonly total: Uint32Array;
  private readonly local: Uint32Array;
  private readonly status: Uint32Array;
  /** Absolute index (floor(now / bucketMs)) of the newest bucket. */
  private head: number;
  requests = 0;
  localErrors = 0;
  statusErrors = 0;

  constructor(
    readonly windowMs: number,
    now: number,
  ) {
    // 1 s buckets for usual windows; 10..60 buckets so short test windows and long ones both work.
    this.buckets = Math.min(60, Math.max(10, Math.ceil(windowMs / 1000)));
    this.bucketMs = windowMs / this.buckets;
    this.total = new Uint32Array(this.buckets);
    this.local = new Uint32Array(this.buckets);
    this.status = new Uint32Array(this.buckets);
    this.head = Math.floor(now / this.bucketMs);
  }

  get errors(): number {
    return this.localErrors + this.statusErrors;
  }

  errorRate(now: number): number {
    this.advance(now);
    return this.requests === 0 ? 0 : this.errors / this.requests;
  }

  add(now: number, outcome: Exclude<Outcome, 'neutral'>): void {
    this.advance(now);
    const s = this.head % this.buckets;
    this.total[s]!++;
    this.requests++;
    if (outcome === 'local_error') {
      this.local[s]!++;
      this.localErrors++;
    } else if (outcome === 'status_error') {
      this.status[s]!++;
      this.statusErrors++;
    }
  }

  /** Expires the buckets that slid out of the window: at most `buckets` steps, amortised O(1). */
  advance(now: number): void {
    const idx = Math.floor(now / this.bucketMs);
    if (idx <= this.head) return;
    const steps = Math.min(idx - this.head, this.buckets);
    for (let i = 1; i <= steps; i++) {
      const s = (this.head + i) % this.buckets;
      this.requests -= this.total[s]!;
      this.localErrors -= this.local[s]!;
      this.statusErrors -= this.status[s]!;
      this.total[s] = 0;
      this.local[s] = 0;
      this.status[s] = 0;
    }
    this.head = idx;
  }

  reset(now: number): void {
    this.total.fill(0);
    this.local.fill(0);
    this.status.fill(0);
    this.requests = this.localErrors = this.statusErrors = 0;
    this.head = Math.floor(now / this.bucketMs);
  }
}

export class CircuitBreaker {
  state: CircuitState = 'closed';
  /** Held open by an operator: no probes until they close it. */
  forced = false;
  /** Consecutive openings; drives the cooldown. */
  openings = 0;
  cooldownMs = 0;
  openedAt = 0;
  window: RollingWindow;
  private closedAt = Number.NEGATIVE_INFINITY;
  private gen = 0;
  /** Probes granted in this half-open period (minus those released unused) and those that succeeded. */
  private probesGranted = 0;
  private probesOk = 0;
  private lastProbeAt = 0;

  constructor(
    private cfg: CircuitBreakerConfig,
    now: number,
    public onTransition: (t: Transition) => void = () => {},
  ) {
    this.window = new RollingWindow(cfg.window_s * 1000, now);
  }

  get config(): CircuitBreakerConfig {
    return this.cfg;
  }

  /** New settings after a policy reload; state and openings are kept, the window only if its length is unchanged. */
  reconfigure(cfg: CircuitBreakerConfig, now: number): void {
    if (cfg.window_s !== this.cfg.window_s) this.window = new RollingWindow(cfg.window_s * 1000, now);
    this.cfg = cfg;
  }

  /** Applies the timed open → half-open move; returns the current state. */
  refresh(now: number): CircuitState {
    if (this.state === 'open' && !this.forced && now >= this.openedAt + this.cooldownMs) this.halfOpen(now);
    return this.state;
  }

  /** Would a request be let through now? (No side effect but the timed transition.) */
  admits(now: number): boolean {
    switch (this.refresh(now)) {
      case 'closed':
        return true;
      case 'open':
        return false;
      case 'half_open':
        // A probe whose outcome never came back (should not happen) must not wedge the breaker.
        if (this.probesGranted >= this.cfg.half_open_probes && now - this.lastProbeAt > this.staleProbeMs()) {
          this.probesGranted = this.probesOk;
        }
        return this.probesGranted < this.cfg.half_open_probes;
    }
  }

  /** Takes the right to send one request, or undefined when the breaker refuses it. */
  acquire(now: number): Permit | undefined {
    if (!this.admits(now)) return undefined;
    if (this.state !== 'half_open') return { probe: false, gen: this.gen, settled: false };
    this.probesGranted++;
    this.lastProbeAt = now;
    return { probe: true, gen: this.gen, settled: false };
  }

  /** The outcome of a permitted request. Each permit is settled once; later calls are ignored. */
  record(permit: Permit, outcome: Outcome, now: number): void {
    if (permit.settled) return;
    permit.settled = true;
    const current = permit.probe && permit.gen === this.gen && this.state === 'half_open';
    if (outcome === 'neutral') {
      if (current) this.probesGranted--;
      return;
    }
    this.window.add(now, outcome);
    if (current) {
      if (outcome !== 'success') this.open(now, 'probe_failed');
      else if (++this.probesOk >= this.cfg.half_open_probes) this.close(now, 'probes_succeeded');
      return;
    }
    if (this.state !== 'closed' || outcome === 'success') return;
    const w = this.window;
    if (w.requests >= this.cfg.min_requests && w.errors >= this.cfg.error_rate * w.requests) this.open(now, 'error_rate');
  }

  /** Operator override: 'open' holds it open (no probes) until forced closed; 'closed' starts afresh. */
  force(to: 'open' | 'closed', now: number): void {
    if (to === 'open') {
      this.forced = true;
      if (this.state !== 'open') this.open(now, 'forced');
      return;
    }
    this.forced = false;
    this.openings = 0;
    if (this.state !== 'closed') this.close(now, 'forced');
    else this.window.reset(now);
  }

  /** Ms until the next probe may go (open, not forced); 0 while probing; undefined when closed or held open. */
  nextProbeInMs(now: number): number | undefined {
    const state = this.refresh(now);
    if (state === 'half_open') return 0;
    if (state === 'open' && !this.forced) return Math.max(0, this.openedAt + this.cooldownMs - now);
    return undefined;
  }

  private staleProbeMs(): number {
    return Math.max(60_000, this.cfg.max_cooldown_s * 1000);
  }

  private open(now: number, reason: TransitionReason): void {
    const from = this.state;
    if (reason !== 'forced') {
      // Consecutive openings: forgotten after a quiet (closed) max_cooldown_s.
      if (from === 'closed' && now - this.closedAt >= this.cfg.max_cooldown_s * 1000) this.openings = 0;
      this.openings++;
      this.cooldownMs = Math.min(this.cfg.cooldown_s * this.openings, this.cfg.max_cooldown_s) * 1000;
    } else this.cooldownMs = 0;
    this.state = 'open';
    this.openedAt = now;
    this.newPeriod();
    this.emit(from, reason, now);
  }

  private halfOpen(now: number): void {
    this.state = 'half_open';
    this.newPeriod();
    this.emit('open', 'cooldown_elapsed', now);
  }

  private close(now: number, reason: TransitionReason): void {
    const from = this.state;
    this.state = 'closed';
    this.closedAt = now;
    this.cooldownMs = 0;
    this.newPeriod();
    this.emit(from, reason, now);
    // The errors that opened it are history: a fresh window after the emit (which reports them).
    this.window.reset(now);
  }

  private newPeriod(): void {
    this.gen++;
    this.probesGranted = 0;
    this.probesOk = 0;
  }

  private emit(from: CircuitState, reason: TransitionReason, now: number): void {
    const w = this.window;
    this.onTransition({
      from,
      to: this.state,
      reason,
      errorRate: w.errorRate(now),
      requests: w.requests,
      localErrors: w.localErrors,
      statusErrors: w.statusErrors,
      cooldownMs: this.cooldownMs,
      openings: this.openings,
    });
  }
}
