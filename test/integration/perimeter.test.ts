// The perimeter: no spelling of a path reaches the upstream by a way its canonical form
// cannot, and pass-through is admitted yet transparent. A real-socket upstream records every
// request it gets (method, target, headers, body bytes); the gateway runs on a loopback port.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { Client, FormData, request } from 'undici';
import { openaiClient, startGateway, metricValue, type TestGateway } from '../helpers/gateway.js';
import { flushPrefix } from './admission-support.js';
import { listenLoopback } from '../helpers/net.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const BIN = randomBytes(300 * 1024);
const seen: Seen[] = [];
let closeUpstream: (() => Promise<void>) | undefined;
/** Requests to /v1/files/hold wait here until the test lets them go. */
const held: Array<() => void> = [];

async function startRecorder(): Promise<string> {
  const upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(rec);
      const path = rec.url.split('?')[0];
      const json = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          'set-cookie': 'up=1',
          'openai-organization': 'org-secret',
        });
        res.end(text);
      };
      if (rec.method === 'POST' && path === '/v1/chat/completions') {
        const model = (JSON.parse(rec.body.toString()) as { model: string }).model;
        return json(200, {
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
        });
      }
      if (rec.method === 'GET' && path === '/v1/chat/completions')
        return json(200, { object: 'list', data: [], first_id: null, last_id: null, has_more: false });
      if (path === '/v1/files/bin/content') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIN.length });
        return res.end(BIN);
      }
      if (path === '/v1/files/die/content') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIN.length });
        res.write(BIN.subarray(0, 1000));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (path === '/v1/files/hold') {
        held.push(() => {
          if (!res.destroyed) json(200, { held: true });
        });
        return;
      }
      json(200, { ok: true, method: rec.method, url: rec.url });
    });
  });
  const { port, close } = await listenLoopback(upstream);
  closeUpstream = close;
  return `http://127.0.0.1:${port}/v1`;
}

let gw: TestGateway;
let base: string;

beforeAll(async () => {
  base = await startRecorder();
  gw = await startGateway(`
admin_token: adm
server:
  passthrough:
    allow: [/v1/images]
backends:
  up: { base_url: "${base}", api_key: sk-provider-secret }
models:
  m1:
    deployments: [{ backend: up, model: up-m1 }]
    pricing: { input_per_mtok: 1000, output_per_mtok: 1000 }
  m2:
    deployments: [{ backend: up, model: up-m2 }]
keys:
  - { key: sk-open, name: open }
  - { key: sk-rpm1, name: rpm1, limits: { rpm: 1 } }
  - { key: sk-budget, name: budgeted, budget: { usd: 0.025, period: day } }
  - { key: sk-rpm2, name: rpm2, limits: { rpm: 2 } }
  - { key: sk-conc, name: conc, limits: { concurrency: 1 } }
  - { key: sk-m1only, name: m1only, models: [m1] }
`);
});

afterAll(async () => {
  for (const h of held) h();
  await gw?.close();
  await closeUpstream?.();
});

beforeEach(() => {
  seen.length = 0;
});

interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the target sent byte for byte as given (no client-side normalisation). */
function raw(method: string, target: string, key: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: '127.0.0.1',
        port: gw.port,
        method,
        path: target,
        agent: false,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

const chatBody = (model = 'm1') => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });

/** Every spelling of the chat route, and what it must become: governed as chat, or refused. */
const SPELLINGS: Array<[string, 'chat' | 'responses' | 'refused']> = [
  ['/v1/chat/./completions', 'chat'],
  ['/v1/x/../chat/completions', 'chat'],
  ['/v1/chat/%2e/completions', 'chat'],
  ['/v1/chat/%2E/completions', 'chat'],
  ['/v1/chat/x/%2e%2e/completions', 'chat'],
  ['/v1//chat/completions', 'chat'],
  ['//v1/chat/completions', 'chat'],
  ['/v1/chat/completions/', 'chat'],
  ['/v1/chat/completions//', 'chat'],
  ['/v1/%63hat/completions', 'chat'],
  ['/v1/../v1/chat/completions', 'chat'],
  ['/v1/files/../chat/completions', 'chat'],
  ['/v1/chat/completions?x=1', 'chat'],
  ['/v1/chat/completions;x=1', 'refused'],
  ['/v1/chat;x=1/completions', 'refused'],
  ['/v1/chat%2Fcompletions', 'refused'],
  ['/v1/chat%2fcompletions', 'refused'],
  ['/v1/chat%5Ccompletions', 'refused'],
  ['/v1/chat\\completions', 'refused'],
  ['/v1/chat/%252e/completions', 'refused'],
  ['/V1/chat/completions', 'refused'],
  ['/v1/Chat/Completions', 'refused'],
  ['/v1/CHAT/COMPLETIONS/', 'refused'],
  ['/../v1/chat/completions', 'refused'],
  ['/v1/../../v1/chat/completions', 'refused'],
  ['/v1/chat/completions%00', 'refused'],
  ['/v1/deployments/m1/chat/completions', 'refused'],
  ['/v1/engines/m1/completions', 'refused'],
  ['/v1/openai/deployments/m1/embeddings', 'refused'],
  ['/v1/responses', 'responses'],
  ['/v1/Responses', 'refused'],
  ['/v1/responses/', 'responses'],
  ['/v1/messages', 'refused'],
];

