// Request/response load: autocannon (closed loop, max rate) and a paced open-loop client.
//
// Latencies are taken from autocannon's per-response 'response' event (a float in ms),
// not from its result histogram, which records whole milliseconds: a sub-millisecond
// difference between two proxies would vanish in it.
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { Samples, summarize, round } from './stats.js';

/** Closed-loop load: `connections` clients, each sending its next request as soon as the last one answered. */
export function autocannonRun({ url, headers, body, connections, duration, amount, overallRate, progress, label = '' }) {
  return new Promise((resolve, reject) => {
    const lat = new Samples(1 << 16);
    const statuses = {};
    let ok = 0;
    let bad = 0;
    const started = performance.now();
    const opts = { url, method: 'POST', headers, body, connections, timeout: 30 };
    if (amount) opts.amount = amount;
    else opts.duration = duration;
    if (overallRate) opts.overallRate = overallRate;
    const timer = setInterval(() => {
      const s = (performance.now() - started) / 1000;
      const of = amount ? `${ok + bad}/${amount} req` : `${s.toFixed(1)}/${duration}s`;
      progress?.update(`${label} ${of}  ${Math.round(ok / Math.max(s, 0.001))} req/s  non-2xx ${bad}`);
    }, 250);
    const inst = autocannon(opts, (err, result) => {
      clearInterval(timer);
      if (err) return reject(err);
      const seconds = result.duration || (performance.now() - started) / 1000;
      resolve({
        client: overallRate ? 'autocannon (overallRate)' : 'autocannon',
        connections: result.connections ?? connections,
        duration_s: round(seconds, 3),
        requests: ok,
        rps: round(ok / seconds, 1),
        latency_ms: summarize(lat),
        non2xx: bad,
        statuses,
        errors: result.errors,
        timeouts: result.timeouts,
        throughput_bytes_per_s: Math.round(result.throughput?.average ?? 0),
      });
    });
    inst.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) {
        ok++;
        lat.push(ms);
      } else {
        bad++;
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    });
  });
}

/** One request on an undici Pool through the dispatch API (no stream layer): {status, ms, bytes}. */
export function request(pool, opts) {
  return new Promise((resolve) => {
    const t = performance.now();
    let status = 0;
    let bytes = 0;
    pool.dispatch(opts, {
      onRequestStart() {},
      onResponseStart(_c, s) {
        status = s;
      },
      onResponseData(_c, chunk) {
        bytes += chunk.length;
      },
      onResponseEnd() {
        resolve({ status, ms: performance.now() - t, bytes });
      },
      onResponseError(_c, err) {
        resolve({ status: 0, ms: performance.now() - t, bytes, error: err.code ?? err.message });
      },
    });
  });
}

/**
 * Open-loop load at a fixed rate: request k is sent at start + k/rate (a 1 ms timer sends
 * whatever is due), whether or not earlier ones have answered, so a slow target meets the
 * same arrival process as a fast one. Latency is measured from each request's send.
 *
 * Why not autocannon's overallRate: it gives each connection a per-second quota, refilled
 * by a 1 s interval, and a connection spends its quota back-to-back; the load then arrives
 * as one burst at the top of every second, which measures queueing in the burst rather
 * than the latency at the nominal rate (`--latency-client autocannon` shows it).
 */
export async function pacedRun({ origin, path, headers, body, rate, duration, connections = 64, progress, label = '' }) {
  const pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const lat = new Samples(1 << 14);
  const statuses = {};
  let ok = 0;
  let bad = 0;
  let errors = 0;
  let inflight = 0;
  let maxInflight = 0;
  const total = Math.max(1, Math.round(rate * duration));
  const interval = 1000 / rate;
  const buf = Buffer.from(body);
  const opts = { method: 'POST', path, headers, body: buf };
  const pending = [];
  const start = performance.now();
  let sent = 0;
  const fire = () => {
    inflight++;
    if (inflight > maxInflight) maxInflight = inflight;
    pending.push(
      request(pool, opts).then((r) => {
        inflight--;
        if (r.error) errors++;
        else if (r.status >= 200 && r.status < 300) {
          ok++;
          lat.push(r.ms);
        } else {
          bad++;
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        }
      }),
    );
  };
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      while (sent < due) {
        sent++;
        fire();
      }
      progress?.update(`${label} ${((now - start) / 1000).toFixed(1)}/${duration}s  sent ${sent}  in flight ${inflight}`);
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const sendSeconds = (performance.now() - start) / 1000;
  await Promise.all(pending);
  await pool.close();
  return {
    client: 'paced (open loop)',
    target_rate: rate,
    achieved_rate: round(sent / sendSeconds, 1),
    duration_s: round(sendSeconds, 3),
    requests: ok,
    rps: round(ok / sendSeconds, 1),
    max_in_flight: maxInflight,
    latency_ms: summarize(lat),
    non2xx: bad,
    statuses,
    errors,
    timeouts: 0,
  };
}
