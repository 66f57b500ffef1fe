// A Redis connection held by a worker thread (redis-worker.ts), used from the gateway's thread
// by message. ioredis, loaded into the gateway's own isolate, cost every request there 1.26 to
// 1.32× the CPU, whether Redis was used or not; in a thread of its own it costs the gateway
// 1.07× (docs/performance.md, "What loading ioredis costs"). A command crosses a message port
// each way; the leased-quota store sends a few dozen a second, and commands sent in one turn
// of either thread are still written to Redis together (auto-pipelining runs in the worker).
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { RedisTarget } from './redis-connect.js';

/** What the worker's connection is told (ioredis options that can cross a message port). */
export interface LinkSettings {
  /** Connect on the first command instead of now (and start the thread then too). */
  lazyConnect: boolean;
  /** Queue commands while disconnected (false: fail them at once). */
  enableOfflineQueue: boolean;
  connectTimeoutMs?: number;
}

export type LinkRequest = { id: number; op: string; args: readonly string[] };
export type LinkReply = { id: number; value?: unknown; error?: string } | { status: string } | { error: string };

/** The worker answers every command within this long (redis-worker.ts), whatever Redis does. */
export const BACKSTOP_MS = 10_000;
/** A thread that died unasked (a bug in it, or out of memory) is started again after this long. */
const RESTART_MS = 1_000;

interface Waiter {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/**
 * The subset of an ioredis client the stores use: `status` as ioredis names it, mirrored from the
 * thread; `command()` for any command; `quit()` and `disconnect()`.
 */
export class RedisThread {
  /** ioredis' status of the connection: wait, connecting, connect, ready, close, reconnecting, end. */
  status: string;
  /** Called each time the connection becomes ready. */
  onReady: (() => void) | undefined;
  /** Called with each connection error ioredis reports (reconnects follow by themselves). */
  onError: ((e: Error) => void) | undefined;
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private closed = false;
  private restart: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: RedisTarget,
    private readonly settings: LinkSettings,
  ) {
    this.status = settings.lazyConnect ? 'wait' : 'connecting';
    if (!settings.lazyConnect) this.start();
  }

  /** Sends one command (`'evalsha'`, `'get'`, ...); resolves with Redis' reply, rejects with its error. */
  command(op: string, args: readonly string[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('Connection is closed.'));
    return this.send(op, args);
  }

  /** Ends the connection politely (QUIT), then the thread. */
  async quit(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.worker) await this.send('quit', []);
    } finally {
      this.disconnect();
    }
  }

  /** Ends the thread and its connection now; commands in flight are failed. */
  disconnect(): void {
    this.closed = true;
    clearTimeout(this.restart);
    const w = this.worker;
    this.worker = undefined;
    this.status = 'end';
    this.failAll('Connection is closed.');
    if (w) void w.terminate();
  }

  private send(op: string, args: readonly string[]): Promise<unknown> {
    const w = this.worker ?? this.start();
    const id = this.nextId++;
    // The thread keeps the process alive only while it owes an answer.
    if (this.waiting.size === 0) w.ref();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      w.postMessage({ id, op, args } satisfies LinkRequest);
    });
  }

  private start(): Worker {
    const w = new Worker(workerFile(), {
      workerData: { target: this.target, settings: this.settings },
      // Not the gateway's flags: a preload (-r) or a profiler flag is not meant for this thread.
      execArgv: [],
      // ioredis and a connection's buffers; a Redis reply larger than this is refused anyway.
      resourceLimits: { maxOldGenerationSizeMb: 64 },
    });
    w.unref();
    w.on('message', (m: LinkReply) => this.worker === w && this.receive(m));
    w.on('error', (e: Error) => this.onError?.(e));
    w.on('exit', () => this.exited(w));
    this.worker = w;
    return w;
  }

  private receive(m: LinkReply): void {
    if ('id' in m) {
      const waiter = this.waiting.get(m.id);
      if (!waiter) return;
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) this.worker?.unref();
      if (m.error === undefined) waiter.resolve(m.value);
      else waiter.reject(new Error(m.error));
    } else if ('status' in m) {
      if (this.closed) return;
      this.status = m.status;
      if (m.status === 'ready') this.onReady?.();
    } else this.onError?.(new Error(m.error));
  }

  private exited(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    this.status = 'end';
    this.failAll('Redis connection thread exited');
    if (!this.closed) this.restart = setTimeout(() => this.worker ?? this.start(), RESTART_MS).unref();
  }

  private failAll(message: string): void {
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiters) w.reject(new Error(message));
  }
}

/**
 * The compiled worker beside this module; run from the TypeScript sources (the tests), the
 * build's copy (`npm test` builds first): a worker thread cannot load TypeScript.
 */
function workerFile(): URL {
  const here = new URL('./redis-worker.js', import.meta.url);
  return existsSync(here) ? here : new URL('../../dist/admission/redis-worker.js', import.meta.url);
}
