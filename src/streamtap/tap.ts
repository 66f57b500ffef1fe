/**
 * The stream tap: observes an upstream's SSE stream on its way to the client. Every chunk is
 * handed back for writing the moment it arrives; the tap only looks. What the events mean
 * (which keys are content, usage, errors, the end marker) is the API's grammar
 * (src/protocols/): the tap itself knows no field names.
 *
 * Events are classified by bytes, not JSON.parse: one pass over an event's colons finds the
 * grammar's keys (`"content":`, `"delta":`, ...). Inside a JSON string every quote is
 * escaped, so `"key":` (quote, key, quote, colon) can only be a real key. Only the rare
 * events the grammar wants parsed (usage, errors, terminal events) are parsed.
 */
import { SseScanner, eventData } from './sse.js';
import { isRecord, type TapUsage } from './tokens.js';
import { KeyKind, type StreamFacts, type StreamGrammar } from './grammar.js';
import { COLON, LF, OPEN_BRACE, QUOTE, SPACE, TAB } from '../util/json-bytes.js';

export interface StreamTapOptions {
  /** The API's stream grammar (src/protocols/*). */
  grammar: StreamGrammar;
  /** The gateway asked for usage itself (chat's stream_options.include_usage): remove the usage-only event so the client sees what it would have without the gateway. */
  stripUsage: boolean;
  /** Clock in ms used to stamp tokens (default performance.now). */
  now?: () => number;
  /**
   * Keep every chunk (by reference) so outputText() can rebuild the text when the upstream
   * sends no usage (default true). Holding each chunk for the whole stream keeps it alive
   * into the old generation, which made scavenges several times longer under many streams;
   * the forwarder turns it off for backends that have been seen to send usage.
   */
  retainChunks?: boolean;
  /** Called once, when the upstream's id for the response is first seen (Responses API). */
  onResponseId?: (id: string) => void;
}

/** A grammar's keys as bytes, built once per grammar (not per stream). */
interface KeyTable {
  bytes: Buffer[];
  kinds: number[];
  maxKey: number;
  types: Buffer[];
}
const tables = new WeakMap<StreamGrammar, KeyTable>();
function keyTable(g: StreamGrammar): KeyTable {
  let t = tables.get(g);
  if (!t) {
    const bytes = g.keys.map(([k]) => Buffer.from(k, 'latin1'));
    t = {
      bytes,
      kinds: g.keys.map(([, kind]) => kind),
      maxKey: Math.max(...bytes.map((k) => k.length)),
      types: g.parseTypes.map((v) => Buffer.from(v, 'latin1')),
    };
    tables.set(g, t);
  }
  return t;
}

/** Which of the keys is bytes [a, b) of buf (0: none). */
function keyKind(t: KeyTable, buf: Buffer, a: number, b: number): number {
  const len = b - a;
  const keys = t.bytes;
  next: for (let k = 0; k < keys.length; k++) {
    const key = keys[k]!;
    if (key.length !== len) continue;
    for (let j = 0; j < len; j++) if (buf[a + j] !== key[j]) continue next;
    return t.kinds[k]!;
  }
  return 0;
}

/** Whether the string token that opens at v (a quote) is one of the listed values. */
function listedValue(types: Buffer[], buf: Buffer, v: number, e: number): boolean {
  next: for (let k = 0; k < types.length; k++) {
    const t = types[k]!;
    const end = v + 1 + t.length;
    if (end >= e || buf[end] !== QUOTE) continue;
    for (let j = 0; j < t.length; j++) if (buf[v + 1 + j] !== t[j]) continue next;
    return true;
  }
  return false;
}
/** The most stream bytes kept for outputText(): a stream without usage longer than this is counted by content events. */
export const MAX_RETAINED_BYTES = 8 * 1024 * 1024;

export class StreamTap {
  private readonly grammar: StreamGrammar;
  private readonly table: KeyTable;
  private readonly stripUsage: boolean;
  private readonly now: () => number;
  private readonly onResponseId: ((id: string) => void) | undefined;
  private readonly scanner = new SseScanner();
  private chunks: Buffer[] = []; // every chunk, by reference, for outputText()
  private retain: boolean;
  private retainedBytes = 0;

  private pushTime: number | undefined; // now() of the current push, read at most once per push
  private lastCut = false; // the last complete event was removed
  private dropLF = false; // ...and it ended with a CR at a chunk end: a leading LF next is its own
  private ended = false;

  private _firstTokenAt: number | undefined;
  private _lastTokenAt: number | undefined;
  private _contentEvents = 0;
  private _events = 0;
  /** Written by the grammar's onEvent. */
  private readonly facts: StreamFacts = {
    usage: undefined,
    finishReason: undefined,
    error: undefined,
    complete: false,
    responseId: undefined,
  };

  constructor(opts: StreamTapOptions) {
    this.grammar = opts.grammar;
    this.table = keyTable(opts.grammar);
    this.onResponseId = opts.onResponseId;
    this.stripUsage = opts.stripUsage;
    this.retain = opts.retainChunks !== false;
    this.now = opts.now ?? (() => performance.now());
  }

