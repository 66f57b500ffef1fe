#!/usr/bin/env node
// The llm-gateway benchmark. `npm run bench` (builds, then runs every scenario) or
// `node bench/run.js --scenario NAME ...`. See docs/performance.md, or --help.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Lab, cpuPlan, remoteTarget } from './lib/lab.js';
import { stopAll, onExit, openFileLimit } from './lib/procs.js';
import { Progress } from './lib/progress.js';
import * as scenarios from './lib/scenarios.js';
import { evaluate, renderTables, renderVerdicts } from './lib/report.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ALL = ['throughput', 'latency', 'streams', 'responses', 'messages', 'features', 'memory'];

const HELP = `usage: node bench/run.js [options]        (npm run bench -- [options] builds first)

scenarios (--scenario, comma-separated; default all):
  throughput   non-streamed completions at max rate, fixed connections
  latency      a fixed request rate well below saturation: p50/p99/p99.9 and what each target adds
  streams      N concurrent streamed completions: added TTFT and chunk delay, chunks/s, and the
               gateway's own TTFT/TPOT measurement error
  responses    the same over the Responses API (POST /v1/responses, named SSE events), at
               --responses-streams levels
  messages     the same over Anthropic's Messages API (POST /v1/messages, named SSE events), at
               --messages-streams levels
  features     throughput with keys, rate limits, budgets (memory, then redis store), breaker
  memory       gateway RSS idle, with 1,000 and 5,000 open streams, and across a soak

options:
  --duration S          measured seconds per target and scenario (default 10)
  --rounds N            throughput and features: take the targets in turn N times and keep
                        each one's median round (default 3; 1 = one pass)
  --warmup S            warm-up seconds per target (default min(2, duration/4))
  --stream-warmup S     streams, responses, messages: seconds of streams before the measured
                        window (default 6: a fresh gateway is still compiling its per-request
                        code after 2 s at 100 streams, which are only ~70 requests a second)
  --connections N       autocannon connections for throughput/features/soak (default 16)
  --rate N              latency scenario request rate (default 500)
  --latency-client C    paced (open loop, default) | autocannon (overallRate; bursty, see docs/performance.md)
  --streams N[,N...]    concurrent streams (default 100,400,1000)
  --responses-streams N[,N...]  concurrent streams of the responses scenario (default 100)
  --messages-streams N[,N...]   concurrent streams of the messages scenario (default 100)
  --stream-rounds N     streams, responses, messages: take the targets in turn N times at each level
                        and keep each one's median round by CPU per chunk (default 1)
  --stream-pair-at N[,N...]  streams: at these levels also run bare and gateway side by side
                        (bench/lib/paired.js) for the CPU-per-chunk verdict, which drift between
                        rounds taken in turn swamps (default 100; 0 = never)
  --stream-pair-rounds N     rounds of that paired run, after --stream-warmup (default 5)
  --stream-pair-round-s S    seconds per paired round (default 5)
  --features-pair-rounds N   features: also run the bare proxy side by side with the features
                        gateways (memory; Redis leased) for the throughput verdicts, judged on
                        CPU per request at each one's own capacity (default 5; 0 = never)
  --features-pair-round-s S  seconds per paired features round (default 5)
  --ttft-ms MS          simulator time to first token for streams (default 100)
  --tpot-ms MS          simulator time per output token for streams (default 20)
  --output-tokens N     tokens per streamed completion (default 64)
  --memory-streams L    open-stream levels for memory (default 1000,5000)
  --memory-policy P     gateway policy for memory: features (keys, limits, budgets; default) | plain
  --soak N              soak requests for memory (default 200000; 0 = no soak)
  --soak-first N        RSS reference point of the soak (default 10000)
  --soak-drain S        after the soak, wait S s for rate-limit windows to expire, then compare
                        the live heap (forced GC) with the idle one (default 65; 0 = skip)
  --targets LIST        local targets to run (default direct,bare,gateway)
  --redis-url URL       redis for the features redis-store variant (default redis://127.0.0.1:6379)
  --no-pin              do not pin processes to CPUs with taskset
  --cpu-prof DIR        run the gateway and bare proxy with --cpu-prof, profiles into DIR
                        (summarise with node bench/profile-summary.js [--inclusive] DIR/*.cpuprofile)
  --gateway-node-args=A extra node flags for the gateway, e.g. --gateway-node-args=--trace-gc (its log
                        is kept with --keep-logs)
  --gateway-root DIR    run the gateway from DIR/dist/main.js (another build, to A/B a change)
  --out FILE            results JSON (default bench/results/<timestamp>.json)
  --keep-logs           keep the temp dir with policies and process logs
  --quiet               no progress line

load-testing an existing deployment (nothing is started; only that target is measured):
  --target-url URL      its base URL as apps use it, e.g. http://127.0.0.1:4000/v1
  --model NAME          the model name to request
  --api-key KEY         sent as Authorization: Bearer KEY
`;

