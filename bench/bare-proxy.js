#!/usr/bin/env node
// The floor any Node.js proxy pays: node:http in front, one undici Pool behind, bytes passed
// through with backpressure, and nothing else (no parsing, auth, limits, metrics or logs).
// The benchmark runs it beside the gateway so the gateway's own cost can be told apart from
// the cost of being a Node proxy at all.
//
//   node bench/bare-proxy.js --upstream http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1] [--connections 10000]
//
// Prints one JSON line {"url","port"} once listening; exits on SIGTERM/SIGINT.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    upstream: { type: 'string' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    connections: { type: 'string', default: '10000' },
  },
});
if (!values.upstream) {
  process.stderr.write('usage: node bench/bare-proxy.js --upstream http://HOST:PORT [--port N] [--host H] [--connections N]\n');
  process.exit(2);
}

const upstream = new URL(values.upstream);
const pool = new Pool(upstream.origin, {
  connections: Number(values.connections),
  pipelining: 1,
  keepAliveTimeout: 30_000,
  headersTimeout: 120_000,
  bodyTimeout: 120_000,
});

// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the HTTP layers redo themselves.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function requestHeaders(incoming) {
  const out = {};
  for (const name in incoming) if (!HOP.has(name) && name !== 'content-length') out[name] = incoming[name];
  return out;
}

function responseHeaders(incoming) {
  const out = {};
  for (const name in incoming) if (!HOP.has(name)) out[name] = incoming[name];
  return out;
}

function badGateway(res, err) {
  if (res.headersSent) return res.destroy();
  const body = JSON.stringify({
    error: { message: `bare proxy: ${err.message}`, type: 'upstream_error', param: null, code: err.code ?? null },
  });
  res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('error', () => res.destroy());
  req.on('end', () => {
    const body = chunks.length === 0 ? null : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    let controller;
    let finished = false;
    res.on('close', () => {
      if (!finished && controller && !controller.aborted) controller.abort(new Error('client closed the connection'));
    });
    pool.dispatch(
      { method: req.method, path: req.url, headers: requestHeaders(req.headers), body },
      {
        onRequestStart(c) {
          controller = c;
        },
        onResponseStart(_c, status, headers) {
          res.writeHead(status, responseHeaders(headers));
          // A stream's head goes out at once, as from the upstream; a sized body goes with its head.
          if (headers['content-length'] === undefined) res.flushHeaders();
        },
        onResponseData(c, chunk) {
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
          finished = true;
          res.end();
        },
        onResponseError(_c, err) {
          finished = true;
          badGateway(res, err);
        },
      },
    );
  });
});

server.listen({ port: Number(values.port), host: values.host, backlog: 8192 }, () => {
  const { port } = server.address();
  process.stdout.write(JSON.stringify({ url: `http://${values.host}:${port}`, port }) + '\n');
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  pool.destroy().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
