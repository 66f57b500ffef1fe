/**
 * The stream tap: observes an upstream's SSE chat/completions stream on its way to the
 * client. Every chunk is handed back for writing the moment it arrives; the tap only looks.
 *
 * Events are classified by bytes, not JSON.parse: one pass over an event's colons finds the
 * keys we care about (`"content":`, `"finish_reason":`, ...). Inside a JSON string every
 * quote is escaped, so `"key":` (quote, key, quote, colon) can only be a real key. Only the
 * rare events carrying a usage object or an error are parsed.
 */
import { SseScanner, eventData } from './sse.js';
import { isRecord, usageFromResponse, type TapUsage } from './tokens.js';
import { COLON, LF, OPEN_BRACE, QUOTE, SPACE, TAB } from '../util/json-bytes.js';

export interface StreamTapOptions {
  /** The gateway injected stream_options.include_usage: remove the usage-only event (choices [] and a usage object) so the client sees what it would have without the gateway. */
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
}


// The keys the tap looks at. TOKEN: a non-empty string value is a generated token: chat
// content, reasoning (reasoning_content: DeepSeek/vLLM; reasoning: OpenRouter/Ollama),
// refusals, tool-call arguments, legacy /v1/completions `text`.
const TOKEN = 1;
const FINISH = 2;
const USAGE = 3;
const ERROR = 4;
const KEY_TABLE: ReadonlyArray<readonly [string, number]> = [
  ['content', TOKEN],
  ['reasoning_content', TOKEN],
  ['reasoning', TOKEN],
  ['refusal', TOKEN],
  ['arguments', TOKEN],
  ['text', TOKEN],
  ['finish_reason', FINISH],
  ['usage', USAGE],
  ['error', ERROR],
];
const KEY_BYTES = KEY_TABLE.map(([k]) => Buffer.from(k, 'latin1'));
const KEY_KINDS = KEY_TABLE.map(([, kind]) => kind);
const MAX_KEY = Math.max(...KEY_BYTES.map((k) => k.length));

/** Which of the keys is bytes [a, b) of buf (0: none). */
function keyKind(buf: Buffer, a: number, b: number): number {
  const len = b - a;
  next: for (let k = 0; k < KEY_BYTES.length; k++) {
    const key = KEY_BYTES[k]!;
    if (key.length !== len) continue;
    for (let j = 0; j < len; j++) if (buf[a + j] !== key[j]) continue next;
    return KEY_KINDS[k]!;
  }
  return 0;
}

/** The most stream bytes kept for outputText(): a stream without usage longer than this is counted by content events. */
export const MAX_RETAINED_BYTES = 8 * 1024 * 1024;

export class StreamTap {
  private readonly stripUsage: boolean;
  private readonly now: () => number;
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
  private _usage: TapUsage | undefined;
  private _finishReason: string | undefined;
  private _sawDone = false;
  private _upstreamError: unknown = undefined;

