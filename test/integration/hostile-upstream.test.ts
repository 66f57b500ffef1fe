// Hostile or broken upstreams: each case is a real-socket upstream doing one bad thing, and
// the gateway must answer the client cleanly, count what it can, and leak nothing.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request } from 'undici';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { startGateway, type TestGateway } from '../helpers.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

let upstream: Server;
let upstreamUrl: string;
let handler: Handler;
const seen: Array<{ url: string; headers: IncomingMessage['headers']; body: string }> = [];
/** A second server: where a redirect points. It must never be reached. */
let elsewhere: Server;
let elsewhereUrl: string;
let elsewhereHits = 0;
let gw: TestGateway;
let client: OpenAI;
const PROVIDER_KEY = 'sk-provider-SECRET-0123456789abcdef';

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}/v1`;
  elsewhere = createServer((req, res) => {
    elsewhereHits++;
    req.resume();
    res.end('{}');
  });
  await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
  elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/v1/chat/completions`;
  gw = await startGateway(`
retries: { max: 0 }
backends:
  up: { type: openai, base_url: "${upstreamUrl}", api_key: "${PROVIDER_KEY}", headers: { OpenAI-Organization: "org-gateway-own-0001" }, timeout_ms: 2000, idle_timeout_ms: 2000 }
models:
  m: { deployments: [{ backend: up, model: up-model }], pricing: { input_per_mtok: 1, output_per_mtok: 1 } }
`);
  client = new OpenAI({ baseURL: gw.baseURL, apiKey: 'k', maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  upstream?.closeAllConnections();
  elsewhere?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
  await new Promise((r) => elsewhere?.close(r));
});

beforeEach(() => {
  seen.length = 0;
});

function completion(usage = { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 }): string {
  return JSON.stringify({
    id: 'c1',
    object: 'chat.completion',
    created: 1,
    model: 'up-model',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hello there' }, finish_reason: 'stop' }],
    usage,
  });
}

describe('upstream redirects', () => {
  for (const status of [301, 302, 307, 308]) {
    it(`an upstream ${status} becomes a 502 and the client is never sent to the host it names`, async () => {
      handler = (_req, res) => {
        res.writeHead(status, { location: elsewhereUrl, 'content-type': 'application/json' });
        res.end('{"moved":true}');
      };
      // The SDK follows 307/308 itself: were the redirect relayed, `elsewhere` would get the prompt.
      const err = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'secret prompt' }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect((err as { code?: string }).code).toBe('upstream_redirect');
      expect(elsewhereHits).toBe(0);
      const line = await gw.waitForLog((l) => l.msg === 'request' && (l.error as { code?: string } | undefined)?.code === 'upstream_redirect');
      expect(line.status).toBe(502);
    });
  }

  it('a redirect answering a stream request is a 502 too (no SSE head sent)', async () => {
    handler = (_req, res) => {
      res.writeHead(307, { location: elsewhereUrl });
      res.end();
    };
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(r.statusCode).toBe(502);
    expect(r.headers.location).toBeUndefined();
    expect(((await r.body.json()) as { error: { code: string } }).error.code).toBe('upstream_redirect');
    expect(elsewhereHits).toBe(0);
  });
});

describe('what a client can make the gateway send', () => {
  it('client headers that choose the billed org/project or carry credentials never reach the upstream', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion());
    };
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'openai-organization': 'org-attacker',
        'openai-project': 'proj-attacker',
        'x-api-key': 'sk-attacker',
        'api-key': 'sk-attacker',
        'x-ms-client-request-id': 'x',
        'x-forwarded-for': '6.6.6.6',
        cookie: 'a=b',
        'openai-beta': 'assistants=v2',
        'anthropic-version': '2023-06-01',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    const h = seen[0]!.headers;
    expect(h['openai-organization']).toBe('org-gateway-own-0001');
    expect(h['openai-project']).toBeUndefined();
    expect(h['x-api-key']).toBeUndefined();
    expect(h['api-key']).toBeUndefined();
    expect(h['x-ms-client-request-id']).toBeUndefined();
    expect(h['x-forwarded-for']).toBeUndefined();
    expect(h.cookie).toBeUndefined();
    expect(h.authorization).toBe(`Bearer ${PROVIDER_KEY}`);
    // The allow-list: processing options pass.
    expect(h['openai-beta']).toBe('assistants=v2');
    expect(h['anthropic-version']).toBe('2023-06-01');
    expect(h.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('an escaped duplicate "model" key is routed, billed and sent as one model', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion());
    };
    // JSON.parse takes the last key: "m" is what the gateway routes and bills.
    const body = '{"model":"x","mod\\u0065l":"m","messages":[{"role":"user","content":"hi"}]}';
    const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    const sent = JSON.parse(seen[0]!.body) as { model: string };
    expect(sent.model).toBe('up-model');
    // Exactly one model key in the bytes sent, whatever the upstream's JSON parser does with duplicates.
    expect(seen[0]!.body.match(/"model"|mod\\u0065l/g)).toEqual(['"model"']);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.upstream_model === 'up-model' && l.model === 'm');
    expect(line.served_model).toBe('m');
  });
});