function list(v) {
  return String(v)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

function numberOpt(values, name, def, { int = false, min = 0 } = {}) {
  const raw = values[name];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) {
    throw new UsageError(`--${name} must be ${int ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

class UsageError extends Error {}

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenario: { type: 'string', default: 'all' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      'stream-rounds': { type: 'string' },
      'stream-pair-at': { type: 'string', default: '100' },
      'stream-pair-rounds': { type: 'string' },
      'stream-pair-round-s': { type: 'string' },
      'features-pair-rounds': { type: 'string' },
      'features-pair-round-s': { type: 'string' },
      warmup: { type: 'string' },
      'stream-warmup': { type: 'string' },
      connections: { type: 'string' },
      rate: { type: 'string' },
      'latency-client': { type: 'string', default: 'paced' },
      streams: { type: 'string', default: '100,400,1000' },
      'responses-streams': { type: 'string', default: '100' },
      'messages-streams': { type: 'string', default: '100' },
      'ttft-ms': { type: 'string' },
      'tpot-ms': { type: 'string' },
      'output-tokens': { type: 'string' },
      'memory-streams': { type: 'string', default: '1000,5000' },
      'memory-policy': { type: 'string', default: 'features' },
      soak: { type: 'string' },
      'soak-first': { type: 'string' },
      'soak-drain': { type: 'string' },
      targets: { type: 'string', default: 'direct,bare,gateway' },
      'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
      'no-pin': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      'gateway-node-args': { type: 'string' },
      'gateway-root': { type: 'string' },
      out: { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'target-url': { type: 'string' },
      model: { type: 'string' },
      'api-key': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { help: true };
  const scenario = values.scenario === 'all' ? ALL : list(values.scenario);
  for (const s of scenario) if (!ALL.includes(s)) throw new UsageError(`unknown scenario "${s}" (one of ${ALL.join(', ')}, all)`);
  const targets = list(values.targets);
  for (const t of targets)
    if (!['direct', 'bare', 'gateway'].includes(t)) throw new UsageError(`unknown target "${t}" (direct, bare, gateway)`);
  if (!['paced', 'autocannon'].includes(values['latency-client'])) throw new UsageError('--latency-client is paced or autocannon');
  if (!['features', 'plain'].includes(values['memory-policy'])) throw new UsageError('--memory-policy is features or plain');
  const duration = numberOpt(values, 'duration', 10, { min: 0.1 });
  const levels = (v, name) =>
    list(v).map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} takes positive integers, got "${x}"`);
      return n;
    });
  const opts = {
    scenario,
    duration,
    warmup: numberOpt(values, 'warmup', Math.min(2, duration / 4)),
    streamWarmup: numberOpt(values, 'stream-warmup', 6),
    connections: numberOpt(values, 'connections', 16, { int: true, min: 1 }),
    rate: numberOpt(values, 'rate', 500, { min: 1 }),
    rounds: numberOpt(values, 'rounds', 3, { int: true, min: 1 }),
    streamRounds: numberOpt(values, 'stream-rounds', 1, { int: true, min: 1 }),
    streamPairAt:
      values['stream-pair-at'] === '' || values['stream-pair-at'] === '0' ? [] : levels(values['stream-pair-at'], 'stream-pair-at'),
    streamPairRounds: numberOpt(values, 'stream-pair-rounds', 5, { int: true, min: 1 }),
    streamPairRoundS: numberOpt(values, 'stream-pair-round-s', 5, { min: 0.5 }),
    featuresPairRounds: numberOpt(values, 'features-pair-rounds', 5, { int: true, min: 0 }),
    featuresPairRoundS: numberOpt(values, 'features-pair-round-s', 5, { min: 0.5 }),
    latencyClient: values['latency-client'],
    streams: levels(values.streams, 'streams'),
    responsesStreams: levels(values['responses-streams'], 'responses-streams'),
    messagesStreams: levels(values['messages-streams'], 'messages-streams'),
    ttftMs: numberOpt(values, 'ttft-ms', 100),
    tpotMs: numberOpt(values, 'tpot-ms', 20),
    outputTokens: numberOpt(values, 'output-tokens', 64, { int: true, min: 1 }),
    memoryStreams:
      values['memory-streams'] === '' || values['memory-streams'] === '0' ? [] : levels(values['memory-streams'], 'memory-streams'),
    memoryPolicy: values['memory-policy'],
    soak: numberOpt(values, 'soak', 200_000, { int: true }),
    soakDrain: numberOpt(values, 'soak-drain', 65),
    soakFirst: numberOpt(values, 'soak-first', 10_000, { int: true, min: 1 }),
    targets,
    redisUrl: values['redis-url'],
    pin: values['no-pin'] ? 'off' : 'auto',
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined,
    gatewayRoot: values['gateway-root'] ? resolve(values['gateway-root']) : undefined,
    gatewayNodeArgs: values['gateway-node-args'] ? values['gateway-node-args'].split(/\s+/).filter(Boolean) : [],
    out: values.out,
    keepLogs: values['keep-logs'],
    quiet: values.quiet,
    targetUrl: values['target-url'],
    model: values.model,
    apiKey: values['api-key'],
  };
  if (opts.targetUrl) {
    if (!opts.model) throw new UsageError('--target-url needs --model');
    try {
      new URL(opts.targetUrl);
    } catch {
      throw new UsageError(`--target-url is not a URL: ${opts.targetUrl}`);
    }
  }
  return opts;
}

