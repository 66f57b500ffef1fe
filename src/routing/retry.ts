// Retry timing: exponential backoff with full jitter (AWS architecture blog, "Exponential
// Backoff And Jitter"), and a sleep that ends early when the client leaves.
import type { RetriesConfig } from '../config/schema.js';

/** Delay before retry number `retry` (0-based): uniform in [0, min(max_backoff_ms, backoff_ms × 2^retry)). */
export function backoffMs(
  retry: number,
  cfg: Pick<RetriesConfig, 'backoff_ms' | 'max_backoff_ms'>,
  random: () => number = Math.random,
): number {
  return random() * Math.min(cfg.max_backoff_ms, cfg.backoff_ms * 2 ** retry);
}

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects; the caller checks why it woke). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
