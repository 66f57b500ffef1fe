// The shared store: every operation is one Lua script (EVALSHA, EVAL on NOSCRIPT; the scripts
// are in lua.ts), so a fleet of gateways enforces one limit exactly. Admits are one script per
// request (the request waits for the answer). Settles, which nobody waits for, are
// group-committed (settle-batch.ts). ioredis auto-pipelining puts the commands of an
// event-loop turn in one socket write. A dead Redis fails fast (no offline
// queue, no per-command retries, a command timeout); ioredis reconnects by itself and, once
// it is back, queued settles / cancels / fallback spend are replayed (all idempotent).
import { createHash, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { LEASE_FRACTION, LEASE_MIN_LEFT_MS, LeaseBook, QuotaLease, type LeaseFlush, type LeaseWant } from './lease.js';
import { ADMIT, INSPECT, LEASE, RESET, SETTLE } from './lua.js';
import { PeriodClock } from './periods.js';
import { admissionPrefix, connectRedis, parseRedisUrl } from './redis-connect.js';
import type { Scope } from './scopes.js';
import { BACKOFF_MS, Mode, SettleBatch, type PendingOp } from './settle-batch.js';
import {
  CONCURRENCY_RETRY_MS,
  StoreUnavailable,
  newVerdict,
  settledUsage,
  type Reservation,
  type ScopeUsage,
  type SpendListener,
  type Usage,
  type Store,
  type Verdict,
} from './store.js';

/** How long a reservation holds its concurrency slot and budget reservation if its gateway never settles it. */
export const LEASE_MS = 15 * 60_000;
/** Spend hashes outlive their period by this much (then Redis drops them). */
const SPEND_RETENTION_MS = 8 * 86_400_000;
const CONNECT_TIMEOUT_MS = 2_000;
const LIMIT_CODES = [undefined, 'rpm', 'tpm', 'concurrency', 'budget'] as const;
const CONCURRENCY_RETRY_ARG = String(CONCURRENCY_RETRY_MS);

/** Per scope, built once: its limits as script arguments and its keys. */
interface ScopeKeys {
  /** rpm, tpm, concurrency, budget nano ('-1' = none). */
  limits: readonly string[];
  /** The keys of its rate and concurrency limits and budget reservations, in script order. */
  fixed: readonly string[];
  /** The spend hash's key, without the period id; '' without a budget. */
  spend: string;
  /** The last period id seen and its spend key (a new string only when the period changes). */
  periodId: string;
  spendKey: string;
}

class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}

const SCRIPTS = {
  admit: new Script(ADMIT),
  settle: new Script(SETTLE),
  inspect: new Script(INSPECT),
  reset: new Script(RESET),
  lease: new Script(LEASE),
};

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
  /** Admit busy scopes locally against slices of their limits (state.leased_quota; lease.ts). */
  leasedQuota?: boolean;
}

export class RedisStore implements Store {
  readonly name = 'redis';
  readonly namesReservations = true;
  readonly redis: Redis | Cluster;
  /** The key prefix in use (hash-tagged on a cluster: see admissionPrefix). */
  readonly prefix: string;
  private readonly keys: ScopeKeys[];
  private readonly clock = new PeriodClock();
  private readonly thresholdArgs: string[];
  private readonly leaseArg: string;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly metrics: Metrics;
  private readonly settles: SettleBatch;
  /** After a command failed on a live connection (timeout), go straight to the fallback until then. */
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
  private readonly leases: LeaseBook | undefined;
  /** Names this gateway's leases fleet-wide. */
  private readonly leaseIds = randomBytes(6).toString('base64url');
  private leaseSeq = 0;
  /** LEASE scripts in flight (close() waits for them, so that no grant outlives the store). */
  private readonly acquiring = new Set<Promise<void>>();

