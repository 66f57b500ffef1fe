/**
 * Incremental, byte-level Server-Sent Events framing.
 *
 * The scanner only finds event boundaries (a blank line); it never decodes or copies
 * the bytes of an event that lies inside one chunk. Line state (are we at the start of
 * a line, was the last byte a CR whose LF may still come) is carried across chunks, so
 * no byte is ever scanned twice and nothing is re-split when a chunk arrives. The only
 * thing carried between chunks is a list of references to the unfinished event's bytes;
 * they are concatenated once, when that event completes (at most once per chunk).
 */

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

/**
 * The most bytes of one unfinished event the scanner holds. An upstream that never sends the
 * blank line would otherwise make it hold everything (a 40 MiB `data:` line took RSS from 76
 * to 305 MiB). Past it the event is "oversized": its bytes are released (the tap forwards
 * them as they come) and, when it ends, it is reported with `oversized` set and not
 * inspected. No real usage, content or error event comes near this size.
 */
export const MAX_HELD_EVENT_BYTES = 1024 * 1024;

export class SseScanner {
  // State carried across chunks.
  private atLineStart = true; // the next byte begins a line (so CR/LF there is a blank line)
  private afterCR = false; // the last byte seen was a CR terminator: an LF next belongs to it
  private crEndedEvent = false; // ...and that CR was the blank line that ended an event
  private tail: Buffer[] = []; // the unfinished event's bytes from earlier chunks (references)
  private tailBytes = 0;
  /** The unfinished event outgrew maxHeld: its further bytes are not held. */
  private skipping = false;

  // The chunk being scanned.
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private evStart = 0; // where the current event starts in `chunk` (0 when it began earlier)
  private nextLF = -1; // cached positions of the next LF / CR at or after `pos` (chunk.length = none)
  private nextCR = -1;

  /** The event found by the last `next()` that returned true: bytes [start, end) of buf, blank line included. */
  buf: Buffer = EMPTY;
  start = 0;
  end = 0;
  /** The event began in an earlier chunk: `buf` is a fresh concatenation, not the chunk. */
  spanned = false;
  /** Offset in the current chunk just past the event. */
  chunkEnd = 0;
  /** The event found outgrew maxHeld: `buf` holds only its last part and it must not be inspected. */
  oversized = false;
  /** finish() found the unfinished event over maxHeld: takeTail() now returns the bytes it held (once). */
  overflowed = false;

  constructor(private readonly maxHeld = MAX_HELD_EVENT_BYTES) {}

  /** True when the previous chunk ended with the CR of an event-ending blank line: a leading LF in the next chunk is part of that (already reported) event. */
  get pendingEventLF(): boolean {
    return this.afterCR && this.crEndedEvent;
  }

  begin(chunk: Buffer): void {
    this.chunk = chunk;
    this.pos = 0;
    this.evStart = 0;
    this.nextLF = -1;
    this.nextCR = -1;
    if (this.afterCR && chunk.length > 0) {
      this.afterCR = false;
      if (chunk[0] === LF) {
        this.pos = 1;
        if (this.crEndedEvent) this.evStart = 1; // the LF closes the previous event, not this one
      }
    }
  }

  /** Advance to the next complete event in the current chunk; false when the chunk is exhausted. */
  next(): boolean {
    const c = this.chunk;
    const n = c.length;
    let i = this.pos;
    while (i < n) {
      if (this.atLineStart) {
        const b = c[i];
        if (b === LF || b === CR) return this.emit(this.skipTerminator(i, true));
      }
      const t = this.findTerminator(i);
      if (t === n) {
        this.atLineStart = false; // the line continues in the next chunk
        i = n;
        break;
      }
      this.atLineStart = true;
      i = this.skipTerminator(t, false);
    }
    this.pos = i;
    return false;
  }

