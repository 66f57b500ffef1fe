// The five scenarios. Each runs every target in turn (direct, bare proxy, gateway; or the
// one --target-url), a fresh proxy process per target, and returns plain figures.
import { autocannonRun, pacedRun, request } from './loadgen.js';
import { openStream, streamPool } from './streams.js';
import { Samples, summarize, round, nowMs, median } from './stats.js';
import { targetRss, scrape, scrapeHistogram } from './lab.js';
import { gcAndMemory } from './inspector.js';
import { drive, pairedRounds } from './paired.js';
import { Pool } from 'undici';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PROMPT = [{ role: 'user', content: 'Write one sentence about reverse proxies.' }];

export function chatBody(model, extra = {}) {
  return JSON.stringify({ model, messages: PROMPT, ...extra });
}

/** The two streaming APIs the bench drives: request path and body for `outputTokens` tokens. */
const STREAM_APIS = {
  chat: { path: '/chat/completions', body: (model, tokens) => chatBody(model, { stream: true, max_tokens: tokens }) },
  // store: false: the bench's millions of responses are not kept for follow-ups.
  responses: {
    path: '/responses',
    body: (model, tokens) => JSON.stringify({ model, input: PROMPT[0].content, stream: true, max_output_tokens: tokens, store: false }),
  },
  messages: { path: '/messages', body: (model, tokens) => JSON.stringify({ model, messages: PROMPT, stream: true, max_tokens: tokens }) },
};

function headersFor(t, extra = {}) {
  return { 'content-type': 'application/json', ...t.headers, ...extra };
}

/** The targets a scenario runs, as specs ctx.up() turns into running targets. */
function baseSpecs(ctx) {
  if (ctx.remote) return [{ kind: 'remote', name: 'target' }];
  return ctx.opts.targets.map((k) => ({ kind: k, name: k }));
}

async function withTarget(ctx, spec, fn) {
  ctx.progress.update(`starting ${spec.name}`, { force: true });
  const t = await ctx.up(spec);
  // What this gateway's policy sets beyond backend and model (run.js files it with the scenario).
  if (t.knobs) ctx.knobs[spec.name] = t.knobs;
  try {
    return await fn(t);
  } finally {
    await t.stop();
  }
}

/** Differences of a target's percentiles from a reference's. */
function added(s, ref, keys = ['p50', 'p99', 'p99_9']) {
  if (!s || !ref || !s.n || !ref.n) return undefined;
  const out = {};
  for (const k of keys) out[k] = round(s[k] - ref[k], 3);
  return out;
}

/**
 * What the gateway measured of its own overhead (llm_gateway_overhead_seconds) between two
 * scrapes: n, p50, p99 in ms, interpolated in the buckets as Prometheus' histogram_quantile.
 * Undefined for targets that do not export it (direct, bare).
 */
function overheadBetween(before, after) {
  if (!before?.le.length || !after?.le.length || before.le.length !== after.le.length) return undefined;
  const cum = after.cumulative.map((c, i) => c - before.cumulative[i]);
  const n = cum[cum.length - 1];
  if (!(n > 0)) return { n: 0 };
  const q = (quant) => {
    const rank = quant * n;
    let i = 0;
    while (i < cum.length - 1 && cum[i] < rank) i++;
    const hi = after.le[i];
    if (hi === Infinity) return after.le[i - 1] * 1000;
    const lo = i === 0 ? 0 : after.le[i - 1];
    const below = i === 0 ? 0 : cum[i - 1];
    const inBucket = cum[i] - below;
    return (inBucket > 0 ? lo + ((hi - lo) * (rank - below)) / inBucket : hi) * 1000;
  };
  return { n, p50: round(q(0.5), 3), p99: round(q(0.99), 3) };
}

const OVERHEAD = 'llm_gateway_overhead_seconds';
const measuresOverhead = (t) => t.name !== 'direct' && t.name !== 'bare';

function rrParams(ctx, t) {
  return {
    url: t.origin + t.base + '/chat/completions',
    origin: t.origin,
    path: t.base + '/chat/completions',
    headers: headersFor(t),
    body: chatBody(t.model, { max_tokens: 16 }),
  };
}

/** Max-rate request/response load on one target (warm-up, then the measured run). */
async function maxRate(ctx, t, label) {
  const { connections, duration, warmup } = ctx.opts;
  const p = rrParams(ctx, t);
  if (warmup > 0) await autocannonRun({ ...p, connections, duration: warmup, progress: ctx.progress, label: `${label} ${t.name} warm-up` });
  return withCpu(t, () => autocannonRun({ ...p, connections, duration, progress: ctx.progress, label: `${label} ${t.name}` }));
}

/**
 * Runs `fn` and adds the CPU time the target's own process spent meanwhile (all threads, so
 * the log writes of libuv's pool count too) per request, or per chunk for streams. Less
 * sensitive to other load on the machine than req/s, since a descheduled process spends none.
 */
