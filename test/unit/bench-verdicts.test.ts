// The bench's verdicts (bench/lib/report.js evaluate): which targets are judged, with which
// limits, from a results JSON. Pure: no processes, no load.
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript module without types
import { evaluate } from '../../bench/lib/report.js';

interface Verdict {
  id: string;
  value: number;
  limit: number;
  pass: boolean | null;
  note: string;
}

const streamsLevel = (n: number, ideal: number, bare: { cps: number; cpu: number }, gw: { cps: number; cpu: number }) => ({
  settings: { api: 'chat', streams: n, ideal_chunks_per_s: ideal, rounds: 3 },
  gateway_knobs: { gateway: [] },
  targets: {
    bare: { chunks_per_s: bare.cps, proxy_cpu_us_per_chunk: bare.cpu, ttft_ms: { p50: 50 } },
    gateway: { chunks_per_s: gw.cps, proxy_cpu_us_per_chunk: gw.cpu, ttft_ms: { p50: 55 } },
  },
});

const verdicts = (scenarios: Record<string, unknown>): Verdict[] => evaluate({ scenarios }) as Verdict[];
const byId = (v: Verdict[], id: string) => v.find((x) => x.id === id);

describe('bench verdicts', () => {
  it('judges chunks/s and TTFT at a level the bare proxy carries, and not at one it cannot', () => {
    const v = verdicts({
      streams_300: streamsLevel(300, 3000, { cps: 2990, cpu: 60 }, { cps: 2700, cpu: 62 }),
      streams_1000: streamsLevel(1000, 48000, { cps: 13000, cpu: 48 }, { cps: 22000, cpu: 42 }),
    });
    expect(byId(v, 'streams_rate_300')).toMatchObject({ pass: true, limit: 0.9 });
    expect(byId(v, 'streams_ttft_300')).toMatchObject({ pass: true, value: 5 });
    // 27% of the offered chunks even through bare: shown, not judged, whichever way it went.
    expect(byId(v, 'streams_rate_1000')!.pass).toBeNull();
    expect(byId(v, 'streams_rate_1000')!.note).toContain('not judged');
    expect(byId(v, 'streams_ttft_1000')!.pass).toBeNull();
  });

  it('a carried level below 90% of bare chunks/s is a MISS', () => {
    const v = verdicts({ streams_300: streamsLevel(300, 3000, { cps: 2990, cpu: 60 }, { cps: 2500, cpu: 62 }) });
    expect(byId(v, 'streams_rate_300')).toMatchObject({ pass: false });
  });

  it('CPU per chunk at 100 streams is judged against 1.15x the bare proxy', () => {
    const pass = verdicts({ streams_100: streamsLevel(100, 4700, { cps: 4600, cpu: 50 }, { cps: 4600, cpu: 57 }) });
    expect(byId(pass, 'streams_cpu_100')).toMatchObject({ pass: true, limit: 1.15 });
    const miss = verdicts({ streams_100: streamsLevel(100, 4700, { cps: 4600, cpu: 50 }, { cps: 4600, cpu: 60 }) });
    expect(byId(miss, 'streams_cpu_100')).toMatchObject({ pass: false });
    expect(byId(miss, 'streams_cpu_100')!.value).toBeCloseTo(1.2, 5);
  });

  /** The features scenario's targets: bare and the script-per-request Redis store as given here, the memory and leased stores as the test says. */
  const featureTargets = (memory: Record<string, number>, leased: Record<string, number>) => ({
    bare: { rps: 1000, proxy_cpu_us_per_request: 100 },
    'gateway+features': memory,
    'gateway+features(redis)': { rps: 650, vs_bare: 0.65, proxy_cpu_us_per_request: 400, redis_cpu_us_per_request: 240 },
    'gateway+features(redis,leased)': leased,
  });

  it('features: memory store >= 85% of bare, Redis >= 70%, with Redis CPU beside', () => {
    const v = verdicts({
      features: {
        targets: featureTargets(
          { rps: 860, vs_bare: 0.86, proxy_cpu_us_per_request: 180 },
          { rps: 800, vs_bare: 0.8, proxy_cpu_us_per_request: 200, redis_cpu_us_per_request: 10 },
        ),
      },
    });
    expect(byId(v, 'throughput')).toMatchObject({ pass: true, limit: 0.85 });
    expect(byId(v, 'throughput_redis')).toMatchObject({ pass: false, limit: 0.7 });
    expect(byId(v, 'throughput_redis')!.note).toContain('Redis CPU 240 µs/req');
    expect(byId(v, 'throughput_redis_leased')).toMatchObject({ pass: true, limit: 0.7 });
  });

  it('features: a side-by-side run, where there is one, is judged instead of the req/s of rounds in turn', () => {
    const paired = (bare: number, gw: number, redis?: number) => ({
      bare_us_per_request: bare,
      gateway_us_per_request: gw,
      redis_us_per_request: redis,
      median_ratio: gw / bare,
      capacity_vs_bare: bare / gw,
      rounds: [{ ratio: gw / bare }, { ratio: gw / bare }, { ratio: gw / bare }],
    });
    const v = verdicts({
      features: {
        // The load generator caps both: req/s alike, capacity not.
        targets: featureTargets(
          { rps: 990, vs_bare: 0.99, proxy_cpu_us_per_request: 200 },
          { rps: 700, vs_bare: 0.7, proxy_cpu_us_per_request: 130, redis_cpu_us_per_request: 10 },
        ),
        paired_cpu: { 'gateway+features': paired(80, 160), 'gateway+features(redis,leased)': paired(80, 100, 4) },
      },
    });
    expect(byId(v, 'throughput')).toMatchObject({ pass: false, limit: 0.85, value: 0.5 });
    expect(byId(v, 'throughput')!.note).toContain('req/s of the rounds in turn 99%');
    expect(byId(v, 'throughput_redis_leased')).toMatchObject({ pass: true, value: 0.8 });
    expect(byId(v, 'throughput_redis_leased')!.note).toContain('Redis 4.0');
    // Not paired: still judged on its rounds' req/s.
    expect(byId(v, 'throughput_redis')).toMatchObject({ pass: false, value: 0.65 });
  });
});