function machine() {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    cpu_model: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_bytes: os.totalmem(),
    loadavg_at_start: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

function stamp(d = new Date()) {
  return d
    .toISOString()
    .replace(/[:]/g, '-')
    .replace(/\.\d+Z$/, 'Z');
}

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError || e.code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`${e.message}\n\n${HELP}`);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }

  const progress = new Progress(process.stderr, { quiet: opts.quiet });
  const remote = opts.targetUrl ? remoteTarget({ url: opts.targetUrl, model: opts.model, apiKey: opts.apiKey }) : null;
  const dir = mkdtempSync(join(os.tmpdir(), 'llm-gw-bench-'));
  onExit(() => {
    if (!opts.keepLogs) rmSync(dir, { recursive: true, force: true });
  });
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });

  const cpus = remote ? { pinned: false, cores: os.availableParallelism?.() ?? os.cpus().length } : cpuPlan(opts.pin);
  const notes = [];
  if (!remote) {
    for (const f of ['dist/main.js', 'dist/simulator/cli.js']) {
      if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\` (or \`npm run bench\`, which builds first)`);
    }
    if (opts.gatewayRoot && !existsSync(join(opts.gatewayRoot, 'dist/main.js')))
      throw new UsageError(`--gateway-root: ${opts.gatewayRoot}/dist/main.js is missing`);
    notes.push(
      cpus.pinned
        ? `processes pinned with taskset: load generator (this process) on CPU ${cpus.main}, simulator on CPU ${cpus.sim}, the proxy under test (bare or gateway) on CPU ${cpus.proxy}` +
            (cpus.main === cpus.sim ? '; load generator and simulator share a core, so direct figures are bounded by that core' : '')
        : `processes not pinned: load generator, simulator and proxy share all ${cpus.cores} cores`,
    );
    const maxOpen = Math.max(
      0,
      ...(opts.scenario.includes('memory') ? opts.memoryStreams : []),
      ...(opts.scenario.includes('streams') ? opts.streams : []),
      ...(opts.scenario.includes('responses') ? opts.responsesStreams : []),
      ...(opts.scenario.includes('messages') ? opts.messagesStreams : []),
    );
    const limit = openFileLimit();
    // The gateway holds two sockets per stream (client side and upstream side).
    if (Number.isFinite(limit) && limit < 2 * maxOpen + 256) {
      notes.push(
        `open-file limit ${limit} is low for ${maxOpen} streams (a proxy needs about ${2 * maxOpen + 256}); raise it with ulimit -n`,
      );
    }
  } else {
    notes.push(`remote target ${remote.origin}${remote.base}: nothing was started; load generator on this machine`);
  }

  const lab = remote
    ? null
    : new Lab({
        root: ROOT,
        dir,
        cpus,
        cpuProfDir: opts.cpuProf,
        progress,
        redisUrl: opts.redisUrl,
        gatewayNodeArgs: opts.gatewayNodeArgs,
        gatewayRoot: opts.gatewayRoot,
      });
  const ctx = {
    opts,
    progress,
    remote,
    lab,
    tag: Date.now().toString(36),
    /** Per target of the scenario running: policy settings beyond backend and model, with reasons. */
    knobs: {},
    async simConfig(patch) {
      if (lab) await lab.configureSim(patch);
    },
    async up(spec) {
      if (spec.kind === 'remote') return remote;
      if (spec.kind === 'direct') return lab.direct();
      if (spec.kind === 'bare') return lab.bare();
      return lab.gateway({
        features: spec.features ?? null,
        insights: spec.insights === true,
        leased: spec.leased === true,
        name: spec.name,
        inspect: spec.inspect === true,
      });
    },
  };

  const results = {
    version: 1,
    started_at: new Date().toISOString(),
    finished_at: null,
    machine: machine(),
    node: process.version,
    settings: {
      scenarios: opts.scenario,
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      stream_warmup_s: opts.streamWarmup,
      connections: opts.connections,
      rate: opts.rate,
      latency_client: opts.latencyClient,
      streams: opts.streams,
      responses_streams: opts.responsesStreams,
      messages_streams: opts.messagesStreams,
      stream_sim: { ttft_ms: opts.ttftMs, tpot_ms: opts.tpotMs, output_tokens: opts.outputTokens },
      memory_streams: opts.memoryStreams,
      memory_policy: opts.memoryPolicy,
      soak: opts.soak,
      soak_first: opts.soakFirst,
      soak_drain_s: opts.soakDrain,
      targets: remote ? ['target'] : opts.targets,
      target_url: opts.targetUrl,
      model: remote ? opts.model : undefined,
      cpu_pinning: cpus,
      gateway_node_args: opts.gatewayNodeArgs.length ? opts.gatewayNodeArgs : undefined,
      gateway_root: opts.gatewayRoot,
    },
    notes,
    scenarios: {},
    targets: [],
  };

  progress.log(
    `llm-gateway bench: ${opts.scenario.join(', ')} | ${results.machine.cpu_model}, ${results.machine.cores} cores | node ${process.version}`,
  );
  for (const n of notes) progress.log(`note: ${n}`);
  if (lab) {
    progress.update('starting simulator', { force: true });
    await lab.startSimulator();
  }
  for (const name of opts.scenario) {
    progress.log(`-- ${name}`);
    const withKnobs = async (r) => {
      if (lab && r && typeof r === 'object') r.gateway_knobs = ctx.knobs;
      ctx.knobs = {};
      return r;
    };
    if (name === 'streams') {
      for (const n of opts.streams) results.scenarios[`streams_${n}`] = await withKnobs(await scenarios.streams(ctx, n));
    } else if (name === 'responses') {
      for (const n of opts.responsesStreams) results.scenarios[`responses_${n}`] = await withKnobs(await scenarios.responses(ctx, n));
    } else if (name === 'messages') {
      for (const n of opts.messagesStreams) results.scenarios[`messages_${n}`] = await withKnobs(await scenarios.messages(ctx, n));
    } else {
      results.scenarios[name] = await withKnobs(await scenarios[name](ctx));
    }
  }
  progress.clear();
  results.finished_at = new Date().toISOString();
  results.targets = evaluate(results);

  const out = opts.out ? resolve(opts.out) : join(ROOT, 'bench/results', `${stamp()}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');

  process.stdout.write(
    `\nllm-gateway bench ${results.started_at} | ${results.machine.cpu_model}, ${results.machine.cores} cores, ${(results.machine.memory_bytes / 2 ** 30).toFixed(0)} GiB | node ${process.version}\n`,
  );
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  process.stdout.write(renderTables(results) + '\n');
  process.stdout.write(renderVerdicts(results.targets) + '\n');
  process.stdout.write(`\nresults: ${out}\n`);
  if (opts.keepLogs) process.stdout.write(`logs: ${dir}\n`);
  return 0;
}

main()
  .then(async (code) => {
    await stopAll();
    process.exit(code);
  })
  .catch(async (e) => {
    process.stderr.write(`\nbench failed: ${e?.stack ?? e}\n`);
    await stopAll();
    process.exit(1);
  });
