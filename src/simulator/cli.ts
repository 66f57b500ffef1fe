#!/usr/bin/env node
// Run the simulator as its own process (the benchmark does, so its timers don't
// compete with the gateway's event loop):
//   node dist/simulator/cli.js --port 0 --ttft-ms 150 --tpot-ms 20 --output-tokens 16 --error-rate 0
// Prints one JSON line {"url","port"} once listening; exits cleanly on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { startSimulator } from './index.js';
import type { SimulatorOptions } from './index.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    'ttft-ms': { type: 'string' },
    'tpot-ms': { type: 'string' },
    'output-tokens': { type: 'string' },
    'error-rate': { type: 'string' },
    'error-status': { type: 'string' },
    'model-name': { type: 'string' },
    'include-usage-always': { type: 'boolean' },
    'omit-usage': { type: 'boolean' },
  },
  strict: true,
});

function num(name: keyof typeof values): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v === '' || !Number.isFinite(n)) {
    process.stderr.write(`--${name} must be a number, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
}

const opts: SimulatorOptions = {
  host: values.host,
  port: num('port'),
  ttftMs: num('ttft-ms'),
  tpotMs: num('tpot-ms'),
  outputTokens: num('output-tokens'),
  errorRate: num('error-rate'),
  errorStatus: num('error-status'),
  modelName: values['model-name'],
  includeUsageAlways: values['include-usage-always'],
  omitUsage: values['omit-usage'],
};

const sim = await startSimulator(opts);
process.stdout.write(JSON.stringify({ url: sim.url, port: sim.port }) + '\n');

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  // Nothing else holds the event loop once the server is closed, so the process exits by itself.
  void sim.close();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
