// Hostile or broken upstreams: each case is a real-socket upstream doing one bad thing, and
// the gateway must answer the client cleanly, count what it can, and leak nothing.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request, type Dispatcher } from 'undici';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { brotliCompressSync, constants as zc, createBrotliCompress, createGzip, gzipSync } from 'node:zlib';
import { withGateway, type GatewayFixture } from '../helpers/gateway.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

let upstream: Server;
let upstreamUrl: string;
let handler: Handler;
const seen: Array<{ url: string; headers: IncomingMessage['headers']; body: string }> = [];
/** A second server: where a redirect points. It must never be reached. */
let elsewhere: Server;
let elsewhereUrl: string;
let elsewhereHits = 0;
let gw: GatewayFixture;
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
  gw = await withGateway(
    `
server: { max_upstream_body_bytes: 65536 }
retries: { max: 0 }
backends:
  up: { type: openai, base_url: "${upstreamUrl}", api_key: "${PROVIDER_KEY}", headers: { OpenAI-Organization: "org-gateway-own-0001" }, timeout_ms: 2000, idle_timeout_ms: 2000 }
models:
  m: { deployments: [{ backend: up, model: up-model }], pricing: { input_per_mtok: 1, output_per_mtok: 1 } }
`,
    { apiKey: 'k' },
  );
  client = gw.openai;
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

/** A chat completion for model m, sent raw (undici) so the test sees exactly what the gateway answers. */
function postChat(opts: { stream?: boolean; content?: string; headers?: Record<string, string> } = {}) {
  return request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.headers },
    body: JSON.stringify({
      model: 'm',
      ...(opts.stream ? { stream: true } : {}),
      messages: [{ role: 'user', content: opts.content ?? 'x' }],
    }),
  });
}

/** The error code of a JSON error answer. */
const errorCode = async (r: Dispatcher.ResponseData) => ((await r.body.json()) as { error: { code: string } }).error.code;

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
      const err = await client.chat.completions
        .create({ model: 'm', messages: [{ role: 'user', content: 'secret prompt' }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect((err as { code?: string }).code).toBe('upstream_redirect');
      expect(elsewhereHits).toBe(0);
      const line = await gw.waitForLog(
        (l) => l.msg === 'request' && (l.error as { code?: string } | undefined)?.code === 'upstream_redirect',
      );
      expect(line.status).toBe(502);
    });
  }

  it('a redirect answering a stream request is a 502 too (no SSE head sent)', async () => {
    handler = (_req, res) => {
      res.writeHead(307, { location: elsewhereUrl });
      res.end();
    };
    const r = await postChat({ stream: true });
    expect(r.statusCode).toBe(502);
    expect(r.headers.location).toBeUndefined();
    expect(await errorCode(r)).toBe('upstream_redirect');
    expect(elsewhereHits).toBe(0);
  });
});