  /** Done with the current chunk: retain (by reference) the unfinished event's bytes. Returns where that event starts in the chunk (chunk.length when every byte belongs to a complete event, or to an oversized event that is not held). */
  finish(): number {
    const c = this.chunk;
    const s = this.evStart;
    this.overflowed = false;
    if (s < c.length && !this.skipping) {
      this.tail.push(s === 0 ? c : c.subarray(s));
      this.tailBytes += c.length - s;
      if (this.tailBytes > this.maxHeld) this.skipping = this.overflowed = true;
    }
    this.chunk = EMPTY;
    // An oversized event's bytes are not held: nothing of this chunk is.
    return this.skipping && !this.overflowed ? c.length : s;
  }

  /** The bytes of an event the stream ended in the middle of (no blank line yet), or null. */
  takeTail(): Buffer | null {
    this.overflowed = false;
    if (this.tailBytes === 0) return null;
    const b = this.tail.length === 1 ? this.tail[0]! : Buffer.concat(this.tail, this.tailBytes);
    this.tail = [];
    this.tailBytes = 0;
    return b;
  }

  private findTerminator(i: number): number {
    const c = this.chunk;
    if (this.nextLF < i) {
      const p = c.indexOf(LF, i);
      this.nextLF = p < 0 ? c.length : p;
    }
    if (this.nextCR < i) {
      // Usually a stream uses LF or CRLF only; after one miss this is cached as "none" for the chunk.
      const p = c.indexOf(CR, i);
      this.nextCR = p < 0 ? c.length : p;
    }
    return this.nextLF < this.nextCR ? this.nextLF : this.nextCR;
  }

  /** Consume the line terminator at t (CRLF, LF or CR); returns the offset after it. */
  private skipTerminator(t: number, endsEvent: boolean): number {
    const c = this.chunk;
    let i = t + 1;
    if (c[t] === CR) {
      if (i < c.length) {
        if (c[i] === LF) i++;
      } else {
        this.afterCR = true; // CRLF may be split across chunks
        this.crEndedEvent = endsEvent;
      }
    }
    return i;
  }

  private emit(i: number): boolean {
    const c = this.chunk;
    this.pos = i;
    this.chunkEnd = i;
    this.oversized = this.skipping;
    this.skipping = false;
    if (this.tailBytes === 0) {
      this.buf = c;
      this.start = this.evStart;
      this.end = i;
      this.spanned = false;
    } else {
      // The event straddles chunks: the one copy we make, so it can be scanned as one range.
      this.tail.push(c.subarray(0, i));
      this.buf = Buffer.concat(this.tail, this.tailBytes + i);
      this.tail = [];
      this.tailBytes = 0;
      this.start = 0;
      this.end = this.buf.length;
      this.spanned = true;
    }
    this.evStart = i;
    return true;
  }
}

/**
 * The data of the event in bytes [s, e) of buf: its `data:` lines (one optional space after
 * the colon removed) joined with "\n"; null when it has none. Comment lines and other fields
 * are ignored. Only used off the hot path (rare events, and outputText()).
 */
export function eventData(buf: Buffer, s: number, e: number): string | null {
  let out: string | null = null;
  let i = s;
  while (i < e) {
    let j = i;
    while (j < e && buf[j] !== LF && buf[j] !== CR) j++;
    // A "data" field: "data:value", "data: value", or a bare "data" line (empty value).
    if (j - i >= 4 && buf[i] === 0x64 && buf[i + 1] === 0x61 && buf[i + 2] === 0x74 && buf[i + 3] === 0x61) {
      let v = -1;
      if (j - i === 4) v = j;
      else if (buf[i + 4] === 0x3a) v = i + 5 < j && buf[i + 5] === 0x20 ? i + 6 : i + 5;
      if (v >= 0) {
        const line = buf.toString('utf8', v, j);
        out = out === null ? line : out + '\n' + line;
      }
    }
    i = j + 1;
    if (j < e && buf[j] === CR && i < e && buf[i] === LF) i++;
  }
  return out;
}
