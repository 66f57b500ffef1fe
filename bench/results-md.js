#!/usr/bin/env node
// Prints a results JSON (bench/results/*.json) as the markdown tables of docs/performance.md:
//   node bench/results-md.js bench/results/<timestamp>.json
import { readFileSync } from 'node:fs';
import { renderTables, renderVerdicts } from './lib/report.js';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node bench/results-md.js RESULTS.json\n');
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, 'utf8'));
const m = r.machine;
const date = r.started_at.slice(0, 10);
console.log(
  `Run of ${date} (${r.started_at}), ${m.cpu_model}, ${m.cores} cores, ${(m.memory_bytes / 2 ** 30).toFixed(0)} GiB, ${m.os}, Node ${r.node}; load average at start ${m.loadavg_at_start.join(' / ')}.`,
);
for (const n of r.notes ?? []) console.log(`\n- ${n}`);
console.log(renderTables(r, { markdown: true }));
console.log(renderVerdicts(r.targets, { markdown: true }));
