// Waiting on state, not on the clock: a test polls a condition and fails after a generous bound.

/** Resolves once `cond()` holds; rejects after `ms` (a bound with slack, never a speed claim). */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
