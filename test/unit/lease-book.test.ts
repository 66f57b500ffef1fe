// The gateway side of leased quota on its own (no Redis): when a lease is asked for, what a
// request takes from it, one flush per lease at a time (so flushes reach Redis in order), and
// a grant that arrives while the store closes is returned at once.
import { describe, expect, it } from 'vitest';
import { LeaseBook, QuotaLease, type LeaseWant } from '../../src/admission/lease.js';
import { ScopeTable } from '../../src/admission/scopes.js';
import { newVerdict, type Reservation } from '../../src/admission/store.js';
import { SettleBatch, type PendingOp } from '../../src/admission/settle-batch.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import pino from 'pino';

const table = new ScopeTable({
  keys: [{ name: 'k', limits: { rpm: 100_000, tpm: 10_000_000, concurrency: 100 }, budget: { usd: 100, period: 'day' } }] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
});
const scope = table.all[0]!;
const res = (tokens = 100, nano = 1_000): Reservation => ({ id: '', scopes: [scope], tokens, nano, leased: undefined });

function book() {
  const asked: { scopes: unknown[]; wants: LeaseWant[]; resolve(): void }[] = [];
  const flushes: QuotaLease[] = [];
  const b = new LeaseBook(table.all.length, {
    acquire: (scopes, wants, acq) => asked.push({ scopes, wants, resolve: () => acq.resolve() }),
    flush: (l) => flushes.push(l),
  });
  return { b, asked, flushes };
}

const lease = (id: string, slots = 10) =>
  new QuotaLease(id, scope, 0, 0, performance.now() + 60_000, { reqs: 50, tokens: 50_000, slots, nano: 1_000_000 }, 1_000, 1_000_000);

describe('LeaseBook', () => {
  it('asks for a lease once a scope is busy (20 requests/s here), then admits against it', () => {
    const { b, asked } = book();
    expect(b.admit(res(), newVerdict())).toBeUndefined(); // the first request: 10/s so far
    expect(asked).toHaveLength(0);
    expect(b.admit(res(), newVerdict())).toBeUndefined();
    expect(asked).toHaveLength(1);
    expect(asked[0]!.wants[0]).toMatchObject({ reqs: 30, slots: 12, minTokens: expect.any(Number) as number });
    b.granted(scope, lease('a.1'), performance.now(), 900);
    const v = newVerdict();
    const parts = b.admit(res(), v);
    expect(parts?.leases[0]!.id).toBe('a.1');
    expect(parts?.slots[0]).toBe(1);
    expect(v).toMatchObject({ ok: true, reqLimit: 100_000, reqRemaining: 1_000 + 49 });
    b.endAll();
  });

  it('keeps a lease that one large request does not fit (that one goes by script), and asks again only when an average one would not fit', () => {
    const { b, asked } = book();
    b.admit(res(), newVerdict());
    b.admit(res(), newVerdict());
    b.granted(scope, lease('a.1'), performance.now(), 900);
    expect(b.admit(res(60_000), newVerdict())).toBeUndefined();
    expect(asked).toHaveLength(1);
    expect(b.admit(res(), newVerdict())?.leases[0]!.id).toBe('a.1');
    b.endAll();
  });

  it('sends one flush of a lease at a time: the changes made meanwhile wait until the first is written', async () => {
    const { b, flushes } = book();
    b.admit(res(), newVerdict());
    b.admit(res(), newVerdict());
    const l = lease('a.1');
    b.granted(scope, l, performance.now(), 900);
    const r1 = res();
    const p1 = b.admit(r1, newVerdict())!;
    const r2 = res();
    const p2 = b.admit(r2, newVerdict())!;
    b.settle(r1, p1, { tokens: 80, costNano: 500 });
    await new Promise((r) => setTimeout(r, 80)); // the flush tick
    expect(flushes).toEqual([l]);
    const first = l.snapshot(); // what the first flush carries (frozen when sent)
    expect(first).toMatchObject({ seq: 1, tokDelta: -20, cost: 500, held: 1_000_000, heldAfter: 999_000, freed: '' });
    // Settled while the first is unanswered: no second flush, however long it takes.
    b.settle(r2, p2, { tokens: 100, costNano: 700 });
    await new Promise((r) => setTimeout(r, 80));
    expect(flushes).toHaveLength(1);
    b.flushed(l);
    await new Promise((r) => setTimeout(r, 80));
    expect(flushes).toHaveLength(2);
    expect(l.snapshot()).toMatchObject({ seq: 2, tokDelta: 0, cost: 700, held: 999_000, heldAfter: 998_000 });
    b.flushed(l);
    // The end returns the rest: 48 requests, the unused tokens, the nano-USD, every slot.
    b.endAll();
    expect(flushes).toHaveLength(3);
    expect(l.snapshot()).toMatchObject({ seq: 3, reqDelta: -48, freed: '1,2,3-10', heldAfter: 0 });
  });

  it('returns a lease granted while the store closes at once, without admitting against it', () => {
    const { b, flushes } = book();
    b.admit(res(), newVerdict());
    b.admit(res(), newVerdict());
    b.close();
    const l = lease('a.1');
    b.granted(scope, l, performance.now(), 900);
    expect(l.ended).toBe(true);
    expect(flushes).toEqual([l]);
    expect(l.snapshot()).toMatchObject({ reqDelta: -50, heldAfter: 0, freed: '1-10' });
    expect(b.admit(res(), newVerdict())).toBeUndefined();
  });

  it('keeps a lease flush when a long outage fills the replay queue: the oldest settle goes instead', async () => {
    let up = false;
    const sent: PendingOp[] = [];
    // The book's flushes go to the batch (made below: nothing is flushed before then).
    const b: LeaseBook = new LeaseBook(table.all.length, {
      acquire: () => undefined,
      flush: (l) => batch.submit({ mode: 4, r: res(), u: { tokens: 0, costNano: 0 }, at: 0, first: true, lease: l }),
    });
    const batch = new SettleBatch({
      exec: (ops) => {
        for (const op of ops)
          if (op.lease) {
            op.flush ??= op.lease.snapshot();
            sent.push(op);
            b.flushed(op.lease);
          }
        return Promise.resolve();
      },
      available: () => up,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics({ defaultMetrics: false }),
    });
    b.admit(res(), newVerdict());
    b.admit(res(), newVerdict());
    const l = lease('a.1');
    b.granted(scope, l, performance.now(), 900);
    const r1 = res();
    const p1 = b.admit(r1, newVerdict())!;
    const r2 = res();
    const p2 = b.admit(r2, newVerdict())!;
    b.settle(r1, p1, { tokens: 100, costNano: 500 }); // Redis away: its flush queues
    await new Promise((r) => setTimeout(r, 80));
    expect(l.queued).toBe(true);
    for (let i = 0; i < 100_000; i++) batch.enqueue({ mode: 1, r: res(), u: { tokens: 0, costNano: 0 }, at: 0, first: true });
    expect(batch.pendingOps).toBe(100_000);
    up = true;
    b.settle(r2, p2, { tokens: 100, costNano: 700 });
    b.endAll();
    await batch.drain();
    batch.stop(true);
    // The lease's flush was kept and written; frozen when first sent, it carries both costs and the end.
    expect(sent.map((o) => o.flush!.seq)).toEqual([1]);
    expect(sent[0]!.flush).toMatchObject({ cost: 1_200, reqDelta: -48, heldAfter: 0, freed: '1,2,3-10' });
    expect(l.queued).toBe(false);
  });
});
