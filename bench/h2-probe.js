#!/usr/bin/env node
// HTTP/1.1 or HTTP/2 to the upstream? What the gateway's upstream side (an undici Pool)
// spends per streamed chunk, and the TTFT it sees, with N concurrent SSE streams over
// HTTP/1.1 (one connection per stream, as the gateway does by default) and over HTTP/2
// (undici allowH2: streams multiplexed, up to 100 per connection). The upstream is a small
// SSE server in its own process that speaks both (node:http2 with allowHTTP1 would need TLS;
// h2 here is cleartext h2c, which undici reaches through its useH2c connector option).
//
//   node bench/h2-probe.js [--streams 300,1000] [--duration 8] [--ttft-ms 50] [--tpot-ms 20] [--tokens 50]
//
// What it does not show: TLS. Real providers speak h2 over TLS (ALPN); TLS adds per-byte cost
// to both protocols alike and one handshake per connection, which h2 needs far fewer of.
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

const SSE = (i) => `data: {"choices":[{"index":0,"delta":{"content":"tok${i} "}}]}\n\n`;

if (process.argv[2] === '--serve') {
  // The upstream: one port for HTTP/1.1 (node:http), one for h2c (node:http2), same stream.
  const http = await import('node:http');
  const http2 = await import('node:http2');
  const { ttft, tpot, tokens } = JSON.parse(process.argv[3]);
  const handler = (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const next = () => {
        if (res.destroyed || res.closed) return;
        if (i === tokens) return res.end('data: [DONE]\n\n');
        res.write(SSE(i++));
        setTimeout(next, tpot);
      };
      setTimeout(next, ttft);
    });
  };
  const h1 = http.createServer({ keepAliveTimeout: 60_000 }, handler);
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, handler);
  await new Promise((r) => h1.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
  await new Promise((r) => h2.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r));
  process.send({ h1: h1.address().port, h2: h2.address().port });
} else {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '300,1000' },
      duration: { type: 'string', default: '8' },
      'ttft-ms': { type: 'string', default: '50' },
      'tpot-ms': { type: 'string', default: '20' },
      tokens: { type: 'string', default: '50' },
    },
  });
  const cfg = { ttft: Number(values['ttft-ms']), tpot: Number(values['tpot-ms']), tokens: Number(values.tokens) };
  const duration = Number(values.duration) * 1000;
  const server = fork(fileURLToPath(import.meta.url), ['--serve', JSON.stringify(cfg)]);
  const ports = await new Promise((r) => server.once('message', r));
  const rows = [];
  try {
    for (const n of values.streams.split(',').map(Number)) {
      for (const proto of ['http/1.1', 'h2']) rows.push(await run(proto, n, ports, cfg, duration));
    }
  } finally {
    server.kill();
  }
  console.log(
    `h2-probe: ${cfg.ttft} ms TTFT, ${cfg.tokens} chunks at ${cfg.tpot} ms, ${duration / 1000} s per row; client = one undici Pool (the gateway's upstream side)`,
  );
  console.log(['streams', 'protocol', 'connections', 'chunks/s', 'TTFT p50 ms', 'TTFT p99 ms', 'client CPU µs/chunk', 'errors'].join('\t'));
  for (const r of rows) console.log([r.n, r.proto, r.connections, r.rate, r.p50, r.p99, r.cpu, r.errors].join('\t'));
}

async function run(proto, n, ports, cfg, duration) {
  const h2 = proto === 'h2';
  const origin = `http://127.0.0.1:${h2 ? ports.h2 : ports.h1}`;
  const pool = new Pool(origin, {
    connections: null,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    // h2: up to 100 streams per connection (undici's default maxConcurrentStreams); pipelining
    // is what undici reads as "streams this connection may carry".
    ...(h2 ? { allowH2: true, connect: { useH2c: true }, pipelining: 100 } : {}),
  });
  let connections = 0;
  pool.on('connect', () => connections++);
  const ttfts = [];
  let chunks = 0;
  let errors = 0;
  const start = performance.now();
  const mStart = start + 2000;
  const mEnd = mStart + duration;
  let cpuStart;
  const cpuTimer = setTimeout(() => (cpuStart = process.cpuUsage()), mStart - start);
  let cpuSpent = 0;
  const cpuEnd = setTimeout(() => {
    const d = process.cpuUsage(cpuStart);
    cpuSpent = (d.user + d.system) / 1000;
  }, mEnd - start);
  const one = () =>
    new Promise((resolve) => {
      const sent = performance.now();
      let first = true;
      pool.dispatch(
        // idempotent on h2: undici 7 holds a non-idempotent request (a POST) back while another
        // runs on the session (client-h2.js busy(); nodejs/undici#5390, fixed in undici 8), so
        // without it every stream on a connection waits for the one before it to end.
        {
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
          body: '{"stream":true}',
          ...(h2 ? { idempotent: true } : {}),
        },
        {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData(_c, chunk) {
            const now = performance.now();
            if (first) {
              first = false;
              if (sent >= mStart && sent <= mEnd) ttfts.push(now - sent);
            }
            if (now >= mStart && now <= mEnd) chunks += countEvents(chunk);
          },
          onResponseEnd: resolve,
          onResponseError() {
            errors++;
            resolve();
          },
        },
      );
    });
  const worker = async (w) => {
    await new Promise((r) => setTimeout(r, (w * 1000) / n));
    while (performance.now() < mEnd) await one();
  };
  await Promise.all(Array.from({ length: n }, (_, w) => worker(w)));
  clearTimeout(cpuTimer);
  clearTimeout(cpuEnd);
  await pool.close();
  ttfts.sort((a, b) => a - b);
  const q = (p) => (ttfts.length ? ttfts[Math.min(ttfts.length - 1, Math.floor(p * ttfts.length))].toFixed(1) : '-');
  return {
    n,
    proto,
    connections,
    rate: Math.round(chunks / (duration / 1000)),
    p50: q(0.5),
    p99: q(0.99),
    cpu: chunks ? ((cpuSpent * 1000) / chunks).toFixed(1) : '-',
    errors,
  };
}

function countEvents(chunk) {
  let k = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) if (chunk[i + 1] === 10) k++;
  return k;
}
