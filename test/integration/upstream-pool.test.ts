// Upstream connections under concurrent streams. A stream holds its connection for its whole
// life, so a connection cap is a cap on concurrent streams: by default there is none, and an
// explicit pool_size makes the streams over it wait, visibly (llm_gateway_upstream_pending,
// llm_gateway_upstream_connections, queue_ms on the log line). The upstream here holds every
// stream open until the test releases it, so every assertion is on counts and states.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { openaiClient, startGateway, metricValue, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/wait.js';
import { chunkEvent, usageEvent } from '../fixtures/scripted-upstream.js';

/** An upstream whose streams send their first token at once and end only when released. */
async function startHoldingUpstream() {
  const held: Array<{ id: string; res: ServerResponse }> = [];
  const arrived: string[] = [];
  const sockets = new Set<Socket>();
  const waiters: Array<() => void> = [];
  let maxConnections = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const id = String(req.headers['x-request-id']);
      arrived.push(id);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkEvent({ role: 'assistant', content: 'first' }));
      held.push({ id, res });
      for (const w of waiters.splice(0)) w();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    maxConnections = Math.max(maxConnections, sockets.size);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    arrived,
    /** The most connections the upstream had open at once. */
    maxConnections: () => maxConnections,
    held: () => held.length,
    /** Resolves once `n` requests have arrived in all. */
    async arrivedCount(n: number): Promise<void> {
      while (arrived.length < n) await new Promise<void>((r) => waiters.push(r));
    },
    /** Ends the `n` oldest held streams. */
    release(n: number): void {
      for (const { res } of held.splice(0, n)) {
        res.write(chunkEvent({}, {}, 'stop'));
        res.write(usageEvent(5, 1));
        res.end('data: [DONE]\n\n');
      }
    },
    async close(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Polls the gateway's metrics until `pred` holds (state, not time: the bound is only a safety net). */
const untilMetrics = (gw: TestGateway, pred: (text: string) => boolean, what: string): Promise<string> =>
  eventually(
    async () => {
      const text = await gw.metricsText();
      if (!pred(text))
        throw new Error(
          `timed out waiting for ${what}; metrics:\n${text
            .split('\n')
            .filter((l) => l.includes('upstream_'))
            .join('\n')}`,
        );
      return text;
    },
    20_000,
    20,
  );

const pending = (t: string) => metricValue(t, 'llm_gateway_upstream_pending', { backend: 'up' });
const conns = (t: string, state: string) => metricValue(t, 'llm_gateway_upstream_connections', { backend: 'up', state });

let up: Awaited<ReturnType<typeof startHoldingUpstream>> | undefined;
let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  await up?.close();
  gw = up = undefined;
});

async function setup(poolSize?: number) {
  up = await startHoldingUpstream();
  gw = await startGateway(`
backends:
  up: { base_url: "${up.baseURL}"${poolSize ? `, pool_size: ${poolSize}` : ''} }
models:
  m: { deployments: [{ backend: up, model: up-model }] }
`);
  const client = openaiClient(gw, 'sk-test');
  /** Opens a stream and reads it to its end; resolves with the text it carried. */
  const stream = async (id: string) => {
    const s = await client.chat.completions.create(
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-request-id': id } },
    );
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    return text;
  };
  return { up, gw, stream };
}

describe('upstream pool', () => {
  it('pool_size 2: the streams over it wait (pending rises, queue_ms on their lines), then pending returns to 0', async () => {
    const { up, gw, stream } = await setup(2);
    const ids = Array.from({ length: 5 }, (_, i) => `pool-test-${i}`);
    const done = ids.map((id) => stream(id));

    await up.arrivedCount(2);
    // Two streams hold both connections; the other three wait in the gateway for one.
    const full = await untilMetrics(gw, (t) => pending(t) === 3, 'pending = 3');
    const queuedSince = performance.now();
    expect(conns(full, 'open')).toBe(2);
    expect(conns(full, 'busy')).toBe(2);
    expect(up.arrived.length).toBe(2);
    const first = new Set(up.arrived);

    // Ending one stream frees its connection for the next waiting one.
    const releasedAt = performance.now();
    up.release(1);
    await up.arrivedCount(3);
    await untilMetrics(gw, (t) => pending(t) === 2, 'pending = 2');
    up.release(2);
    await up.arrivedCount(5);
    await untilMetrics(gw, (t) => pending(t) === 0, 'pending = 0');
    up.release(2);
    expect(await Promise.all(done)).toEqual(ids.map(() => 'first'));
    // Never more connections than the cap.
    expect(up.maxConnections()).toBe(2);

    const idle = await untilMetrics(gw, (t) => conns(t, 'busy') === 0, 'busy = 0');
    expect(pending(idle)).toBe(0);
    expect(conns(idle, 'open')).toBeLessThanOrEqual(2);

    const lines = await Promise.all(ids.map((id) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === id)));
    for (const l of lines) {
      expect(l.status).toBe(200);
      expect(typeof l.queue_ms).toBe('number');
      expect(typeof l.upstream_ttft_ms).toBe('number');
      // TTFT = gateway before dispatch + waiting for a connection + the upstream's own TTFT.
      expect(l.ttft_ms as number).toBeGreaterThanOrEqual((l.queue_ms as number) + (l.upstream_ttft_ms as number) - 0.01);
    }
    const queued = lines.filter((l) => !first.has(l.request_id as string));
    expect(queued).toHaveLength(3);
    // They were waiting before queuedSince and could not start before the first release.
    for (const l of queued) expect(l.queue_ms as number).toBeGreaterThanOrEqual(releasedAt - queuedSince);
  });

  it('default (no pool_size): 130 concurrent streams, more than the old default cap of 128, all reach the upstream at once, none waits', async () => {
    const { up, gw, stream } = await setup();
    const n = 130;
    const done = Array.from({ length: n }, (_, i) => stream(`nocap-${i}`));
    await up.arrivedCount(n);
    expect(up.held()).toBe(n);
    const text = await gw.metricsText();
    expect(pending(text)).toBe(0);
    expect(conns(text, 'busy')).toBe(n);
    expect(conns(text, 'open')).toBe(n);
    up.release(n);
    const texts = await Promise.all(done);
    expect(texts.every((t) => t === 'first')).toBe(true);
    // 130 SDK streams in one process: generous on a busy machine (nothing here is timed).
  }, 90_000);

  it('the gauges follow the current policy: a reload that renames the backend drops the old series', async () => {
    const { up, gw, stream } = await setup();
    const one = stream('before-reload');
    await up.arrivedCount(1);
    up.release(1);
    expect(await one).toBe('first');
    expect(pending(await gw.metricsText())).toBe(0);
    const r = await gw.gw.reload(
      `
backends:
  renamed: { base_url: "${up.baseURL}", pool_size: 4 }
models:
  m: { deployments: [{ backend: renamed, model: up-model }] }
`,
      'admin',
    );
    expect(r.ok).toBe(true);
    const text = await gw.metricsText();
    expect(pending(text)).toBeUndefined();
    expect(metricValue(text, 'llm_gateway_upstream_pending', { backend: 'renamed' })).toBe(0);
    expect(metricValue(text, 'llm_gateway_upstream_connections', { backend: 'renamed', state: 'open' })).toBe(0);
  });
});
