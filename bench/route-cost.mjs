// CPU cost of finding a request's route: the path made canonical (src/server/path.ts) and
// looked up in the route table (src/server/routes.ts), against 0.1.0's split-and-lookup.
// CPU time (process.cpuUsage), not wall clock: on a shared machine the wall clock measures
// the neighbours. Run after `npm run build`: node bench/route-cost.mjs
import { normalisePath } from '../dist/server/path.js';
import { matchRoute } from '../dist/server/routes.js';

const EXACT = new Map([['/v1/chat/completions', 1]]);
const before = (u) => {
  const q = u.indexOf('?');
  return EXACT.get(q === -1 ? u : u.slice(0, q));
};
const now = (u) => {
  const p = normalisePath(u);
  return p.ok ? matchRoute(p.path) : undefined;
};
const cpuNs = () => process.cpuUsage().user * 1000;

const N = 2_000_000;
for (const url of ['/v1/chat/completions', '/v1/chat/./completions?x=1', '/v1/files/file-abc/content?limit=2']) {
  for (const [name, f] of [
    ['0.1.0 split + exact lookup', before],
    ['canonical path + route table', now],
  ]) {
    let hits = 0;
    for (let i = 0; i < N / 10; i++) if (f(url)) hits++; // warm up
    const t = cpuNs();
    for (let i = 0; i < N; i++) if (f(url)) hits++;
    console.log(`${url.padEnd(36)} ${name.padEnd(30)} ${((cpuNs() - t) / N).toFixed(1)} ns CPU (${hits} hits)`);
  }
}
