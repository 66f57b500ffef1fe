// Breakers by deployment identity (model + backend + upstream model), outliving any one
// Router: a Router built for a reloaded policy takes the registry over, so a deployment that
// still exists keeps its state (an open breaker stays open), new ones start closed, and
// removed ones are dropped with their gauge series. Transitions are logged and exported here.
import type { CircuitBreakerConfig } from '../config/schema.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { CircuitBreaker, STATE_VALUE, type CircuitState, type Transition } from './breaker.js';

export interface DeploymentId {
  /** The model name clients send. */
  model: string;
  backend: string;
  /** The model name sent upstream. */
  upstreamModel: string;
}

export interface CircuitView {
  model: string;
  backend: string;
  upstream_model: string;
  state: CircuitState;
  /** Held open by an operator (POST /admin/circuits/...): no probes until closed. */
  forced: boolean;
  window_s: number;
  requests: number;
  error_rate: number;
  local_errors: number;
  status_errors: number;
  openings: number;
  cooldown_s: number;
  /** Seconds until the next probe may go; 0 while half-open; null when closed or forced open. */
  next_probe_in_s: number | null;
}

interface Entry {
  id: DeploymentId;
  breaker: CircuitBreaker;
}

const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;

export function deploymentKey(id: DeploymentId): string {
  return `${id.model}\u0000${id.backend}\u0000${id.upstreamModel}`;
}

export class BreakerRegistry {
  private readonly entries = new Map<string, Entry>();
  private metrics: Metrics | undefined;
  private logger: Logger | undefined;

  constructor(readonly clock: () => number = () => performance.now()) {}

  /** Where transitions are reported (the newest Router's metrics and logger). */
  attach(metrics: Metrics | undefined, logger: Logger | undefined): void {
    this.metrics = metrics;
    this.logger = logger;
  }

  /**
   * Makes the registry hold exactly these deployments: existing breakers are kept (and get the
   * new settings), new ones start closed, the rest are dropped. Returns the breakers in order.
   */
  sync(deployments: Array<{ id: DeploymentId; config: CircuitBreakerConfig }>): CircuitBreaker[] {
    const now = this.clock();
    const keep = new Set<string>();
    const out: CircuitBreaker[] = [];
    for (const { id, config } of deployments) {
      const key = deploymentKey(id);
      keep.add(key);
      let entry = this.entries.get(key);
      if (entry) entry.breaker.reconfigure(config, now);
      else {
        const breaker = new CircuitBreaker(config, now);
        entry = { id, breaker };
        breaker.onTransition = (t) => this.transitioned(id, t);
        this.entries.set(key, entry);
      }
      out.push(entry.breaker);
    }
    for (const [key, entry] of this.entries) {
      if (keep.has(key)) continue;
      this.entries.delete(key);
      if (!this.find(entry.id.model, entry.id.backend).length)
        this.metrics?.circuitState.remove({ model: entry.id.model, backend: entry.id.backend });
    }
    for (const entry of this.entries.values()) this.exportState(entry.id);
    return out;
  }

  get(id: DeploymentId): CircuitBreaker | undefined {
    return this.entries.get(deploymentKey(id))?.breaker;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Every deployment's state, for GET /admin/circuits. */
  view(): CircuitView[] {
    const now = this.clock();
    return [...this.entries.values()].map((e) => this.viewOf(e, now));
  }

  /** Operator override for every deployment of `model` on `backend`; returns their new views (empty: none matched). */
  force(model: string, backend: string, to: 'open' | 'closed'): CircuitView[] {
    const now = this.clock();
    const hit = this.find(model, backend);
    for (const e of hit) e.breaker.force(to, now);
    if (hit.length) this.logger?.warn({ model, backend, to, deployments: hit.length }, 'circuit breaker forced by an operator');
    return hit.map((e) => this.viewOf(e, now));
  }

  private find(model: string, backend: string): Entry[] {
    const out: Entry[] = [];
    for (const e of this.entries.values()) if (e.id.model === model && e.id.backend === backend) out.push(e);
    return out;
  }

  private viewOf(e: Entry, now: number): CircuitView {
    const b = e.breaker;
    const next = b.nextProbeInMs(now);
    const w = b.window;
    return {
      model: e.id.model,
      backend: e.id.backend,
      upstream_model: e.id.upstreamModel,
      state: b.state,
      forced: b.forced,
      window_s: b.config.window_s,
      requests: w.requests,
      error_rate: round(w.errorRate(now), 4),
      local_errors: w.localErrors,
      status_errors: w.statusErrors,
      openings: b.openings,
      cooldown_s: round(b.cooldownMs / 1000),
      next_probe_in_s: next === undefined ? null : round(next / 1000),
    };
  }

  private transitioned(id: DeploymentId, t: Transition): void {
    this.exportState(id);
    const fields = {
      model: id.model,
      backend: id.backend,
      upstream_model: id.upstreamModel,
      from: t.from,
      to: t.to,
      reason: t.reason,
      error_rate: round(t.errorRate, 4),
      requests: t.requests,
      local_errors: t.localErrors,
      status_errors: t.statusErrors,
      cooldown_s: round(t.cooldownMs / 1000),
      openings: t.openings,
    };
    const msg = t.to === 'open' ? 'circuit breaker opened' : t.to === 'half_open' ? 'circuit breaker half-open' : 'circuit breaker closed';
    if (t.to === 'open') this.logger?.warn(fields, msg);
    else this.logger?.info(fields, msg);
  }

  /** The gauge has no upstream-model label: it shows the worst state among a (model, backend)'s deployments. */
  private exportState(id: DeploymentId): void {
    if (!this.metrics) return;
    let worst = 0;
    for (const e of this.find(id.model, id.backend)) worst = Math.max(worst, STATE_VALUE[e.breaker.state]);
    this.metrics.circuitState.set({ model: id.model, backend: id.backend }, worst);
  }
}
