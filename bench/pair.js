#!/usr/bin/env node
// Paired A/B: two proxies on the same core, under the same load, at the same time, each with
// its own load generator pool; CPU per chunk (streams) or per request (whole) of each over the
// same windows. Alternating rounds (bench/run.js) let a shared VM's drift fall between A and B:
// the same build measured 42 to 90 µs of CPU per chunk minutes apart. Paired, both see the same
// drift and their ratio holds within a few percent per round (A against A: 1.000).
//
//   node bench/pair.js --a bare --b gateway                  bare proxy against this build
//   node bench/pair.js --a ../old --b gateway                another build (a checkout with dist/) against this one
//   node bench/pair.js --mode whole --connections 8          non-streamed requests, CPU per request
//   node bench/pair.js --mode whole --b gateway+features     ... with every feature on (memory store)
//   node bench/pair.js --mode whole --a ../old+features --b gateway+features
//   node bench/pair.js --mode whole --a gateway+features --b gateway+leased   memory store against leased Redis
//   node bench/pair.js --mode whole --a gateway+features --b gateway+features+otlp   ... against every request traced
//   node bench/pair.js --a gateway --b gateway --b-node-args=--max-semi-space-size=16
//                                                            one build under two sets of V8/Node flags
//   node bench/pair.js --cpu-prof DIR                        a V8 .cpuprofile of both (bench/profile-summary.js)
//   node bench/pair.js --include-usage                       the client asks for usage itself: both
//                                                            proxies relay the same bytes (without it the
//                                                            gateway asks for usage and strips it again)
//
// Streams are chat completions from the simulator (--ttft-ms, --tpot-ms, --output-tokens), --streams
// workers per target; a chunk is one read by the client. npm run build first.
import { mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Lab, MODEL, cpuPlan } from './lib/lab.js';
import { stopAll } from './lib/procs.js';
import { drive, pairedRounds } from './lib/paired.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    a: { type: 'string', default: 'bare' },
    b: { type: 'string', default: 'gateway' },
    'a-node-args': { type: 'string', default: '' },
    'b-node-args': { type: 'string', default: '' },
    mode: { type: 'string', default: 'stream' },
    streams: { type: 'string', default: '50' },
    connections: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '6' },
    'round-s': { type: 'string', default: '5' },
    warmup: { type: 'string', default: '8' },
    'ttft-ms': { type: 'string', default: '100' },
    'tpot-ms': { type: 'string', default: '20' },
    'output-tokens': { type: 'string', default: '64' },
    'include-usage': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
    json: { type: 'boolean', default: false },
  },
});
const num = (name) => {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} takes a positive number, got "${values[name]}"`);
  return n;
};
const whole = values.mode === 'whole';
if (!whole && values.mode !== 'stream') throw new Error(`--mode is stream or whole, got "${values.mode}"`);
const workers = whole ? num('connections') : num('streams');
const per = whole ? 'request' : 'chunk';

const dir = mkdtempSync(join(os.tmpdir(), 'llm-gw-pair-'));
const cpus = cpuPlan('auto');
const lab = new Lab({
  root: ROOT,
  dir,
  cpus,
  cpuProfDir: values['cpu-prof'],
  redisUrl: values['redis-url'],
  progress: { update() {}, done() {} },
});

/** The features scenario's gateway variants: keys, limits and budgets at every scope, on a store. */
const VARIANTS = {
  features: { features: 'memory' },
  redis: { features: 'redis' },
  leased: { features: 'redis', leased: true },
  otlp: { otlp: true },
};

/**
 * 'bare', 'gateway' (this checkout) or a directory holding another build's dist/; a gateway
 * with '+features' (memory store), '+redis' or '+leased' (Redis store, leased quota) runs as
 * that variant of the features scenario; '+otlp' traces every request and exports the spans
 * (OTLP/HTTP protobuf) to a sink in this process. Variants combine: gateway+features+otlp.
 */
async function target(spec, name) {
  const nodeArgs = values[`${name}-node-args`].split(/\s+/).filter(Boolean);
  if (spec === 'bare') return lab.bare(10_000, nodeArgs);
  const [root, ...variants] = spec.split('+');
  const options = {};
  for (const v of variants) {
    if (!VARIANTS[v]) throw new Error(`unknown variant "+${v}" (${Object.keys(VARIANTS).join(', ')})`);
    Object.assign(options, VARIANTS[v]);
  }
  lab.gatewayRoot = root === 'gateway' ? ROOT : resolve(root);
  lab.gatewayNodeArgs = nodeArgs;
  return lab.gateway({ name, ...options });
}

const body = JSON.stringify({
  model: MODEL,
  stream: !whole,
  max_tokens: whole ? 16 : num('output-tokens'),
  messages: [{ role: 'user', content: 'hello there, how are you today?' }],
  ...(values['include-usage'] && !whole ? { stream_options: { include_usage: true } } : {}),
});
const load = (t) =>
  drive(t, {
    workers,
    path: '/chat/completions',
    body,
    stream: !whole,
    spreadMs: whole ? 0 : num('ttft-ms') + num('tpot-ms') * num('output-tokens'),
  });

const started = [];
try {
  await lab.startSimulator();
  await lab.configureSim(
    whole
      ? { ttftMs: 0, tpotMs: 0, outputTokens: 16 }
      : { ttftMs: num('ttft-ms'), tpotMs: num('tpot-ms'), outputTokens: num('output-tokens') },
  );
  const A = await target(values.a, 'a');
  started.push(A);
  const B = await target(values.b, 'b');
  started.push(B);
  const loads = [load(A), load(B)];
  await new Promise((r) => setTimeout(r, num('warmup') * 1000));
  const paired = await pairedRounds(A, B, loads, {
    rounds: num('rounds'),
    roundMs: num('round-s') * 1000,
    onRound(row, i) {
      if (values.json) return;
      const [a, b] = [row.a, row.b].map((x) => x.user + x.sys);
      const redis = [row.a, row.b].map((x) => (x.redis === undefined ? '' : `, Redis ${x.redis.toFixed(1)}`));
      process.stdout.write(
        `round ${i + 1}: A ${a.toFixed(1)} µs/${per} (user ${row.a.user.toFixed(1)}, sys ${row.a.sys.toFixed(1)}${redis[0]}), ` +
          `B ${b.toFixed(1)} (user ${row.b.user.toFixed(1)}, sys ${row.b.sys.toFixed(1)}${redis[1]}), B/A ${row.ratio.toFixed(3)}  [${row.a.n} / ${row.b.n} ${per}s]\n`,
      );
    },
  });
  await Promise.all(loads.map((l) => l.close()));
  // Stopped before the summary: a traced gateway exports its last spans as it stops.
  for (const t of started.splice(0).reverse()) await t.stop();
  const summary = {
    a: values.a,
    b: values.b,
    a_node_args: values['a-node-args'] || undefined,
    b_node_args: values['b-node-args'] || undefined,
    mode: values.mode,
    workers,
    per,
    ...paired,
    otlp_exports: lab.otlpExports,
  };
  if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else
    process.stdout.write(
      `median: A ${summary.a_us} µs/${per}, B ${summary.b_us}, B/A ${summary.median_ratio} (of sums ${summary.ratio_of_sums}); errors ${summary.errors.join(' / ')}` +
        (lab.otlpExports === undefined ? '' : `; OTLP trace exports received ${lab.otlpExports}`) +
        '\n',
    );
} finally {
  // A target's own stop also drops its Redis keys (the Redis variants).
  for (const t of started.reverse()) await t.stop().catch(() => {});
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