  get firstTokenAt(): number | undefined {
    return this._firstTokenAt;
  }
  get lastTokenAt(): number | undefined {
    return this._lastTokenAt;
  }
  /** Events carrying content (text, reasoning, refusal, tool-call arguments, legacy completions text). */
  get contentEvents(): number {
    return this._contentEvents;
  }
  /** Complete events seen (comments and keep-alives included). */
  get events(): number {
    return this._events;
  }
  get usage(): TapUsage | undefined {
    return this.facts.usage;
  }
  get finishReason(): string | undefined {
    return this.facts.finishReason;
  }
  /** The stream's own end marker arrived ([DONE], response.completed, ...). */
  get complete(): boolean {
    return this.facts.complete;
  }
  /** outputText() can rebuild the whole output (chunks were kept, and stayed under MAX_RETAINED_BYTES). */
  get textRetained(): boolean {
    return this.retain;
  }
  /** Same as complete (the name from when only [DONE] ended a stream). */
  get sawDone(): boolean {
    return this.facts.complete;
  }
  /** The upstream's own error (e.g. the value of `data: {"error":{...}}`). */
  get upstreamError(): unknown {
    return this.facts.error;
  }
  get responseId(): string | undefined {
    return this.facts.responseId;
  }

  /**
   * Feed one upstream chunk; returns what to write to the client now: the same Buffer when
   * nothing was removed, a subarray/concatenation when the usage event was cut out, or null.
   */
  push(chunk: Buffer): Buffer | null {
    if (this.retain) {
      this.chunks.push(chunk);
      this.retainedBytes += chunk.length;
      // Bounded: past it the text is not rebuilt and content events are counted instead.
      if (this.retainedBytes > MAX_RETAINED_BYTES) {
        this.retain = false;
        this.chunks = [];
      }
    }
    this.pushTime = undefined;
    const sc = this.scanner;
    sc.begin(chunk);

    if (!this.stripUsage) {
      // Nothing is ever removed, so nothing is ever held: the chunk goes out as is.
      while (sc.next()) if (!sc.oversized) this.observe(sc.buf, sc.start, sc.end);
      sc.finish();
      if (sc.overflowed) sc.takeTail(); // released: an oversized event is not inspected
      return chunk;
    }

    // Stripping. An event that straddles chunks is held back until its blank line arrives,
    // because only then do we know whether it is the usage event to cut. That costs the
    // client nothing: an SSE client cannot act on half an event (it dispatches on the blank
    // line), and every complete event is still forwarded at once.
    let pieces: Buffer[] | null = null; // allocated only when the output differs from the chunk
    let from = 0; // chunk offset of the first byte not yet accounted for
    if (this.dropLF && chunk.length > 0) {
      this.dropLF = false;
      if (chunk[0] === LF) from = 1;
    }
    while (sc.next()) {
      // An oversized event's earlier bytes went out already (below); it is never the usage event.
      const cut = sc.oversized ? false : this.observe(sc.buf, sc.start, sc.end);
      this.lastCut = cut;
      if (sc.spanned) {
        // The held-back bytes plus chunk[0, chunkEnd) were concatenated into sc.buf.
        if (!cut) (pieces ??= []).push(sc.buf);
        else pieces ??= [];
        from = sc.chunkEnd;
      } else if (cut) {
        pieces ??= [];
        if (sc.start > from) pieces.push(chunk.subarray(from, sc.start));
        from = sc.end;
      }
    }
    let tailStart = sc.finish(); // bytes from here on are held back
    this.dropLF = this.lastCut && sc.pendingEventLF;
    if (sc.overflowed) {
      // The unfinished event outgrew the scanner's cap: what was held goes out now (it ends
      // this chunk's output: earlier held bytes only remain when no event completed here).
      const held = sc.takeTail()!;
      if (from < tailStart) (pieces ??= []).push(chunk.subarray(from, tailStart));
      (pieces ??= []).push(held);
      tailStart = from = chunk.length;
    }

    if (pieces === null) {
      if (from === 0 && tailStart === chunk.length) return chunk; // the common case: zero copy
      return from < tailStart ? chunk.subarray(from, tailStart) : null;
    }
    if (tailStart > from) pieces.push(chunk.subarray(from, tailStart));
    if (pieces.length === 0) return null;
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  /**
   * Upstream ended. An event left without its blank line is still observed (lenient
   * accounting), and, when stripping, returned unless it is the usage event.
   */
  end(): Buffer | null {
    if (this.ended) return null;
    this.ended = true;
    this.pushTime = undefined;
    const tail = this.scanner.takeTail();
    if (tail === null) return null;
    const cut = this.observe(tail, 0, tail.length);
    return this.stripUsage && !cut ? tail : null;
  }

  /**
   * The output text (content, reasoning, refusals, tool-call names and arguments, legacy
   * text), rebuilt from the retained chunks. For streams without usage; costs a full parse,
   * so call it once, after the stream ended.
   */
  outputText(): string {
    if (!this.retain) throw new Error('outputText() needs retainChunks');
    const all = Buffer.concat(this.chunks);
    const sc = new SseScanner();
    const parts: string[] = [];
    sc.begin(all);
    while (sc.next()) this.collect(eventData(sc.buf, sc.start, sc.end), parts);
    sc.finish();
    const tail = sc.takeTail();
    if (tail !== null) this.collect(eventData(tail, 0, tail.length), parts);
    return parts.join('');
  }

  private collect(data: string | null, parts: string[]): void {
    if (data === null || data.charCodeAt(0) !== OPEN_BRACE) return;
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return;
    }
    if (isRecord(obj)) this.grammar.collectText(obj, parts);
  }

