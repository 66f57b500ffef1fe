// Percentiles over raw samples (every sample kept, sorted once: exact, no histogram buckets),
// and a few helpers for figures.

/** Epoch milliseconds with sub-millisecond precision; the simulator stamps sim_ts with the same formula. */
export const nowMs = () => performance.timeOrigin + performance.now();

/** A growable Float64Array: millions of samples without boxed numbers. */
export class Samples {
  constructor(initial = 4096) {
    this.buf = new Float64Array(initial);
    this.n = 0;
  }
  push(v) {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }
  get length() {
    return this.n;
  }
  values() {
    return this.buf.subarray(0, this.n);
  }
}

/** Nearest-rank percentile of an ascending array, p in [0, 100]. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** {n, min, mean, p50, p90, p99, p99_9, max}, in the samples' unit, rounded to `digits`. */
export function summarize(values, digits = 3) {
  const arr = values instanceof Samples ? values.values() : values;
  const sorted = Float64Array.from(arr).sort();
  const n = sorted.length;
  if (n === 0) return { n: 0 };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const r = (v) => round(v, digits);
  return {
    n,
    min: r(sorted[0]),
    mean: r(sum / n),
    p50: r(percentile(sorted, 50)),
    p90: r(percentile(sorted, 90)),
    p99: r(percentile(sorted, 99)),
    p99_9: r(percentile(sorted, 99.9)),
    max: r(sorted[n - 1]),
  };
}

export function round(v, digits = 3) {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function median(values) {
  return percentile(Float64Array.from(values).sort(), 50);
}

export const MB = 1024 * 1024;
