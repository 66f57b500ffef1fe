// Worst-case numbers used to reserve at admission, before any token is known.
import type { PolicyTable, Route } from './index.js';
import { costUsd } from '../settle/index.js';

/** Output tokens reserved when the request names no max_tokens and the model sets no default. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** The output tokens to reserve: the client's cap (as its API reads it), else the model's default. */
export function maxOutputTokens(requested: number | undefined, route: Route): number {
  return requested ?? route.config.default_max_tokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
}

/** The highest cost this request could reach anywhere along its fallback chain. */
export function worstCaseUsd(policy: PolicyTable, route: Route, promptTokens: number, maxOut: number): number {
  const seen = new Set<string>();
  const queue = [route.name];
  let worst = 0;
  while (queue.length) {
    const name = queue.shift()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const r = policy.resolve(name);
    if (!r) continue;
    worst = Math.max(worst, costUsd(r.config.pricing, { input: promptTokens, output: maxOut, cachedInput: 0, reasoning: 0 }));
    queue.push(...r.config.fallbacks, ...r.config.context_window_fallbacks);
  }
  return worst;
}
