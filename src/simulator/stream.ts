// One streamed response with honest timing: the first token ttftMs after the request
// body was read, each later token tpotMs after the previous one was written.
//
// Built to run thousands at once: the chunk pieces are precomputed strings, one
// Timeout is re-armed with refresh() for every inter-token gap (no allocation per
// token), and a full socket buffer (write() === false) holds the next token until
// 'drain' instead of piling data up in memory.
import type { ServerResponse } from 'node:http';
import type { StreamFormat } from './openai.js';
import { CHAT_STREAM_ERROR, nowMs } from './openai.js';

export interface StreamPlan {
  format: StreamFormat;
  /** JSON-encoded token strings; chunk i carries tokens[i % tokens.length] */
  tokens: readonly string[];
  /** how many token chunks to send */
  n: number;
  ttftMs: number;
  tpotMs: number;
  /** fault: destroy the socket after this many token chunks (before the tail) */
  dieAfter?: number;
  /** fault: after this many token chunks, send the API's in-stream error event and end the response */
  errorAfter?: number;
}

export class TokenStream {
  private sent = 0;
  private first: NodeJS.Timeout | undefined;
  private gap: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private due = false;
  private stopped = false;
  private dueAt = 0; // when the next token may be written (nowMs clock)

  constructor(
    private readonly res: ServerResponse,
    private readonly plan: StreamPlan,
    /** told when the dieAfter fault drops the connection (so it is not counted as a client abort) */
    private readonly onDie: () => void = () => {},
    /** told when the whole stream, tail included, has been written */
    private readonly onEnd: () => void = () => {},
  ) {}

  /** Call after writeHead; `t0` is when the request body was read (ms, nowMs clock). */
  start(t0: number): void {
    const { format, dieAfter, errorAfter, ttftMs } = this.plan;
    if (dieAfter === 0) return this.die(format.head);
    if (errorAfter === 0) {
      this.res.write(format.head);
      return this.fail();
    }
    if (format.head) this.res.write(format.head);
    this.dueAt = t0 + ttftMs;
    // Whole milliseconds: Node keeps one timer list per distinct duration, and thousands
    // of fractional ones would each get their own.
    this.first = setTimeout(this.tick, Math.max(0, Math.ceil(this.dueAt - nowMs())));
  }

  /** Stop timers at once (client gone, or the simulator closing). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.first);
    clearTimeout(this.gap);
    this.res.removeListener('drain', this.onDrain);
  }

  private readonly tick = (): void => {
    if (this.stopped) return;
    // libuv timers run on a per-loop-turn cached millisecond clock, so they can fire up
    // to ~1 ms (more under load) before the real due time. Never send a token early.
    const early = this.dueAt - nowMs();
    if (early > 0) {
      this.first = setTimeout(this.tick, Math.ceil(early));
      return;
    }
    if (this.waitingDrain) {
      this.due = true; // write when the socket drains
      return;
    }
    this.emit();
  };

  private readonly onDrain = (): void => {
    this.waitingDrain = false;
    if (this.due && !this.stopped) {
      this.due = false;
      this.emit();
    }
  };

  private emit(): void {
    const { format, tokens, n, dieAfter, errorAfter } = this.plan;
    if (this.sent >= n) return this.finish();
    // sim_ts is taken right before the write: the bench uses it as the exact send time.
    const ts = nowMs();
    const chunk = format.render
      ? format.render(this.sent, ts)
      : format.prefix + tokens[this.sent % tokens.length] + format.suffix + ts + '}\n\n';
    this.sent++;
    if (dieAfter !== undefined && this.sent >= dieAfter) return this.die(chunk);
    const ok = this.res.write(chunk);
    if (errorAfter !== undefined && this.sent >= errorAfter) return this.fail();
    if (this.sent >= n) return this.finish();
    if (!ok) {
      this.waitingDrain = true;
      this.res.once('drain', this.onDrain);
    }
    this.dueAt = ts + this.plan.tpotMs;
    if (this.gap) this.gap.refresh();
    else this.gap = setTimeout(this.tick, this.plan.tpotMs);
  }

  private finish(): void {
    this.stop();
    const { format } = this.plan;
    this.res.end(format.end ? format.end() : format.tail);
    this.onEnd();
  }

  /** The generation failed after the status was sent: the API's error event ends the response. */
  private fail(): void {
    this.stop();
    const { format } = this.plan;
    this.res.end(format.error ? format.error(this.sent) : CHAT_STREAM_ERROR);
  }

  /** Write the last chunk, and once it reached the kernel, drop the connection. */
  private die(last: string): void {
    this.stop();
    this.onDie();
    const socket = this.res.socket;
    // The write callback runs after Node's cork/uncork, so the chunk is really sent first.
    this.res.write(last || ':\n\n', () => socket?.destroy());
  }
}