  /** Classify one complete event (bytes [s, e) of buf). Returns true when it must be cut. */
  private observe(buf: Buffer, s: number, e: number): boolean {
    this._events++;
    const first = dataValueStart(buf, s, e);
    if (first < 0 || buf[first] !== OPEN_BRACE) {
      // Not a plain JSON event: [DONE], a comment/keep-alive, other fields. Rare: decode it.
      const data = eventData(buf, s, e);
      if (data === null) return false;
      if (data.trim() === '[DONE]') {
        if (this.grammar.doneSentinel) this.facts.complete = true;
        return false;
      }
      if (data.charCodeAt(0) !== OPEN_BRACE) return false;
    }

    // One pass over the colons of the event; a colon right after a quoted key we know is a hit.
    const table = this.table;
    const maxKey = table.maxKey;
    let token = false;
    let parse = false; // usage, an error, a terminal event: worth a JSON.parse
    for (let c = buf.indexOf(COLON, s); c >= 0 && c < e; c = buf.indexOf(COLON, c + 1)) {
      let q = c - 1;
      while (q > s && (buf[q] === SPACE || buf[q] === TAB)) q--;
      if (buf[q] !== QUOTE) continue;
      let o = q - 1;
      while (o > s && buf[o] !== QUOTE && q - o <= maxKey) o--;
      if (buf[o] !== QUOTE) continue;
      const kind = keyKind(table, buf, o + 1, q);
      if (kind === 0) continue;
      const v = skipWs(buf, c + 1, e);
      const b = buf[v];
      if (kind === KeyKind.Token) {
        // `"` then anything but `"`: a non-empty string ("role":"assistant","content":"" is no token).
        if (b === QUOTE && v + 1 < e && buf[v + 1] !== QUOTE) token = true;
      } else if (kind === KeyKind.Finish) {
        if (b === QUOTE) {
          const end = buf.indexOf(QUOTE, v + 1);
          if (end > v && end < e) this.facts.finishReason = buf.toString('latin1', v + 1, end);
        }
      } else if (kind === KeyKind.ParseObject) {
        // Not `"usage":null`, which OpenAI puts on every chunk once include_usage is on.
        if (b === OPEN_BRACE) parse = true;
      } else if (kind === KeyKind.ParseValue) {
        if (b === OPEN_BRACE || b === QUOTE) parse = true;
      } else if (b === QUOTE && listedValue(table.types, buf, v, e)) {
        parse = true; // KeyKind.Type
      }
    }

    if (token) {
      const t = (this.pushTime ??= this.now());
      this._firstTokenAt ??= t;
      this._lastTokenAt = t;
      this._contentEvents++;
    }
    if (!parse) return false;

    let obj: unknown;
    try {
      obj = JSON.parse(eventData(buf, s, e) ?? '');
    } catch {
      return false;
    }
    if (!isRecord(obj)) return false;
    const facts = this.facts;
    const hadId = facts.responseId;
    const usageEvent = this.grammar.onEvent(obj, facts);
    if (hadId === undefined && facts.responseId !== undefined) this.onResponseId?.(facts.responseId);
    return this.stripUsage && usageEvent;
  }
}

/**
 * Offset of the value of the event's data line ("data:" or "data: ") when the event starts
 * with it, or with one `event:` line and then it (the Responses and Messages APIs name every
 * event); else -1.
 */
function dataValueStart(buf: Buffer, s: number, e: number): number {
  if (
    e - s > 6 &&
    buf[s] === 0x65 &&
    buf[s + 1] === 0x76 &&
    buf[s + 2] === 0x65 &&
    buf[s + 3] === 0x6e &&
    buf[s + 4] === 0x74 &&
    buf[s + 5] === COLON
  ) {
    const lf = buf.indexOf(LF, s + 6);
    if (lf < 0 || lf >= e || buf[lf - 1] === 0x0d) return -1; // CRLF/CR framing: the slow path reads it
    s = lf + 1;
  }
  if (e - s < 6 || buf[s] !== 0x64 || buf[s + 1] !== 0x61 || buf[s + 2] !== 0x74 || buf[s + 3] !== 0x61 || buf[s + 4] !== COLON) {
    return -1;
  }
  return buf[s + 5] === SPACE ? s + 6 : s + 5;
}

function skipWs(buf: Buffer, i: number, e: number): number {
  while (i < e && (buf[i] === SPACE || buf[i] === TAB)) i++;
  return i;
}
