// Chaos (seed 003's ChaosTester, in-process): POST /admin/chaos injects latency, errors or
// aborts before the upstream call of a model's or a backend's requests, for a bounded time
// (default 500 ms for 5 min). Rules live in memory only: they end by themselves, and a
// restart forgets them. Routing asks `decide()` once per attempt; retries, breakers and
// fallbacks then see an injected failure as they would a real one.

export type ChaosKind = 'latency' | 'error' | 'abort';

export interface ChaosRule {
  id: string;
  model: string | null;
  backend: string | null;
  kind: ChaosKind;
  latency_ms: number;
  status: number;
  /** Share of matching attempts it applies to. */
  rate: number;
  started_at: string;
  ends_at: string;
}

/** What routing does for one attempt. */
export interface ChaosDecision {
  delayMs: number;
  fail?: 'error' | 'abort';
  status: number;
}

export type ChaosHook = (model: string, backend: string) => ChaosDecision | undefined;

export const CHAOS_DEFAULTS = { latency_ms: 500, duration_s: 300, status: 503, rate: 1 };
export const CHAOS_MAX = { latency_ms: 60_000, duration_s: 3_600, rules: 16 };

interface Live {
  rule: ChaosRule;
  until: number;
  timer: NodeJS.Timeout | undefined;
}

export class ChaosError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ChaosClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout | undefined;
  clearTimeout(t: NodeJS.Timeout | undefined): void;
}

const realClock: ChaosClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (t) => clearTimeout(t),
};

export class Chaos {
  private readonly live = new Map<string, Live>();
  private seq = 0;

  constructor(
    private readonly onChange: (active: number) => void = () => {},
    private readonly clock: ChaosClock = realClock,
    private readonly random: () => number = Math.random,
  ) {}

  /** Validates an untrusted request body; `known` tells which model/backend names exist. */
  start(body: Record<string, unknown>, known: { models: Set<string>; backends: Set<string> }): ChaosRule {
    const str = (k: string): string | null => {
      const v = body[k];
      if (v === undefined || v === null) return null;
      if (typeof v !== 'string' || v === '') throw new ChaosError(k, `'${k}' must be a non-empty string.`);
      return v;
    };
    const num = (k: string, def: number, min: number, max: number): number => {
      const v = body[k];
      if (v === undefined) return def;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)
        throw new ChaosError(k, `'${k}' must be a number in [${min}, ${max}].`);
      return v;
    };
    const model = str('model');
    const backend = str('backend');
    if (!model && !backend) throw new ChaosError('model', "Name a 'model' or a 'backend' (or both) to inject chaos on.");
    if (model && !known.models.has(model)) throw new ChaosError('model', `Unknown model '${model}'.`);
    if (backend && !known.backends.has(backend)) throw new ChaosError('backend', `Unknown backend '${backend}'.`);
    const kind = body.kind ?? 'latency';
    if (kind !== 'latency' && kind !== 'error' && kind !== 'abort')
      throw new ChaosError('kind', '\'kind\' must be "latency", "error" or "abort".');
    const latency = num('latency_ms', kind === 'latency' ? CHAOS_DEFAULTS.latency_ms : 0, 0, CHAOS_MAX.latency_ms);
    const duration = num('duration_s', CHAOS_DEFAULTS.duration_s, 0.001, CHAOS_MAX.duration_s);
    const status = num('status', CHAOS_DEFAULTS.status, 500, 599);
    const rate = num('rate', CHAOS_DEFAULTS.rate, 0, 1);
    if (this.active >= CHAOS_MAX.rules) throw new ChaosError('model', `At most ${CHAOS_MAX.rules} chaos rules at once.`);
    const now = this.clock.now();
    const until = now + duration * 1000;
    const id = `chaos-${++this.seq}`;
    const rule: ChaosRule = {
      id,
      model,
      backend,
      kind,
      latency_ms: latency,
      status: Math.round(status),
      rate,
      started_at: new Date(now).toISOString(),
      ends_at: new Date(until).toISOString(),
    };
    const live: Live = { rule, until, timer: undefined };
    live.timer = this.clock.setTimeout(() => this.end(id), until - now);
    this.live.set(id, live);
    this.onChange(this.active);
    return rule;
  }

  /** Ends one rule, or all when id is undefined; returns the rules ended. */
  stop(id?: string): ChaosRule[] {
    const ended: ChaosRule[] = [];
    for (const [k, l] of this.live) {
      if (id !== undefined && k !== id) continue;
      ended.push(l.rule);
      this.end(k);
    }
    return ended;
  }

  private end(id: string): void {
    const l = this.live.get(id);
    if (!l) return;
    this.clock.clearTimeout(l.timer);
    this.live.delete(id);
    this.onChange(this.active);
  }

  /** Drops rules past their end (the timer does it too; this holds even if a timer is late). */
  private expire(): void {
    const now = this.clock.now();
    for (const [id, l] of this.live) if (now >= l.until) this.end(id);
  }

  get active(): number {
    this.expire();
    return this.live.size;
  }

  list(): ChaosRule[] {
    this.expire();
    return [...this.live.values()].map((l) => l.rule);
  }

  /** The injection for one attempt on (model, backend), if a rule matches. */
  readonly decide: ChaosHook = (model, backend) => {
    if (this.live.size === 0) return undefined;
    this.expire();
    let out: ChaosDecision | undefined;
    for (const { rule } of this.live.values()) {
      if ((rule.model !== null && rule.model !== model) || (rule.backend !== null && rule.backend !== backend)) continue;
      if (rule.rate < 1 && this.random() >= rule.rate) continue;
      out ??= { delayMs: 0, status: rule.status };
      out.delayMs = Math.max(out.delayMs, rule.latency_ms);
      if (rule.kind !== 'latency' && !out.fail) {
        out.fail = rule.kind;
        out.status = rule.status;
      }
    }
    return out;
  };

  close(): void {
    this.stop();
  }
}