  constructor(private readonly o: RedisStoreOptions) {
    this.timeoutMs = o.commandTimeoutMs ?? 1_000;
    this.logger = o.logger;
    this.metrics = o.metrics;
    const target = parseRedisUrl(o.url);
    this.prefix = admissionPrefix(o.prefix, target);
    this.keys = o.scopes.map((s) => {
      const base = `${this.prefix}${s.kind}:${encodeURIComponent(s.name)}:`;
      const fixed: string[] = [];
      // Rate windows are bucket rings (HASH), named apart from the sorted-set logs of earlier
      // versions (which expire within a minute of an upgrade).
      if (s.rpm) fixed.push(`${base}rpm:b`);
      if (s.tpm) fixed.push(`${base}tpm:b`);
      if (s.concurrency) fixed.push(`${base}conc`);
      if (s.budget) fixed.push(`${base}reserved`, `${base}reserved:sum`);
      const limit = (n: number) => (n ? String(n) : '-1'); // 0 = no such limit
      const limits = [limit(s.rpm), limit(s.tpm), limit(s.concurrency), s.budget ? String(s.budget.nano) : '-1'];
      return { limits, fixed, spend: s.budget ? `${base}spend:` : '', periodId: '', spendKey: '' };
    });
    this.thresholdArgs = [String(o.thresholds.length), ...o.thresholds.map(String)];
    this.leaseArg = String(o.leaseMs ?? LEASE_MS);
    this.settles = new SettleBatch({
      exec: (ops) => this.exec(ops),
      available: () => this.available,
      logger: o.logger,
      metrics: o.metrics,
    });
    if (o.leasedQuota)
      this.leases = new LeaseBook(o.scopes.length, {
        acquire: (scopes, wants, acq) => this.acquire(scopes, wants, acq),
        flush: (l) => this.settles.submit({ mode: Mode.Lease, r: leaseOp(l.id, l.scope), u: ZERO, at: Date.now(), first: true, lease: l }),
      });
    this.redis = connectRedis(target, {
      // Fail fast instead of queueing while disconnected: the fallback (or a 503) answers now.
      enableOfflineQueue: false,
      // A command in flight when the connection drops is failed, not replayed: we replay it
      // ourselves, idempotently. (The command timeout is ours: see timed().)
      maxRetriesPerRequest: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(100 * times, 1_000),
      lazyConnect: false,
      // Commands issued in the same event-loop turn go out in one write (one syscall, not one each).
      enableAutoPipelining: true,
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
    return this.settles.pendingOps;
  }

  /** Used bare (on_store_error: closed), an unreachable Redis is not ready. */
  ready(): boolean {
    return this.available;
  }

  get degraded(): boolean {
    return !this.available;
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
        (e: Error) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(e);
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

  /** An admin script: a failure is counted as such. */
  private async admin(s: Script, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.call(s, keys, args);
    } catch (e) {
      if (e instanceof StoreUnavailable) this.metrics.storeErrors.inc({ store: 'redis', op: 'admin' });
      throw e;
    }
  }

  private scopeArgs(scopes: readonly Scope[], at: number, keys: string[], args: string[], withExpiry: boolean): void {
    for (let i = 0; i < scopes.length; i++) {
      const s = scopes[i]!;
      const k = this.keys[s.slot]!;
      args.push(k.limits[0]!, k.limits[1]!, k.limits[2]!, k.limits[3]!);
      for (let j = 0; j < k.fixed.length; j++) keys.push(k.fixed[j]!);
      if (s.budget) {
        const w = this.clock.at(s.budget.period, at);
        if (w.id !== k.periodId) {
          k.periodId = w.id;
          k.spendKey = k.spend + w.id;
        }
        keys.push(k.spendKey);
        if (withExpiry) args.push(w.end === Infinity ? '0' : String(w.end + SPEND_RETENTION_MS));
      } else if (withExpiry) args.push('0');
    }
  }

  /**
   * Against the scopes' leases when they all have room (no round trip); after the leases being
   * fetched for its scopes, if any; else by one script.
   */
  admit(r: Reservation): Verdict | Promise<Verdict> {
    if (!this.leases) return this.admitByScript(r);
    const v = newVerdict();
    const parts = this.leases.admit(r, v);
    if (parts) {
      r.leased = parts;
      return v;
    }
    const wait = this.leases.pending(r);
    return wait ? wait.then(() => this.admitAfterLease(r)) : this.admitByScript(r);
  }

  private admitAfterLease(r: Reservation): Verdict | Promise<Verdict> {
    const v = newVerdict();
    const parts = this.leases!.admit(r, v, false);
    if (!parts) return this.admitByScript(r);
    r.leased = parts;
    return v;
  }

  private async admitByScript(r: Reservation): Promise<Verdict> {
    const keys: string[] = [];
    const args = [r.id, String(r.tokens), String(r.nano), this.leaseArg, CONCURRENCY_RETRY_ARG, String(r.scopes.length)];
    const at = Date.now();
    this.scopeArgs(r.scopes, at, keys, args, false);
    let reply: number[];
    try {
      reply = (await this.call(SCRIPTS.admit, keys, args)) as number[];
    } catch (e) {
      // The script may have run: cancel it later (idempotent) so nothing stays reserved in Redis.
      if (e instanceof StoreUnavailable) {
        this.metrics.storeErrors.inc({ store: 'redis', op: 'admit' });
        if (e.maybeApplied) this.settles.enqueue({ mode: Mode.Cancel, r, u: ZERO, at, first: false });
      }
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
      // The second Redis counted the tokens in: the settle moves them from estimate to real there.
      r.bucket = reply[10]!;
      let j = 11;
      for (const s of r.scopes) if (s.budget) this.noteSpent(s, at, reply[j++]!);
    }
    return v;
  }

  private noteSpent(s: Scope, at: number, nano: number): void {
    const periodId = this.clock.at(s.budget!.period, at).id;
    const last = this.lastSpent.get(s);
    if (last && last.periodId === periodId) last.nano = nano;
    else this.lastSpent.set(s, { periodId, nano });
  }

  /**
   * Commits and frees. Never throws: the operation goes out now or with the next batch; if
   * it cannot be written it is queued and replayed when Redis is back.
   */
  settle(r: Reservation, u: Usage): void {
    if (r.leased) return this.leases!.settle(r, r.leased, settledUsage(r, u));
    this.settles.submit({ mode: Mode.Settle, r, u: settledUsage(r, u), at: Date.now(), first: true });
  }

  /** Spend made on the local fallback while Redis was down: added once Redis is back. */
  addSpend(r: Reservation, given: Usage): void {
    const u = settledUsage(r, given);
    if (u.costNano <= 0 || !r.scopes.some((s) => s.budget)) return;
    this.settles.submit({ mode: Mode.Spend, r, u, at: Date.now(), first: true });
  }

  /** Runs LEASE for these scopes; the book hears the grants (or the failure). Nobody awaits it. */
  private acquire(scopes: Scope[], wants: LeaseWant[], acq: { resolve(): void }): void {
    const id = `${this.leaseIds}.${(++this.leaseSeq).toString(36)}`;
    const keys: string[] = [];
    const args = [id, this.leaseArg, LEASE_MIN_LEFT_ARG, LEASE_FRACTION_ARG, String(scopes.length)];
    const at = Date.now();
    for (let i = 0; i < scopes.length; i++) {
      this.scopeArgs([scopes[i]!], at, keys, args, false);
      const w = wants[i]!;
      args.push(String(w.reqs), String(w.tokens), String(w.nano), String(w.minTokens), String(w.minNano), String(w.slots));
      keys.push(this.leaseKey(`${id}.${i + 1}`));
    }
    const sent = performance.now();
    const book = this.leases!;
    const p: Promise<void> = this.call(SCRIPTS.lease, keys, args)
      .then(
        (reply) => {
          const rep = reply as number[];
          const left = rep[1]!;
          const deadline = LeaseBook.deadline(sent, left);
          scopes.forEach((s, i) => {
            const o = 2 + i * 9;
            const spent = rep[o + 8]!;
            if (spent >= 0) this.noteSpent(s, at, spent);
            // Granted limits are >= 1 (or -1: none); a scope not granted answers 0 for all.
            const lease =
              rep[o] === 0
                ? undefined
                : new QuotaLease(
                    `${id}.${i + 1}`,
                    s,
                    rep[o + 4]!,
                    rep[o + 5]!,
                    deadline,
                    { reqs: rep[o]!, tokens: rep[o + 1]!, slots: rep[o + 2]!, nano: rep[o + 3]! },
                    rep[o + 6]!,
                    rep[o + 7]!,
                  );
            book.granted(s, lease, sent, left);
          });
        },
        (e: unknown) => {
          book.failed(scopes);
          if (!(e instanceof StoreUnavailable)) return this.logger.error({ err: e }, 'quota lease script failed');
          this.metrics.storeErrors.inc({ store: 'redis', op: 'lease' });
          // It may have run: undo whatever it granted (the lease's state hash says what).
          if (e.maybeApplied)
            scopes.forEach((s, i) =>
              this.settles.enqueue({ mode: Mode.Lease, r: leaseOp(`${id}.${i + 1}`, s), u: ZERO, at, first: false, flush: UNDO_GRANT }),
            );
        },
      )
      .catch((e: unknown) => {
        book.failed(scopes);
        this.logger.error({ err: e }, 'quota lease grant could not be taken');
      })
      // The requests waiting for these leases go on (against them, or by script).
      .finally(() => {
        this.acquiring.delete(p);
        acq.resolve();
      });
    this.acquiring.add(p);
  }

  private leaseKey(id: string): string {
    return `${this.prefix}lease:${id}`;
  }

  /** A lease's flush (mode 4 of SETTLE): frozen the first time it is sent. */
  private leaseArgs(op: PendingOp, keys: string[], args: string[]): void {
    const f = (op.flush ??= op.lease!.snapshot());
    const k0 = keys.length;
    const head = args.length;
    args.push(
      '',
      op.r.id,
      '4',
      String(f.seq),
      op.first ? '1' : '0',
      String(op.lease?.reqSecond ?? -1),
      String(op.lease?.tokSecond ?? -1),
      String(f.reqDelta),
      String(f.tokDelta),
      f.freed,
      String(f.held),
      String(f.heldAfter),
      String(f.cost),
    );
    this.scopeArgs(op.r.scopes, op.at, keys, args, true);
    keys.push(this.leaseKey(op.r.id));
    args[head] = String(keys.length - k0);
  }

  /** Runs settles / cancels / spend additions / lease flushes, all in one script (applied in order, each whole). */
  private async exec(ops: readonly PendingOp[]): Promise<void> {
    const keys: string[] = [];
    const args: string[] = [...this.thresholdArgs, String(ops.length)];
    for (const op of ops) {
      if (op.mode === Mode.Lease) {
        this.leaseArgs(op, keys, args);
        continue;
      }
      const { r, u } = op;
      const k0 = keys.length;
      const head = args.length;
      const sec = r.bucket === undefined ? '-1' : String(r.bucket);
      args.push(
        '',
        r.id,
        String(op.mode),
        String(r.tokens),
        String(u.tokens),
        String(r.nano),
        String(u.costNano),
        op.first ? '1' : '0',
        sec,
        String(r.scopes.length),
      );
      this.scopeArgs(r.scopes, op.at, keys, args, true);
      if (op.mode === Mode.Spend) keys.push(`${this.prefix}done:${r.id}`);
      args[head] = String(keys.length - k0);
    }
    const reply = (await this.call(SCRIPTS.settle, keys, args)) as number[];
    let j = 0;
    for (const op of ops) {
      if (op.lease) this.leases!.flushed(op.lease);
      for (const s of op.r.scopes) {
        if (!s.budget) continue;
        const spent = reply[j]!;
        const mask = reply[j + 1]!;
        j += 2;
        if (spent < 0) continue;
        this.noteSpent(s, op.at, spent);
        // The script has run: a listener's failure must not make these operations look unwritten (and replayed).
        try {
          this.o.onSpend(s, spent, mask ? this.o.thresholds.filter((_, i) => mask & (1 << i)) : NONE);
        } catch (e) {
          this.logger.error({ err: e }, 'budget spend listener failed');
        }
      }
    }
  }

  /** Sends the settles waiting now, then replays queued operations. */
  drain(): Promise<void> {
    return this.settles.drain();
  }

  async usage(scopes: readonly Scope[] = this.o.scopes): Promise<ScopeUsage[]> {
    const keys: string[] = [];
    const args = [String(scopes.length)];
    const at = Date.now();
    this.scopeArgs(scopes, at, keys, args, false);
    const reply = (await this.admin(SCRIPTS.inspect, keys, args)) as number[];
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
    const before = Number(await this.admin(SCRIPTS.reset, [k.spend + this.clock.at(s.budget!.period, Date.now()).id], []));
    this.lastSpent.delete(s);
    this.o.onSpend(s, 0, NONE);
    return before;
  }

  async close(): Promise<void> {
    if (this.leases) {
      // Grants still on their way are ended as they arrive; then what every lease holds unused
      // goes back with the last flushes.
      this.leases.close();
      if (this.acquiring.size > 0) {
        let t: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(this.acquiring), new Promise<void>((r) => (t = setTimeout(r, 2_000)))]);
        clearTimeout(t);
      }
      this.leases.endAll();
    }
    this.settles.stop(false);
    // Last chance for waiting and queued settles; whatever cannot be written now
    // expires with its lease.
    if (this.settles.drainable) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.drain(), new Promise<void>((r) => (t = setTimeout(r, 1_000)))]);
      clearTimeout(t);
    }
    this.closed = true;
    this.settles.stop(true);
    const unwritten = this.settles.unwritten;
    if (unwritten > 0) this.logger.warn({ store: 'redis', pending: unwritten }, 'closing with operations not written to the state store');
    if (this.redis.status === 'ready') {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.redis.quit().catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, 500)))]);
      clearTimeout(t);
    }
    this.redis.disconnect();
  }
}

const ZERO: Usage = { tokens: 0, costNano: 0 };
const LEASE_MIN_LEFT_ARG = String(LEASE_MIN_LEFT_MS);
const LEASE_FRACTION_ARG = String(LEASE_FRACTION);
/** The flush that undoes a grant whose reply was lost (SETTLE reads the grant from the lease's state hash). */
const UNDO_GRANT: LeaseFlush = Object.freeze({ seq: 1, reqDelta: 0, tokDelta: 0, freed: '*', held: 0, heldAfter: 0, cost: 0 });

/** The reservation a lease flush stands on: the lease's id and its one scope. */
function leaseOp(id: string, scope: Scope): Reservation {
  return { id, scopes: [scope], tokens: 0, nano: 0 };
}
const NONE: readonly number[] = Object.freeze([]);
