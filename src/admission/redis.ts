// The shared store: every operation is one Lua script (EVALSHA, EVAL on NOSCRIPT), so a
// fleet of gateways enforces one limit exactly. A dead Redis fails fast (no offline queue,
// no per-command retries, a command timeout); ioredis reconnects by itself and, once it
// is back, queued settles / cancels / fallback spend are replayed (all idempotent).
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { ADMIT, INSPECT, RESET, SETTLE } from './lua.js';
import { PeriodClock } from './periods.js';
import type { Scope } from './scopes.js';
import {
  CONCURRENCY_RETRY_MS,
  StoreUnavailable,
  newVerdict,
  type Reservation,
  type ScopeUsage,
  type SpendListener,
  type Usage,
  type Verdict,
} from './store.js';

/** How long a reservation holds its concurrency slot and budget reservation if its gateway never settles it. */
export const LEASE_MS = 15 * 60_000;
/** Spend hashes outlive their period by this much (then Redis drops them). */
const SPEND_RETENTION_MS = 8 * 86_400_000;
/** After a command failed on a live connection (timeout), go straight to the fallback this long. */
const BACKOFF_MS = 1_000;
const MAX_PENDING = 100_000;
const CONNECT_TIMEOUT_MS = 2_000;
const LIMIT_CODES = [undefined, 'rpm', 'tpm', 'concurrency', 'budget'] as const;

interface ScopeKeys {
  rpm?: string;
  tpm?: string;
  tpmSum?: string;
  conc?: string;
  res?: string;
  resSum?: string;
  spend?: string; // + period id
}

const enum Mode {
  Settle = 1,
  Cancel = 2,
  Spend = 3,
}

interface PendingOp {
  mode: Mode;
  r: Reservation;
  u: Usage;
  /** Wall-clock ms the request ended: the period its spend belongs to. */
  at: number;
  first: boolean;
}

class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}

const SCRIPTS = { admit: new Script(ADMIT), settle: new Script(SETTLE), inspect: new Script(INSPECT), reset: new Script(RESET) };

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  scopes: readonly Scope[];
  thresholds: readonly number[];
  onSpend: SpendListener;
  logger: Logger;
  metrics: Metrics;
  commandTimeoutMs?: number;
  /** Reservation lease (default LEASE_MS). */
  leaseMs?: number;
}

export class RedisStore {
  readonly name = 'redis';
  readonly redis: Redis;
  private readonly keys: ScopeKeys[];
  private readonly clock = new PeriodClock();
  private readonly thresholdArgs: string[];
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly metrics: Metrics;
  private pending: PendingOp[] = [];
  private draining = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private skipUntil = 0;
  private everReady = false;
  private readonly firstReady: Promise<void>;
  private downLogged = false;
  private lastFailureLog = -Infinity;
  private readonly startedAt = performance.now();
  private closed = false;
  /** Last spend seen per budget scope: seeds the local fallback when Redis goes away. */
  readonly lastSpent = new Map<Scope, { periodId: string; nano: number }>();
  /** Called each time the connection becomes ready (after the first time: a recovery). */
  onReady: (() => void) | undefined;

  constructor(private readonly o: RedisStoreOptions) {
    this.timeoutMs = o.commandTimeoutMs ?? 1_000;
    this.logger = o.logger;
    this.metrics = o.metrics;
    this.keys = o.scopes.map((s) => {
      const base = `${o.prefix}${s.kind}:${encodeURIComponent(s.name)}:`;
      const k: ScopeKeys = {};
      if (s.rpm) k.rpm = `${base}rpm`;
      if (s.tpm) {
        k.tpm = `${base}tpm`;
        k.tpmSum = `${base}tpm:sum`;
      }
      if (s.concurrency) k.conc = `${base}conc`;
      if (s.budget) {
        k.res = `${base}reserved`;
        k.resSum = `${base}reserved:sum`;
        k.spend = `${base}spend:`;
      }
      return k;
    });
    this.thresholdArgs = [String(o.thresholds.length), ...o.thresholds.map(String)];
    this.redis = new Redis(o.url, {
      // Fail fast instead of queueing while disconnected: the fallback (or a 503) answers now.
      enableOfflineQueue: false,
      // A command in flight when the connection drops is failed, not replayed: we replay it
      // ourselves, idempotently. (The command timeout is ours: see timed().)
      maxRetriesPerRequest: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(100 * times, 1_000),
      lazyConnect: false,
    });
    let resolveFirst!: () => void;
    this.firstReady = new Promise((r) => (resolveFirst = r));
    this.redis.on('ready', () => {
      this.skipUntil = 0;
      if (this.everReady || this.downLogged) this.logger.info({ store: 'redis' }, 'state store reachable again');
      this.downLogged = false;
      this.everReady = true;
      resolveFirst();
      this.onReady?.();
      void this.drain();
    });
    this.redis.on('error', (err: Error) => {
      if (this.downLogged || this.closed) return;
      this.downLogged = true;
      this.logger.warn({ store: 'redis', err: err.message }, 'state store unreachable');
    });
  }