  constructor(opts: StreamTapOptions) {
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
  get usage(): TapUsage | undefined {
    return this._usage;
  }
  get finishReason(): string | undefined {
    return this._finishReason;
  }
  /** outputText() can rebuild the whole output (chunks were kept, and stayed under MAX_RETAINED_BYTES). */
  get textRetained(): boolean {
    return this.retain;
  }
  get sawDone(): boolean {
    return this._sawDone;
  }
  /** The `error` value of an upstream event `data: {"error":{...}}`. */
  get upstreamError(): unknown {
    return this._upstreamError;
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
    while (sc.next()) collectOutput(eventData(sc.buf, sc.start, sc.end), parts);
    sc.finish();
    const tail = sc.takeTail();
    if (tail !== null) collectOutput(eventData(tail, 0, tail.length), parts);
    return parts.join('');
  }

  /** Classify one complete event (bytes [s, e) of buf). Returns true when it must be cut. */
  private observe(buf: Buffer, s: number, e: number): boolean {
    const first = dataValueStart(buf, s, e);
    if (first < 0 || buf[first] !== OPEN_BRACE) {
      // Not a plain JSON event: [DONE], a comment/keep-alive, other fields. Rare: decode it.
      const data = eventData(buf, s, e);
      if (data === null) return false;
      if (data.trim() === '[DONE]') {
        this._sawDone = true;
        return false;
      }
      if (data.charCodeAt(0) !== OPEN_BRACE) return false;
    }

    // One pass over the colons of the event; a colon right after a quoted key we know is a hit.
    let token = false;
    let parse = false; // a usage object or an error: worth a JSON.parse
    let wantUsage = false;
    for (let c = buf.indexOf(COLON, s); c >= 0 && c < e; c = buf.indexOf(COLON, c + 1)) {
      let q = c - 1;
      while (q > s && (buf[q] === SPACE || buf[q] === TAB)) q--;
      if (buf[q] !== QUOTE) continue;
      let o = q - 1;
      while (o > s && buf[o] !== QUOTE && q - o <= MAX_KEY) o--;
      if (buf[o] !== QUOTE) continue;
      const kind = keyKind(buf, o + 1, q);
      if (kind === 0) continue;
      const v = skipWs(buf, c + 1, e);
      const b = buf[v];
      if (kind === TOKEN) {
        // `"` then anything but `"`: a non-empty string ("role":"assistant","content":"" is no token).
        if (b === QUOTE && v + 1 < e && buf[v + 1] !== QUOTE) token = true;
      } else if (kind === FINISH) {
        if (b === QUOTE) {
          const end = buf.indexOf(QUOTE, v + 1);
          if (end > v && end < e) this._finishReason = buf.toString('latin1', v + 1, end);
        }
      } else if (kind === USAGE) {
        // Not `"usage":null`, which OpenAI puts on every chunk once include_usage is on.
        if (b === OPEN_BRACE) parse = wantUsage = true;
      } else if (b === OPEN_BRACE || b === QUOTE) {
        parse = true; // ERROR
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
    const err = obj['error'];
    if (err !== undefined && err !== null) this._upstreamError = err;
    if (!wantUsage) return false;
    const usage = usageFromResponse(obj);
    if (usage === undefined) return false;
    this._usage = usage;
    const choices = obj['choices'];
    return this.stripUsage && (choices === undefined || (Array.isArray(choices) && choices.length === 0));
  }
}

/** Offset of the value of the event's first line when that is a data line ("data:" or "data: "), else -1. */
function dataValueStart(buf: Buffer, s: number, e: number): number {
  if (e - s < 6 || buf[s] !== 0x64 || buf[s + 1] !== 0x61 || buf[s + 2] !== 0x74 || buf[s + 3] !== 0x61 || buf[s + 4] !== COLON) {
    return -1;
  }
  return buf[s + 5] === SPACE ? s + 6 : s + 5;
}

function skipWs(buf: Buffer, i: number, e: number): number {
  while (i < e && (buf[i] === SPACE || buf[i] === TAB)) i++;
  return i;
}

/** Append the generated text of one event's data (a chat or completions chunk) to parts. */
function collectOutput(data: string | null, parts: string[]): void {
  if (data === null || data.charCodeAt(0) !== 0x7b) return;
  let obj: unknown;
  try {
    obj = JSON.parse(data);
  } catch {
    return;
  }
  if (!isRecord(obj) || !Array.isArray(obj['choices'])) return;
  for (const choice of obj['choices']) {
    if (!isRecord(choice)) continue;
    pushStr(choice['text'], parts);
    const delta = choice['delta'];
    if (!isRecord(delta)) continue;
    pushStr(delta['reasoning_content'], parts);
    pushStr(delta['reasoning'], parts);
    pushStr(delta['content'], parts);
    pushStr(delta['refusal'], parts);
    const calls = delta['tool_calls'];
    if (Array.isArray(calls)) for (const c of calls) if (isRecord(c)) pushFunction(c['function'], parts);
    pushFunction(delta['function_call'], parts);
  }
}

function pushFunction(fn: unknown, parts: string[]): void {
  if (!isRecord(fn)) return;
  pushStr(fn['name'], parts);
  pushStr(fn['arguments'], parts);
}

function pushStr(v: unknown, parts: string[]): void {
  if (typeof v === 'string' && v.length > 0) parts.push(v);
}
