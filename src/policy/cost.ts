// Worst-case numbers used to reserve at admission, before any token is known.
import type { PolicyTable, Route } from './index.js';
import { costUsd } from '../settle/index.js';

/** Output tokens reserved when the request names no max_tokens and the model sets no default. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

export function maxOutputTokens(body: Record<string, unknown>, route: Route): number {
  for (const field of ['max_completion_tokens', 'max_tokens'] as const) {
    const v = body[field];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return route.config.default_max_tokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
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