  /** Connected and not backing off after a failure. */
  get available(): boolean {
    return this.redis.status === 'ready' && performance.now() >= this.skipUntil;
  }

  get pendingOps(): number {
    return this.pending.length;
  }

  /** Right after start, requests wait (up to the connect timeout) for the first connection instead of failing. */
  private async connected(): Promise<void> {
    const left = this.startedAt + CONNECT_TIMEOUT_MS - performance.now();
    if (this.everReady || this.closed || left <= 0) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.firstReady, new Promise<void>((r) => (t = setTimeout(r, left)))]);
    clearTimeout(t);
  }

  private async run(s: Script, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.timed(this.redis.evalsha(s.sha, keys.length, ...keys, ...args));
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return this.timed(this.redis.eval(s.lua, keys.length, ...keys, ...args));
    }
  }

  /**
   * A command timeout that an event-loop stall cannot fake: ioredis' commandTimeout fires in
   * the timers phase, before the poll phase reads a reply that may have been waiting in the
   * socket all along. We decide one setImmediate later, after that poll phase.
   */
  private timed<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(
        () =>
          setImmediate(() => {
            if (done) return;
            done = true;
            reject(new Error(`Command timed out after ${this.timeoutMs} ms`));
          }),
        this.timeoutMs,
      );
      p.then(
        (v) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(e as Error);
        },
      );
    });
  }

  /** Runs a script, or throws StoreUnavailable without sending anything when the store is known to be down. */
  private async call(s: Script, keys: string[], args: string[]): Promise<unknown> {
    if (!this.everReady) await this.connected();
    if (!this.available) throw new StoreUnavailable('state store unreachable', false);
    try {
      return await this.run(s, keys, args);
    } catch (e) {
      const now = performance.now();
      this.skipUntil = now + BACKOFF_MS;
      if (now - this.lastFailureLog > 5_000) {
        this.lastFailureLog = now;
        this.logger.warn({ store: 'redis', err: (e as Error).message }, 'state store command failed: using on_store_error for a moment');
      }
      throw new StoreUnavailable(`state store error: ${(e as Error).message}`, true);
    }
  }

  private scopeArgs(scopes: readonly Scope[], at: number, keys: string[], args: string[], withExpiry: boolean): void {
    for (const s of scopes) {
      const k = this.keys[s.slot]!;
      args.push(s.rpm ? String(s.rpm) : '-1', s.tpm ? String(s.tpm) : '-1', s.concurrency ? String(s.concurrency) : '-1', s.budget ? String(s.budget.nano) : '-1');
      if (k.rpm) keys.push(k.rpm);
      if (k.tpm) keys.push(k.tpm, k.tpmSum!);
      if (k.conc) keys.push(k.conc);
      if (k.res) {
        const w = this.clock.at(s.budget!.period, at);
        keys.push(k.res, k.resSum!, k.spend! + w.id);
        if (withExpiry) args.push(w.end === Infinity ? '0' : String(w.end + SPEND_RETENTION_MS));
      } else if (withExpiry) args.push('0');
    }
  }

  async admit(r: Reservation): Promise<Verdict> {
    const keys: string[] = [];
    const args = [r.id, String(r.tokens), String(r.nano), String(this.o.leaseMs ?? LEASE_MS), String(CONCURRENCY_RETRY_MS), String(r.scopes.length)];
    const at = Date.now();
    this.scopeArgs(r.scopes, at, keys, args, false);
    let reply: number[];
    try {
      reply = (await this.call(SCRIPTS.admit, keys, args)) as number[];
    } catch (e) {
      // The script may have run: cancel it later (idempotent) so nothing stays reserved in Redis.
      if (e instanceof StoreUnavailable && e.maybeApplied) this.enqueue({ mode: Mode.Cancel, r, u: ZERO, at, first: false });
      throw e;
    }
    const v = newVerdict();
    v.ok = reply[0] === 1;
    v.refusedAt = reply[1]! - 1;
    v.limit = LIMIT_CODES[reply[2]!];
    v.retryAfterMs = reply[3]!;
    v.reqLimit = reply[4]!;
    v.reqRemaining = reply[5]!;
    v.tokLimit = reply[6]!;
    v.tokRemaining = reply[7]!;
    v.spentNano = reply[8]!;
    v.reservedNano = reply[9]!;
    if (v.ok) {
      let j = 10;
      for (const s of r.scopes) {
        if (!s.budget) continue;
        this.lastSpent.set(s, { periodId: this.clock.at(s.budget.period, at).id, nano: reply[j++]! });
      }
    }
    return v;
  }

  /** Commits and frees. Never throws: on failure the operation is queued and replayed when Redis is back. */
  settle(r: Reservation, u: Usage): void {
    this.submit({ mode: Mode.Settle, r, u, at: Date.now(), first: true });
  }

  /** Spend made on the local fallback while Redis was down: added once Redis is back. */
  addSpend(r: Reservation, u: Usage): void {
    if (u.costNano <= 0 || !r.scopes.some((s) => s.budget)) return;
    this.submit({ mode: Mode.Spend, r, u, at: Date.now(), first: true });
  }

  private submit(op: PendingOp): void {
    if (!this.available) this.metrics.storeErrors.inc({ store: 'redis', op: op.mode === Mode.Spend ? 'reconcile' : 'settle' });
    if (this.pending.length > 0 || !this.available) {
      this.enqueue(op);
      return;
    }
    this.exec(op).catch((e: unknown) => {
      this.metrics.storeErrors.inc({ store: 'redis', op: op.mode === Mode.Spend ? 'reconcile' : 'settle' });
      if (e instanceof StoreUnavailable && e.maybeApplied) op.first = false;
      this.enqueue(op);
    });
  }

  private async exec(op: PendingOp): Promise<void> {
    const { r, u } = op;
    const keys: string[] = [];
    const args = [r.id, String(op.mode), String(r.tokens), String(u.tokens), String(r.nano), String(u.costNano), op.first ? '1' : '0', String(r.scopes.length)];
    this.scopeArgs(r.scopes, op.at, keys, args, true);
    args.push(...this.thresholdArgs);
    keys.push(`${this.o.prefix}done:${r.id}`);
    const reply = (await this.call(SCRIPTS.settle, keys, args)) as number[];
    let j = 0;
    for (const s of r.scopes) {
      if (!s.budget || j >= reply.length) continue;
      const spent = reply[j]!;
      const mask = reply[j + 1]!;
      j += 2;
      if (spent < 0) continue;
      this.lastSpent.set(s, { periodId: this.clock.at(s.budget.period, op.at).id, nano: spent });
      this.o.onSpend(s, spent, mask ? this.o.thresholds.filter((_, i) => mask & (1 << i)) : NONE);
    }
  }

  private enqueue(op: PendingOp): void {
    if (this.closed) return;
    if (this.pending.length >= MAX_PENDING) {
      const dropped = this.pending.shift()!;
      this.logger.error({ store: 'redis', reservation: dropped.r.id }, 'too many operations waiting for the state store: dropping the oldest (its lease will expire)');
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

  /** Replays queued operations in order, stopping at the first failure. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.pending.length > 0 && this.available) {
        const op = this.pending[0]!;
        try {
          await this.exec(op);
        } catch (e) {
          this.metrics.storeErrors.inc({ store: 'redis', op: 'reconcile' });
          if (e instanceof StoreUnavailable && e.maybeApplied) op.first = false;
          break;
        }
        this.pending.shift();
      }
    } finally {
      this.draining = false;
      if (this.pending.length > 0) this.scheduleDrain();
    }
  }

  async usage(scopes: readonly Scope[]): Promise<ScopeUsage[]> {
    const keys: string[] = [];
    const args = [String(scopes.length)];
    const at = Date.now();
    this.scopeArgs(scopes, at, keys, args, false);
    const reply = (await this.call(SCRIPTS.inspect, keys, args)) as number[];
    return scopes.map((scope, i) => ({
      scope,
      rpmUsed: reply[i * 5]!,
      tpmUsed: reply[i * 5 + 1]!,
      inUse: reply[i * 5 + 2]!,
      spentNano: reply[i * 5 + 3]!,
      reservedNano: reply[i * 5 + 4]!,
      period: scope.budget && this.clock.at(scope.budget.period, at),
    }));
  }

  async resetBudget(s: Scope): Promise<number> {
    const k = this.keys[s.slot]!;
    if (!k.spend) return 0;
    const before = Number(await this.call(SCRIPTS.reset, [k.spend + this.clock.at(s.budget!.period, Date.now()).id], []));
    this.lastSpent.delete(s);
    this.o.onSpend(s, 0, NONE);
    return before;
  }

  async close(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    // Last chance for queued settles; whatever cannot be written now expires with its lease.
    if (this.pending.length > 0 && this.available) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.drain(), new Promise<void>((r) => (t = setTimeout(r, 1_000)))]);
      clearTimeout(t);
    }
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pending.length > 0) this.logger.warn({ store: 'redis', pending: this.pending.length }, 'closing with operations not written to the state store');
    if (this.redis.status === 'ready') {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.redis.quit().catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, 500)))]);
      clearTimeout(t);
    }
    this.redis.disconnect();
  }
}

const ZERO: Usage = { tokens: 0, costNano: 0 };
const NONE: readonly number[] = Object.freeze([]);
