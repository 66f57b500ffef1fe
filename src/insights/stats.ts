// The statistics insights rest on, each in constant memory: a fixed-size sample
// (reservoir), PSI on the reference's quantiles, the two-sample Kolmogorov–Smirnov test, a
// rolling mean/σ over the last N points, and a log-binned histogram for percentiles.

/** PSI's floor for an empty bucket (seed 001/004): keeps ln(a/e) finite. */
export const PSI_EPSILON = 0.0001;

/**
 * A uniform sample of at most `cap` values from a stream (Vitter's algorithm R): while
 * fewer than `cap` values came, it holds all of them.
 */
export class Reservoir {
  readonly values: Float64Array;
  /** Values offered since the last reset. */
  seen = 0;

  constructor(
    readonly cap: number,
    private readonly random: () => number = Math.random,
  ) {
    this.values = new Float64Array(cap);
  }

  get size(): number {
    return Math.min(this.seen, this.cap);
  }

  add(v: number): void {
    const i = this.seen++;
    if (i < this.cap) this.values[i] = v;
    else {
      const j = Math.floor(this.random() * (i + 1));
      if (j < this.cap) this.values[j] = v;
    }
  }

  reset(): void {
    this.seen = 0;
  }

  /** The held values, sorted, copied into `into` (which must hold `cap`); returns their count. */
  sortedInto(into: Float64Array): number {
    const n = this.size;
    into.set(this.values.subarray(0, n));
    into.subarray(0, n).sort();
    return n;
  }
}

/** Quantile q of sorted[0, n) with linear interpolation (R type 7, numpy's default). */
export function quantile(sorted: ArrayLike<number>, n: number, q: number): number {
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** The buckets-1 inner edges at the reference's quantiles 1/buckets .. (buckets-1)/buckets. */
export function quantileEdges(sortedRef: ArrayLike<number>, n: number, buckets: number): number[] {
  const edges: number[] = [];
  for (let i = 1; i < buckets; i++) edges.push(quantile(sortedRef, n, i / buckets));
  return edges;
}

/** Bucket of v: the number of edges below it (buckets are (e[i-1], e[i]], the last open). */
function bucketOf(edges: readonly number[], v: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (v > edges[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Shares of values[0, n) per bucket of `edges`. */
export function bucketShares(edges: readonly number[], values: ArrayLike<number>, n: number): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < n; i++) counts[bucketOf(edges, values[i]!)]! += 1;
  return counts.map((c) => (n === 0 ? 0 : c / n));
}

/**
 * Population Stability Index of `actual` against `expected` (shares per bucket):
 * Σ (a − e) · ln(a / e), an empty bucket counting as ε.
 */
export function psiFromShares(expected: readonly number[], actual: readonly number[]): number {
  let psi = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]! === 0 ? PSI_EPSILON : expected[i]!;
    const a = actual[i]! === 0 ? PSI_EPSILON : actual[i]!;
    psi += (a - e) * Math.log(a / e);
  }
  return psi;
}

/** PSI of `cur` against `ref` (ref sorted), with `buckets` buckets on ref's quantiles. */
export function psi(sortedRef: ArrayLike<number>, nRef: number, cur: ArrayLike<number>, nCur: number, buckets: number): number {
  const edges = quantileEdges(sortedRef, nRef, buckets);
  return psiFromShares(bucketShares(edges, sortedRef, nRef), bucketShares(edges, cur, nCur));
}

/** Levels of seeds 001/004: < 0.1 stable, 0.1–0.2 slight, > 0.2 severe. */
export function psiLevel(v: number): 'stable' | 'slight' | 'severe' {
  return v > 0.2 ? 'severe' : v >= 0.1 ? 'slight' : 'stable';
}

/** KS statistic D = sup |F_a − F_b| of two sorted samples. */
export function ksStatistic(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number): number {
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < na && j < nb) {
    const x = Math.min(a[i]!, b[j]!);
    while (i < na && a[i]! <= x) i++;
    while (j < nb && b[j]! <= x) j++;
    d = Math.max(d, Math.abs(i / na - j / nb));
  }
  return d;
}

/**
 * Kolmogorov's survival function Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, the asymptotic
 * p-value of the KS statistic (Numerical Recipes' probks).
 */
