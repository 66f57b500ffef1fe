// Group commit of the Redis store's settles, which nobody waits for: one goes out at once when
// no settle script is in flight; the ones that come meanwhile wait for its reply and then go
// out together, as one script. With Redis away (or a replay in progress) operations queue, in
// order, and are replayed MAX_BATCH to a script once it is back (every operation is
// idempotent: `first` tells the script whether it may already have run).
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { LeaseFlush, QuotaLease } from './lease.js';
import { StoreUnavailable, type Reservation, type Usage } from './store.js';

/** After a failure, retry the queue this long later. */
export const BACKOFF_MS = 1_000;
const MAX_PENDING = 100_000;
/** Settles per script: bounds how long one script keeps Redis busy (each op is ~10-20 commands). */
export const MAX_BATCH = 128;

export const enum Mode {
  Settle = 1,
  Cancel = 2,
  Spend = 3,
  /** A quota lease's flush (lease.ts): `r` names the lease and its one scope. */
  Lease = 4,
}

export interface PendingOp {
  mode: Mode;
  r: Reservation;
  u: Usage;
  /** Wall-clock ms the request ended: the period its spend belongs to. */
  at: number;
  first: boolean;
  /** Mode.Lease: the lease (absent when undoing a grant whose reply was lost) and its flush, frozen when first sent. */
  lease?: QuotaLease | undefined;
  flush?: LeaseFlush | undefined;
}

export interface SettleBatchDeps {
  /** Runs the operations as one script, applied in order (throws StoreUnavailable when it could not). */
  exec: (ops: readonly PendingOp[]) => Promise<void>;
  /** Whether the store can take a command now. */
  available: () => boolean;
  logger: Logger;
  metrics: Metrics;
}

export class SettleBatch {
  private pending: PendingOp[] = [];
  /** Settles waiting for the settle script in flight to answer; then they go out as one. */
  private batch: PendingOp[] = [];
  /** Settle scripts sent and not answered yet (close() waits for them). */
  private readonly inflight = new Set<Promise<void>>();
  private draining = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly d: SettleBatchDeps) {}

  /** Operations queued for a replay. */
  get pendingOps(): number {
    return this.pending.length;
  }

  /** Operations not written to the store yet (queued or waiting for a batch). */
  get unwritten(): number {
    return this.pending.length + this.batch.length;
  }

  /** Whether a drain now has anything to write or wait for. */
  get drainable(): boolean {
    return this.batch.length > 0 || this.inflight.size > 0 || (this.pending.length > 0 && this.d.available());
  }

  submit(op: PendingOp): void {
    // Behind a replay in progress, or with Redis away: queue (in order).
    if (this.pending.length > 0 || this.draining || !this.d.available()) {
      if (!this.d.available()) this.countFailure(op);
      this.enqueue(op);
      return;
    }
    this.batch.push(op);
    // Nothing in flight: go now (no added delay when idle; ioredis still joins it to this
    // turn's pipeline). Otherwise wait for the reply (see send()), up to a full batch.
    if (this.inflight.size === 0 || this.batch.length >= MAX_BATCH) this.flushBatch();
  }

  private countFailure(op: PendingOp): void {
    this.d.metrics.storeErrors.inc({ store: 'redis', op: op.mode === Mode.Spend ? 'reconcile' : 'settle' });
  }

  /** Sends the settles waiting, as one script. */
  private flushBatch(): void {
    const ops = this.batch;
    if (ops.length === 0) return;
    this.batch = [];
    this.send(ops);
  }

  private send(ops: PendingOp[]): void {
    if (this.pending.length > 0 || this.draining || !this.d.available()) {
      for (const op of ops) {
        if (!this.d.available()) this.countFailure(op);
        this.enqueue(op);
      }
      return;
    }
    const p: Promise<void> = this.d
      .exec(ops)
      .catch((e: unknown) => {
        const maybe = e instanceof StoreUnavailable && e.maybeApplied;
        for (const op of ops) {
          this.countFailure(op);
          if (maybe) op.first = false;
          this.enqueue(op);
        }
      })
      .finally(() => {
        this.inflight.delete(p);
        // The settles that came while this one was in flight (queued instead if it failed).
        this.flushBatch();
      });
    this.inflight.add(p);
  }

  /** Queues an operation for the next replay. */
  enqueue(op: PendingOp): void {
    if (this.closed) return;
    if (this.pending.length >= MAX_PENDING) {
      // The oldest settle goes (its reservation's expiry frees it); a lease's flush is kept,
      // since the lease sends nothing more until it is written.
      const i = this.pending.findIndex((o) => o.mode !== Mode.Lease);
      const dropped = this.pending.splice(Math.max(i, 0), 1)[0]!;
      if (dropped.lease) dropped.lease.queued = false;
      this.d.logger.error(
        { store: 'redis', reservation: dropped.r.id },
        'too many operations waiting for the state store: dropping the oldest (its lease will expire)',
      );
    }
    this.pending.push(op);
    this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.drain();
    }, BACKOFF_MS);
    this.retryTimer.unref();
  }

  /**
   * Sends the settles waiting now, then replays queued operations in order, MAX_BATCH per
   * script, stopping at the first failure.
   */
  async drain(): Promise<void> {
    this.flushBatch();
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.pending.length > 0 && this.d.available()) {
        // Out of the queue while in flight (enqueue may drop the oldest when full), back in front on failure.
        const ops = this.pending.splice(0, MAX_BATCH);
        try {
          await this.d.exec(ops);
        } catch (e) {
          this.d.metrics.storeErrors.inc({ store: 'redis', op: 'reconcile' });
          if (e instanceof StoreUnavailable && e.maybeApplied) for (const op of ops) op.first = false;
          this.pending.unshift(...ops);
          break;
        }
      }
    } finally {
      this.draining = false;
      if (this.pending.length > 0) this.scheduleDrain();
    }
    // A reply may submit more (a lease's next flush waits for the one before it): wait for those too.
    while (this.inflight.size > 0) await Promise.all(this.inflight);
  }

  /** Stops the replay timer; `final` also stops queueing (what is not written then expires with its lease). */
  stop(final: boolean): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (final) this.closed = true;
  }
}