async function withCpu(t, fn, per = 'requests') {
  const before = t.child?.cpuMs() ?? NaN;
  // A gateway on the redis store: Redis's own CPU (INFO cpu, user + sys) over the same window.
  const redisBefore = t.redisCpuMs ? await t.redisCpuMs() : NaN;
  const r = await fn();
  const spent = (t.child?.cpuMs() ?? NaN) - before;
  const redisSpent = t.redisCpuMs ? (await t.redisCpuMs()) - redisBefore : NaN;
  const n = per === 'chunks' ? r.chunks_total : r.requests;
  if (Number.isFinite(spent)) {
    r.proxy_cpu_ms = round(spent, 0);
    if (n > 0) r[per === 'chunks' ? 'proxy_cpu_us_per_chunk' : 'proxy_cpu_us_per_request'] = round((spent * 1000) / n, 1);
  }
  if (Number.isFinite(redisSpent) && n > 0) r.redis_cpu_us_per_request = round((redisSpent * 1000) / n, 1);
  return r;
}

// ---------------------------------------------------------------------------------------------
// 1. throughput: non-streamed completions at max rate, fixed connections.

/** What the max-rate scenarios (throughput, features) ran with. */
function maxRateSettings(ctx) {
  const { connections, duration, rounds } = ctx.opts;
  return { connections, duration_s: duration, rounds, stream: false, sim: { ttft_ms: 0, tpot_ms: 0, output_tokens: 16 } };
}

export async function throughput(ctx) {
  await ctx.simConfig({ ttftMs: 0, tpotMs: 0, outputTokens: 16 });
  const targets = await inRounds(ctx, baseSpecs(ctx), (t) => maxRate(ctx, t, 'throughput'));
  ratios(targets);
  return {
    settings: maxRateSettings(ctx),
    targets,
  };
}

/**
 * Max-rate runs take the targets in turn, `--rounds` times over (bare, gateway, ..., then
 * again), and keep each target's median round. A shared VM's speed drifts over minutes (the
 * bare proxy's CPU per request has varied from 52 to 84 us between scenarios of one run);
 * with one pass per target that drift fell between the targets being compared.
 */
async function inRounds(ctx, specs, run) {
  const rounds = ctx.remote ? 1 : ctx.opts.rounds;
  const per = {};
  for (let i = 0; i < rounds; i++) {
    for (const spec of specs) (per[spec.name] ??= []).push(await withTarget(ctx, spec, (t) => run(t, spec)));
  }
  const targets = {};
  for (const [name, list] of Object.entries(per)) {
    const sorted = [...list].sort((a, b) => a.rps - b.rps);
    const median = sorted[Math.floor((sorted.length - 1) / 2)];
    targets[name] =
      list.length > 1
        ? { ...median, rounds_rps: list.map((r) => r.rps), rounds_cpu_us_per_request: list.map((r) => r.proxy_cpu_us_per_request ?? null) }
        : median;
  }
  return targets;
}

