// Admission: rate limits (rpm, tpm, concurrency) and budgets for every scope that applies to
// a request (key → user → team → model → global). admit() checks all of them and reserves
// in all of them, atomically, or refuses naming the first scope that said no; the ticket's
// settle() commits the real usage and frees the rest, exactly once.
//
//   store    | where state lives                     | atomic by
//   ---------+---------------------------------------+-------------------------------------
//   memory   | this process (+ state.file for spend)  | a synchronous check-then-reserve
//   redis    | Redis, shared by the fleet             | one Lua script per admit / settle
//
// With Redis unreachable, state.on_store_error picks: `open` admits against a local memory
// store (seeded with the last spend seen) and writes its spend to Redis once it is back (the
// DegradingStore); `closed` answers 503 and reports not-ready. The engine talks to one Store.
//
// A policy reload builds a new engine from the old one (createAdmission(…, previous)): the
// memory store adopts the old store's per-scope state (rate windows, concurrency, spend), and
// Redis state is shared by construction (keys are named by scope). The old engine keeps
// settling the tickets it issued, then retire() closes it.
import { randomBytes } from 'node:crypto';
import type { Policies } from '../config/schema.js';
import { errors, type GatewayError } from '../errors.js';
import { Metrics } from '../telemetry/metrics.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { BudgetAlerts } from './alerts.js';
import { DegradingStore } from './degrading.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import { StateFile, checkStateFile } from './statefile.js';
import { ScopeTable, fromNano, toNano, type Scope } from './scopes.js';
import {
  StoreUnavailable,
  clampAmount,
  isAmount,
  type Reservation,
  type ScopeUsage,
  type Store,
  type Usage,
  type Verdict,
} from './store.js';
import type {
  Admission,
  AdmissionAdmin,
  AdmissionRequest,
  BudgetView,
  LimitsReport,
  ResetReport,
  SettledUsage,
  SpendReport,
  StoreStatus,
  Ticket,
} from './types.js';

export type {
  Admission,
  AdmissionAdmin,
  AdmissionRequest,
  Ticket,
  SettledUsage,
  SpendReport,
  LimitsReport,
  ResetReport,
  BudgetView,
} from './types.js';
export { ScopeTable } from './scopes.js';

export interface AdmissionDeps {
  metrics?: Metrics;
  logger?: Logger;
}

const NO_HEADERS: Record<string, string> = Object.freeze({});
const OPEN_TICKET: Ticket = { headers: NO_HEADERS, settle: () => {} };
/** How long a retired engine waits for its tickets to settle before closing anyway (streams can be long). */
export const RETIRE_MAX_MS = 10 * 60_000;

/**
 * Builds admission for a policy. Without any limit or budget it is a no-op that touches no
 * store. With `previous` (a reload), state carries over for scopes that still exist; call
 * `previous.retire()` once the new admission serves.
 */
export function createAdmission(policies?: Policies, deps: AdmissionDeps = {}, previous?: Admission): Admission {
  const table = policies && new ScopeTable(policies);
  const metrics = deps.metrics ?? new Metrics({ defaultMetrics: false });
  const prev = previous instanceof AdmissionEngine ? previous : undefined;
  if (prev) prev.dropGauges(table, metrics);
  if (!policies || !table || table.empty) {
    const store = policies?.state.store ?? 'memory';
    return {
      admit: () => OPEN_TICKET,
      ready: () => true,
      close: async () => {},
      retire: async () => {},
      admin: emptyAdmin(store),
    };
  }
  const logger = deps.logger ?? createLogger();
  return new AdmissionEngine(policies, table, metrics, logger, prev && prev.carriesTo(policies, logger) ? prev : undefined);
}

class LiveTicket implements Ticket {
  private settled = false;
  constructor(
    readonly headers: Record<string, string>,
    private readonly engine: AdmissionEngine,
    private readonly r: Reservation,
  ) {}

  settle(u: SettledUsage): void {
    if (this.settled) return;
    this.settled = true;
    this.engine.settle(this.r, u);
  }
}

/** Waits for `p`, at most `ms` (an unref'd timer: it never keeps the process alive). */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (t = setTimeout(r, ms)).unref())]);
  clearTimeout(t);
}

