// Hostile clients at the front door: slow heads, bodies that never end, too many
// connections, oversized bodies. Each is bounded by a server.* setting, answered in the
// OpenAI shape where an answer is possible, and never cuts a legitimate long stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { connect, type Socket } from 'node:net';
import { openaiClient, startGateway, metricValue, type TestGateway } from '../helpers/gateway.js';

const HEADERS_MS = 400;
const BODY_MS = 400;

let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway(`
server: { headers_timeout_ms: ${HEADERS_MS}, body_timeout_ms: ${BODY_MS}, keep_alive_timeout_ms: 300, max_body_bytes: 2048 }
backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 60, output_tokens: 40 }
models:
  m: { deployments: [{ backend: sim }] }
`);
});

afterAll(async () => {
  await gw?.close();
});

/** Opens a raw socket; resolves once connected. Collects what the gateway sends and when the socket closes. */
async function rawSocket(port: number): Promise<{ s: Socket; received: () => string; closed: Promise<void> }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise<void>((r) => s.once('connect', () => r()));
  return { s, received: () => got, closed };
}

describe('request timeouts', () => {
  it('a slowloris (one header byte at a time) is cut within the header timeout', async () => {
    const { s, received, closed } = await rawSocket(gw.port);
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    // Up to 200 bytes, one every 50 ms: 10 s of trickle, 25x the header timeout.
    let sent = 0;
    let stop = false;
    void closed.then(() => (stop = true));
    while (!stop && sent < 200) {
      await new Promise((r) => setTimeout(r, 50));
      if (!stop && !s.destroyed) s.write('a');
      sent++;
    }
    await closed;
    // Cut long before the trickle ran out (the header timeout plus Node's check interval and slack).
    expect(sent).toBeLessThan(200);
    const text = received();
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect((JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error: { code: string } }).error.code).toBe('request_timeout');
    expect(metricValue(await gw.metricsText(), 'llm_gateway_client_errors_total', { reason: 'request_timeout' })).toBeGreaterThanOrEqual(1);
  });

  it('headers over 16 KiB get a counted 431 in the OpenAI shape', async () => {
    const { s, received, closed } = await rawSocket(gw.port);
    s.write(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    await closed;
    const text = received();
    expect(text).toMatch(/^HTTP\/1\.1 431/);
    expect((JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error: { code: string } }).error.code).toBe('header_overflow');
    expect(metricValue(await gw.metricsText(), 'llm_gateway_client_errors_total', { reason: 'header_overflow' })).toBe(1);
  });

  it('a connection that sends nothing is closed too', async () => {
    const { s, closed } = await rawSocket(gw.port);
    let timedOut = false;
    const guard = setTimeout(() => ((timedOut = true), s.destroy()), 20 * HEADERS_MS);
    await closed;
    clearTimeout(guard);
    expect(timedOut).toBe(false);
  });

  it('a body that never ends gets a 408 request_timeout in the OpenAI shape', async () => {
    const { s, received, closed } = await rawSocket(gw.port);
    s.write(
      'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":"m",',
    );
    let timedOut = false;
    const guard = setTimeout(() => ((timedOut = true), s.destroy()), 20 * BODY_MS);
    await closed;
    clearTimeout(guard);
    expect(timedOut).toBe(false);
    const text = received();
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error: { code: string; type: string } };
    expect(body.error.code).toBe('request_timeout');
  });

  it('a stream that outlives every front-door timeout (head, body, keep-alive, their backstop) is not cut', async () => {
    const client = openaiClient(gw, 'k');
    const started = performance.now();
    const stream = await client.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'long' }] });
    let chunks = 0;
    let finish: string | null | undefined;
    for await (const c of stream) {
      if (c.choices[0]?.delta?.content) chunks++;
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    const lasted = performance.now() - started;
    expect(chunks).toBe(40);
    expect(finish).toBe('stop');
    // 40 tokens at 60 ms: the stream lasts at least 2.4 s, longer than head + body + 1 s.
    expect(lasted).toBeGreaterThan(HEADERS_MS + BODY_MS + 1000);
  });
});

describe('oversized bodies', () => {
  it('a 20 MiB body with content-length gets a readable 413, not a reset', async () => {
    const body = Buffer.alloc(20 * 1024 * 1024, 0x20);
    const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.statusCode).toBe(413);
    expect(((await r.body.json()) as { error: { code: string } }).error.code).toBe('request_too_large');
  });
});

describe('connection cap', () => {
  let capped: TestGateway;
  beforeAll(async () => {
    capped = await startGateway(`
server: { max_connections: 2 }
backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 0 }
models:
  m: { deployments: [{ backend: sim }] }
`);
  });
  afterAll(async () => {
    await capped?.close();
  });

  it('connections past server.max_connections are refused, counted and logged', async () => {
    const a = await rawSocket(capped.port);
    const b = await rawSocket(capped.port);
    const c = await rawSocket(capped.port);
    await c.closed;
    expect(a.s.destroyed).toBe(false);
    expect(b.s.destroyed).toBe(false);
    expect(metricValue(await capped.metricsText(), 'llm_gateway_connections_refused_total')).toBe(1);
    await capped.waitForLog((l) => l.msg.startsWith('connections refused'));
    a.s.destroy();
    b.s.destroy();
    await Promise.all([a.closed, b.closed]);
  });
});

