// Smoke test of the benchmark suite (bench/run.js) as users run it: a child process that
// starts the simulator, the bare proxy and the gateway as processes of their own, drives load,
// and writes a results JSON. A behaviour check only: the figures are never asserted on, just
// that every target answered, without errors, and that the gateway's TTFT/TPOT could be
// matched with the stream stamps. Everything the bench starts is stopped by the bench; the
// bench itself is stopped here if it overruns.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runProcess, type ProcessRun } from '../helpers/process.js';

let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The bench to its end; past `timeoutMs`, SIGTERM (the bench then stops its own children), SIGKILL if it lingers. */
const bench = (args: string[], timeoutMs: number): Promise<ProcessRun> =>
  runProcess(process.execPath, ['bench/run.js', '--quiet', ...args], { cwd: ROOT, timeoutMs });

type Json = Record<string, any>;

/** The simulator's stream shape in every streamed smoke run: short and quick. */
const SIM_ARGS = ['--ttft-ms', '20', '--tpot-ms', '10', '--output-tokens', '16'];

async function results(file: string, run: ProcessRun): Promise<Json> {
  expect(run.code, `bench exited ${run.code}\n${run.stderr}\n${run.stdout}`).toBe(0);
  return JSON.parse(await readFile(file, 'utf8')) as Json;
}

