// Streamed bodies on the wire. The forwarder frames chunks for chunked transfer coding itself
// (streamtap/chunk-writer.ts) when node:http would, and hands them to res.write otherwise: these
// read the raw bytes off a socket to check the framing, the fallbacks (HTTP/1.0, a pipelined
// response, large chunks) and that backpressure still reaches the upstream.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, Socket } from 'node:net';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { listenLoopback } from '../helpers/net.js';
import { chunkEvent, usageEvent } from '../fixtures/scripted-upstream.js';
import { ChunkWriter } from '../../src/streamtap/chunk-writer.js';

/** What the upstream plays for a request: events written one per write, honouring backpressure. */
let play: (res: ServerResponse) => void = () => {};
let upstream: Server;
let closeUpstream: () => Promise<void>;
let gw: TestGateway;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      play(res);
    });
  });
  const l = await listenLoopback(upstream);
  closeUpstream = l.close;
  gw = await startGateway(`
backends:
  up: { base_url: "http://127.0.0.1:${l.port}/v1", api_key: sk-provider-secret }
models:
  m: { deployments: [{ backend: up, model: up-m }] }
keys:
  - { key: sk-client, name: client }
`);
});

afterAll(async () => {
  await gw?.close();
  await closeUpstream?.();
});

/** Writes the events in order, one write each, with a turn of the loop between them. */
function playEvents(events: string[]): (res: ServerResponse) => void {
  return (res) => {
    let i = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (i === events.length) return void res.end();
      res.write(events[i++]);
      setImmediate(next);
    };
    next();
  };
}