describe('inputs that used to answer 500', () => {
  let adm: TestGateway;
  beforeAll(async () => {
    adm = await startGateway(`
admin_token: adm-token
backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 0 }
models:
  m: { deployments: [{ backend: sim, model: other-name }] }
keys:
  - { key: k-budget, name: budgeted, budget: { usd: 5 } }
`);
  });
  afterAll(async () => {
    await adm?.close();
  });
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

  it('a 100k-deep JSON body is a 400 (or a normal answer), never a 500, on every path that walks it', async () => {
    const bodies = [
      // Serialised path (the client's own stream_options) and the escaped-key path.
      `{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}],"x":${deep(100_000)}}`,
      `{"mod\\u0065l":"m","messages":[{"role":"user","content":"x"}],"x":${deep(100_000)}}`,
      // Prompt estimate of a budgeted key, over deep tools.
      `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}}]}`,
    ];
    for (const body of bodies) {
      const r = await request(`${adm.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer k-budget' },
        body,
      });
      const text = await r.body.text();
      expect(r.statusCode, text.slice(0, 200)).toBeLessThan(500);
      if (r.statusCode === 400) expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe('json_too_deep');
    }
    expect(adm.logs.filter((l) => l.level >= 50 && l.msg !== 'request')).toEqual([]);
  });

  it('malformed %-escapes and prototype names in admin input are 400/404, not 500', async () => {
    const auth = { authorization: 'Bearer adm-token', 'content-type': 'application/json' };
    const cases: Array<[string, string, unknown, number]> = [
      ['GET', '/admin/%', undefined, 400],
      ['GET', '/admin/budgets/%E0%A4%A', undefined, 400],
      ['POST', '/admin/budgets/reset', { scope: '__proto__', name: 'x' }, 400],
      ['POST', '/admin/budgets/reset', { scope: 'constructor', name: 'toString' }, 400],
      ['POST', '/admin/budgets/reset', { scope: 'key', name: '__proto__' }, 404],
      ['POST', '/admin/circuits/__proto__/sim', { state: 'open' }, 404],
    ];
    for (const [method, path, body, status] of cases) {
      const r = await request(`${adm.url}${path}`, {
        method: method as 'GET' | 'POST',
        headers: auth,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await r.body.text();
      expect(r.statusCode, `${method} ${path} ${text}`).toBe(status);
      expect(Object.keys((JSON.parse(text) as { error: object }).error).sort()).toEqual(['code', 'message', 'param', 'type']);
    }
  });

  it('GET /v1/models without a key is a 401 that writes no error line', async () => {
    const before = adm.logs.length;
    const r = await request(`${adm.url}/v1/models`);
    await r.body.text();
    expect(r.statusCode).toBe(401);
    expect(adm.logs.slice(before).filter((l) => l.level >= 50)).toEqual([]);
  });
});

describe('exposure', () => {
  it('server.allowed_hosts: an unexpected Host gets a 421 on the API; probes and scrapes still answer', async () => {
    const hosted = await startGateway(`
server: { allowed_hosts: [gateway.local, 127.0.0.1] }
backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 0 }
models:
  m: { deployments: [{ backend: sim }] }
`);
    try {
      const post = (host: string) =>
        request(`${hosted.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { host, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
        });
      const evil = await post('evil.example');
      expect(evil.statusCode).toBe(421);
      expect(((await evil.body.json()) as { error: { code: string } }).error.code).toBe('host_not_allowed');
      const good = await post(`gateway.local:${hosted.port}`);
      expect(good.statusCode).toBe(200);
      await good.body.text();
      for (const path of ['/healthz', '/readyz', '/metrics']) {
        const r = await request(`${hosted.url}${path}`, { headers: { host: '10.1.2.3:4000' } });
        await r.body.text();
        expect(r.statusCode).toBe(200);
      }
    } finally {
      await hosted.close();
    }
  });

  it('listening on 0.0.0.0 with no keys is logged loudly at start', async () => {
    const { Writable } = await import('node:stream');
    const pino = (await import('pino')).default;
    const { Gateway } = await import('../../src/gateway.js');
    const { parsePolicies } = await import('../../src/config/load.js');
    const { Metrics } = await import('../../src/telemetry/metrics.js');
    const lines: Array<{ level: number; msg: string }> = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        for (const l of c.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: number; msg: string });
        cb();
      },
    });
    const p = parsePolicies('backends: { sim: { type: simulator } }\nmodels: { m: { deployments: [{ backend: sim }] } }\n', 't.yaml', {});
    const g = await Gateway.create(p, { logger: pino({ base: null }, sink), metrics: new Metrics({ defaultMetrics: false }) });
    await g.listen(0, '0.0.0.0');
    await g.close(100);
    const warning = lines.find((l) => l.msg.startsWith('EXPOSED'));
    expect(warning?.level).toBe(40);
    expect(warning?.msg).toMatch(/no virtual keys/);
  });
});