describe('bench/run.js', () => {
  it('runs throughput and streams against direct, bare proxy and gateway, and writes every figure', async () => {
    expect(existsSync(join(ROOT, 'dist/main.js')), 'dist/ is built by the pretest script').toBe(true);
    dir = await mkdtemp(join(tmpdir(), 'bench-test-'));
    const tFile = join(dir, 'throughput.json');
    const sFile = join(dir, 'streams.json');
    const fFile = join(dir, 'features.json');
    // The runs at once, to keep the test short; each one's figures are only checked for sanity.
    const [tRun, sRun, fRun] = await Promise.all([
      // One round (the default is three): the figures are not judged here, only produced.
      bench(['--scenario', 'throughput', '--duration', '1', '--rounds', '1', '--connections', '4', '--out', tFile], 110_000),
      bench(
        [
          '--scenario',
          'streams,responses',
          '--streams',
          '10',
          '--responses-streams',
          '10',
          '--duration',
          '2',
          '--stream-warmup',
          '0.5',
          // The side-by-side CPU run (judged at 100 streams) at this level too, one short round.
          '--stream-pair-at',
          '10',
          '--stream-pair-rounds',
          '1',
          '--stream-pair-round-s',
          '1',
          ...SIM_ARGS,
          '--out',
          sFile,
        ],
        110_000,
      ),
      // Every features gateway (memory, insights, Redis, leased quota) once, and the side-by-side
      // runs its throughput verdicts are judged on, one short round each.
      bench(
        [
          '--scenario',
          'features',
          '--targets',
          'bare,gateway',
          '--duration',
          '0.5',
          '--rounds',
          '1',
          '--connections',
          '2',
          '--features-pair-rounds',
          '1',
          '--features-pair-round-s',
          '0.5',
          '--out',
          fFile,
        ],
        110_000,
      ),
    ]);

    const t = await results(tFile, tRun);
    expect(t.node).toBe(process.version);
    expect(t.machine.cores).toBeGreaterThan(0);
    expect(typeof t.machine.cpu_model).toBe('string');
    expect(t.settings.connections).toBe(4);
    const tt = t.scenarios.throughput.targets as Json;
    expect(Object.keys(tt).sort()).toEqual(['bare', 'direct', 'gateway']);
    for (const [name, r] of Object.entries(tt)) {
      expect(r.requests, name).toBeGreaterThan(0);
      expect(r.rps, name).toBeGreaterThan(0);
      expect(r.latency_ms.n, name).toBe(r.requests);
      expect(r.latency_ms.p99, name).toBeGreaterThan(0);
      expect([r.non2xx, r.errors, r.timeouts], name).toEqual([0, 0, 0]);
    }
    expect(tt.gateway.vs_bare).toBeGreaterThan(0);
    expect(t.targets.map((x: Json) => x.id)).toContain('throughput');
    expect(tRun.stdout).toMatch(/throughput/);
    expect(tRun.stdout).toMatch(/(PASS|MISS) {2}throughput/);

    const s = await results(sFile, sRun);
    const sc = s.scenarios.streams_10 as Json;
    expect(sc.settings.streams).toBe(10);
    expect(Object.keys(sc.targets).sort()).toEqual(['bare', 'direct', 'gateway']);
    for (const [name, r] of Object.entries(sc.targets as Json)) {
      expect(r.completed, name).toBeGreaterThan(0);
      expect(r.failed, name).toBe(0);
      expect(r.chunks_per_stream, name).toBe(16);
      expect(r.ttft_ms.n, name).toBeGreaterThan(0);
      // Every content chunk carried the simulator's send stamp through the target.
      expect(r.chunk_delay_ms.n, name).toBeGreaterThan(0);
      expect(r.chunks_per_s, name).toBeGreaterThan(0);
    }
    // The gateway's own overhead histogram is read over the measured window (the others have none).
    expect(sc.targets.gateway.gateway_overhead_ms.n).toBeGreaterThan(0);
    expect(sc.targets.gateway.gateway_overhead_ms.p99).toBeGreaterThanOrEqual(sc.targets.gateway.gateway_overhead_ms.p50);
    expect(sc.targets.bare.gateway_overhead_ms).toBeUndefined();
    const m = sc.measurement.gateway as Json;
    expect(m.compared).toBeGreaterThan(0);
    expect(m.missing_log_lines).toBe(0);
    expect(m.token_count_mismatches).toBe(0);
    expect(m.tpot_abs_error_ms.n).toBe(m.compared);
    expect(m.ttft_abs_error_ms.n).toBe(m.compared);
    // Every log line carried queue_ms (figures not judged).
    expect(m.queue_ms.n).toBe(m.compared);
    // The gateway measured is the one users run: its policy sets nothing beyond backend and
    // model, the report says so, and the streams verdicts compare it with the bare proxy.
    expect(sc.gateway_knobs).toEqual({ gateway: [] });
    expect(sRun.stdout).toMatch(/policy of gateway: backend and model only/);
    expect(s.targets.map((x: Json) => x.id)).toEqual(expect.arrayContaining(['streams_ttft_10', 'streams_rate_10']));
    // Bare and gateway side by side: both carried chunks in the same window, and both cost CPU.
    const pc = sc.paired_cpu as Json;
    expect(pc.rounds).toHaveLength(1);
    expect(pc.rounds[0].bare.n).toBeGreaterThan(0);
    expect(pc.rounds[0].gateway.n).toBeGreaterThan(0);
    expect(pc.bare_us_per_chunk).toBeGreaterThan(0);
    expect(pc.gateway_us_per_chunk).toBeGreaterThan(0);
    expect(pc.median_ratio).toBeCloseTo(pc.gateway_us_per_chunk / pc.bare_us_per_chunk, 2);
    expect(pc.errors).toEqual({ bare: 0, gateway: 0 });
    expect(sRun.stdout).toMatch(/side by side \(both at once on the proxy core/);

    // The same over the Responses API: named events, one stamped delta per token, through every target.
    const rs = s.scenarios.responses_10 as Json;
    expect(rs.settings).toMatchObject({ api: 'responses', path: '/v1/responses', streams: 10 });
    expect(Object.keys(rs.targets).sort()).toEqual(['bare', 'direct', 'gateway']);
    for (const name of ['direct', 'bare']) {
      const r = rs.targets[name] as Json;
      expect(r.completed, name).toBeGreaterThan(0);
      expect(r.failed, name).toBe(0);
      expect(r.chunks_per_stream, name).toBe(16);
      expect(r.chunk_delay_ms.n, name).toBeGreaterThan(0);
    }
    // The gateway governs POST /v1/responses: every stream completes and is logged with the
    // tokens it carried, and its TTFT/TPOT is compared with the send stamps.
    const g = rs.targets.gateway as Json;
    expect(g.completed).toBeGreaterThan(0);
    expect(g.failed).toBe(0);
    expect(g.chunks_per_stream).toBe(16);
    const rm = rs.measurement.gateway as Json;
    expect(rm.compared).toBeGreaterThan(0);
    expect(rm.missing_log_lines).toBe(0);
    expect(rm.token_count_mismatches).toBe(0);
    expect(rm.tpot_abs_error_ms.n).toBe(rm.compared);
    expect(sRun.stdout).toMatch(/responses \(POST \/v1\/responses\): 10 concurrent/);

    const f = await results(fFile, fRun);
    const ft = f.scenarios.features.targets as Json;
    expect(Object.keys(ft).sort()).toEqual(
      [
        'bare',
        'gateway',
        'gateway+features',
        'gateway+features(redis)',
        'gateway+features(redis,leased)',
        'gateway+features+insights',
      ].sort(),
    );
    for (const [name, r] of Object.entries(ft)) {
      expect(r.requests, name).toBeGreaterThan(0);
      expect([r.non2xx, r.errors, r.timeouts], name).toEqual([0, 0, 0]);
    }
    const fp = f.scenarios.features.paired_cpu as Json;
    expect(Object.keys(fp).sort()).toEqual(['gateway+features', 'gateway+features(redis,leased)']);
    for (const [name, pc] of Object.entries(fp)) {
      expect(pc.rounds, name).toHaveLength(1);
      expect(pc.rounds[0].bare.n, name).toBeGreaterThan(0);
      expect(pc.rounds[0].gateway.n, name).toBeGreaterThan(0);
      expect(pc.errors, name).toEqual({ bare: 0, gateway: 0 });
      expect(pc.capacity_vs_bare, name).toBeCloseTo(pc.bare_us_per_request / pc.gateway_us_per_request, 1);
    }
    // Redis's CPU over the same window, for the Redis gateway only.
    expect(fp['gateway+features'].redis_us_per_request).toBeUndefined();
    expect(fp['gateway+features(redis,leased)'].redis_us_per_request).toBeGreaterThanOrEqual(0);
    const verdict = f.targets.find((x: Json) => x.id === 'throughput') as Json;
    expect(verdict.value).toBe(fp['gateway+features'].capacity_vs_bare);
    expect(fRun.stdout).toMatch(/side by side with bare/);
  }, 120_000);
});

describe('bench/pair.js', () => {
  it("runs two proxies side by side under the same load and reports each one's CPU per chunk and per request", async () => {
    const pair = (args: string[]) =>
      runProcess(process.execPath, ['bench/pair.js', '--json', '--warmup', '1', '--rounds', '2', '--round-s', '1', ...args], {
        cwd: ROOT,
        timeoutMs: 60_000,
      });
    const [streams, whole] = await Promise.all([
      // The streams run also takes the options that split the gap: usage asked for by the
      // client, and the bare proxy with an idle gateway preloaded (a preload that fails to
      // start fails the run).
      pair(['--streams', '4', ...SIM_ARGS, '--include-usage', `--a-node-args=--import=${join(ROOT, 'bench/lib/idle-gateway.mjs')}`]),
      // The whole-request run: every request traced and exported (OTLP) against the
      // leased-quota Redis variant, Redis's CPU per round beside.
      pair(['--mode', 'whole', '--connections', '2', '--a', 'gateway+features+otlp', '--b', 'gateway+leased']),
    ]);
    for (const [run, per] of [
      [streams, 'chunk'],
      [whole, 'request'],
    ] as const) {
      expect(run.code, `pair exited ${run.code}\n${run.stderr}`).toBe(0);
      expect(run.lines).toHaveLength(1);
      const r = run.lines[0] as Json;
      expect([r.a, r.b, r.per]).toEqual(per === 'chunk' ? ['bare', 'gateway', per] : ['gateway+features+otlp', 'gateway+leased', per]);
      expect(r.errors).toEqual([0, 0]);
      expect(r.rounds).toHaveLength(2);
      for (const round of r.rounds as Json[]) {
        expect(round.a.n).toBeGreaterThan(0);
        expect(round.b.n).toBeGreaterThan(0);
        expect(round.ratio).toBeGreaterThan(0);
      }
      expect(r.a_us).toBeGreaterThan(0);
      expect(r.b_us).toBeGreaterThan(0);
    }
    const leased = whole.lines[0] as Json;
    expect(leased.b_redis_us).toBeGreaterThanOrEqual(0);
    for (const round of leased.rounds as Json[]) expect(round.b.redis).toBeGreaterThanOrEqual(0);
    expect((streams.lines[0] as Json).b_redis_us).toBeUndefined();
    // The traced gateway's spans reached the bench's OTLP sink (at the latest when it stopped).
    expect(leased.otlp_exports).toBeGreaterThan(0);
    expect((streams.lines[0] as Json).otlp_exports).toBeUndefined();
  }, 90_000);
});
