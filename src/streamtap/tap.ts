/**
 * The stream tap: observes an upstream's SSE chat/completions stream on its way to the
 * client. Every chunk is handed back for writing the moment it arrives; the tap only looks.
 *
 * Events are classified by byte patterns, not JSON.parse: inside a JSON string every quote
 * is escaped, so a pattern such as `"content":` (quote, key, quote, colon) can only match a
 * real key. Only the rare events carrying a usage object or an error are parsed.
 */
import { SseScanner, eventData } from './sse.js';
import { isRecord, usageFromResponse, type TapUsage } from './tokens.js';

export interface StreamTapOptions {
  /** The gateway injected stream_options.include_usage: remove the usage-only event (choices [] and a usage object) so the client sees what it would have without the gateway. */
  stripUsage: boolean;
  /** Clock in ms used to stamp tokens (default performance.now). */
  now?: () => number;
}

const LF = 0x0a;
const QUOTE = 0x22;
const SPACE = 0x20;
const TAB = 0x09;

/**
 * Finds a fixed pattern while events of one buffer are examined in order. It remembers the
 * next occurrence, so each pattern costs one pass over a chunk however many events it holds
 * (Buffer.indexOf has no end bound; searching per event would rescan the rest of the chunk).
 */
class Finder {
  private buf: Buffer | null = null;
  private pos = 0;
  readonly pat: Buffer;
  constructor(pattern: string) {
    this.pat = Buffer.from(pattern, 'latin1');
  }
  /** Offset of the first occurrence at or after `from` that ends by `to`, or -1. Calls must not go backwards within one buffer. */
  find(buf: Buffer, from: number, to: number): number {
    if (buf !== this.buf || this.pos < from) {
      this.buf = buf;
      const p = buf.indexOf(this.pat, from);
      this.pos = p < 0 ? buf.length : p;
    }
    return this.pos + this.pat.length <= to ? this.pos : -1;
  }
  reset(): void {
    this.buf = null;
  }
}

// Keys whose non-empty string value is a generated token: chat content, reasoning
// (reasoning_content: DeepSeek/vLLM; reasoning: OpenRouter/Ollama), refusals, tool-call
// arguments, and legacy /v1/completions `text`.
const TOKEN_KEYS = ['content', 'reasoning_content', 'reasoning', 'refusal', 'arguments', 'text'];

export class StreamTap {
  private readonly stripUsage: boolean;
  private readonly now: () => number;
  private readonly scanner = new SseScanner();
  private readonly chunks: Buffer[] = []; // every chunk, by reference, for outputText()

  private readonly tokenFinders = TOKEN_KEYS.map((k) => new Finder(`"${k}":`));
  private readonly braceFinder = new Finder('{');
  private readonly finishFinder = new Finder('"finish_reason":');
  private readonly usageFinder = new Finder('"usage":');
  private readonly errorFinder = new Finder('"error":');
  private readonly finders = [...this.tokenFinders, this.braceFinder, this.finishFinder, this.usageFinder, this.errorFinder];

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
    this.now = opts.now ?? (() => performance.now());
  }

  get firstTokenAt(): number | undefined {
    return this._firstTokenAt;
  }
  get lastTokenAt(): number | undefined {
    return this._lastTokenAt;
  }
  /** Events carrying content (text, reasoning, refusal, tool-call arguments). */
  get contentEvents(): number {
    return this._contentEvents;
  }
  get usage(): TapUsage | undefined {
    return this._usage;
  }
  get finishReason(): string | undefined {
    return this._finishReason;
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
    this.chunks.push(chunk);
    this.pushTime = undefined;
    for (let k = 0; k < this.finders.length; k++) this.finders[k]!.reset();
    const sc = this.scanner;
    sc.begin(chunk);

    if (!this.stripUsage) {
      // Nothing is ever removed, so nothing is ever held: the chunk goes out as is.
      while (sc.next()) this.observe(sc.buf, sc.start, sc.end);
      sc.finish();
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
      const cut = this.observe(sc.buf, sc.start, sc.end);
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
    const tailStart = sc.finish(); // bytes from here on are held back
    this.dropLF = this.lastCut && sc.pendingEventLF;

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
    for (let k = 0; k < this.finders.length; k++) this.finders[k]!.reset();
    const cut = this.observe(tail, 0, tail.length);
    return this.stripUsage && !cut ? tail : null;
  }

  /**
   * The output text (content, reasoning, refusals, tool-call names and arguments, legacy
   * text), rebuilt from the retained chunks. For streams without usage; costs a full parse,
   * so call it once, after the stream ended.
   */
  outputText(): string {
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
    if (this.braceFinder.find(buf, s, e) < 0) {
      // No JSON: [DONE], a comment/keep-alive, or an empty event. Rare enough to decode.
      const data = eventData(buf, s, e);
      if (data !== null && data.trim() === '[DONE]') this._sawDone = true;
      return false;
    }

    if (this.hasToken(buf, s, e)) {
      const t = (this.pushTime ??= this.now());
      this._firstTokenAt ??= t;
      this._lastTokenAt = t;
      this._contentEvents++;
    }

    for (let p = this.finishFinder.find(buf, s, e); p >= 0; p = this.finishFinder.find(buf, p + 1, e)) {
      const v = skipWs(buf, p + this.finishFinder.pat.length, e);
      if (buf[v] !== QUOTE) continue; // null
      const q = buf.indexOf(QUOTE, v + 1);
      if (q > v && q < e) this._finishReason = buf.toString('latin1', v + 1, q);
    }

    // Only a usage object (not `"usage":null`, which OpenAI puts on every chunk once
    // include_usage is on) or an error makes the event worth parsing.
    const usageAt = this.valueAt(this.usageFinder, buf, s, e);
    const errorAt = this.valueAt(this.errorFinder, buf, s, e);
    const wantUsage = usageAt >= 0 && buf[usageAt] === 0x7b; // {
    const wantError = errorAt >= 0 && (buf[errorAt] === 0x7b || buf[errorAt] === QUOTE);
    if (!wantUsage && !wantError) return false;

    let obj: unknown;
    try {
      obj = JSON.parse(eventData(buf, s, e) ?? '');
    } catch {
      return false;
    }
    if (!isRecord(obj)) return false;
    if (wantError && obj['error'] !== undefined && obj['error'] !== null) this._upstreamError = obj['error'];
    if (!wantUsage) return false;
    const usage = usageFromResponse(obj);
    if (usage === undefined) return false;
    this._usage = usage;
    const choices = obj['choices'];
    return this.stripUsage && (choices === undefined || (Array.isArray(choices) && choices.length === 0));
  }

  /** Does the event have a non-empty string value under one of TOKEN_KEYS? */
  private hasToken(buf: Buffer, s: number, e: number): boolean {
    const fs = this.tokenFinders;
    for (let k = 0; k < fs.length; k++) {
      const f = fs[k]!;
      for (let p = f.find(buf, s, e); p >= 0; p = f.find(buf, p + 1, e)) {
        const v = skipWs(buf, p + f.pat.length, e);
        // `"` then anything but `"`: a non-empty string ("role":"assistant","content":"" is not a token).
        if (v + 1 < e && buf[v] === QUOTE && buf[v + 1] !== QUOTE) return true;
      }
    }
    return false;
  }

  /** Offset of the value after the first match of f in [s, e), or -1. */
  private valueAt(f: Finder, buf: Buffer, s: number, e: number): number {
    const p = f.find(buf, s, e);
    return p < 0 ? -1 : skipWs(buf, p + f.pat.length, e);
  }
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