describe('what a client can make the gateway send', () => {
  it('client headers that choose the billed org/project or carry credentials never reach the upstream', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion());
    };
    const r = await postChat({
      headers: {
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

function sseEvents(): string[] {
  const chunk = (content: string) =>
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'up-model', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
  return [
    chunk('hel'),
    chunk('lo '),
    chunk('world'),
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'up-model', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'up-model', choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } })}\n\n`,
    'data: [DONE]\n\n',
  ];
}

/** Streams the events through a compressor flushed after each one, as a compressing proxy would. */
function compressedStream(kind: 'gzip' | 'br'): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': kind });
    const z = kind === 'gzip' ? createGzip() : createBrotliCompress();
    z.pipe(res);
    const events = sseEvents();
    let i = 0;
    const next = () => {
      if (i === events.length) return z.end();
      z.write(events[i++]!);
      z.flush(kind === 'gzip' ? zc.Z_SYNC_FLUSH : zc.BROTLI_OPERATION_FLUSH, () => setTimeout(next, 2));
    };
    next();
  };
}

describe('compressed upstream bodies (the upstream ignores accept-encoding: identity)', () => {
  for (const kind of ['gzip', 'br'] as const) {
    it(`a ${kind} stream is decoded: the client gets plain SSE, output is counted, the injected usage event does not leak`, async () => {
      handler = compressedStream(kind);
      const stream = await client.chat.completions.create({
        model: 'm',
        stream: true,
        messages: [{ role: 'user', content: `hi ${kind}` }],
      });
      let text = '';
      let usageSeen = false;
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? '';
        if (c.usage) usageSeen = true;
      }
      expect(text).toBe('hello world');
      expect(usageSeen).toBe(false);
      expect(seen[0]!.headers['accept-encoding']).toBe('identity');
      const line = await gw.waitForLog(
        (l) =>
          l.msg === 'request' &&
          l.stream === true &&
          l.status === 200 &&
          l.tokens !== undefined &&
          (l.tokens as { input: number }).input === 11 &&
          !('seenBy' in l),
      );
      (line as Record<string, unknown>).seenBy = kind;
      expect(line.tokens).toMatchObject({ input: 11, output: 3 });
      expect(line.tokens_estimated).toBe(false);
      expect(line.error).toBeUndefined();
    });
  }

  it('a gzip stream the upstream cuts short gets the error event appended to plain bytes, never to compressed ones', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      // Two events, then the stream ends without [DONE].
      res.end(gzipSync(sseEvents().slice(0, 2).join('')));
    };
    const r = await postChat({ stream: true, content: 'cut' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-encoding']).toBeUndefined();
    const text = await r.body.text();
    expect(text.startsWith('data: {')).toBe(true);
    const events = text.split('\n\n').filter(Boolean);
    expect(events).toHaveLength(3);
    expect(JSON.parse(events[2]!.slice(6))).toMatchObject({ error: { code: 'upstream_stream_error' } });
  });

  it('a br non-streamed body is decoded and its usage counted', async () => {
    handler = (_req, res) => {
      const body = brotliCompressSync(Buffer.from(completion({ prompt_tokens: 21, completion_tokens: 9, total_tokens: 30 })));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'br', 'content-length': body.length });
      res.end(body);
    };
    const r = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    expect(r.choices[0]!.message.content).toBe('hello there');
    const line = await gw.waitForLog((l) => l.msg === 'request' && (l.tokens as { input?: number } | undefined)?.input === 21);
    expect(line.tokens).toMatchObject({ input: 21, output: 9 });
  });

  it('an encoding the gateway cannot decode is a 502, not relayed', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' });
      res.end(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]));
    };
    const r = await postChat();
    expect(r.statusCode).toBe(502);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(await errorCode(r)).toBe('upstream_bad_response');
  });

  it('a corrupt gzip body is a 502 upstream_bad_response', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(Buffer.concat([gzipSync(Buffer.from(completion())).subarray(0, 20), Buffer.from('garbage-garbage-garbage')]));
    };
    const r = await postChat();
    expect(r.statusCode).toBe(502);
    expect(await errorCode(r)).toBe('upstream_bad_response');
  });
});

describe('upstream bodies of the wrong kind or size', () => {
  it('stream: true answered by a JSON body is a clean 502 (no SSE appended), and its usage is still billed', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion({ prompt_tokens: 31, completion_tokens: 13, total_tokens: 44 }));
    };
    const r = await postChat({ stream: true });
    expect(r.statusCode).toBe(502);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['x-should-retry']).toBe('false');
    const body = (await r.body.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('upstream_bad_response');
    const line = await gw.waitForLog((l) => l.msg === 'request' && (l.tokens as { input?: number } | undefined)?.input === 31);
    expect(line.status).toBe(502);
    expect(line.tokens).toMatchObject({ input: 31, output: 13 });
  });

  it('stream: true answered by an HTML page is a clean 502; the page never reaches the client', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>Sign in to the corporate proxy</body></html>');
    };
    const r = await postChat({ stream: true });
    expect(r.statusCode).toBe(502);
    const text = await r.body.text();
    expect(text).not.toContain('<html');
    expect(text).not.toContain('corporate proxy');
    expect(text).not.toContain('data:');
  });

  it('a non-streamed body over server.max_upstream_body_bytes is cut with a 502', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const big = Buffer.alloc(16 * 1024, 0x61);
      let n = 0;
      // 1 MiB in 16 KiB writes: the cap (64 KiB) is passed long before the end.
      const write = () => {
        while (n < 64 && !res.destroyed) {
          n++;
          if (!res.write(big)) return res.once('drain', write);
        }
        if (!res.destroyed) res.end();
      };
      res.on('error', () => undefined);
      write();
    };
    const r = await postChat();
    expect(r.statusCode).toBe(502);
    expect(await errorCode(r)).toBe('upstream_body_too_large');
  });

  it('a gzip bomb is cut at the cap on its decoded size', async () => {
    handler = (_req, res) => {
      const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(bomb);
    };
    const r = await postChat();
    expect(r.statusCode).toBe(502);
    expect(await errorCode(r)).toBe('upstream_body_too_large');
  });
});

describe('what the gateway passes on from an upstream error', () => {
  it('an upstream retry-after of 999999 s is capped at 60 s for the client', async () => {
    handler = (_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '999999' });
      res.end('{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}');
    };
    const r = await postChat();
    await r.body.text();
    expect(r.statusCode).toBe(503);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(60);
  });

  it('a 5xx request line is logged at level error, a 2xx one at info', async () => {
    handler = (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"boom","type":"server_error"}}');
    };
    const r = await postChat({ headers: { 'x-request-id': 'five-hundred-1' } });
    await r.body.text();
    expect(r.statusCode).toBe(502);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'five-hundred-1');
    expect(line.level).toBe(50);
    const ok = gw.logs.find((l) => l.msg === 'request' && l.status === 200);
    expect(ok?.level).toBe(30);
    // The pass-through route logs its 5xx lines at level error too.
    const p = await request(`${gw.url}/v1/files`, { headers: { 'x-request-id': 'five-hundred-pt' } });
    await p.body.text();
    expect(p.statusCode).toBe(500);
    const ptLine = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'five-hundred-pt');
    expect(ptLine.level).toBe(50);
  });
});

describe('provider secrets in what an upstream says', () => {
  it('an upstream 4xx quoting the provider key (whole or in part) reaches neither the client nor the log', async () => {
    handler = (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            message: `Incorrect API key provided: ${PROVIDER_KEY}. Also tried ${PROVIDER_KEY.slice(0, 20)}... for org org-gateway-own-0001.`,
            type: 'invalid_request_error',
            code: 'invalid_api_key',
            param: PROVIDER_KEY,
          },
        }),
      );
    };
    const r = await postChat({ headers: { 'x-request-id': 'leaky-401' } });
    const text = await r.body.text();
    expect(r.statusCode).toBe(401);
    const body = JSON.parse(text) as { error: { message: string; code: string } };
    expect(body.error.code).toBe('invalid_api_key');
    expect(body.error.message).toContain('Incorrect API key provided: [redacted]');
    const secretBits = [PROVIDER_KEY, PROVIDER_KEY.slice(0, 12), 'org-gateway-own-0001'];
    for (const bit of secretBits) expect(text).not.toContain(bit);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'leaky-401');
    for (const bit of secretBits) expect(JSON.stringify(line)).not.toContain(bit);
    for (const bit of secretBits) expect(await gw.metricsText()).not.toContain(bit);
  });
});

describe('pass-through routes', () => {
  it('an upstream redirect on a pass-through route is a 502 too, and the client is never sent elsewhere', async () => {
    handler = (_req, res) => {
      res.writeHead(307, { location: elsewhereUrl.replace('/chat/completions', '/files'), 'content-type': 'application/json' });
      res.end('{}');
    };
    const r = await request(`${gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"purpose":"batch"}',
    });
    expect(r.statusCode).toBe(502);
    expect(r.headers.location).toBeUndefined();
    expect(await errorCode(r)).toBe('upstream_redirect');
    expect(elsewhereHits).toBe(0);
  });

  it('client credential and account headers never reach the upstream on a pass-through route', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"object":"list","data":[]}');
    };
    const r = await request(`${gw.url}/v1/files`, {
      headers: {
        'x-api-key': 'sk-attacker',
        'openai-organization': 'org-attacker',
        'openai-project': 'proj-attacker',
        'x-goog-api-key': 'g',
      },
    });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    const h = seen.at(-1)!.headers;
    expect(h['x-api-key']).toBeUndefined();
    expect(h['x-goog-api-key']).toBeUndefined();
    expect(h['openai-project']).toBeUndefined();
    expect(h['openai-organization']).toBe('org-gateway-own-0001');
    expect(h.authorization).toBe(`Bearer ${PROVIDER_KEY}`);
  });
});

