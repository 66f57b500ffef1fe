#!/usr/bin/env node
// Summarises V8 .cpuprofile files (node --cpu-prof; `node bench/run.js --cpu-prof DIR` writes
// one per gateway process): the top functions by self time, and self time by package/file.
//
//   node bench/profile-summary.js [--top N] [--inclusive] FILE.cpuprofile [...]
//
// --inclusive adds the top functions by inclusive (self + callees) time: where a request's
// time goes by stage (logging, metrics, tokenizer, routing, ...).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' }, inclusive: { type: 'boolean', default: false } },
});
if (!positionals.length) {
  process.stderr.write('usage: node bench/profile-summary.js [--top N] FILE.cpuprofile [...]\n');
  process.exit(2);
}
const top = Number(values.top);

/** Where a frame lives: the gateway's own file, a package, or node internals. */
function owner(url) {
  if (!url) return '(native / V8)';
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

for (const file of positionals) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
  }
  const byFn = new Map();
  const byOwner = new Map();
  for (const [id, us] of self) {
    const { callFrame: f } = byId.get(id);
    const name = f.functionName || '(anonymous)';
    const where = f.url ? `${owner(f.url)}:${f.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const o = name.startsWith('(') && !f.url ? name : owner(f.url);
    byOwner.set(o, (byOwner.get(o) ?? 0) + us);
  }
  const idle = byFn.get('(idle) ') ?? 0;
  const busy = total - idle;
  const pct = (us, of) => `${((100 * us) / of).toFixed(1).padStart(5)}%`;
  const ms = (us) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  console.log(
    `\n${file}\n  wall ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (${((100 * busy) / total).toFixed(0)}%); percentages are of busy time`,
  );
  console.log(`\n  top ${top} functions by self time`);
  for (const [k, us] of [...byFn]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    console.log(`  ${ms(us)} ${pct(us, busy)}  ${k}`);
  }
  if (values.inclusive) {
    const parent = new Map();
    for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const keyOf = (id) => {
      const f = byId.get(id).callFrame;
      return `${f.functionName || '(anonymous)'} ${f.url ? `${owner(f.url)}:${f.lineNumber + 1}` : ''}`;
    };
    const incl = new Map();
    for (const [id, us] of self) {
      const seen = new Set();
      for (let q = id; q !== undefined; q = parent.get(q)) seen.add(keyOf(q));
      for (const k of seen) incl.set(k, (incl.get(k) ?? 0) + us);
    }
    console.log(`\n  top ${top} functions by inclusive time`);
    for (const [k, us] of [...incl]
      .filter(([k]) => !k.startsWith('(root)') && !k.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)) {
      console.log(`  ${ms(us)} ${pct(us, busy)}  ${k}`);
    }
  }
  console.log('\n  self time by package / file');
  for (const [k, us] of [...byOwner]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    console.log(`  ${ms(us)} ${pct(us, busy)}  ${k}`);
  }
}
