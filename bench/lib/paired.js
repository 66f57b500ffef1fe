// Paired CPU measurement: two proxies under the same load at the same time, each with its own
// client pool, their CPU read from /proc over the same windows. On a shared VM the CPU cost of
// the same build drifts by tens of percent within minutes (42 to 90 µs a chunk); two processes
// measured side by side see the same drift, and their ratio holds within a few percent a
// round. Used by bench/pair.js and by the streams scenario's CPU verdict (bench/run.js).
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { median } from './stats.js';

/** /proc/PID/stat user and system CPU, ms. */
export function cpuSplit(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 1000 / 100;
  return { user: Number(f[11]) * tick, sys: Number(f[12]) * tick };
}

/**
 * Keeps `workers` requests in flight against t (POST `path` with `body`) until close(); counts
 * chunks (client reads) for streams, responses for whole requests. Starts are spread over
 * `spreadMs`, so that streams do not end in step.
 */
export function drive(t, { workers, path, body, stream, spreadMs = 0 }) {
  const pool = new Pool(t.origin, { connections: workers });
  const state = { count: 0, errors: 0, stop: false, close: async () => {} };
  const headers = { 'content-type': 'application/json', ...t.headers };
  const one = () =>
    new Promise((done) =>
      pool.dispatch(
        { method: 'POST', path: t.base + path, headers, body },
        {
          onRequestStart() {},
          onResponseStart(_c, status) {
            if (status !== 200) state.errors++;
          },
          onResponseData() {
            if (stream) state.count++;
          },
          onResponseEnd() {
            if (!stream) state.count++;
            done();
          },
          onResponseError() {
            state.errors++;
            done();
          },
        },
      ),
    );
  const loops = Array.from({ length: workers }, async (_, w) => {
    await new Promise((r) => setTimeout(r, (w * spreadMs) / workers));
    while (!state.stop) await one();
  });
  state.close = async () => {
    state.stop = true;
    await Promise.all(loops);
    await pool.close();
  };
  return state;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const r3 = (x) => Number(x.toFixed(3));
const r1 = (x) => Number(x.toFixed(1));

/**
 * `rounds` windows of `roundMs` over the running loads; per window each target's CPU (µs) per
 * counted unit and their ratio B/A. A target on the Redis store (`redisCpuMs`) also gets the
 * Redis server's CPU per unit over the same window (`redis`, not in the ratio). `onRound(row, i)`
 * sees each window as it ends.
 */
export async function pairedRounds(A, B, loads, { rounds, roundMs, onRound = () => {} }) {
  const out = [];
  for (let i = 0; i < rounds; i++) {
    const redisBefore = await Promise.all([A, B].map((t) => t.redisCpuMs?.()));
    const before = [A, B].map((t) => cpuSplit(t.child.pid));
    const counts = loads.map((l) => l.count);
    await sleep(roundMs);
    const [a, b] = [A, B].map((t, k) => {
      const c = cpuSplit(t.child.pid);
      const n = loads[k].count - counts[k];
      return { n, user: r1(((c.user - before[k].user) * 1000) / n), sys: r1(((c.sys - before[k].sys) * 1000) / n) };
    });
    const redisAfter = await Promise.all([A, B].map((t) => t.redisCpuMs?.()));
    for (const [k, side] of [a, b].entries())
      if (Number.isFinite(redisBefore[k]) && Number.isFinite(redisAfter[k]))
        side.redis = r1(((redisAfter[k] - redisBefore[k]) * 1000) / side.n);
    const row = { a, b, ratio: r3((b.user + b.sys) / (a.user + a.sys)) };
    out.push(row);
    onRound(row, i);
  }
  const total = (k) => out.reduce((s, r) => s + (r[k].user + r[k].sys) * r[k].n, 0) / out.reduce((s, r) => s + r[k].n, 0);
  return {
    median_ratio: r3(median(out.map((r) => r.ratio))),
    ratio_of_sums: r3(total('b') / total('a')),
    a_us: r1(median(out.map((r) => r.a.user + r.a.sys))),
    b_us: r1(median(out.map((r) => r.b.user + r.b.sys))),
    ...(out[0]?.b.redis !== undefined ? { b_redis_us: r1(median(out.map((r) => r.b.redis))) } : {}),
    errors: loads.map((l) => l.errors),
    rounds: out,
  };
}