export function kolmogorovQ(lambda: number): number {
  if (lambda < 1e-3) return 1;
  let sum = 0;
  let sign = 1;
  for (let k = 1; k <= 100; k++) {
    const term = sign * Math.exp(-2 * k * k * lambda * lambda);
    sum += term;
    if (Math.abs(term) < 1e-10) return Math.min(1, Math.max(0, 2 * sum));
    sign = -sign;
  }
  return 1; // no convergence: λ tiny, distributions indistinguishable
}

/**
 * Two-sample KS test (both sorted): D and its p-value with Stephens' small-sample correction,
 * λ = (√n_e + 0.12 + 0.11/√n_e) · D, n_e = n·m/(n+m) (Numerical Recipes, kstwo).
 */
export function ksTest(a: ArrayLike<number>, na: number, b: ArrayLike<number>, nb: number): { d: number; p: number } {
  if (na === 0 || nb === 0) return { d: 0, p: 1 };
  const d = ksStatistic(a, na, b, nb);
  const en = Math.sqrt((na * nb) / (na + nb));
  return { d, p: kolmogorovQ((en + 0.12 + 0.11 / en) * d) };
}

export function meanStd(v: ArrayLike<number>, n: number): { mean: number; std: number } {
  if (n === 0) return { mean: 0, std: 0 };
  let s = 0;
  for (let i = 0; i < n; i++) s += v[i]!;
  const mean = s / n;
  let q = 0;
  for (let i = 0; i < n; i++) q += (v[i]! - mean) ** 2;
  return { mean, std: Math.sqrt(q / n) };
}

/** The last `cap` points with their running sum and sum of squares (re-summed at each wrap against float drift). */
export class RollingWindow {
  private readonly ring: Float64Array;
  private next = 0;
  count = 0;
  private sum = 0;
  private sumSq = 0;

  constructor(readonly cap: number) {
    this.ring = new Float64Array(cap);
  }

  push(v: number): void {
    if (this.count === this.cap) {
      const old = this.ring[this.next]!;
      this.sum -= old;
      this.sumSq -= old * old;
    } else this.count++;
    this.ring[this.next] = v;
    this.sum += v;
    this.sumSq += v * v;
    this.next = (this.next + 1) % this.cap;
    if (this.next === 0) this.resum();
  }

  private resum(): void {
    let s = 0;
    let q = 0;
    for (let i = 0; i < this.count; i++) {
      s += this.ring[i]!;
      q += this.ring[i]! * this.ring[i]!;
    }
    this.sum = s;
    this.sumSq = q;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : 0;
  }

  /** Population σ of the window. */
  get std(): number {
    if (this.count < 2) return 0;
    const m = this.mean;
    return Math.sqrt(Math.max(0, this.sumSq / this.count - m * m));
  }

  reset(): void {
    this.count = this.next = this.sum = this.sumSq = 0;
  }

  get bytes(): number {
    return this.ring.byteLength;
  }
}

/**
 * Log-spaced bins for latencies in ms: bin 0 is ≤ BASE, bin i covers (BASE·G^(i-1), BASE·G^i],
 * the last is open. 64 bins of ×1.25 from 0.25 ms reach ~400 s; a percentile read from them
 * is within ±12% of the true value.
 */
export const LOG_BINS = 64;
const BASE = 0.25;
const LN_G = Math.log(1.25);

export function logBin(ms: number): number {
  if (!(ms > BASE)) return 0;
  return Math.min(LOG_BINS - 1, Math.ceil(Math.log(ms / BASE) / LN_G));
}

/** A representative value of bin i: its geometric middle. */
export function logBinValue(i: number): number {
  if (i === 0) return BASE;
  return BASE * Math.exp((i - 0.5) * LN_G);
}

/** Percentile q (0..1) of counts over LOG_BINS bins summed from several slots. */
export function binPercentile(counts: ArrayLike<number>, total: number, q: number): number | null {
  if (total === 0) return null;
  const rank = q * total;
  let acc = 0;
  for (let i = 0; i < LOG_BINS; i++) {
    acc += counts[i]!;
    if (acc >= rank && counts[i]! > 0) return logBinValue(i);
  }
  return logBinValue(LOG_BINS - 1);
}
