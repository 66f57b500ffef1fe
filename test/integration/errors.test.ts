// Bad input and upstream trouble: each case gets an OpenAI-shaped error with the status a
// client SDK expects, and nothing is left behind (the gateway closes with no in-flight work).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture, metricValue } from '../helpers/gateway.js';
import { freePort } from '../helpers/net.js';

let sim: Simulator;
let gw: GatewayFixture;
let closedPort: number;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSimulator({ ttftMs: 5, tpotMs: 5, outputTokens: 8 });
  closedPort = await freePort();
  gw = await withGateway(
    `
server: { max_body_bytes: 2048 }
backends:
  sim: { type: openai, base_url: "${sim.url}", timeout_ms: 400, idle_timeout_ms: 400, forward_headers: [x-sim-fault, x-sim-tpot-ms] }
  dead: { type: openai, base_url: "http://127.0.0.1:${closedPort}/v1", connect_timeout_ms: 1000 }
models:
  ok: { deployments: [{ backend: sim }] }
  dead: { deployments: [{ backend: dead }] }
`,
    { apiKey: 'k' },
  );
  client = gw.openai;
});

afterAll(async () => {
  await gw?.close();
  await sim?.close();
});

async function post(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body });
  const text = await r.body.text();
  return {
    status: r.statusCode,
    json: JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string } },
    headers: r.headers,
  };
}

function expectErrorShape(e: { error: Record<string, unknown> }) {
  expect(Object.keys(e.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof e.error.message).toBe('string');
}

describe('bad input', () => {
  it('malformed JSON → 400 invalid_json', async () => {
    const r = await post('{"model": "ok",');
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('invalid_json');
    expectErrorShape(r.json);
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // Made ids are unique per request.
    const again = await post('{"model": "ok",');
    expect(again.headers['x-request-id']).not.toBe(r.headers['x-request-id']);
  });

  it('non-object body → 400', async () => {
    for (const body of ['[1,2]', '"text"', 'null', '42']) {
      const r = await post(body);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe('invalid_request');
    }
  });

  it('missing or non-string model → 400 with param model', async () => {
    for (const body of ['{"messages":[]}', '{"model": 5, "messages":[]}', '{"model": "", "messages":[]}']) {
      const r = await post(body);
      expect(r.status).toBe(400);
      expect(r.json.error.param).toBe('model');
    }
  });

  it('unknown model → 404 model_not_found (SDK NotFoundError)', async () => {
    await expect(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
    });
    // A client cannot mint metric series by inventing model names.
    const text = await gw.metricsText();
    expect(text).not.toContain('model="nope"');
    expect(metricValue(text, 'llm_gateway_requests_total', { model: 'unknown', status: '404' })).toBeGreaterThanOrEqual(1);
  });

  it('oversized body → 413, by content-length and by streamed size', async () => {
    const big = JSON.stringify({ model: 'ok', messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    const r = await post(big);
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('request_too_large');
    // Chunked upload without content-length: the cap applies as bytes arrive.
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(
        (async function* () {
          yield Buffer.from(big.slice(0, 1500));
          yield Buffer.from(big.slice(1500));
        })(),
      ),
    });
    expect(res.statusCode).toBe(413);
    await res.body.text();
    // A default that refuses traffic is counted: both refusals, under the unrouted labels.
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_requests_total', { model: 'unknown', backend: 'none', status: '413' })).toBe(2);
  });

  it('wrong content-type → 415 with an OpenAI-shaped error', async () => {
    const r = await post('{"model":"ok"}', { 'content-type': 'text/plain' });
    expect(r.status).toBe(415);
    expectErrorShape(r.json);
  });

  it('stream that is not a boolean → 400', async () => {
    const r = await post('{"model":"ok","stream":"yes","messages":[]}');
    expect(r.status).toBe(400);
    expect(r.json.error.param).toBe('stream');
  });

  it('unknown path → 404; GET on an inference path → 405 with allow', async () => {
    const a = await request(`${gw.url}/nope`);
    expect(a.statusCode).toBe(404);
    expectErrorShape((await a.body.json()) as { error: Record<string, unknown> });
    const b = await request(`${gw.url}/v1/completions`);
    expect(b.statusCode).toBe(405);
    expect(b.headers.allow).toBe('POST');
    await b.body.text();
  });
});