describe('path spellings: governed or refused, never passed through', () => {
  it.each(SPELLINGS)('%s → %s', async (target, want) => {
    const r = await raw('POST', target, 'sk-open', chatBody());
    if (want === 'chat') {
      expect(r.status).toBe(200);
      expect(r.headers['x-gateway-model']).toBe('m1');
      // Through the pipeline: the canonical upstream path, the deployment's model spliced in.
      expect(seen.map((s) => `${s.method} ${s.url.split('?')[0]}`)).toEqual(['POST /v1/chat/completions']);
      expect((JSON.parse(seen[0]!.body.toString()) as { model: string }).model).toBe('up-m1');
    } else if (want === 'responses') {
      // The Responses API is governed too: its pipeline, its canonical upstream path.
      expect(r.status).toBe(200);
      expect(seen.map((s) => `${s.method} ${s.url.split('?')[0]}`)).toEqual(['POST /v1/responses']);
      expect((JSON.parse(seen[0]!.body.toString()) as { model: string }).model).toBe('up-m1');
    } else {
      expect([400, 404]).toContain(r.status);
      // OpenAI's shape (error.code), or Anthropic's on /v1/messages (error.type).
      const e = (JSON.parse(r.body.toString()) as { error: { code?: string; type?: string } }).error;
      expect(e.code ?? e.type).toBeTruthy();
      expect(seen).toEqual([]);
    }
  });

  it.each([
    ['sk-rpm1', 'rate_limit_exceeded'],
    ['sk-budget', 'insufficient_quota'],
  ])('a key whose %s limit is used up gets no second request through any spelling', async (key, code) => {
    const first = await raw('POST', '/v1/chat/completions', key, chatBody());
    expect(first.status).toBe(200);
    seen.length = 0;
    for (const [target, want] of SPELLINGS) {
      const r = await raw('POST', target, key, chatBody());
      expect(r.status, target).not.toBe(200);
      if (want !== 'refused') {
        expect(r.status, target).toBe(429);
        expect((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code).toBe(code);
      }
    }
    // Any pass-through write is refused too: rpm counts it, and a budgeted key may not spend unpriced.
    expect((await raw('POST', '/v1/batches', key, '{}')).status).not.toBe(200);
    expect(seen).toEqual([]);
  });

  it('.. cannot climb out of /v1 past the table: /v1/../metrics is /metrics, /v1/../admin is guarded', async () => {
    const m = await raw('GET', '/v1/../metrics', 'sk-open');
    expect(m.status).toBe(200);
    expect(m.body.toString()).toContain('llm_gateway_requests_total');
    expect((await raw('GET', '/v1/../admin/spend', 'sk-open')).status).toBe(401);
    expect((await raw('GET', '/v1/./models', 'sk-m1only')).body.toString()).toContain('"m1"');
    expect(seen).toEqual([]);
  });
});

describe('pass-through is transparent', () => {
  it('GET with a query string (brackets, arrays, escapes) reaches the upstream unchanged; provider key in, client key out', async () => {
    const q = '?purpose=batch&a[]=1&a[]=2&b=%5Bx%5D&c=d%20e&after=file-abc';
    const r = await raw('GET', `/v1/files${q}`, 'sk-open', undefined, { 'openai-organization': 'org-client', 'x-custom': 'kept' });
    expect(r.status).toBe(200);
    expect(seen).toHaveLength(1);
    const s = seen[0]!;
    expect(s.method).toBe('GET');
    expect(s.url).toBe(`/v1/files${q}`);
    expect(s.headers.authorization).toBe('Bearer sk-provider-secret');
    expect(s.headers['x-custom']).toBe('kept');
    expect(s.headers['openai-organization']).toBeUndefined();
    expect(JSON.stringify(s.headers)).not.toContain('sk-open');
    expect(s.headers['x-request-id']).toBe(r.headers['x-request-id']);
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(r.headers['openai-organization']).toBeUndefined();
    expect(JSON.parse(r.body.toString())).toEqual({ ok: true, method: 'GET', url: `/v1/files${q}` });
  });

  it('DELETE and a binary download pass unchanged', async () => {
    const d = await raw('DELETE', '/v1/files/file-1', 'sk-open');
    expect(d.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: 'DELETE', url: '/v1/files/file-1' });
    const b = await raw('GET', '/v1/files/bin/content', 'sk-open');
    expect(b.status).toBe(200);
    expect(b.headers['content-type']).toBe('application/octet-stream');
    expect(b.body.equals(BIN)).toBe(true);
  });

  it('a multipart upload arrives byte for byte, with its boundary', async () => {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([BIN], { type: 'application/octet-stream' }), 'data.jsonl');
    const r = await request(`${gw.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: 'Bearer sk-budget' } });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    const s = seen[0]!;
    expect(s.method).toBe('POST');
    expect(s.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    const boundary = /boundary=(.+)$/.exec(s.headers['content-type']!)![1]!;
    const text = s.body.toString('latin1');
    expect(text.startsWith(`--${boundary}`)).toBe(true);
    expect(s.body.includes(BIN)).toBe(true);
  });

  it('the openai SDK lists stored chat completions (GET /v1/chat/completions passes through)', async () => {
    const client = openaiClient(gw, 'sk-open');
    const page = await client.chat.completions.list({ limit: 2 });
    expect(page.data).toEqual([]);
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/v1/chat/completions?limit=2' });
  });

  it('keeps the client connection alive across pass-through requests', async () => {
    const client = new Client(gw.url);
    let connects = 0;
    client.on('connect', () => connects++);
    for (let i = 0; i < 3; i++) {
      const r = await client.request({ method: 'GET', path: '/v1/files/bin/content', headers: { authorization: 'Bearer sk-open' } });
      expect(Buffer.from(await r.body.arrayBuffer()).equals(BIN)).toBe(true);
    }
    expect(connects).toBe(1);
    await client.close();
  });

  it('an upstream that dies mid-body breaks the client connection (never a clean end), logged with an error', async () => {
    const r = await request(`${gw.url}/v1/files/die/content`, { headers: { authorization: 'Bearer sk-open' } });
    expect(r.statusCode).toBe(200);
    await expect(r.body.arrayBuffer()).rejects.toThrow();
    const line = await gw.waitForLog((l) => l.endpoint === 'passthrough' && l.path === '/v1/files/die/content');
    expect((line.error as { code: string }).code).toBe('upstream_stream_error');
  });

  it('each pass-through request gets a log line and counts under its route family', async () => {
    const r = await raw('GET', '/v1/files/x?y=1', 'sk-open');
    const line = await gw.waitForLog((l) => l.endpoint === 'passthrough' && l.request_id === r.headers['x-request-id']);
    expect(line).toMatchObject({ msg: 'request', method: 'GET', path: '/v1/files/x', status: 200, key_name: 'open', backend: 'up' });
    expect(JSON.stringify(gw.logs)).not.toContain('sk-provider-secret');
    expect(JSON.stringify(gw.logs)).not.toContain('sk-open');
    const text = await gw.metricsText();
    expect(
      metricValue(text, 'llm_gateway_requests_total', { model: 'passthrough:files', backend: 'up', status: '200' }),
    ).toBeGreaterThanOrEqual(1);
  });
});

describe('pass-through is admitted', () => {
  it('no key → 401, nothing sent', async () => {
    const r = await request(`${gw.url}/v1/files`);
    expect(r.statusCode).toBe(401);
    await r.body.text();
    expect(seen).toEqual([]);
  });

  it('a budgeted key gets 403 passthrough_not_allowed on spending routes unless allowed; free ones and reads pass', async () => {
    const b = await raw(
      'POST',
      '/v1/batches',
      'sk-budget',
      JSON.stringify({ input_file_id: 'f', endpoint: '/v1/chat/completions', completion_window: '24h' }),
    );
    expect(b.status).toBe(403);
    expect((JSON.parse(b.body.toString()) as { error: { code: string } }).error.code).toBe('passthrough_not_allowed');
    expect((await raw('POST', '/v1/audio/speech', 'sk-m1only', '{"input":"x"}')).status).toBe(403);
    expect(seen).toEqual([]);
    // server.passthrough.allow lists /v1/images; moderations are free; reads pass.
    expect((await raw('POST', '/v1/images/generations', 'sk-budget', '{"prompt":"x"}')).status).toBe(200);
    expect((await raw('POST', '/v1/moderations', 'sk-budget', '{"input":"x"}')).status).toBe(200);
    expect((await raw('GET', '/v1/batches', 'sk-budget')).status).toBe(200);
    expect((await raw('POST', '/v1/batches/b1/cancel', 'sk-budget')).status).toBe(200);
    // A key with no budget and no allow-list may spend.
    expect((await raw('POST', '/v1/batches', 'sk-open', '{}')).status).toBe(200);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'POST /v1/images/generations',
      'POST /v1/moderations',
      'GET /v1/batches',
      'POST /v1/batches/b1/cancel',
      'POST /v1/batches',
    ]);
  });

  it('a refused upload is answered without reading it to its end (the connection closes)', async () => {
    const form = new FormData();
    form.append('model', 'm1');
    form.append('file', new Blob([BIN, BIN, BIN, BIN]), 'speech.wav');
    const r = await request(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      body: form,
      headers: { authorization: 'Bearer sk-budget' },
    });
    expect(r.statusCode).toBe(403);
    expect(r.headers.connection).toBe('close');
    expect(((await r.body.json()) as { error: { code: string } }).error.code).toBe('passthrough_not_allowed');
    expect(seen).toEqual([]);
  });

  it('a JSON body naming a model is checked against the allow-list; a served model is named back', async () => {
    const no = await raw('POST', '/v1/moderations', 'sk-m1only', JSON.stringify({ model: 'm2', input: 'x' }));
    expect(no.status).toBe(403);
    expect((JSON.parse(no.body.toString()) as { error: { code: string } }).error.code).toBe('model_not_allowed');
    expect(seen).toEqual([]);
    const body = JSON.stringify({ model: 'm1', input: 'x' });
    const yes = await raw('POST', '/v1/moderations', 'sk-m1only', body);
    expect(yes.status).toBe(200);
    expect(yes.headers['x-gateway-model']).toBe('m1');
    expect(seen[0]!.body.toString()).toBe(body);
  });

  it('rpm counts every pass-through request of a key', async () => {
    expect((await raw('GET', '/v1/files', 'sk-rpm2')).status).toBe(200);
    expect((await raw('DELETE', '/v1/files/f', 'sk-rpm2')).status).toBe(200);
    const third = await raw('GET', '/v1/files', 'sk-rpm2');
    expect(third.status).toBe(429);
    expect(third.headers['retry-after']).toBeTruthy();
    expect(seen).toHaveLength(2);
  });

  it('concurrency holds a slot for the whole exchange and frees it on end and on abort', async () => {
    const inUse = async () => {
      const r = await fetch(`${gw.url}/admin/limits`, { headers: { authorization: 'Bearer adm' } });
      const body = (await r.json()) as { scopes: Array<{ name: string; concurrency?: { in_use: number } }> };
      return body.scopes.find((s) => s.name === 'conc')!.concurrency!.in_use;
    };
    // 1: held upstream; a second one is refused meanwhile.
    const first = raw('GET', '/v1/files/hold', 'sk-conc');
    await waitFor(() => held.length === 1);
    expect(await inUse()).toBe(1);
    expect((await raw('GET', '/v1/files', 'sk-conc')).status).toBe(429);
    held.shift()!();
    expect((await first).status).toBe(200);
    await waitFor(async () => (await inUse()) === 0);
    // 2: the client leaves while the upstream holds: the slot comes back.
    const ac = new AbortController();
    const gone = request(`${gw.url}/v1/files/hold`, { headers: { authorization: 'Bearer sk-conc' }, signal: ac.signal });
    await waitFor(() => held.length === 1);
    ac.abort();
    await expect(gone).rejects.toThrow();
    await waitFor(async () => (await inUse()) === 0);
    held.shift()!();
    expect((await raw('GET', '/v1/files', 'sk-conc')).status).toBe(200);
  });
});

describe('/v1/models', () => {
  it('lists only the models the key may use; retrieve answers for those, 404 otherwise', async () => {
    const open = openaiClient(gw, 'sk-open');
    const narrow = openaiClient(gw, 'sk-m1only');
    expect((await open.models.list()).data.map((m) => m.id).sort()).toEqual(['m1', 'm2']);
    expect((await narrow.models.list()).data.map((m) => m.id)).toEqual(['m1']);
    expect((await narrow.models.retrieve('m1')).id).toBe('m1');
    await expect(narrow.models.retrieve('m2')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(open.models.retrieve('nope')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const d = await raw('DELETE', '/v1/models/m1', 'sk-open');
    expect(d.status).toBe(405);
    expect(d.headers.allow).toBe('GET');
    expect(seen).toEqual([]);
  });

  it('an unauthenticated GET /v1/models is a clean 401, not an unhandled error', async () => {
    const before = gw.logs.length;
    const r = await request(`${gw.url}/v1/models`);
    expect(r.statusCode).toBe(401);
    expect(((await r.body.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect(gw.logs.slice(before).filter((l) => l.level >= 50)).toEqual([]);
  });
});

describe('pass-through admission on the shared (Redis) store', () => {
  const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const PREFIX = `llmgw-perimeter-${process.pid}-${Date.now()}:`;
  let shared: TestGateway;

  beforeAll(async () => {
    shared = await startGateway(`
admin_token: adm
state: { store: redis, redis_url: "${REDIS_URL}", redis_prefix: "${PREFIX}", on_store_error: closed }
backends:
  up: { base_url: "${base}", api_key: sk-provider-secret }
models:
  m1: { deployments: [{ backend: up, model: up-m1 }] }
keys:
  - { key: sk-rpm2, name: rpm2, limits: { rpm: 2 } }
  - { key: sk-conc, name: conc, limits: { concurrency: 1 } }
`);
  });

  afterAll(async () => {
    await shared?.close();
    await flushPrefix(REDIS_URL, PREFIX);
  });

  const get = (path: string, key: string, signal?: AbortSignal) =>
    request(`${shared.url}${path}`, { headers: { authorization: `Bearer ${key}` }, signal });
  const inUse = async () => {
    const r = await fetch(`${shared.url}/admin/limits`, { headers: { authorization: 'Bearer adm' } });
    const body = (await r.json()) as { scopes: Array<{ name: string; concurrency?: { in_use: number } }> };
    return body.scopes.find((s) => s.name === 'conc')!.concurrency!.in_use;
  };

  it('rpm counts pass-through requests, and a concurrency slot comes back on abort', async () => {
    for (const want of [200, 200, 429]) {
      const r = await get('/v1/files', 'sk-rpm2');
      expect(r.statusCode).toBe(want);
      await r.body.text();
    }
    expect(seen).toHaveLength(2);
    const ac = new AbortController();
    const gone = get('/v1/files/hold', 'sk-conc', ac.signal);
    await waitFor(() => held.length === 1);
    expect(await inUse()).toBe(1);
    const busy = await get('/v1/files', 'sk-conc');
    expect(busy.statusCode).toBe(429);
    await busy.body.text();
    ac.abort();
    await expect(gone).rejects.toThrow();
    await waitFor(async () => (await inUse()) === 0);
    held.shift()!();
    const again = await get('/v1/files', 'sk-conc');
    expect(again.statusCode).toBe(200);
    await again.body.text();
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
