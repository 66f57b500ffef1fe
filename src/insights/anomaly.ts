// Statistical anomalies per model and signal (seed 000): a rolling mean and σ over the last
// `window` normal points; from 10 points on, a point z σ above the mean is anomalous at
// z ≥ `z` (3), high at z ≥ 5. Score min(z/6, 1), averaged over the last `persist_of` points
// so one slow request does not flap the gauge. Anomalous points are kept out of the
// baseline: a lasting shift stays visible (and its incident open) until the signal is back.
import { RollingWindow } from './stats.js';

export const SIGNALS = ['ttft', 'tpot', 'duration', 'error_rate'] as const;
export type Signal = (typeof SIGNALS)[number];

export const MIN_POINTS = 10;

/**
 * σ never counts as less than this: a backend that answers in exactly 5 ms every time
 * would otherwise make a 5.1 ms answer infinitely anomalous. Latencies in ms.
 */
const SIGMA_FLOOR: Record<Signal, number> = { ttft: 1, tpot: 0.1, duration: 1, error_rate: 0.02 };
const SIGMA_REL_FLOOR = 0.05;

export function severityOf(score: number): 'critical' | 'high' | 'medium' | 'low' {
  return score > 0.9 ? 'critical' : score > 0.7 ? 'high' : score > 0.5 ? 'medium' : 'low';
}

export interface AnomalySettings {
  window: number;
  z: number;
  persist: number;
  persist_of: number;
}

export interface PointResult {
  z: number;
  anomalous: boolean;
}

export class Detector {
  private readonly base: RollingWindow;
  /** The last persist_of points: anomalous flag, score, and the backend (index) each came from. */
  private readonly flags: Uint8Array;
  private readonly scores: Float64Array;
  private readonly backends: Int16Array;
  private readonly values: Float64Array;
  private at = 0;
  private filled = 0;
  lastZ = 0;

  constructor(
    readonly signal: Signal,
    private readonly s: AnomalySettings,
  ) {
    this.base = new RollingWindow(s.window);
    this.flags = new Uint8Array(s.persist_of);
    this.scores = new Float64Array(s.persist_of);
    this.backends = new Int16Array(s.persist_of);
    this.values = new Float64Array(s.persist_of);
  }

  /** z of v against the baseline (0 before MIN_POINTS): only a rise is bad (slower, more errors). */
  zFor(v: number): number {
    if (this.base.count < MIN_POINTS) return 0;
    const mean = this.base.mean;
    const sigma = Math.max(this.base.std, SIGMA_REL_FLOOR * Math.abs(mean), SIGMA_FLOOR[this.signal]);
    return Math.max(0, (v - mean) / sigma);
  }

  observe(v: number, backend: number): PointResult {
    const z = this.zFor(v);
    const anomalous = z >= this.s.z;
    if (!anomalous) this.base.push(v);
    this.lastZ = z;
    const i = this.at;
    this.flags[i] = anomalous ? 1 : 0;
    this.scores[i] = Math.min(z / 6, 1);
    this.backends[i] = backend;
    this.values[i] = v;
    this.at = (i + 1) % this.flags.length;
    if (this.filled < this.flags.length) this.filled++;
    return { z, anomalous };
  }

  /** Anomalous points among the last persist_of. */
  get recentAnomalies(): number {
    let n = 0;
    for (let i = 0; i < this.filled; i++) n += this.flags[i]!;
    return n;
  }

  /** min(z/6, 1) averaged over the last persist_of points. */
  get score(): number {
    if (this.filled === 0) return 0;
    let s = 0;
    for (let i = 0; i < this.filled; i++) s += this.scores[i]!;
    return s / this.filled;
  }

  get baseline(): { n: number; mean: number; std: number } {
    return { n: this.base.count, mean: this.base.mean, std: this.base.std };
  }

  /** Mean of the recent anomalous points (or of all recent points when none is). */
  recentMean(): number {
    let s = 0;
    let n = 0;
    for (let i = 0; i < this.filled; i++) {
      if (this.flags[i]) {
        s += this.values[i]!;
        n++;
      }
    }
    if (n === 0) {
      for (let i = 0; i < this.filled; i++) s += this.values[i]!;
      n = this.filled;
    }
    return n ? s / n : 0;
  }

  /** Backends (indices) of the recent points: which carried anomalies, which were normal. */
  recentBackends(): { anomalous: Set<number>; normal: Set<number> } {
    const anomalous = new Set<number>();
    const normal = new Set<number>();
    for (let i = 0; i < this.filled; i++) (this.flags[i] ? anomalous : normal).add(this.backends[i]!);
    return { anomalous, normal };
  }

  get bytes(): number {
    return this.base.bytes + this.flags.byteLength + this.scores.byteLength + this.backends.byteLength + this.values.byteLength;
  }

  get settings(): AnomalySettings {
    return this.s;
  }
}