function requestText(version: '1.0' | '1.1', model = 'm'): string {
  const body = JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  return (
    `POST /v1/chat/completions HTTP/${version}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-client\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

interface ChunkedResponse {
  head: string;
  body: Buffer;
  frames: number[];
  /** Offset just past this response in the bytes. */
  end: number;
}

/** Parses one HTTP/1.1 response with chunked coding from `bytes` at `at`, strictly; undefined if incomplete. */
function parseChunked(bytes: Buffer, at = 0): ChunkedResponse | undefined {
  const headEnd = bytes.indexOf('\r\n\r\n', at);
  if (headEnd < 0) return undefined;
  const head = bytes.toString('latin1', at, headEnd);
  const parts: Buffer[] = [];
  const frames: number[] = [];
  let i = headEnd + 4;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', i);
    if (lineEnd < 0) return undefined;
    const sizeLine = bytes.toString('latin1', i, lineEnd);
    if (!/^[0-9a-f]+$/.test(sizeLine)) throw new Error(`bad chunk-size line ${JSON.stringify(sizeLine)} at ${i}`);
    const size = parseInt(sizeLine, 16);
    const dataStart = lineEnd + 2;
    if (bytes.length < dataStart + size + 2) return undefined;
    if (bytes[dataStart + size] !== 0x0d || bytes[dataStart + size + 1] !== 0x0a) throw new Error(`chunk of ${size} not followed by CRLF`);
    if (size === 0) return { head, body: Buffer.concat(parts), frames, end: dataStart + 2 };
    frames.push(size);
    parts.push(bytes.subarray(dataStart, dataStart + size));
    i = dataStart + size + 2;
  }
}

/** Sends `text` and collects bytes until `done(bytes)` says the answer is whole (or the socket closes). */
async function exchange(text: string, done: (bytes: Buffer) => boolean): Promise<Buffer> {
  const s = await rawConnect(gw.port);
  const chunks: Buffer[] = [];
  return new Promise<Buffer>((resolve, reject) => {
    const finish = () => {
      s.destroy();
      resolve(Buffer.concat(chunks));
    };
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (done(Buffer.concat(chunks))) finish();
    });
    s.once('end', finish);
    s.once('error', reject);
    s.write(text);
  });
}

const EVENTS = [
  chunkEvent({ role: 'assistant', content: '' }),
  chunkEvent({ content: 'Hel' }),
  chunkEvent({ content: 'lo' }),
  // Past the writer's framing limit: this one goes through res.write, between framed ones.
  chunkEvent({ content: 'x'.repeat(40_000) }),
  chunkEvent({ content: '!' }),
  chunkEvent({}, {}, 'stop'),
  usageEvent(5, 4),
  'data: [DONE]\n\n',
];
const WHOLE = EVENTS.join('');

describe('ChunkWriter', () => {
  it('writes to the socket itself only when node:http would frame the same way', async () => {
    const seen: Array<{ version: string; direct: boolean }> = [];
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      const w = new ChunkWriter(res);
      seen.push({ version: req.httpVersion, direct: w.drainEmitter === res.socket });
      w.write(Buffer.from('data: a\n\n'));
      w.write(Buffer.alloc(0)); // an empty chunk would end chunked coding: it must be skipped
      w.write(Buffer.from('data: b\n\n'));
      res.end();
    });
    const l = await listenLoopback(server);
    try {
      const get = (version: string) =>
        new Promise<Buffer>((resolve, reject) => {
          const s = connect(l.port, '127.0.0.1', () => s.write(`GET / HTTP/${version}\r\nHost: x\r\nConnection: close\r\n\r\n`));
          const got: Buffer[] = [];
          s.on('data', (c: Buffer) => got.push(c));
          s.once('end', () => resolve(Buffer.concat(got)));
          s.once('error', reject);
        });
      const r11 = parseChunked(await get('1.1'))!;
      expect(r11.body.toString()).toBe('data: a\n\ndata: b\n\n');
      expect(r11.frames).toEqual([9, 9]);
      const r10 = (await get('1.0')).toString();
      expect(r10.slice(r10.indexOf('\r\n\r\n') + 4)).toBe('data: a\n\ndata: b\n\n');
      expect(seen).toEqual([
        { version: '1.1', direct: true },
        { version: '1.0', direct: false },
      ]);
    } finally {
      await l.close();
    }
  });
  it('a head not yet flushed keeps the writer on res.write (its frames must not overtake the head)', async () => {
    let direct: boolean | undefined;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' }); // headersSent, but nothing written yet
      const w = new ChunkWriter(res);
      direct = w.drainEmitter === res.socket;
      w.write(Buffer.from('data: a\n\n'));
      res.end();
    });
    const l = await listenLoopback(server);
    try {
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        const s = connect(l.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        const got: Buffer[] = [];
        s.on('data', (c: Buffer) => got.push(c));
        s.once('end', () => resolve(Buffer.concat(got)));
        s.once('error', reject);
      });
      expect(direct).toBe(false);
      expect(parseChunked(bytes)!.body.toString()).toBe('data: a\n\n');
    } finally {
      await l.close();
    }
  });

  it('after the client half-closes, what node:http already holds still reaches it', async () => {
    // The client sends its request, stops reading, and half-closes (FIN) while a backlog is
    // queued in the server's socket; node:http then ends the socket. A chunk written after
    // that must go through res.write (which drops it, as node:http does), not to the ended
    // socket, whose write-after-end error would destroy it and the backlog with it.
    const BACKLOG = 8 * 1024 * 1024;
    let afterHalfClose = 0;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      const w = new ChunkWriter(res);
      res.write(Buffer.alloc(BACKLOG, 0x61));
      const t = setInterval(() => {
        if (res.destroyed || afterHalfClose === 5) {
          clearInterval(t);
          if (!res.destroyed) res.end();
          return;
        }
        if (!res.socket?.writable) afterHalfClose++;
        w.write(Buffer.from('data: x\n\n'));
      }, 20);
    });
    const l = await listenLoopback(server);
    try {
      const received = await new Promise<number>((resolve, reject) => {
        const s = connect(l.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
        s.pause();
        let n = 0;
        s.on('data', (c: Buffer) => (n += c.length));
        s.once('close', () => resolve(n));
        s.once('error', reject);
        setTimeout(() => s.end(), 100);
        setTimeout(() => s.resume(), 400);
      });
      expect(afterHalfClose).toBeGreaterThan(0);
      expect(received).toBeGreaterThan(BACKLOG);
    } finally {
      await l.close();
    }
  });
});

describe('streamed bodies on the wire', () => {
  it('HTTP/1.1: valid chunked coding whose frames carry exactly the upstream bytes', async () => {
    play = playEvents(EVENTS);
    const path = vi.spyOn(ChunkWriter.prototype, 'drainEmitter', 'get');
    const bytes = await exchange(requestText('1.1'), (b) => parseChunked(b) !== undefined);
    // The gateway took the direct path: its writer waits for drains on the socket itself.
    expect(path.mock.results.map((x) => x.value instanceof Socket)).toEqual([true]);
    path.mockRestore();
    const r = parseChunked(bytes)!;
    expect(r.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.head.toLowerCase()).toContain('transfer-encoding: chunked');
    expect(r.body.toString('utf8')).toBe(WHOLE);
    expect(r.end).toBe(bytes.length); // nothing after the last frame
    // Small events come one frame each (written apart upstream); none is empty.
    expect(r.frames.length).toBeGreaterThanOrEqual(EVENTS.length - 1);
    expect(r.frames.every((n) => n > 0)).toBe(true);
  });

  it('HTTP/1.0: no chunked coding, the body as is, the connection closed at its end', async () => {
    play = playEvents(EVENTS);
    const bytes = await exchange(requestText('1.0'), () => false);
    const text = bytes.toString('utf8');
    const headEnd = text.indexOf('\r\n\r\n');
    expect(text.slice(0, headEnd)).toMatch(/^HTTP\/1\.1 200 /);
    expect(text.slice(0, headEnd).toLowerCase()).not.toContain('transfer-encoding');
    expect(text.slice(headEnd + 4)).toBe(WHOLE);
  });

  it('keep-alive: a second stream on the same connection, after the first, is framed directly too', async () => {
    play = playEvents(EVENTS);
    const path = vi.spyOn(ChunkWriter.prototype, 'drainEmitter', 'get');
    const s = await rawConnect(gw.port);
    const chunks: Buffer[] = [];
    const bodies: string[] = [];
    await new Promise<void>((resolve, reject) => {
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        const r = parseChunked(Buffer.concat(chunks));
        if (!r) return;
        bodies.push(r.body.toString('utf8'));
        chunks.length = 0;
        if (bodies.length === 2) return resolve();
        s.write(requestText('1.1'));
      });
      s.once('error', reject);
      s.write(requestText('1.1'));
    });
    s.destroy();
    expect(bodies).toEqual([WHOLE, WHOLE]);
    expect(path.mock.results.map((x) => x.value instanceof Socket)).toEqual([true, true]);
    path.mockRestore();
  });

  it('pipelined: the second stream waits its turn and both arrive whole, in order', async () => {
    play = playEvents(EVENTS);
    const bytes = await exchange(requestText('1.1') + requestText('1.1'), (b) => {
      const first = parseChunked(b);
      return first !== undefined && parseChunked(b, first.end) !== undefined;
    });
    const first = parseChunked(bytes)!;
    const second = parseChunked(bytes, first.end)!;
    expect(first.body.toString('utf8')).toBe(WHOLE);
    expect(second.body.toString('utf8')).toBe(WHOLE);
    expect(second.end).toBe(bytes.length);
  });

  it('a client that stops reading stops the upstream; every byte arrives once it reads again', async () => {
    // 48 MiB in 8 KiB events: more than the loopback socket buffers on the way can hold.
    const eventCount = 6144;
    const event = chunkEvent({ content: 'y'.repeat(8000) });
    let written = 0;
    let blockedSince = 0;
    let upstreamDone = false;
    play = (res) => {
      const next = (): void => {
        while (written < eventCount && !res.destroyed) {
          written++;
          if (!res.write(event)) {
            blockedSince = performance.now();
            res.once('drain', () => {
              blockedSince = 0;
              next();
            });
            return;
          }
        }
        if (written === eventCount) res.end('data: [DONE]\n\n', () => (upstreamDone = true));
      };
      next();
    };
    const s = await rawConnect(gw.port);
    s.pause();
    s.write(requestText('1.1'));
    // The upstream must come to a standstill while the client reads nothing.
    const deadline = performance.now() + 20_000;
    while (!(blockedSince > 0 && performance.now() - blockedSince > 300) && performance.now() < deadline && !upstreamDone) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(upstreamDone).toBe(false);
    expect(written).toBeLessThan(eventCount);
    // Now read: everything arrives, framed, in order.
    const chunks: Buffer[] = [];
    let total = 0;
    const whole = await new Promise<ChunkedResponse>((resolve, reject) => {
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        total += c.length;
        // Only the tail can hold the end marker: parse once it is there.
        if (c.includes('0\r\n\r\n') || total > 60 * 1024 * 1024) {
          try {
            const r = parseChunked(Buffer.concat(chunks));
            if (r) resolve(r);
          } catch (e) {
            reject(e as Error);
          }
        }
      });
      s.once('error', reject);
      s.resume();
    });
    s.destroy();
    expect(whole.body.length).toBe(eventCount * Buffer.byteLength(event) + Buffer.byteLength('data: [DONE]\n\n'));
    expect(whole.body.subarray(0, Buffer.byteLength(event)).toString('utf8')).toBe(event);
    expect(whole.body.subarray(whole.body.length - 14).toString('utf8')).toBe('data: [DONE]\n\n');
  }, 40_000);
});
