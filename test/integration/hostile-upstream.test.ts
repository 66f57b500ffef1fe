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