class AdmissionEngine implements Admission {
  private readonly store: Store;
  private readonly file: StateFile | undefined;
  private readonly alerts: BudgetAlerts;
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private seq = 0;
  /** Tickets issued and not settled yet: a retired engine closes when they are all in. */
  private outstanding = 0;
  private allSettled: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private retiring: Promise<void> | undefined;
  readonly admin: AdmissionAdmin;

  constructor(
    private readonly policies: Policies,
    private readonly table: ScopeTable,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** The engine of the policy this one replaces, when its state carries over. */
    previous?: AdmissionEngine,
  ) {
    const state = policies.state;
    // The state file first: a file that cannot be used refuses this engine before it has any
    // effect (on a reload, on the engine it replaces).
    const saved = state.store === 'memory' && state.file ? checkStateFile(state.file, state.on_corrupt, logger, metrics) : undefined;
    const thresholds = [...new Set(policies.budget_alerts)].sort((a, b) => a - b);
    this.alerts = new BudgetAlerts(metrics, logger, policies.budget_webhook);
    this.alerts.init(table.budgets);
    if (state.store === 'redis') {
      const redis = new RedisStore({
        url: state.redis_url,
        prefix: state.redis_prefix,
        commandTimeoutMs: state.redis_timeout_ms,
        leasedQuota: state.leased_quota,
        scopes: table.all,
        thresholds,
        onSpend: this.alerts.onSpend,
        logger,
        metrics,
      });
      // The newest engine's store is the one that counts (a reload builds a new engine).
      metrics.storePendingOps = () => redis.pendingOps;
      if (state.on_store_error === 'closed') this.store = redis;
      else {
        // The fallback counts spend only to keep local budgets honest; alerts come from Redis.
        const local = new MemoryStore(table.all, thresholds, undefined);
        // Redis state is shared by key; only what the old fallback holds in flight is adopted.
        if (previous?.store instanceof DegradingStore) local.adopt(previous.store.local);
        this.store = new DegradingStore(redis, local, logger);
      }
    } else {
      const local = new MemoryStore(table.all, thresholds, this.alerts.onSpend);
      const carried = previous?.store instanceof MemoryStore ? local.adopt(previous.store) : new Set<string>();
      if (state.file) {
        this.file = new StateFile(state.file, state.flush_interval_ms, local, logger, metrics);
        // The file holds what the old engine had: only scopes new to this policy read it.
        this.file.restore(saved, table, (s) => !carried.has(s.id));
        if (previous?.file) this.file.takeOver(previous.file);
        if (carried.size) local.dirty = true; // write it soon (the path or the budgets may have changed)
        this.file.start();
      }
      for (const u of local.usage())
        if (u.scope.budget) this.metrics.budgetSpend.set({ scope: u.scope.kind, name: u.scope.name }, fromNano(u.spentNano));
      this.store = local;
    }
    this.admin = {
      spend: () => this.spendReport(),
      limits: () => this.limitsReport(),
      resetBudget: (scope, name) => this.resetBudget(scope, name),
    };
  }

  admit(req: AdmissionRequest): Ticket | Promise<Ticket> {
    const scopes = this.table.resolve(req.identity, req.route);
    if (!scopes) return OPEN_TICKET;
    // Every field set here, in one order: one object shape for every reservation.
    const r: Reservation = {
      id: '',
      scopes,
      tokens: clampAmount(req.promptTokens + req.maxOutputTokens),
      nano: clampAmount(toNano(req.worstCaseUsd)),
      bucket: -1,
      gen: 0,
      fallback: false,
      leased: undefined,
    };
    // Only a shared store names reservations (its entries, fleet-wide): the memory path builds no id.
    if (this.store.namesReservations) r.id = `${this.idPrefix}.${(++this.seq).toString(36)}`;
    // Outstanding from here: a retiring engine also waits for the admits still deciding.
    this.outstanding++;
    let v: Verdict | Promise<Verdict>;
    try {
      v = this.store.admit(r);
    } catch (e) {
      this.release();
      throw e;
    }
    return v instanceof Promise ? this.decideLater(r, v) : this.decide(r, v);
  }

  private async decideLater(r: Reservation, p: Promise<Verdict>): Promise<Ticket> {
    let v: Verdict;
    try {
      v = await p;
    } catch (e) {
      this.release();
      if (!(e instanceof StoreUnavailable)) throw e;
      throw errors.storeUnavailable(1);
    }
    return this.decide(r, v);
  }

  private decide(r: Reservation, v: Verdict): Ticket {
    if (!v.ok) {
      this.release();
      throw this.refusal(r, v);
    }
    return new LiveTicket(rateHeaders(v), this, r);
  }

