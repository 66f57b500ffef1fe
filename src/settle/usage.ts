// The boundary where an upstream's reported usage is accepted or refused. Upstreams are not
// trusted: `{"prompt_tokens":1e308}` once made a tpm window Infinity (then NaN, so it was
// never enforced again) and a budget's spend Infinity (written to the state file as null,
// read back as 0). A usage whose counts are not plain token counts is an upstream fault:
// the request is counted by the gateway's own estimate instead, and settle logs and counts it
// (llm_gateway_upstream_errors_total{reason="invalid_usage"}).
import type { TapUsage } from '../streamtap/tokens.js';

/**
 * The most tokens one usage field may report. Far above any context window (the largest are
 * a few million tokens) and far below where sums of many requests lose integer precision.
 */
export const MAX_USAGE_TOKENS = 1e9;

const FIELDS = [
  ['input', 'prompt_tokens'],
  ['output', 'completion_tokens'],
  ['cachedInput', 'prompt_tokens_details.cached_tokens'],
  ['reasoning', 'completion_tokens_details.reasoning_tokens'],
] as const;

/**
 * Undefined when `u` is absent or every count in it is an integer in [0, MAX_USAGE_TOKENS];
 * otherwise the (OpenAI) name of the first field that is not, e.g. "prompt_tokens".
 * A field that was present but not a number reaches here as NaN (see usageFromResponse).
 */
export function usageFault(u: TapUsage | undefined): string | undefined {
  if (u === undefined) return undefined;
  for (const [field, name] of FIELDS) {
    const v = u[field];
    if (!Number.isInteger(v) || v < 0 || v > MAX_USAGE_TOKENS) return name;
  }
  const w = u.cacheWriteInput;
  if (w === undefined) return undefined;
  if (!Number.isInteger(w) || w < 0 || w > MAX_USAGE_TOKENS) return 'cache_creation_input_tokens';
  // An API that reports cache writes reports the parts of input: they must fit in it.
  if (u.cachedInput + w > u.input) return 'cache_read_input_tokens';
  return undefined;
}
