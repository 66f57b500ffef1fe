// Waiting on state, not on the clock: a test polls a condition and fails after a generous bound.

/** Resolves once `cond()` holds; rejects after `ms` (a bound with slack, never a speed claim). */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Polls until `check` stops throwing and returns what it returned; past `timeoutMs`, rethrows its last error. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}

/** Items in their order of arrival, and a wait for the first one that matches (arrived already, or still to come). */
export class Arrivals<T> {
  readonly items: T[] = [];
  private readonly waiters: Array<{ pred: (item: T) => boolean; resolve: (item: T) => void }> = [];

  push(item: T): void {
    this.items.push(item);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.pred(item)) {
        this.waiters[i]!.resolve(item);
        this.waiters.splice(i, 1);
      }
    }
  }

  /** Resolves with the first item matching `pred`; rejects with `what` after `timeoutMs` (a bound with slack). */
  find(pred: (item: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const found = this.items.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(what)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (item) => {
          clearTimeout(t);
          resolve(item);
        },
      });
    });
  }
}