describe('provider secrets on pass-through routes', () => {
  for (const gz of [false, true]) {
    it(`an upstream error body quoting the provider key is scrubbed before it is relayed${gz ? ' (gzip-encoded)' : ''}`, async () => {
      handler = (_req, res) => {
        const text = JSON.stringify({
          error: {
            message: `Invalid key ${PROVIDER_KEY} for org-gateway-own-0001`,
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          },
        });
        const body = gz ? gzipSync(Buffer.from(text)) : Buffer.from(text);
        res.writeHead(401, {
          'content-type': 'application/json',
          'content-length': body.length,
          ...(gz ? { 'content-encoding': 'gzip' } : {}),
        });
        res.end(body);
      };
      const r = await request(`${gw.url}/v1/files`, { headers: { 'accept-encoding': 'gzip' } });
      expect(r.statusCode).toBe(401);
      expect(r.headers['content-encoding']).toBeUndefined();
      const text = await r.body.text();
      expect(text).toContain('Invalid key [redacted] for [redacted]');
      expect(text).not.toContain(PROVIDER_KEY.slice(0, 12));
      expect(JSON.stringify(gw.logs)).not.toContain(PROVIDER_KEY.slice(0, 12));
    });
  }
});

describe('provider secrets in a stream', () => {
  it('an upstream error event quoting the provider key is masked in the bytes relayed', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvents()[0]);
      res.end(`data: ${JSON.stringify({ error: { message: `key ${PROVIDER_KEY} over quota`, type: 'server_error' } })}\n\n`);
    };
    const r = await postChat({ stream: true, headers: { 'x-request-id': 'leaky-stream' } });
    const text = await r.body.text();
    expect(text).toContain('over quota');
    expect(text).not.toContain(PROVIDER_KEY.slice(0, 12));
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'leaky-stream');
    expect(JSON.stringify(line)).not.toContain(PROVIDER_KEY.slice(0, 12));
  });
});
