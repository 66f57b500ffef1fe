// The batched webhook (seed 003's batch notifier): events queue up (bounded: the oldest go
// first when it is full, and are counted) and one POST per batch window carries them all.
// A failed POST is retried with exponential backoff (seed 003: 3 tries, factor 1 s); only
// one POST is in flight at a time. Nothing here runs on a request: the queue push is the
// only thing an incident does synchronously.

export interface NotifySettings {
  url: string;
  batch_ms: number;
  retries: number;
  backoff_ms: number;
  timeout_ms: number;
  queue: number;
}

export interface NotifierLog {
  warn(obj: object, msg: string): void;
}

export type Post = (url: string, body: string, timeoutMs: number) => Promise<number>;

/** POST with the global fetch (undici); resolves with the status. */
const fetchPost: Post = async (url, body, timeoutMs) => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'llm-gateway-insights' },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer().catch(() => undefined);
  return res.status;
};

export class BatchNotifier {
  private queue: object[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private closed = false;
  dropped = 0;
  sent = 0;
  failed = 0;

  constructor(
    private s: NotifySettings,
    private readonly log?: NotifierLog,
    private readonly post: Post = fetchPost,
  ) {}

  configure(s: NotifySettings): void {
    this.s = s;
  }

  push(event: object): void {
    if (this.closed) return;
    if (this.queue.length >= this.s.queue) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(event);
    // The first event of a batch starts its window; later ones join it.
    if (!this.timer && !this.sending) this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.s.batch_ms);
    this.timer.unref();
  }

  /** Sends what is queued as one POST (retried); resolves when it went or was given up. */
  async flush(): Promise<void> {
    if (this.sending || this.queue.length === 0) return;
    this.sending = true;
    const events = this.queue;
    this.queue = [];
    const body = JSON.stringify({ source: 'llm-gateway', sent_at: new Date().toISOString(), events });
    try {
      for (let attempt = 0; ; attempt++) {
        let status = 0;
        let why = '';
        try {
          status = await this.post(this.s.url, body, this.s.timeout_ms);
          if (status >= 200 && status < 300) {
            this.sent++;
            return;
          }
          why = `status ${status}`;
        } catch (e) {
          why = (e as Error).message;
        }
        if (attempt >= this.s.retries || this.closed) {
          this.failed++;
          this.log?.warn({ events: events.length, attempts: attempt + 1, why }, 'insights webhook: batch dropped');
          return;
        }
        await new Promise<void>((r) => setTimeout(r, this.s.backoff_ms * 2 ** attempt).unref());
      }
    } finally {
      this.sending = false;
      if (this.queue.length && !this.closed && !this.timer) this.schedule();
    }
  }

  get pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
  }
}
