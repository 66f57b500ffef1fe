// Drift per model and feature: every `window` observations the window just closed is
// compared with the reference (the window before it, or a pinned baseline): PSI on
// `buckets` buckets at the reference's quantiles, the KS two-sample test at α 0.05, and the
// mean/σ shifts; seed 004's composite score sums them. Memory is fixed per (model,
// feature): two samples of at most SAMPLE_CAP values and one scratch array.
import { Reservoir, ksTest, meanStd, psi, psiLevel } from './stats.js';

export const FEATURES = ['input_tokens', 'output_tokens', 'ttft', 'tpot', 'duration'] as const;
export type Feature = (typeof FEATURES)[number];

export const KS_ALPHA = 0.05;
/** Mean or σ moving by more than this many reference σ counts (seed 004). */
export const SHIFT = 0.3;
/** Values kept per window: windows above it are sampled uniformly. */
export const SAMPLE_CAP = 2000;
/** A pinned baseline needs at least this many values. */
const MIN_BASELINE = 20;

export interface DriftResult {
  psi: number;
  ks_pvalue: number;
  ks_statistic: number;
  /** PSI level: < 0.1 stable, 0.1–0.2 slight, > 0.2 severe. */
  level: 'stable' | 'slight' | 'severe';
  ks_drifted: boolean;
  mean_change: number;
  std_change: number;
  /** Seed 004: PSI > 0.2 → +2 (> 0.1 → +1), KS drifted +2, mean shift > 0.3 σ +1, σ shift > 0.3 +1. */
  score: number;
  score_level: 'low' | 'medium' | 'high';
  reference: { n: number; mean: number; std: number; pinned: boolean };
  current: { n: number; mean: number; std: number };
}

export function compositeScore(p: number, ksDrifted: boolean, meanChange: number, stdChange: number): number {
  let s = p > 0.2 ? 2 : p > 0.1 ? 1 : 0;
  if (ksDrifted) s += 2;
  if (meanChange > SHIFT) s += 1;
  if (stdChange > SHIFT) s += 1;
  return s;
}

export class FeatureDrift {
  private readonly current: Reservoir;
  private readonly reference: Float64Array; // sorted
  private refN = 0;
  private refStats = { mean: 0, std: 0 };
  private readonly scratch: Float64Array;
  pinned = false;
  last: DriftResult | undefined;

  constructor(
    private readonly window: number,
    private readonly buckets: number,
    random?: () => number,
  ) {
    const cap = Math.min(window, SAMPLE_CAP);
    this.current = new Reservoir(cap, random);
    this.reference = new Float64Array(cap);
    this.scratch = new Float64Array(cap);
  }

  /** Adds one value; returns the comparison when this value closed a window that had a reference. */
  add(v: number): DriftResult | undefined {
    this.current.add(v);
    if (this.current.seen < this.window) return undefined;
    const n = this.current.sortedInto(this.scratch);
    this.current.reset();
    let result: DriftResult | undefined;
    if (this.refN > 0) result = this.last = this.compare(this.scratch, n);
    if (!this.pinned) this.adopt(this.scratch, n);
    return result;
  }

  /** Pins the current window (or, when it is too short, the last closed one) as the reference. */
  pin(): boolean {
    if (this.current.size >= MIN_BASELINE) {
      const n = this.current.sortedInto(this.scratch);
      this.adopt(this.scratch, n);
    }
    if (this.refN === 0) return false;
    this.pinned = true;
    return true;
  }

  unpin(): void {
    this.pinned = false;
  }

  private adopt(sorted: Float64Array, n: number): void {
    this.reference.set(sorted.subarray(0, n));
    this.refN = n;
    this.refStats = meanStd(this.reference, n);
  }

  private compare(sorted: Float64Array, n: number): DriftResult {
    const p = psi(this.reference, this.refN, sorted, n, this.buckets);
    const ks = ksTest(this.reference, this.refN, sorted, n);
    const cur = meanStd(sorted, n);
    const ref = this.refStats;
    const meanChange = ref.std > 0 ? Math.abs(cur.mean - ref.mean) / ref.std : cur.mean === ref.mean ? 0 : Infinity;
    const stdChange = ref.std > 0 ? Math.abs(cur.std - ref.std) / ref.std : cur.std === 0 ? 0 : Infinity;
    const drifted = ks.p < KS_ALPHA;
    const score = compositeScore(p, drifted, meanChange, stdChange);
    return {
      psi: p,
      ks_pvalue: ks.p,
      ks_statistic: ks.d,
      level: psiLevel(p),
      ks_drifted: drifted,
      mean_change: meanChange,
      std_change: stdChange,
      score,
      score_level: score >= 4 ? 'high' : score >= 2 ? 'medium' : 'low',
      reference: { n: this.refN, mean: ref.mean, std: ref.std, pinned: this.pinned },
      current: { n, mean: cur.mean, std: cur.std },
    };
  }

  /** Bytes of its sample arrays (fixed at construction). */
  get bytes(): number {
    return this.current.values.byteLength + this.reference.byteLength + this.scratch.byteLength;
  }

  get pending(): number {
    return this.current.seen;
  }
}
