// SLA figures per model from the gateway's own data (seed 000's collector): availability
// and p50/p95/p99 of TTFT, TPOT and duration over the last 5 minutes and the last hour.
// Sixty one-minute slots, each a log-binned histogram per latency: fixed memory per model
// (60 × 3 × 64 counters), whatever the traffic.
import { LOG_BINS, binPercentile, logBin } from './stats.js';

const SLOTS = 60;
const SLOT_MS = 60_000;
const LATENCIES = ['ttft', 'tpot', 'duration'] as const;

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface SlaWindow {
  requests: number;
  errors: number;
  /** Share of requests not failed by the gateway or upstream (status < 500); null without requests. */
  availability: number | null;
  ttft_ms: Percentiles;
  tpot_ms: Percentiles;
  duration_ms: Percentiles;
}

export class SlaTracker {
  private readonly minute = new Float64Array(SLOTS).fill(-1);
  private readonly requests = new Uint32Array(SLOTS);
  private readonly errors = new Uint32Array(SLOTS);
  private readonly bins = new Uint32Array(SLOTS * LATENCIES.length * LOG_BINS);

  /** The slot of minute m, cleared when it last held an older minute. */
  private slot(nowMs: number): number {
    const m = Math.floor(nowMs / SLOT_MS);
    const i = m % SLOTS;
    if (this.minute[i] !== m) {
      this.minute[i] = m;
      this.requests[i] = 0;
      this.errors[i] = 0;
      this.bins.fill(0, i * LATENCIES.length * LOG_BINS, (i + 1) * LATENCIES.length * LOG_BINS);
    }
    return i;
  }

  get bytes(): number {
    return this.minute.byteLength + this.requests.byteLength + this.errors.byteLength + this.bins.byteLength;
  }

  record(nowMs: number, failed: boolean, ttftMs: number | undefined, tpotMs: number | undefined, durationMs: number | undefined): void {
    const i = this.slot(nowMs);
    this.requests[i]! += 1;
    if (failed) this.errors[i]! += 1;
    const base = i * LATENCIES.length * LOG_BINS;
    if (ttftMs !== undefined) this.bins[base + logBin(ttftMs)]! += 1;
    if (tpotMs !== undefined) this.bins[base + LOG_BINS + logBin(tpotMs)]! += 1;
    if (durationMs !== undefined) this.bins[base + 2 * LOG_BINS + logBin(durationMs)]! += 1;
  }

  /** Figures over the last `minutes` minutes (the current one included). */
  window(nowMs: number, minutes: number): SlaWindow {
    const now = Math.floor(nowMs / SLOT_MS);
    let requests = 0;
    let errors = 0;
    const sums = LATENCIES.map(() => new Float64Array(LOG_BINS));
    const totals = [0, 0, 0];
    for (let i = 0; i < SLOTS; i++) {
      const m = this.minute[i]!;
      if (m < 0 || m > now || m <= now - minutes) continue;
      requests += this.requests[i]!;
      errors += this.errors[i]!;
      for (let l = 0; l < LATENCIES.length; l++) {
        const base = (i * LATENCIES.length + l) * LOG_BINS;
        const into = sums[l]!;
        for (let b = 0; b < LOG_BINS; b++) {
          into[b]! += this.bins[base + b]!;
          totals[l]! += this.bins[base + b]!;
        }
      }
    }
    const pct = (l: number): Percentiles => ({
      p50: round(binPercentile(sums[l]!, totals[l]!, 0.5)),
      p95: round(binPercentile(sums[l]!, totals[l]!, 0.95)),
      p99: round(binPercentile(sums[l]!, totals[l]!, 0.99)),
    });
    return {
      requests,
      errors,
      availability: requests ? round((requests - errors) / requests, 6) : null,
      ttft_ms: pct(0),
      tpot_ms: pct(1),
      duration_ms: pct(2),
    };
  }
}

function round(v: number | null, d = 3): number | null {
  return v === null ? null : Math.round(v * 10 ** d) / 10 ** d;
}
