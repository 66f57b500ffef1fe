// Budget gauges and threshold alerts. Each threshold (budget_alerts, default
// 0.7/0.8/0.95/1.0) fires once per period per budget: the store decides "first time"
// (atomically in Redis, so once per fleet), this file tells the world: a warn log line,
// llm_gateway_budget_alerts_total, and an optional JSON webhook POSTed off the request path,
// retried with backoff, its timers unref'd and cleared on close. The spend gauge is written
// when it is read (a scrape, the dashboard) or an alert fires, from the last value per budget,
// not once per request: setting a labelled gauge builds a label object and hashes it.
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { fromNano, type Scope } from './scopes.js';

const WEBHOOK_ATTEMPTS = 4;
const WEBHOOK_BACKOFF_MS = 500;
const WEBHOOK_TIMEOUT_MS = 5_000;

export class BudgetAlerts {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inflight = new Set<AbortController>();
  private closed = false;
  /** Spend gauge values not written yet, by budget: written when the gauge is read. */
  private readonly spendDue = new Map<Scope, number>();

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly webhook: string | undefined,
  ) {
    metrics.budgetSpendWriters.add(this.writeSpend);
  }

  /** Sets the limit gauges of every budget once, at start. */
  init(budgets: readonly Scope[]): void {
    for (const s of budgets) this.metrics.budgetLimit.set({ scope: s.kind, name: s.name }, s.budget!.usd);
  }

  /** Committed spend of a budget changed; `fired` are the thresholds crossed for the first time this period. */
  readonly onSpend = (s: Scope, spentNano: number, fired: readonly number[]): void => {
    this.spendDue.set(s, spentNano);
    if (fired.length === 0) return;
    this.writeSpend(); // an alert and the gauge it is about agree
    const spend = fromNano(spentNano);
    for (const threshold of fired) {
      const limit = s.budget!.usd;
      this.metrics.budgetAlerts.inc({ scope: s.kind, threshold: String(threshold) });
      this.logger.warn(
        { event: 'budget_alert', scope: s.kind, name: s.name, period: s.budget!.period, threshold, spend, limit },
        'budget threshold crossed',
      );
      if (this.webhook) {
        const body = JSON.stringify({
          event: 'budget_alert',
          scope: s.kind,
          name: s.name,
          period: s.budget!.period,
          threshold,
          spend_usd: spend,
          limit_usd: limit,
          at: new Date().toISOString(),
        });
        this.post(this.webhook, body, 0);
      }
    }
  };

  private readonly writeSpend = (): void => {
    for (const [s, nano] of this.spendDue) this.metrics.budgetSpend.set({ scope: s.kind, name: s.name }, fromNano(nano));
    this.spendDue.clear();
  };

  private post(url: string, body: string, attempt: number): void {
    if (this.closed) return;
    const ac = new AbortController();
    this.inflight.add(ac);
    // undici's full entry point (fetch, WebSocket, caches: ~9 MiB of RSS) only when a webhook
    // actually fires; the request path uses its Pool module alone (upstream/backends.ts).
    import('undici')
      .then(({ request }) =>
        request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: ac.signal,
          headersTimeout: WEBHOOK_TIMEOUT_MS,
          bodyTimeout: WEBHOOK_TIMEOUT_MS,
        }),
      )
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) return;
        // A 4xx other than 408/429 will not get better by retrying.
        const retry = res.statusCode >= 500 || res.statusCode === 408 || res.statusCode === 429;
        this.failed(url, body, attempt, `status ${res.statusCode}`, retry);
      })
      .catch((e: unknown) => this.failed(url, body, attempt, (e as Error).message, true))
      .finally(() => this.inflight.delete(ac));
  }

  private failed(url: string, body: string, attempt: number, why: string, retry: boolean): void {
    if (this.closed) return;
    if (!retry || attempt + 1 >= WEBHOOK_ATTEMPTS) {
      this.logger.error({ attempts: attempt + 1, reason: why }, 'budget webhook failed');
      return;
    }
    const t = setTimeout(
      () => {
        this.timers.delete(t);
        this.post(url, body, attempt + 1);
      },
      WEBHOOK_BACKOFF_MS * 2 ** attempt,
    );
    t.unref();
    this.timers.add(t);
  }

  close(): void {
    this.writeSpend();
    this.metrics.budgetSpendWriters.delete(this.writeSpend);
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const ac of this.inflight) ac.abort();
    this.inflight.clear();
  }
}
