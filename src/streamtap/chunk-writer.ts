// Writes a streamed response's body chunks to the socket already framed for chunked transfer
// coding: one write per chunk. node:http's res.write frames a chunk as four writes (size line,
// CRLF, data, CRLF) through its own layers; at 100 streams that cost ~3% of the gateway's CPU
// per chunk (bench/pair.js). Like res.write, the socket is corked until the next tick, so
// chunks of one upstream read and the end of the body leave in one segment. The bytes on the
// wire are the same.
//
// Only taken when node:http would frame the body the same way and nothing of this response is
// queued inside it: the head was sent, the response owns its socket (not a pipelined response
// waiting its turn), chunked coding is on (not an HTTP/1.0 client) and the response has a
// body. Otherwise, and for large chunks (not worth the copy), res.write.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** node:http's fields that say how it would write the body (stable since Node 0.x, not typed). */
interface ResponseInternals {
  /** The head was handed to the socket (headersSent is true as soon as writeHead ran). */
  _headerSent?: boolean;
  chunkedEncoding?: boolean;
  _hasBody?: boolean;
  outputData?: unknown[];
}
interface SocketInternals {
  _httpMessage?: unknown;
}

/** Past this a chunk goes through res.write (the copy into a frame would cost more than the bookkeeping). */
const MAX_FRAMED = 16 * 1024;
const CR = 0x0d;
const LF = 0x0a;
const HEX = Buffer.from('0123456789abcdef', 'latin1');

export class ChunkWriter {
  /** The socket written to directly, or null: every chunk goes through res.write. */
  private readonly socket: Socket | null;
  private corked = false;

  /** Call after the head was flushed (res.flushHeaders()). */
  constructor(private readonly res: ServerResponse) {
    const r = res as ServerResponse & ResponseInternals;
    const s = res.socket;
    const direct =
      s !== null &&
      (s as SocketInternals)._httpMessage === res &&
      r._headerSent === true &&
      r.chunkedEncoding === true &&
      r._hasBody === true &&
      Array.isArray(r.outputData) &&
      r.outputData.length === 0 &&
      !res.writableEnded &&
      s.writable;
    this.socket = direct ? s : null;
  }

  /** Where to wait for 'drain' after write() returned false. */
  get drainEmitter(): NodeJS.EventEmitter {
    return this.socket ?? this.res;
  }

  /** Writes one chunk; false: wait for 'drain' on drainEmitter. */
  write(chunk: Buffer): boolean {
    const s = this.socket;
    const n = chunk.length;
    // Not writable: destroyed, or ended after the client half-closed; node:http then queues
    // the chunk itself instead of failing the socket and what it still holds.
    if (s === null || n === 0 || n > MAX_FRAMED || !s.writable) return this.res.write(chunk);
    let digits = 1;
    for (let v = n >>> 4; v > 0; v >>>= 4) digits++;
    const frame = Buffer.allocUnsafe(digits + 4 + n);
    for (let i = digits - 1, v = n; i >= 0; i--, v >>>= 4) frame[i] = HEX[v & 15]!;
    frame[digits] = CR;
    frame[digits + 1] = LF;
    frame.set(chunk, digits + 2);
    frame[digits + 2 + n] = CR;
    frame[digits + 3 + n] = LF;
    if (!this.corked) {
      // Chunks that arrive in the same turn of the loop (one upstream read holding several
      // events, or the last events and the end) leave in one segment, as with res.write.
      this.corked = true;
      s.cork();
      process.nextTick(uncork, this);
    }
    return s.write(frame);
  }

  /** @internal */
  uncorkNow(): void {
    this.corked = false;
    // res.end() in the same turn uncorked fully already; uncork() on an uncorked socket is a no-op.
    this.socket!.uncork();
  }
}

function uncork(w: ChunkWriter): void {
  w.uncorkNow();
}