  /** An admit refused or failed, or a ticket settled. */
  private release(): void {
    if (--this.outstanding === 0) this.allSettled?.();
  }

  settle(r: Reservation, su: SettledUsage): void {
    this.release();
    const u: Usage = { tokens: su.inputTokens + su.outputTokens, costNano: toNano(su.costUsd) };
    if (!isAmount(u.tokens) || !isAmount(u.costNano)) {
      // The stores commit the reservation instead (settledUsage): say so, it is a bug upstream of here.
      this.logger.error(
        { reservation: r.id || undefined, tokens: u.tokens, cost_nano: u.costNano },
        'admission settle: usage is not a finite amount, the reservation is committed instead',
      );
    }
    try {
      this.store.settle(r, u);
    } catch (e) {
      this.logger.error({ err: e, reservation: r.id || undefined, scopes: r.scopes.map((s) => s.id) }, 'admission settle failed');
    }
  }

  private refusal(r: Reservation, v: Verdict): GatewayError {
    const s = r.scopes[v.refusedAt]!;
    const limit = v.limit ?? 'rpm';
    this.metrics.rateLimited.inc({ scope: s.kind, limit });
    const headers = { ...rateHeaders(v) };
    const who = `${s.kind} '${s.name}'`;
    if (limit === 'budget') {
      headers['x-should-retry'] = 'false';
      const b = s.budget!;
      const reserved = v.reservedNano > 0 ? usd(v.reservedNano) : '';
      return errors.budgetExceeded({ who, spent: usd(v.spentNano), limit: b.usd, period: b.period, reserved, cost: usd(r.nano) }, headers);
    }
    const n = limit === 'rpm' ? s.rpm : limit === 'tpm' ? s.tpm : s.concurrency;
    const what = limit === 'rpm' ? 'requests per minute (rpm)' : limit === 'tpm' ? 'tokens per minute (tpm)' : 'concurrent requests';
    if (v.retryAfterMs < 0) {
      headers['x-should-retry'] = 'false';
      return errors.requestOverLimit(who, r.tokens, n, headers);
    }
    const ms = Math.max(1, Math.ceil(v.retryAfterMs));
    const secs = Math.ceil(ms / 1000);
    headers['retry-after'] = String(secs);
    headers['retry-after-ms'] = String(ms);
    return errors.rateLimited(who, what, n, limit === 'concurrency' ? 'a moment' : `${(ms / 1000).toFixed(3)}s`, headers);
  }

  ready(): boolean {
    return this.store.ready();
  }

  close(): Promise<void> {
    this.allSettled?.(); // a retire() waiting for tickets stops waiting
    return (this.closing ??= (async () => {
      this.alerts.close();
      await Promise.all([this.file?.close(), this.store.close()]);
    })());
  }

  /**
   * A reload replaced this engine: wait until every ticket it issued has settled (they still
   * settle through it: the Redis connection, the memory state shared with the new engine),
   * at most RETIRE_MAX_MS, then close.
   */
  retire(maxWaitMs = RETIRE_MAX_MS): Promise<void> {
    return (this.retiring ??= (async () => {
      if (this.outstanding > 0 && !this.closing) {
        await bounded(new Promise<void>((r) => (this.allSettled = r)), maxWaitMs);
        if (this.outstanding > 0)
          this.logger.warn({ unsettled: this.outstanding }, "closing the previous policy's admission with requests still unsettled");
      }
      await this.close();
    })());
  }

  /** Whether the state of this engine can carry over to an engine for `next` (same store). */
  carriesTo(next: Policies, logger: Logger): boolean {
    const a = this.policies.state;
    const b = next.state;
    if (a.store === b.store && (a.store === 'memory' || (a.redis_url === b.redis_url && a.redis_prefix === b.redis_prefix))) return true;
    logger.warn(
      { from: a.store, to: b.store },
      'state store changed: rate-limit windows and spend start from the new store (in-flight requests settle in the old one)',
    );
    return false;
  }

  /** Removes the budget gauges of budgets the next policy no longer has. */
  dropGauges(next: ScopeTable | undefined, metrics: Metrics): void {
    for (const s of this.table.budgets) {
      if (next?.find(s.kind, s.name)?.budget) continue;
      metrics.budgetLimit.remove({ scope: s.kind, name: s.name });
      metrics.budgetSpend.remove({ scope: s.kind, name: s.name });
    }
  }

