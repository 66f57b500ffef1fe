// Redis with a local fallback (state.on_store_error: open). While Redis cannot answer, admits
// go to a local memory store seeded with the last spend Redis reported, and the spend made
// there is added to Redis once it is back (RedisStore.addSpend). The fallback counts spend only
// to keep local budgets honest; alerts come from Redis.
import type { Logger } from '../telemetry/logger.js';
import type { MemoryStore } from './memory.js';
import type { RedisStore } from './redis.js';
import type { Scope } from './scopes.js';
import { StoreUnavailable, type Reservation, type ScopeUsage, type Store, type Usage, type Verdict } from './store.js';

export class DegradingStore implements Store {
  readonly name = 'redis';
  readonly namesReservations = true;
  /** Admitting against the fallback since Redis last failed (until it is ready again). */
  private fallingBack = false;

  constructor(
    readonly redis: RedisStore,
    /** The fallback; a reload's next store adopts what it holds in flight. */
    readonly local: MemoryStore,
    private readonly logger: Logger,
  ) {
    redis.onReady = () => (this.fallingBack = false);
  }

  get degraded(): boolean {
    return this.fallingBack || !this.redis.available;
  }

  get pendingOps(): number {
    return this.redis.pendingOps;
  }

  /** Synchronous where Redis' answer is (an admit against quota leases). */
  admit(r: Reservation): Verdict | Promise<Verdict> {
    const v = this.redis.admit(r);
    if (!(v instanceof Promise)) return v;
    return v.catch((e: unknown) => {
      if (!(e instanceof StoreUnavailable)) throw e;
      return this.admitLocally(r);
    });
  }

  private admitLocally(r: Reservation): Verdict {
    if (!this.fallingBack) {
      this.fallingBack = true;
      for (const [scope, s] of this.redis.lastSpent) this.local.setSpent(scope, s.periodId, s.nano);
      this.logger.warn({ store: 'redis' }, 'state store unreachable: admitting against local limits (on_store_error: open)');
    }
    r.fallback = true;
    return this.local.admit(r);
  }

  settle(r: Reservation, u: Usage): void {
    if (!r.fallback) return this.redis.settle(r, u);
    this.local.settle(r, u);
    this.redis.addSpend(r, u);
  }

  /** Redis' usage plus what the fallback holds in flight. */
  async usage(): Promise<ScopeUsage[]> {
    const shared = await this.redis.usage();
    const mine = this.local.usage();
    shared.forEach((u, i) => {
      const m = mine[i]!;
      if (u.reservedNano >= 0) u.reservedNano += m.reservedNano;
      if (u.inUse >= 0) u.inUse += m.inUse;
    });
    return shared;
  }

  async resetBudget(s: Scope): Promise<number> {
    const before = await this.redis.resetBudget(s);
    this.local.resetBudget(s);
    return before;
  }

  /** The fallback admits: never unready for the store. */
  ready(): boolean {
    return true;
  }

  close(): Promise<void> {
    return this.redis.close();
  }
}
