// Cost recommendations from observed traffic, each with its evidence and an estimated
// saving: the exact-cache share of identical prompts, models whose short outputs a cheaper
// fallback could serve, peak and low hours, budgets on track to run out before their
// period ends.

export interface ModelUsage {
  requests: number;
  ok: number;
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  /** Requests whose prompt was hashed, and those seen before. */
  hashed: number;
  repeats: number;
}

export interface BudgetFact {
  scope: string;
  name: string;
  period: string;
  period_start: string | null;
  resets_at: string | null;
  limit_usd: number;
  spend_usd: number;
}

export interface Recommendation {
  kind: 'exact_cache' | 'cheaper_model' | 'peak_hours' | 'budget_runs_out';
  model?: string;
  message: string;
  evidence: Record<string, unknown>;
  /** USD over the observed period (or the budget period), null when it cannot be put in money. */
  estimated_saving_usd: number | null;
}

/** Below this many responses a model's figures say too little. */
const MIN_REQUESTS = 50;
/** Identical prompts above this share make an exact cache worth it. */
const CACHE_SHARE = 0.05;
/** Mean output tokens at or under this are "short": simple answers a cheaper model may give. */
const SHORT_OUTPUT = 100;

const r6 = (v: number) => Math.round(v * 1e6) / 1e6;

export function recommend(o: {
  now: number;
  usage: Map<string, ModelUsage>;
  pricing: Map<string, { input: number; output: number; fallbacks: string[] }>;
  hours: Float64Array;
  budgets: BudgetFact[];
}): Recommendation[] {
  const out: Recommendation[] = [];
  for (const [model, u] of o.usage) {
    if (u.hashed >= MIN_REQUESTS && u.repeats / u.hashed >= CACHE_SHARE) {
      const share = u.repeats / u.hashed;
      out.push({
        kind: 'exact_cache',
        model,
        message: `${(share * 100).toFixed(1)}% of '${model}' requests repeat an earlier one byte for byte: an exact response cache would answer them without the model.`,
        evidence: { requests: u.hashed, identical: u.repeats, share: r6(share), spend_usd: r6(u.costUsd) },
        estimated_saving_usd: r6(u.costUsd * share),
      });
    }
    const p = o.pricing.get(model);
    if (p && u.ok >= MIN_REQUESTS && u.outputTokens / u.ok <= SHORT_OUTPUT) {
      // The cheapest of its fallbacks, priced on this model's own token mix.
      let best: { name: string; cost: number } | undefined;
      for (const f of p.fallbacks) {
        const fp = o.pricing.get(f);
        if (!fp) continue;
        const cost = (u.inputTokens * fp.input + u.outputTokens * fp.output) / 1e6;
        if (!best || cost < best.cost) best = { name: f, cost };
      }
      const own = (u.inputTokens * p.input + u.outputTokens * p.output) / 1e6;
      if (best && best.cost < own) {
        out.push({
          kind: 'cheaper_model',
          model,
          message: `'${model}' answers in ${(u.outputTokens / u.ok).toFixed(0)} tokens on average: its cheaper fallback '${best.name}' may serve these short answers.`,
          evidence: {
            responses: u.ok,
            mean_output_tokens: r6(u.outputTokens / u.ok),
            cost_usd: r6(own),
            cost_on_fallback_usd: r6(best.cost),
            fallback: best.name,
          },
          estimated_saving_usd: r6(own - best.cost),
        });
      }
    }
  }
  const total = o.hours.reduce((a, b) => a + b, 0);
  if (total >= MIN_REQUESTS) {
    const ranked = [...o.hours].map((n, h) => ({ hour: h, requests: n })).sort((a, b) => b.requests - a.requests);
    const peak = ranked.slice(0, 3);
    const low = ranked.slice(-3).reverse();
    out.push({
      kind: 'peak_hours',
      message: `Peak hours (UTC) ${peak.map((x) => x.hour).join(', ')}; lowest ${low.map((x) => x.hour).join(', ')}: schedule batch and offline work in the low hours, size capacity for the peak.`,
      evidence: { peak, low, requests: total },
      estimated_saving_usd: null,
    });
  }
  for (const b of o.budgets) {
    if (!b.period_start || !b.resets_at || b.limit_usd <= 0 || b.spend_usd <= 0) continue;
    const start = Date.parse(b.period_start);
    const end = Date.parse(b.resets_at);
    const elapsed = (o.now - start) / (end - start);
    if (!(elapsed > 0.02 && elapsed < 1)) continue;
    const projected = b.spend_usd / elapsed;
    if (projected <= b.limit_usd) continue;
    const runsOut = start + (b.limit_usd / b.spend_usd) * (o.now - start);
    out.push({
      kind: 'budget_runs_out',
      message: `Budget ${b.scope} '${b.name}' is on track to run out at ${new Date(runsOut).toISOString()}, before its ${b.period} ends at ${b.resets_at}.`,
      evidence: { ...b, elapsed_share: r6(elapsed), projected_usd: r6(projected), runs_out_at: new Date(runsOut).toISOString() },
      estimated_saving_usd: r6(projected - b.limit_usd),
    });
  }
  return out;
}
