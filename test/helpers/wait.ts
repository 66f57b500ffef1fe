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
