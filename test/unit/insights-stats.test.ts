// PSI and KS against values worked out by hand, and their properties over random samples.
import { describe, expect, it } from 'vitest';
import {
  PSI_EPSILON,
  Reservoir,
  RollingWindow,
  binPercentile,
  bucketShares,
  ksStatistic,
  ksTest,
  kolmogorovQ,
  logBin,
  psi,
  psiFromShares,
  psiLevel,
  quantile,
  quantileEdges,
} from '../../src/insights/stats.js';
import { FeatureDrift, compositeScore } from '../../src/insights/drift.js';
import { mulberry32 } from '../helpers/random.js';

function normal(r: () => number, mean: number, sd: number): number {
  return mean + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}
const sorted = (a: number[]) => Float64Array.from(a).sort();

describe('PSI', () => {
  it('matches hand-computed values', () => {
    // (0.25-0.5)·ln(0.25/0.5) + (0.75-0.5)·ln(0.75/0.5)
    expect(psiFromShares([0.5, 0.5], [0.25, 0.75])).toBeCloseTo(0.274653, 6);
    // an empty expected bucket counts as ε = 0.0001: (0.1-0.0001)·ln(0.1/0.0001) + (-0.1)·ln(0.4/0.5)
    expect(PSI_EPSILON).toBe(0.0001);
    expect(psiFromShares([0.5, 0.5, 0], [0.5, 0.4, 0.1])).toBeCloseTo(0.712399, 6);
    // from data: reference 1..10, two buckets split at its median 5.5; current has 3 of 8 below it
    const ref = sorted([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(quantileEdges(ref, 10, 2)).toEqual([5.5]);
    const cur = [1, 2, 3, 7, 8, 9, 10, 11];
    expect(bucketShares([5.5], cur, cur.length)).toEqual([0.375, 0.625]);
    expect(psi(ref, 10, cur, cur.length, 2)).toBeCloseTo(0.063853, 6);
  });

  it('uses the reference deciles as bucket edges', () => {
    const ref = sorted(Array.from({ length: 101 }, (_, i) => i)); // 0..100
    expect(quantileEdges(ref, 101, 10)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(quantile(ref, 101, 0.25)).toBe(25);
  });

  it('is 0 for a sample against itself, never negative, and grows with a shift', () => {
    const r = mulberry32(7);
    for (let round = 0; round < 20; round++) {
      const a = sorted(Array.from({ length: 500 }, () => normal(r, 20, 4)));
      expect(psi(a, a.length, a, a.length, 10)).toBeCloseTo(0, 12);
      const b = Array.from({ length: 500 }, () => normal(r, 20, 4));
      const same = psi(a, a.length, b, b.length, 10);
      expect(same).toBeGreaterThanOrEqual(0);
      const shift = 0.5 + r() * 3;
      const c = b.map((v) => v + shift * 4);
      expect(psi(a, a.length, c, c.length, 10)).toBeGreaterThan(same);
    }
  });

  it('levels: < 0.1 stable, 0.1-0.2 slight, > 0.2 severe', () => {
    expect(psiLevel(0.05)).toBe('stable');
    expect(psiLevel(0.15)).toBe('slight');
    expect(psiLevel(0.25)).toBe('severe');
  });
});

describe('KS', () => {
  it('matches hand-computed values', () => {
    // Disjoint samples: D = 1; n_e = 5·5/10, λ = (√2.5 + 0.12 + 0.11/√2.5)·1 = 1.770709, Q(λ) = 2(e^{-2λ²} − e^{-8λ²} + …)
    const a = sorted([1, 2, 3, 4, 5]);
    const b = sorted([6, 7, 8, 9, 10]);
    const t = ksTest(a, 5, b, 5);
    expect(t.d).toBe(1);
    expect(t.p).toBeCloseTo(0.0037814, 6);
    // F_a - F_b peaks at 0.5 (x = 2 and x = 4)
    expect(ksStatistic(sorted([1, 2, 3, 4]), 4, sorted([3, 4, 5, 6]), 4)).toBe(0.5);
    expect(kolmogorovQ(0)).toBe(1);
  });

  it('D is symmetric and in [0,1]; p in [0,1]; same-distribution samples mostly pass at α 0.05', () => {
    const r = mulberry32(11);
    let rejected = 0;
    const rounds = 200;
    for (let i = 0; i < rounds; i++) {
      const a = sorted(Array.from({ length: 200 }, () => normal(r, 0, 1)));
      const b = sorted(Array.from({ length: 300 }, () => normal(r, 0, 1)));
      const ab = ksTest(a, a.length, b, b.length);
      const ba = ksTest(b, b.length, a, a.length);
      expect(ab.d).toBe(ba.d);
      expect(ab.d).toBeGreaterThanOrEqual(0);
      expect(ab.d).toBeLessThanOrEqual(1);
      expect(ab.p).toBeGreaterThanOrEqual(0);
      expect(ab.p).toBeLessThanOrEqual(1);
      if (ab.p < 0.05) rejected++;
    }
    // About 5% false alarms expected; 15% leaves room for the asymptotic approximation.
    expect(rejected / rounds).toBeLessThan(0.15);
  });
});

describe('composite drift score (seed 004)', () => {
  it('adds PSI, KS and shift points', () => {
    expect(compositeScore(0.25, true, 0.5, 0.5)).toBe(6);
    expect(compositeScore(0.15, false, 0.1, 0.1)).toBe(1);
    expect(compositeScore(0.05, false, 0.31, 0)).toBe(1);
  });

  it('a window shift N(20,4) → N(60,8) is severe; an unchanged stream stays stable', () => {
    const r = mulberry32(3);
    const shifted = new FeatureDrift(1000, 10, r);
    const steady = new FeatureDrift(1000, 10, r);
    for (let i = 0; i < 2000; i++) {
      shifted.add(normal(r, 20, 4));
      steady.add(normal(r, 20, 4));
    }
    expect(steady.last!.psi).toBeLessThan(0.1);
    for (let i = 0; i < 1000; i++) {
      shifted.add(normal(r, 60, 8));
      steady.add(normal(r, 20, 4));
    }
    expect(shifted.last!.psi).toBeGreaterThan(0.2);
    expect(shifted.last!.level).toBe('severe');
    expect(shifted.last!.ks_pvalue).toBeLessThan(0.05);
    expect(steady.last!.psi).toBeLessThan(0.1);
    expect(steady.last!.level).toBe('stable');
  });

  it('a pinned baseline stays the reference', () => {
    const r = mulberry32(5);
    const d = new FeatureDrift(100, 10, r);
    for (let i = 0; i < 50; i++) d.add(normal(r, 20, 4));
    expect(d.pin()).toBe(true);
    for (let i = 0; i < 250; i++) d.add(normal(r, 60, 8));
    // Still compared with the pinned N(20,4) window, not the shifted one before it.
    expect(d.last!.psi).toBeGreaterThan(0.2);
    expect(d.last!.reference.pinned).toBe(true);
  });
});

describe('bounded structures', () => {
  it('a reservoir holds at most cap values, a uniform sample of all', () => {
    const res = new Reservoir(100, mulberry32(1));
    for (let i = 0; i < 100_000; i++) res.add(i);
    expect(res.size).toBe(100);
    const mean = res.values.reduce((a, b) => a + b, 0) / 100;
    expect(mean).toBeGreaterThan(30_000);
    expect(mean).toBeLessThan(70_000);
  });

  it('a rolling window keeps the last N points', () => {
    const w = new RollingWindow(4);
    for (const v of [100, 100, 1, 2, 3, 4]) w.push(v);
    expect(w.mean).toBe(2.5);
    expect(w.std).toBeCloseTo(Math.sqrt(1.25), 12);
  });

  it('log bins read percentiles within their ±12% width', () => {
    const counts = new Float64Array(64);
    for (let v = 1; v <= 1000; v++) counts[logBin(v)]! += 1;
    for (const [q, want] of [
      [0.5, 500],
      [0.95, 950],
      [0.99, 990],
    ] as const) {
      const got = binPercentile(counts, 1000, q)!;
      expect(Math.abs(got - want) / want).toBeLessThan(0.13);
    }
  });
});