function ratios(targets) {
  const bare = targets.bare?.rps;
  const direct = targets.direct?.rps;
  for (const r of Object.values(targets)) {
    if (bare) r.vs_bare = round(r.rps / bare, 3);
    if (direct) r.vs_direct = round(r.rps / direct, 3);
    if (targets.gateway?.rps && r !== targets.gateway) r.vs_gateway = round(r.rps / targets.gateway.rps, 3);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. latency: a fixed request rate well below saturation.

export async function latency(ctx) {
  const { rate, duration, warmup, latencyClient, connections } = ctx.opts;
  await ctx.simConfig({ ttftMs: 0, tpotMs: 0, outputTokens: 16 });
  const targets = {};
  for (const spec of baseSpecs(ctx)) {
    targets[spec.name] = await withTarget(ctx, spec, async (t) => {
      const p = rrParams(ctx, t);
      const label = `latency ${t.name}`;
      if (latencyClient === 'autocannon') {
        if (warmup > 0)
          await autocannonRun({
            ...p,
            connections,
            overallRate: rate,
            duration: warmup,
            progress: ctx.progress,
            label: `${label} warm-up`,
          });
        return withCpu(t, () => autocannonRun({ ...p, connections, overallRate: rate, duration, progress: ctx.progress, label }));
      }
      if (warmup > 0) await pacedRun({ ...p, rate, duration: warmup, progress: ctx.progress, label: `${label} warm-up` });
      const ov = measuresOverhead(t) ? await scrapeHistogram(t, OVERHEAD) : undefined;
      const r = await withCpu(t, () => pacedRun({ ...p, rate, duration, progress: ctx.progress, label }));
      if (ov) r.gateway_overhead_ms = overheadBetween(ov, await scrapeHistogram(t, OVERHEAD));
      return r;
    });
  }
  for (const r of Object.values(targets)) {
    r.added_vs_direct_ms = added(r.latency_ms, targets.direct?.latency_ms);
    r.added_vs_bare_ms = added(r.latency_ms, targets.bare?.latency_ms);
  }
  return { settings: { rate, duration_s: duration, client: latencyClient, sim: { ttft_ms: 0, tpot_ms: 0, output_tokens: 16 } }, targets };
}

// ---------------------------------------------------------------------------------------------
// 3. streams: N concurrent streamed completions with realistic timing.

/** The same measurement over the Responses API (POST /v1/responses, named SSE events). */
export function responses(ctx, n) {
  return streams(ctx, n, 'responses');
}

/** The same measurement over Anthropic's Messages API (POST /v1/messages, named SSE events). */
export function messages(ctx, n) {
  return streams(ctx, n, 'messages');
}

export async function streams(ctx, n, api = 'chat') {
  const { ttftMs, tpotMs, outputTokens, duration } = ctx.opts;
  await ctx.simConfig({ ttftMs, tpotMs, outputTokens });
  const targets = {};
  const recsByTarget = {};
  const children = {};
  // --stream-rounds N: the targets in turn N times, each keeping its median round by CPU per
  // chunk (by chunks/s for direct), as the max-rate scenarios do: one pass lets a shared VM's
  // drift fall between bare and gateway (bare alone measured 47 to 90 µs/chunk minutes apart).
  const rounds = ctx.remote ? 1 : ctx.opts.streamRounds;
  const runs = {};
  for (let i = 0; i < rounds; i++) {
    for (const spec of baseSpecs(ctx)) {
      (runs[spec.name] ??= []).push(await withTarget(ctx, spec, async (t) => ({ ...(await streamRun(ctx, t, n, api)), child: t.child })));
    }
  }
  for (const [name, list] of Object.entries(runs)) {
    const key = (r) => r.result.proxy_cpu_us_per_chunk ?? r.result.chunks_per_s ?? 0;
    const pick = [...list].sort((a, b) => key(a) - key(b))[Math.floor((list.length - 1) / 2)];
    targets[name] =
      list.length > 1
        ? {
            ...pick.result,
            rounds_cpu_us_per_chunk: list.map((r) => r.result.proxy_cpu_us_per_chunk ?? null),
            rounds_chunks_per_s: list.map((r) => r.result.chunks_per_s),
          }
        : pick.result;
    recsByTarget[name] = pick.recs;
    children[name] = pick.child;
  }
  const direct = targets.direct;
  for (const r of Object.values(targets)) {
    r.added_ttft_vs_direct_ms = added(r.ttft_ms, direct?.ttft_ms);
    r.added_chunk_delay_vs_direct_ms = added(r.chunk_delay_ms, direct?.chunk_delay_ms);
    r.added_chunk_delay_vs_bare_ms = added(r.chunk_delay_ms, targets.bare?.chunk_delay_ms);
    r.added_ttft_vs_bare_ms = added(r.ttft_ms, targets.bare?.ttft_ms);
  }
  // Client↔server overhead seen on direct streams: client TTFT minus the simulator's own TTFT.
  let directOverhead;
  if (recsByTarget.direct) {
    const o = recsByTarget.direct
      .filter((r) => Number.isFinite(r.simT0) && Number.isFinite(r.firstSim))
      .map((r) => r.firstAt - r.sendAt - (r.firstSim - r.simT0));
    if (o.length) directOverhead = { median_ms: round(median(o), 3), ...summarize(o) };
  }
  const measurement = {};
  for (const [name, child] of Object.entries(children)) {
    if (!child || name === 'bare') continue;
    measurement[name] = measurementError(child.log(), recsByTarget[name], directOverhead?.median_ms);
  }
  const names = baseSpecs(ctx).map((spec) => spec.name);
  const paired =
    !ctx.remote && api === 'chat' && ctx.opts.streamPairAt.includes(n) && names.includes('bare') && names.includes('gateway')
      ? await pairedStreamsCpu(ctx, n, api)
      : undefined;
  return {
    paired_cpu: paired,
    settings: {
      api,
      path: `/v1${STREAM_APIS[api].path}`,
      streams: n,
      duration_s: duration,
      rounds,
      // A remote target's model decides its own timing; max_tokens is still sent.
      sim: ctx.remote ? null : { ttft_ms: ttftMs, tpot_ms: tpotMs, output_tokens: outputTokens },
      max_tokens: outputTokens,
      ideal_chunks_per_s: ctx.remote ? null : round((n * outputTokens * 1000) / (ttftMs + Math.max(0, outputTokens - 1) * tpotMs), 0),
    },
    targets,
    direct_overhead_ms: directOverhead,
    measurement,
  };
}

/**
 * The bare proxy and a gateway side by side on the proxy core, each driven by its own client
 * pool, and the CPU of both read over the same windows (bench/lib/paired.js), per `per` (chunk
 * or request). `load(t)` gives drive()'s options for a target. The verdicts that compare CPU
 * are judged on these runs: rounds taken in turn drift more than the gaps they judge.
 */
async function sideBySide(ctx, gatewaySpec, { label, per, load, warmupS, rounds, roundS }) {
  ctx.progress.update(`${label}: starting bare and ${gatewaySpec.name} side by side`, { force: true });
  const started = [];
  const loads = [];
  try {
    for (const spec of [{ kind: 'bare', name: 'bare' }, gatewaySpec]) started.push(await ctx.up(spec));
    const [A, B] = started;
    for (const t of started) loads.push(drive(t, load(t)));
    ctx.progress.update(`${label} side by side: ${warmupS} s warm-up`, { force: true });
    await sleep(warmupS * 1000);
    const r = await pairedRounds(A, B, loads, {
      rounds,
      roundMs: roundS * 1000,
      onRound: (row, i) =>
        ctx.progress.update(`${label} side by side: round ${i + 1}/${rounds}, ${gatewaySpec.name}/bare ${row.ratio}`, { force: true }),
    });
    return {
      warmup_s: warmupS,
      round_s: roundS,
      [`bare_us_per_${per}`]: r.a_us,
      [`gateway_us_per_${per}`]: r.b_us,
      ...(r.b_redis_us !== undefined ? { [`redis_us_per_${per}`]: r.b_redis_us } : {}),
      median_ratio: r.median_ratio,
      ratio_of_sums: r.ratio_of_sums,
      errors: { bare: r.errors[0], gateway: r.errors[1] },
      rounds: r.rounds.map((x) => ({ bare: x.a, gateway: x.b, ratio: x.ratio })),
    };
  } finally {
    await Promise.all(loads.map((l) => l.close()));
    for (const t of started.reverse()) await t.stop();
  }
}

/**
 * Bare proxy and gateway side by side, n streams each: CPU per chunk (a chunk is one client
 * read, counted the same way for both), the streams CPU verdict.
 */
function pairedStreamsCpu(ctx, n, api) {
  const { ttftMs, tpotMs, outputTokens, streamWarmup, streamPairRounds, streamPairRoundS } = ctx.opts;
  return sideBySide(
    ctx,
    { kind: 'gateway', name: 'gateway' },
    {
      label: `streams(${n})`,
      per: 'chunk',
      load: (t) => ({
        workers: n,
        path: STREAM_APIS[api].path,
        body: STREAM_APIS[api].body(t.model, outputTokens),
        stream: true,
        spreadMs: ttftMs + tpotMs * outputTokens,
      }),
      warmupS: streamWarmup,
      rounds: streamPairRounds,
      roundS: streamPairRoundS,
    },
  );
}

/**
 * N workers, each opening a stream, reading it to the end, and opening the next. Starts are
 * spread over a ramp; streams sent during the ramp/warm-up are not measured, chunks are
 * counted when they arrive inside the measured window.
 */
async function streamRun(ctx, t, n, api) {
  const { ttftMs, tpotMs, outputTokens, duration, streamWarmup } = ctx.opts;
  const pool = streamPool(t.origin, n + 8);
  const path = t.base + STREAM_APIS[api].path;
  const body = Buffer.from(STREAM_APIS[api].body(t.model, outputTokens));
  const streamMs = t.remote ? 2000 : ttftMs + Math.max(0, outputTokens - 1) * tpotMs;
  const ramp = Math.min(2000, Math.max(100, streamMs));
  const start = nowMs();
  const mStart = start + Math.max(ramp, streamWarmup * 1000);
  const mEnd = mStart + duration * 1000;
  const delays = new Samples(1 << 16);
  const gaps = new Samples(1 << 16);
  const simLate = new Samples(1 << 16);
  const ttft = new Samples();
  const recs = [];
  const errorKinds = {};
  let chunksInWindow = 0;
  let started = 0;
  let completed = 0;
  let failed = 0;
  let open = 0;
  const prefix = `bench-${ctx.tag}-${api}-${t.name}-${n}-`;
  const onChunk = (rec, at, ts, prevAt, prevSim) => {
    if (at < mStart || at > mEnd) return;
    chunksInWindow++;
    if (ts === ts) delays.push(at - ts); // ts === ts: not NaN
    if (prevAt === prevAt) gaps.push(at - prevAt);
    if (ts === ts && prevSim === prevSim) simLate.push(ts - prevSim - tpotMs);
  };
  const headers = headersFor(t);
  const worker = async (w) => {
    await sleep((w * ramp) / n);
    while (nowMs() < mEnd) {
      const id = prefix + started++;
      open++;
      const rec = await openStream(pool, { path, headers: { ...headers, 'x-request-id': id }, body, id, onChunk, api }).done;
      open--;
      if (rec.error) {
        failed++;
        errorKinds[rec.error] = (errorKinds[rec.error] ?? 0) + 1;
      } else completed++;
      if (rec.sendAt >= mStart && rec.sendAt <= mEnd) {
        delete rec.controller;
        delete rec.done;
        recs.push(rec);
        if (!rec.error && rec.n > 0) ttft.push(rec.firstAt - rec.sendAt);
      }
    }
  };
  // CPU time of each process over the measured window: who is saturated.
  const simChild = ctx.lab?.sim?.child;
  const cpu = {};
  const cpuMark = (k) => {
    cpu[k] = {
      proxy: t.child?.cpuMs() ?? NaN,
      simulator: simChild?.cpuMs() ?? NaN,
      load_generator: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
    };
  };
  // The gateway's own overhead histogram over the same window.
  const ov = {};
  const ovMark = (k) => {
    if (measuresOverhead(t)) ov[k] = scrapeHistogram(t, OVERHEAD).catch(() => undefined);
  };
  const markStart = setTimeout(() => (cpuMark('start'), ovMark('start')), Math.max(0, mStart - nowMs()));
  const markEnd = setTimeout(() => (cpuMark('end'), ovMark('end')), Math.max(0, mEnd - nowMs()));
  const timer = setInterval(() => {
    const now = nowMs();
    const phase = now < mStart ? 'ramp' : now <= mEnd ? `${((now - mStart) / 1000).toFixed(1)}/${duration}s` : 'drain';
    ctx.progress.update(
      `${api === 'chat' ? 'streams' : api}(${n}) ${t.name} ${phase}  open ${open}  done ${completed}  failed ${failed}  chunks ${chunksInWindow}`,
    );
  }, 250);
  try {
    await Promise.all(Array.from({ length: n }, (_, w) => worker(w)));
  } finally {
    clearInterval(timer);
    clearTimeout(markStart);
    clearTimeout(markEnd);
    await pool.destroy();
  }
  const measured = recs.filter((r) => !r.error);
  const cpuWindow = {};
  if (cpu.start && cpu.end) {
    for (const k of Object.keys(cpu.start)) {
      const v = cpu.end[k] - cpu.start[k];
      if (Number.isFinite(v)) cpuWindow[k] = round((100 * v) / (duration * 1000), 1);
    }
  }
  const proxyCpu = cpu.start && cpu.end ? cpu.end.proxy - cpu.start.proxy : NaN;
  return {
    recs: measured,
    result: {
      streams: n,
      started,
      completed,
      failed,
      error_kinds: errorKinds,
      measured_streams: recs.length,
      ttft_ms: summarize(ttft),
      chunk_delay_ms: summarize(delays),
      chunk_gap_ms: summarize(gaps),
      sim_lateness_ms: summarize(simLate),
      chunks_per_s: round(chunksInWindow / duration, 0),
      chunks_per_stream: measured.length ? round(measured.reduce((a, r) => a + r.n, 0) / measured.length, 2) : 0,
      cpu_percent_in_window: cpuWindow,
      proxy_cpu_us_per_chunk: Number.isFinite(proxyCpu) && chunksInWindow > 0 ? round((proxyCpu * 1000) / chunksInWindow, 2) : undefined,
      gateway_overhead_ms: ov.start && ov.end ? overheadBetween(await ov.start, await ov.end) : undefined,
    },
  };
}

/**
 * The gateway's own TTFT/TPOT (its per-request log line, matched by the x-request-id we sent)
 * against what the stream shows:
 *  - TPOT truth = (sim_ts of the last content chunk − sim_ts of the first) / (n − 1), the
 *    simulator's exact send times; the gateway logs (its last − first token time) / (output − 1).
 *  - TTFT truth = first token leaving the gateway − the gateway receiving the request. Neither
 *    instant is visible from outside, so it is estimated as client TTFT − the median client↔server
 *    overhead of direct streams (client TTFT − the simulator's own TTFT, x-sim-request-ms to the
 *    first sim_ts). The estimate carries the per-request noise of two loopback legs.
 *  - A noise-free check: the gateway's window lies inside the client's and contains the
 *    simulator's, so sim TTFT ≤ ttft_ms ≤ client TTFT must hold; the bracket violation
 *    max(0, sim TTFT − ttft_ms, ttft_ms − client TTFT) is a lower bound on the error.
 */
export function measurementError(logText, recs, directOverheadMs) {
  const byId = new Map();
  for (const line of logText.split('\n')) {
    if (!line.includes('"msg":"request"')) continue;
    try {
      const j = JSON.parse(line);
      if (typeof j.request_id === 'string') byId.set(j.request_id, j);
    } catch {
      /* a torn line at a crash; ignore */
    }
  }
  const tpotErr = [];
  const ttftErr = [];
  const viol = [];
  // Time the gateway's requests waited for an upstream connection (0 unless a cap binds).
  const queue = [];
  let compared = 0;
  let missing = 0;
  let tokenMismatch = 0;
  let noTpot = 0;
  for (const r of recs ?? []) {
    const l = byId.get(r.id);
    if (!l) {
      missing++;
      continue;
    }
    compared++;
    if (typeof l.queue_ms === 'number') queue.push(l.queue_ms);
    if (l.tokens?.output !== undefined && l.tokens.output !== r.n) tokenMismatch++;
    if (typeof l.tpot_ms === 'number' && r.n > 1 && Number.isFinite(r.firstSim))
      tpotErr.push(l.tpot_ms - (r.lastSim - r.firstSim) / (r.n - 1));
    else noTpot++;
    if (typeof l.ttft_ms === 'number') {
      const client = r.firstAt - r.sendAt;
      if (directOverheadMs !== undefined) ttftErr.push(l.ttft_ms - (client - directOverheadMs));
      if (Number.isFinite(r.simT0) && Number.isFinite(r.firstSim))
        viol.push(Math.max(0, r.firstSim - r.simT0 - l.ttft_ms, l.ttft_ms - client));
    }
  }
  const abs = (a) => a.map(Math.abs);
  return {
    compared,
    missing_log_lines: missing,
    token_count_mismatches: tokenMismatch,
    without_tpot: noTpot,
    tpot_error_ms: summarize(tpotErr, 4),
    tpot_abs_error_ms: summarize(abs(tpotErr), 4),
    ttft_error_ms: summarize(ttftErr, 4),
    ttft_abs_error_ms: summarize(abs(ttftErr), 4),
    ttft_bracket_violation_ms: summarize(viol, 4),
    queue_ms: summarize(queue, 3),
  };
}

// ---------------------------------------------------------------------------------------------
// 4. features: throughput with keys, rate limits, budgets and breakers on.

export async function features(ctx) {
  if (ctx.remote)
    return { skipped: 'features compares gateway configurations the benchmark starts itself; not available with --target-url' };
  await ctx.simConfig({ ttftMs: 0, tpotMs: 0, outputTokens: 16 });
  const specs = baseSpecs(ctx);
  const notes = [];
  if (ctx.opts.targets.includes('gateway')) {
    specs.push({ kind: 'gateway', features: 'memory', name: 'gateway+features' });
    specs.push({ kind: 'gateway', features: 'memory', insights: true, name: 'gateway+features+insights' });
    if (await ctx.lab.redisReachable()) {
      specs.push({ kind: 'gateway', features: 'redis', name: 'gateway+features(redis)' });
      specs.push({ kind: 'gateway', features: 'redis', leased: true, name: 'gateway+features(redis,leased)' });
    } else notes.push(`redis at ${ctx.opts.redisUrl} unreachable: the redis store variant was skipped`);
  }
  const admission = {};
  const targets = await inRounds(ctx, specs, async (t, spec) => {
    if (spec.features) admission[spec.name] = await probeAdmission(ctx, t);
    const r = await maxRate(ctx, t, 'features');
    if (spec.features) Object.assign(admission[spec.name], await admissionMetrics(t));
    return r;
  });
  ratios(targets);
  const sideBySideRuns = await pairedFeaturesCpu(ctx, specs);
  const off = targets['gateway+features']?.proxy_cpu_us_per_request;
  const on = targets['gateway+features+insights']?.proxy_cpu_us_per_request;
  if (off && on)
    notes.push(`insights (defaults, quality.sample 1.0): ${on} µs CPU per request on vs ${off} off, ratio ${round(on / off, 3)}`);
  return {
    settings: {
      ...maxRateSettings(ctx),
      features:
        'one virtual key; rpm/tpm/concurrency limits and budgets on key, user, team, model and global scopes (values never reached); circuit breaker at its defaults',
    },
    targets,
    paired_cpu: sideBySideRuns,
    admission,
    notes,
  };
}

/**
 * The bare proxy side by side with each judged features gateway (memory store; Redis store
 * with leased quota), `--connections` each: CPU per request of both over the same windows.
 * Their ratio is what each could serve at its own capacity, which the req/s of the rounds
 * above do not show when the load generator's core is the limit for both.
 */
async function pairedFeaturesCpu(ctx, specs) {
  if (ctx.opts.featuresPairRounds === 0 || !specs.some((s) => s.name === 'bare')) return undefined;
  const out = {};
  for (const name of ['gateway+features', 'gateway+features(redis,leased)']) {
    const spec = specs.find((s) => s.name === name);
    if (!spec) continue;
    const r = await sideBySide(ctx, spec, {
      label: `features ${name}`,
      per: 'request',
      load: (t) => ({
        workers: ctx.opts.connections,
        path: '/chat/completions',
        body: chatBody(t.model, { max_tokens: 16 }),
        stream: false,
      }),
      warmupS: ctx.opts.warmup,
      rounds: ctx.opts.featuresPairRounds,
      roundS: ctx.opts.featuresPairRoundS,
    });
    out[name] = { ...r, capacity_vs_bare: round(1 / r.median_ratio, 3) };
  }
  return out;
}

/** One request through a features gateway: is admission visibly at work (x-ratelimit-* headers)? And does a wrong key get 401? */
async function probeAdmission(ctx, t) {
  const pool = new Pool(t.origin, { connections: 1 });
  try {
    const body = chatBody(t.model, { max_tokens: 4 });
    let headers = {};
    const ok = await new Promise((resolve) => {
      let status = 0;
      pool.dispatch(
        { method: 'POST', path: t.base + '/chat/completions', headers: headersFor(t), body },
        {
          onRequestStart() {},
          onResponseStart(_c, s, h) {
            status = s;
            headers = h;
          },
          onResponseData() {},
          onResponseEnd() {
            resolve(status);
          },
          onResponseError() {
            resolve(0);
          },
        },
      );
    });
    const bad = await request(pool, {
      method: 'POST',
      path: t.base + '/chat/completions',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-wrong' },
      body,
    });
    return {
      probe_status: ok,
      wrong_key_status: bad.status,
      ratelimit_headers: Object.keys(headers).filter((h) => h.startsWith('x-ratelimit-')),
    };
  } finally {
    await pool.destroy();
  }
}

async function admissionMetrics(t) {
  const pool = new Pool(t.origin, { connections: 1 });
  try {
    const chunks = [];
    await new Promise((resolve) => {
      pool.dispatch(
        { method: 'GET', path: '/metrics', headers: {} },
        {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData(_c, c) {
            chunks.push(c);
          },
          onResponseEnd: resolve,
          onResponseError: resolve,
        },
      );
    });
    const text = Buffer.concat(chunks).toString('utf8');
    const spend = text.split('\n').filter((l) => l.startsWith('llm_gateway_budget_spend_usd{'));
    const limited = text.split('\n').filter((l) => l.startsWith('llm_gateway_rate_limited_total{'));
    return { budget_spend_series: spend.length, rate_limited_series: limited.length };
  } finally {
    await pool.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// 5. memory: RSS idle, with many open streams, and across a soak.

async function rssSample(t, samples = 3, gapMs = 250) {
  const v = [];
  for (let i = 0; i < samples; i++) {
    if (i) await sleep(gapMs);
    v.push(await targetRss(t));
  }
  return median(v);
}

export async function memory(ctx) {
  const { memoryStreams, soak, soakFirst, connections } = ctx.opts;
  const specs = ctx.remote
    ? [{ kind: 'remote', name: 'target' }]
    : [
        ...(ctx.opts.targets.includes('bare') ? [{ kind: 'bare', name: 'bare' }] : []),
        ...(ctx.opts.targets.includes('gateway')
          ? [{ kind: 'gateway', features: ctx.opts.memoryPolicy === 'plain' ? null : 'memory', name: 'gateway' }]
          : []),
      ];
  const targets = {};
  for (const spec of specs) {
    targets[spec.name] = await withTarget(ctx, { ...spec, inspect: spec.kind === 'gateway' }, async (t) => {
      const out = { rss_bytes: {} };
      // A remote deployment is measured as it is ("start"); a local one fresh and idle.
      if (!t.remote) await sleep(1500);
      out.rss_bytes[t.remote ? 'start' : 'idle'] = await rssSample(t);
      // Idle RSS depends on whether V8 has yet collected the start-up garbage (the tokenizer's
      // ranks are built from strings): also taken after a forced full GC, which is what the
      // idle target is judged on.
      if (t.inspectorUrl) {
        const mem = await gcAndMemory(t.inspectorUrl).catch(() => null);
        if (mem) {
          await sleep(500);
          out.rss_bytes.idle_after_gc = await rssSample(t);
          out.live_heap_idle_bytes = mem.heapUsed;
        }
      }
      if (!t.remote && memoryStreams.length) Object.assign(out, await openStreamsRss(ctx, t, memoryStreams, out.rss_bytes));
      // A remote deployment is soaked as it is; a local gateway afresh, so the garbage of the
      // thousands of aborted streams above (collected whenever V8 gets to it) is not mistaken
      // for growth, or hides it.
      if (spec.name !== 'bare' && soak > 0 && t.remote) out.soak = await soakRun(ctx, t, soak, Math.min(soakFirst, soak), connections);
      return out;
    });
    if (!ctx.remote && spec.name !== 'bare' && soak > 0) {
      targets[spec.name].soak = await withTarget(ctx, { ...spec, inspect: true }, async (t) => {
        await sleep(1500);
        const idle = await rssSample(t);
        const mem = await gcAndMemory(t.inspectorUrl).catch(() => null);
        const out = {
          rss_start_bytes: idle,
          live_heap_idle_bytes: mem?.heapUsed ?? null,
          ...(await soakRun(ctx, t, soak, Math.min(soakFirst, soak), connections)),
        };
        if (ctx.opts.soakDrain > 0 && out.live_heap_idle_bytes !== null) Object.assign(out, await drained(ctx, t, ctx.opts.soakDrain));
        return out;
      });
    }
  }
  return {
    settings: {
      streams: memoryStreams,
      stream_sim: { ttft_ms: 20, tpot_ms: 1000 },
      soak_requests: soak,
      soak_first: soakFirst,
      connections,
      gateway_policy: ctx.remote
        ? 'the deployment'
        : ctx.opts.memoryPolicy === 'plain'
          ? 'no keys, limits or budgets'
          : 'keys, limits, budgets (memory store): as in features',
      soak_drain_s: ctx.opts.soakDrain,
      soak_process: ctx.remote ? 'the deployment' : 'a fresh gateway process (not the one that held the open streams)',
      remote: Boolean(ctx.remote),
      rss_source: ctx.remote ? 'llm_gateway_process_resident_memory_bytes from /metrics' : 'VmRSS from /proc/PID/status',
    },
    targets,
  };
}

/** Opens streams up to each level (long TPOT keeps them open), waits for each to be flowing, samples RSS. */
async function openStreamsRss(ctx, t, levels, rss) {
  await ctx.simConfig({ ttftMs: 20, tpotMs: 1000, outputTokens: 1_000_000 });
  const max = Math.max(...levels);
  const pool = streamPool(t.origin, max + 8);
  const path = t.base + '/chat/completions';
  const body = Buffer.from(chatBody(t.model, { stream: true }));
  const headers = headersFor(t);
  const recs = [];
  const out = { open_streams: {}, failed_streams: 0 };
  try {
    for (const level of [...levels].sort((a, b) => a - b)) {
      while (recs.length < level) {
        recs.push(
          openStream(pool, { path, headers: { ...headers, 'x-request-id': `bench-${ctx.tag}-mem-${recs.length}` }, body, id: recs.length }),
        );
        if (recs.length % 100 === 0) {
          ctx.progress.update(`memory ${t.name} opening streams ${recs.length}/${level}`);
          await sleep(20);
        }
      }
      const deadline = Date.now() + 60_000;
      for (;;) {
        const flowing = recs.filter((r) => r.n > 0).length;
        const failed = recs.filter((r) => r.error).length;
        ctx.progress.update(`memory ${t.name} streams flowing ${flowing}/${level}  failed ${failed}`);
        if (flowing + failed >= level || Date.now() > deadline) break;
        await sleep(200);
      }
      await sleep(2000);
      rss[String(level)] = await rssSample(t);
      out.open_streams[String(level)] = recs.filter((r) => r.n > 0 && !r.error).length;
    }
  } finally {
    out.failed_streams = recs.filter((r) => r.error).length;
    out.failed_kinds = {};
    for (const r of recs) if (r.error) out.failed_kinds[r.error] = (out.failed_kinds[r.error] ?? 0) + 1;
    await pool.destroy();
    await Promise.all(recs.map((r) => r.done));
  }
  await sleep(1500);
  rss.after_streams_closed = await rssSample(t);
  const sorted = [...levels].sort((a, b) => a - b);
  const lo = sorted[0];
  const hi = sorted[sorted.length - 1];
  out.per_stream_bytes = {
    [`${hi}_vs_idle`]: Math.round((rss[String(hi)] - rss.idle) / hi),
  };
  if (hi !== lo) out.per_stream_bytes[`${hi}_vs_${lo}`] = Math.round((rss[String(hi)] - rss[String(lo)]) / (hi - lo));
  await ctx.simConfig({ ttftMs: 0, tpotMs: 0, outputTokens: 16 });
  return out;
}

/**
 * Rate limits keep a 60 s window of per-request state, so a soak's live heap grows for a
 * while however leak-free the gateway is. After the soak: wait out the windows, send a few
 * requests (admission trims its windows on admit), force a full GC, and compare the live heap
 * with the idle one taken before the soak. What remains is what the soak left behind.
 */
async function drained(ctx, t, seconds) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    ctx.progress.update(`memory ${t.name}: waiting ${Math.ceil((until - Date.now()) / 1000)} s for the rate-limit windows to expire`);
    await sleep(Math.min(1000, Math.max(0, until - Date.now())));
  }
  const p = rrParams(ctx, t);
  await autocannonRun({ ...p, connections: 1, amount: 20 });
  await sleep(500);
  const mem = await gcAndMemory(t.inspectorUrl).catch(() => null);
  return { drain_s: seconds, live_heap_drained_bytes: mem?.heapUsed ?? null, rss_drained_bytes: await rssSample(t) };
}

/** `total` non-streamed requests in segments, RSS (and heap, from /metrics) after each. */
async function soakRun(ctx, t, total, first, connections) {
  await ctx.simConfig({ ttftMs: 0, tpotMs: 0, outputTokens: 16 });
  const p = rrParams(ctx, t);
  const segments = [first];
  const rest = total - first;
  const parts = Math.min(10, Math.max(1, Math.ceil(rest / first)));
  for (let i = 0; i < parts && rest > 0; i++) segments.push(Math.round((rest * (i + 1)) / parts) - Math.round((rest * i) / parts));
  const series = [];
  let done = 0;
  let non2xx = 0;
  let errors = 0;
  const started = performance.now();
  // After each segment: a forced full GC through the inspector, then the live heap. Heap
  // used without a GC (all a remote target offers, from /metrics) includes garbage that waits
  // for the next major GC, and RSS follows V8's heap sizing; the live heap is the leak signal.
  for (const amount of segments) {
    if (amount <= 0) continue;
    const r = await autocannonRun({
      ...p,
      connections,
      amount,
      progress: ctx.progress,
      label: `memory soak ${t.name} ${done + amount}/${total}:`,
    });
    done += amount;
    non2xx += r.non2xx;
    errors += r.errors + r.timeouts;
    await sleep(500);
    const point = { requests: done, rss_bytes: await rssSample(t, 3, 150) };
    if (t.inspectorUrl) {
      const mem = await gcAndMemory(t.inspectorUrl).catch(() => null);
      point.live_heap_bytes = mem?.heapUsed ?? null;
      point.rss_after_gc_bytes = mem?.rss ?? null;
    } else {
      const m = await scrape(t).catch(() => ({}));
      point.heap_used_bytes = m.llm_gateway_nodejs_heap_size_used_bytes ?? null;
    }
    series.push(point);
  }
  const firstRss = series[0].rss_bytes;
  const lastRss = series[series.length - 1].rss_bytes;
  const maxRss = Math.max(...series.map((s) => s.rss_bytes));
  const liveFirst = series[0].live_heap_bytes ?? null;
  const liveLast = series[series.length - 1].live_heap_bytes ?? null;
  // RSS right after a forced full GC: the raw figure depends on when V8 last collected (within
  // one soak it swings by tens of MiB), so the growth that can mean a leak is read after GC.
  const gcFirst = series[0].rss_after_gc_bytes ?? null;
  const gcLast = series[series.length - 1].rss_after_gc_bytes ?? null;
  const mid = series[Math.floor((series.length - 1) / 2)];
  return {
    requests: done,
    non2xx,
    errors,
    seconds: round((performance.now() - started) / 1000, 1),
    series,
    rss_after_first_bytes: firstRss,
    rss_end_bytes: lastRss,
    rss_max_bytes: maxRss,
    growth_bytes: lastRss - firstRss,
    growth_bytes_per_request: round((lastRss - firstRss) / Math.max(1, done - series[0].requests), 2),
    growth_after_gc_bytes: gcFirst !== null && gcLast !== null ? gcLast - gcFirst : null,
    // The second half alone: warm-up (heap and allocator growing to their working size) is over.
    second_half_growth_after_gc_bytes: gcLast !== null && mid?.rss_after_gc_bytes != null ? gcLast - mid.rss_after_gc_bytes : null,
    second_half_from_requests: mid?.requests ?? null,
    live_heap_first_bytes: liveFirst,
    live_heap_last_bytes: liveLast,
    live_heap_growth_bytes: liveFirst !== null && liveLast !== null ? liveLast - liveFirst : null,
  };
}