  // ---- admin -------------------------------------------------------------------------

  private status(): StoreStatus {
    return { store: this.store.name, degraded: this.store.degraded, pending_ops: this.store.pendingOps };
  }

  /** Usage of every scope (with the Redis fallback: plus what it holds in flight). */
  private async usage(): Promise<ScopeUsage[]> {
    try {
      return await this.store.usage();
    } catch (e) {
      throw adminError(e);
    }
  }

  private async spendReport(): Promise<SpendReport> {
    const list = await this.usage();
    return { ...this.status(), budgets: list.filter((u) => u.scope.budget).map(budgetView) };
  }

  private async limitsReport(): Promise<LimitsReport> {
    const list = await this.usage();
    return {
      ...this.status(),
      scopes: list.map((u) => {
        const s = u.scope;
        const out: LimitsReport['scopes'][number] = { scope: s.kind, name: s.name };
        if (s.rpm) out.rpm = { limit: s.rpm, used: u.rpmUsed, remaining: Math.max(0, s.rpm - u.rpmUsed) };
        if (s.tpm) out.tpm = { limit: s.tpm, used: u.tpmUsed, remaining: Math.max(0, s.tpm - u.tpmUsed) };
        if (s.concurrency) out.concurrency = { limit: s.concurrency, in_use: u.inUse };
        if (s.budget) {
          const { scope: _s, name: _n, ...b } = budgetView(u);
          out.budget = b;
        }
        return out;
      }),
    };
  }

  private async resetBudget(kind: string, name: string): Promise<ResetReport> {
    const s = this.table.find(kind, name);
    if (!s?.budget) {
      throw errors.budgetNotFound(kind, name);
    }
    let before: number;
    try {
      before = await this.store.resetBudget(s);
    } catch (e) {
      throw adminError(e);
    }
    void this.file?.flush();
    this.logger.info({ scope: s.kind, name: s.name, previous_spend: fromNano(before) }, 'budget reset');
    return { ok: true, scope: s.kind, name: s.name, period: s.budget.period, previous_spend_usd: fromNano(before) };
  }
}

/** A store failure on an admin call: 503 (anything else is a bug and stays what it is). */
function adminError(e: unknown): unknown {
  if (!(e instanceof StoreUnavailable)) return e;
  return errors.storeUnavailable();
}

/** x-ratelimit-* headers from the tightest rpm and tpm scopes. */
function rateHeaders(v: Verdict): Record<string, string> {
  if (v.reqLimit < 0 && v.tokLimit < 0) return NO_HEADERS;
  const h: Record<string, string> = {};
  if (v.reqLimit >= 0) {
    h['x-ratelimit-limit-requests'] = String(v.reqLimit);
    h['x-ratelimit-remaining-requests'] = String(Math.max(0, v.reqRemaining));
  }
  if (v.tokLimit >= 0) {
    h['x-ratelimit-limit-tokens'] = String(v.tokLimit);
    h['x-ratelimit-remaining-tokens'] = String(Math.max(0, v.tokRemaining));
  }
  return h;
}

const usd = (nano: number) => String(Math.round(nano / 1e3) / 1e6);

function budgetView(u: ScopeUsage): BudgetView {
  const s: Scope = u.scope;
  const b = s.budget!;
  const spent = Math.max(0, u.spentNano);
  const reserved = Math.max(0, u.reservedNano);
  const finite = (ms: number | undefined) => (ms !== undefined && Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : null);
  return {
    scope: s.kind,
    name: s.name,
    period: b.period,
    period_start: b.period === 'total' ? null : finite(u.period?.start),
    resets_at: b.period === 'total' ? null : finite(u.period?.end),
    limit_usd: b.usd,
    spend_usd: fromNano(spent),
    reserved_usd: fromNano(reserved),
    remaining_usd: fromNano(Math.max(0, b.nano - spent - reserved)),
  };
}

function emptyAdmin(store: 'memory' | 'redis'): AdmissionAdmin {
  const status: StoreStatus = { store, degraded: false, pending_ops: 0 };
  return {
    spend: () => Promise.resolve({ ...status, budgets: [] }),
    limits: () => Promise.resolve({ ...status, scopes: [] }),
    resetBudget: (scope, name) => Promise.reject(errors.budgetNotFound(scope, name)),
  };
}