describe('upstream trouble', () => {
  it('upstream refusing connections → 502 upstream_unreachable (SDK APIError)', async () => {
    await expect(client.chat.completions.create({ model: 'dead', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status: 502,
      code: 'upstream_unreachable',
    });
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_upstream_errors_total', { backend: 'dead', reason: 'connect' })).toBeGreaterThanOrEqual(1);
  });

  it('upstream hanging before headers → 504 upstream_timeout', async () => {
    const before = sim.stats.aborted;
    await expect(
      client.chat.completions.create(
        { model: 'ok', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-sim-fault': JSON.stringify({ kind: 'hang' }) } },
      ),
    ).rejects.toMatchObject({ status: 504, code: 'upstream_timeout' });
    // The gateway gave up on the upstream request: the simulator saw the connection go.
    await expect.poll(() => sim.stats.aborted).toBeGreaterThan(before);
  });

  it('upstream going silent mid-stream → the stream ends with an error event the SDK raises', async () => {
    const stream = await client.chat.completions.create(
      { model: 'ok', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-sim-tpot-ms': '2000' } },
    );
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const c of stream) seen.push(c.choices[0]?.delta?.content ?? '');
      })(),
    ).rejects.toThrow(/timed out/);
    expect(seen.join('').length).toBeGreaterThan(0);
  });

  it('upstream dying mid-stream → the SDK raises an error, the log records the failure', async () => {
    const stream = await client.chat.completions.create(
      { model: 'ok', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-sim-fault': JSON.stringify({ kind: 'die_mid_stream', afterChunks: 3 }) } },
    );
    let chunks = 0;
    await expect(
      (async () => {
        for await (const _c of stream) chunks++;
      })(),
    ).rejects.toThrow(/broke/);
    expect(chunks).toBeGreaterThanOrEqual(1);
    const line = await gw.waitForLog((l) => l.msg === 'request' && (l.error as { code?: string })?.code === 'upstream_stream_error');
    expect(line.status).toBe(200);
  });

  it('upstream 5xx before the first byte → 502 with an OpenAI-shaped error', async () => {
    await expect(
      client.chat.completions.create(
        { model: 'ok', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-sim-fault': JSON.stringify({ kind: 'status', status: 500 }) } },
      ),
    ).rejects.toMatchObject({ status: 502 });
  });

  it('upstream 4xx passes with its status and message', async () => {
    await expect(
      client.chat.completions.create(
        { model: 'ok', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'x-sim-fault': JSON.stringify({ kind: 'context_length' }) } },
      ),
    ).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded' });
  });
});

describe('client leaving mid-stream', () => {
  it('aborts the upstream at once, counts the tokens so far, records 499', async () => {
    const before = sim.stats.aborted;
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'ok', messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 200 },
      { signal: ac.signal, headers: { 'x-sim-output-tokens': '200', 'x-sim-tpot-ms': '20', 'x-request-id': 'leaver-1' } },
    );
    let n = 0;
    try {
      for await (const c of stream) {
        if (c.choices[0]?.delta?.content) n++;
        if (n === 3) ac.abort();
      }
    } catch {
      // the SDK raises APIUserAbortError: expected
    }
    await expect.poll(() => sim.stats.aborted, { timeout: 2000 }).toBe(before + 1);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'leaver-1');
    expect(line.status).toBe(499);
    const out = (line.tokens as { output: number }).output;
    // At least the 3 tokens the client read; far fewer than the 200 it would have cost.
    expect(out).toBeGreaterThanOrEqual(3);
    expect(out).toBeLessThan(50);
    expect(line.tokens_estimated).toBe(true);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_requests_total', { model: 'ok', status: '499' })).toBeGreaterThanOrEqual(1);
  });

  it('leaves no request in flight', async () => {
    await expect.poll(() => gw.gw.inflight.size).toBe(0);
    expect(metricValue(await gw.metricsText(), 'llm_gateway_active_requests', { model: 'ok' })).toBe(0);
  });
});
