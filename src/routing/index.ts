// Picks a deployment for a route and opens the upstream exchange. Everything here happens
// before the first byte reaches the client, which is the only time a failure can still be
// hidden from it:
//
//   for each model in [requested, ...its fallbacks]          (context_length_exceeded: switch
//     up to 1 + retries.max attempts:                          to context_window_fallbacks)
//       pick a deployment by weight among those whose breaker admits traffic
//       (a retry prefers one this request has not failed on yet)
//       open the exchange; head < 400 → served
//       client 4xx → the client's answer, no retry, no fallback, breaker untouched
//       5xx / 429 / timeout / reset → breaker error, backoff (full jitter; retry-after
//       honoured up to max_retry_after_ms for that deployment), retry
//   nothing served → 503 naming every model/backend tried and why (504 past deadline_ms)
//
// The outcome of a served exchange comes back through report() once its body has ended.
import type { Policies } from '../config/schema.js';
import type { Route, PolicyTable } from '../policy/index.js';
import type { Backend, Backends } from '../upstream/backends.js';
import { UpstreamExchange, type UpstreamRequest } from '../upstream/exchange.js';
import { ClientAbort, UpstreamFailure, clientRetryAfter, statusFailure } from '../upstream/failures.js';
import { GatewayError, errors } from '../errors.js';
import { scrubSecrets } from '../upstream/scrub.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import type { CircuitBreaker, Permit } from './breaker.js';
import { BreakerRegistry } from './registry.js';
import { backoffMs, sleep } from './retry.js';

export { BreakerRegistry } from './registry.js';
export type { CircuitView, DeploymentId } from './registry.js';
export { CircuitBreaker, type CircuitState } from './breaker.js';

export type Deployment = Route['config']['deployments'][number];

export interface Target {
  route: Route;
  deployment: Deployment;
  backend: Backend;
  /** The model name sent upstream. */
  upstreamModel: string;
  /** upstreamModel as a JSON string token, spliced into request bodies. */
  upstreamModelJson: Buffer;
}

export interface Served extends Target {
  exchange: UpstreamExchange;
  /** Upstream attempts this request made, across fallbacks. */
  attempts: number;
  /** Where report() books the outcome. */
  breaker: CircuitBreaker;
  permit: Permit;
}

export interface RoutingContext {
  /** Builds the upstream request for a target (model name rewritten). */
  buildRequest(target: Target): UpstreamRequest;
  /** The exchange in flight, so the pipeline can abort it if the client leaves. */
  onExchange(exchange: UpstreamExchange | undefined): void;
  clientGone(): boolean;
  /** Aborts when the client leaves: cuts a backoff wait short. */
  readonly signal?: AbortSignal;
  /** Only deployments on this backend may serve (it holds state the request refers to: a stored response). */
  readonly pin?: string | undefined;
  /** A routing decision worth a span event (retry, fallback, circuit open); rare paths only. */
  event?(name: string, attributes: Record<string, string | number>): void;
  /** The API the request speaks: only deployments whose backend serves it are tried (undefined: any). */
  readonly api?: string;
}

export type FallbackReason = 'circuit_open' | 'upstream_error' | 'context_length';

/** Turns an upstream error answer into the OpenAI-shaped error the client gets. */
export function upstreamErrorToClient(
  backend: string,
  status: number,
  body: Buffer | undefined,
  secrets: readonly string[] = [],
): GatewayError {
  let message = `Backend '${backend}' answered ${status}.`;
  let type: GatewayError['type'] = status >= 500 ? 'upstream_error' : 'invalid_request_error';
  let code = `upstream_${status}`;
  let param: string | null = null;
  try {
    const parsed = JSON.parse(body?.toString('utf8') ?? '') as Record<string, unknown>;
    const e = (typeof parsed.error === 'object' && parsed.error !== null ? parsed.error : parsed) as Record<string, unknown>;
    if (typeof e.message === 'string') message = e.message;
    if (typeof e.type === 'string' && status < 500) type = e.type as GatewayError['type'];
    if (typeof e.code === 'string') code = e.code;
    if (typeof e.param === 'string') param = e.param;
  } catch {
    // not JSON: keep the generic message (never echo an arbitrary upstream body)
  }
  // The upstream's words go to the client, the log and the span: never with a provider secret in them.
  if (secrets.length) {
    message = scrubSecrets(message, secrets);
    code = scrubSecrets(code, secrets);
    type = scrubSecrets(type, secrets) as GatewayError['type'];
    if (param !== null) param = scrubSecrets(param, secrets);
  }
  // 4xx pass with their status (the client's own mistake); 5xx become 502 unless 503/504, or
  // Anthropic's 529 (overloaded), which its SDK and its clients know.
  const clientStatus = status < 500 ? status : status === 503 || status === 504 || status === 529 ? status : 502;
  return errors.upstreamAnswer(clientStatus, type, code, message, param);
}

/** OpenAI's 400 `context_length_exceeded`; vLLM and others say it only in the message. */
export function isContextLengthError(status: number, body: Buffer | undefined): boolean {
  if (status !== 400 || !body?.length) return false;
  const text = body.toString('utf8');
  return text.includes('context_length_exceeded') || /maximum context length/i.test(text);
}

/** A deployment of a model, resolved once per Router (not per request). */
interface Slot {
  deployment: Deployment;
  backend: Backend;
  upstreamModel: string;
  upstreamModelJson: Buffer;
  breaker: CircuitBreaker;
}

/** A model's routing plan: its slots and the plans it falls back to. */
interface Plan {
  route: Route;
  slots: Slot[];
  /** [this, ...fallbacks]: the order a request for this model walks. */
  chain: Plan[];
  contextFallbacks: Plan[];
}

/** One request's routing state, across models. */
interface RequestState {
  ctx: RoutingContext;
  deadline: number;
  attempts: number;
  tried: Array<{ model: string; backend: string; why: string }>;
  /** The shortest retry-after an upstream asked for, passed on when nothing could serve. */
  retryAfterMs?: number;
  /** The client-facing error of the last failed attempt: its status and code describe the cause. */
  lastError?: GatewayError;
}

type AttemptResult =
  | { kind: 'served'; served: Served }
  | { kind: 'failed'; failure: UpstreamFailure }
  | { kind: 'client_error'; error: GatewayError; contextLength: boolean }
  | { kind: 'deadline' };

type ModelResult =
  | { kind: 'served'; served: Served }
  /** No deployment admitted traffic (breakers open, weights 0): nothing was sent. */
  | { kind: 'unavailable' }
  /** Every attempt failed. */
  | { kind: 'failed' }
  | { kind: 'context_length'; error: GatewayError }
  | { kind: 'deadline' };

class DeadlineExceeded extends Error {
  readonly code = 'GW_DEADLINE';
}

export interface RouterOptions {
  /** Monotonic ms (default performance.now); used only when no registry is taken over. */
  clock?: () => number;
  random?: () => number;
  /** Chaos injection (src/insights/chaos.ts), asked once per attempt. */
  chaos?: (model: string, backend: string) => { delayMs: number; fail?: 'error' | 'abort'; status: number } | undefined;
}

export class Router {
  /** Breaker state by deployment identity; pass it to the next Router to keep it across a reload. */
  readonly breakers: BreakerRegistry;
  private readonly plans = new Map<string, Plan>();
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly chaos: RouterOptions['chaos'];

  constructor(
    private readonly policy: PolicyTable,
    backends: Backends,
    private readonly metrics: Metrics,
    private readonly settings: Pick<Policies, 'retries'>,
    logger?: Logger,
    previous?: BreakerRegistry,
    opts: RouterOptions = {},
  ) {
    this.breakers = previous ?? new BreakerRegistry(opts.clock);
    this.breakers.attach(metrics, logger);
    this.clock = this.breakers.clock;
    this.random = opts.random ?? Math.random;
    this.chaos = opts.chaos;

    const routes = policy.names().map((n) => policy.resolve(n)!);
    const ids = routes.flatMap((route) =>
      route.config.deployments.map((d) => ({
        id: { model: route.name, backend: d.backend, upstreamModel: d.model ?? route.name },
        config: route.breaker,
      })),
    );
    const breakers = this.breakers.sync(ids);
    let i = 0;
    for (const route of routes) {
      const slots = route.config.deployments.map((deployment): Slot => {
        const backend = backends.get(deployment.backend);
        if (!backend) throw new Error(`model '${route.name}': unknown backend '${deployment.backend}'`);
        const upstreamModel = deployment.model ?? route.name;
        return {
          deployment,
          backend,
          upstreamModel,
          upstreamModelJson: Buffer.from(JSON.stringify(upstreamModel)),
          breaker: breakers[i++]!,
        };
      });
      this.plans.set(route.name, { route, slots, chain: [], contextFallbacks: [] });
    }
    const planOf = (name: string) => this.plans.get(name);
    for (const plan of this.plans.values()) {
      plan.chain = [plan, ...plan.route.config.fallbacks.flatMap((n) => planOf(n) ?? [])];
      plan.contextFallbacks = plan.route.config.context_window_fallbacks.flatMap((n) => planOf(n) ?? []);
    }
  }

  /** Whether the model has a deployment whose backend serves `api` (checked before admission: nothing is sent otherwise). */
  serves(model: string, api: string): boolean {
    return this.plans.get(model)?.slots.some((s) => s.backend.serves(api)) ?? false;
  }

  /** Opens an exchange whose head has arrived with status < 400, or throws a GatewayError (or ClientAbort). */
  async open(ctx: RoutingContext, route: Route): Promise<Served> {
    const first = this.plans.get(route.name);
    if (!first) throw errors.noRoutingPlan(route.name);
    const st: RequestState = { ctx, deadline: this.clock() + this.settings.retries.deadline_ms, attempts: 0, tried: [] };
    const seen = new Set<Plan>();
    let chain = first.chain;
    let from: Plan | undefined;
    let reason: FallbackReason = 'upstream_error';
    for (let i = 0; i < chain.length; i++) {
      const plan = chain[i]!;
      if (seen.has(plan)) continue;
      seen.add(plan);
      // A fallback with no deployment for this API is passed over, not tried.
      if (ctx.api !== undefined && !plan.slots.some((s) => s.backend.serves(ctx.api!))) continue;
      if (ctx.clientGone()) throw new ClientAbort();
      if (from) {
        this.metrics.fallbacks.inc({ from: from.route.name, to: plan.route.name, reason });
        ctx.event?.('llm_gateway.fallback', {
          'llm_gateway.fallback.from': from.route.name,
          'llm_gateway.fallback.to': plan.route.name,
          'llm_gateway.fallback.reason': reason,
        });
      }
      const r = await this.tryModel(plan, st);
      switch (r.kind) {
        case 'served':
          return r.served;
        case 'deadline':
          throw errors.routeDeadline(route.name, this.settings.retries.deadline_ms, summarise(st.tried));
        case 'context_length': {
          const next = plan.contextFallbacks.filter((p) => !seen.has(p));
          if (!next.length) throw r.error;
          chain = next;
          i = -1;
          reason = 'context_length';
          break;
        }
        case 'unavailable':
          reason = 'circuit_open';
          break;
        case 'failed':
          reason = 'upstream_error';
          break;
      }
      from = plan;
    }
    throw exhausted(route, st);
  }

  /** Whether a request for `route` can reach `backend` (a deployment of the route or of a fallback is on it). */
  reaches(route: Route, backend: string): boolean {
    const plan = this.plans.get(route.name);
    return plan !== undefined && plan.chain.some((p) => p.slots.some((s) => s.backend.name === backend));
  }

  /** The outcome of a served exchange, once its body ended: feeds its breaker. A client abort counts for nothing. */
  report(served: Served, ok: boolean, failure?: UpstreamFailure): void {
    const now = this.clock();
    // The client leaving or the gateway shutting down says nothing about the deployment.
    if (failure?.reason === 'client_abort' || failure?.reason === 'shutdown') return served.breaker.record(served.permit, 'neutral', now);
    if (ok) return served.breaker.record(served.permit, 'success', now);
    served.breaker.record(served.permit, failure?.local ? 'local_error' : 'status_error', now);
    this.metrics.upstreamErrors.inc({ backend: served.backend.name, reason: failure?.reason ?? 'mid_stream' });
  }

  /** Up to 1 + retries.max attempts on one model's deployments. */
  private async tryModel(plan: Plan, st: RequestState): Promise<ModelResult> {
    const { retries } = this.settings;
    // Lazily built: most requests succeed at once and never need them.
    let failed: Set<Slot> | undefined;
    let notBefore: Map<Slot, number> | undefined;
    let excluded: Set<Slot> | undefined;
    let made = 0;
    let retrying: { backend: string; reason: string } | undefined;
    for (;;) {
      if (st.ctx.clientGone()) throw new ClientAbort();
      const now = this.clock();
      if (now >= st.deadline) return { kind: 'deadline' };
      const picked = this.pick(plan, now, failed, notBefore, excluded, st.ctx.pin, st.ctx.api);
      if (!picked) {
        // A deployment that asked us (retry-after) to come back shortly: wait for it.
        let wake: number | undefined;
        if (notBefore)
          for (const [s, t] of notBefore) if (t > now && !excluded?.has(s) && s.breaker.admits(now)) wake = Math.min(wake ?? t, t);
        if (wake !== undefined && wake < st.deadline) {
          await sleep(wake - now, st.ctx.signal);
          continue;
        }
        if (made === 0) this.noteUnavailable(plan, now, st);
        return { kind: made === 0 ? 'unavailable' : 'failed' };
      }
      if (retrying) {
        this.metrics.retries.inc({ model: plan.route.name, ...retrying });
        st.ctx.event?.('llm_gateway.retry', {
          'llm_gateway.model': plan.route.name,
          'llm_gateway.backend': retrying.backend,
          'error.type': retrying.reason,
          'llm_gateway.attempt': st.attempts + 1,
        });
      }
      made++;
      const r = await this.attempt(plan, picked.slot, picked.permit, st);
      switch (r.kind) {
        case 'served':
        case 'deadline':
          return r;
        case 'client_error':
          if (r.contextLength) return { kind: 'context_length', error: r.error };
          throw r.error;
      }
      const f = r.failure;
      (failed ??= new Set()).add(picked.slot);
      if (f.retryAfterMs !== undefined) {
        // Honoured up to the cap; beyond it, this deployment is done for this request.
        if (f.retryAfterMs > retries.max_retry_after_ms) (excluded ??= new Set()).add(picked.slot);
        else (notBefore ??= new Map()).set(picked.slot, this.clock() + f.retryAfterMs);
      }
      if (made > retries.max) return { kind: 'failed' };
      if (st.ctx.clientGone()) throw new ClientAbort();
      retrying = { backend: picked.slot.backend.name, reason: f.reason };
      await sleep(Math.min(backoffMs(made - 1, retries, this.random), st.deadline - this.clock()), st.ctx.signal);
    }
  }

  /**
   * Weighted choice among the deployments whose breaker admits traffic (preferring ones this
   * request has not failed on), and the breaker permit for it. Two passes, no allocation.
   */
  private pick(
    plan: Plan,
    now: number,
    failed: Set<Slot> | undefined,
    notBefore: Map<Slot, number> | undefined,
    excluded: Set<Slot> | undefined,
    pin: string | undefined,
    api: string | undefined,
  ): { slot: Slot; permit: Permit } | undefined {
    const eligible = (s: Slot, fresh: boolean) =>
      s.deployment.weight > 0 &&
      (pin === undefined || s.backend.name === pin) &&
      (api === undefined || s.backend.serves(api)) &&
      !(fresh && failed?.has(s)) &&
      !excluded?.has(s) &&
      (notBefore?.get(s) ?? 0) <= now &&
      s.breaker.admits(now);
    let fresh = true;
    let total = 0;
    for (const s of plan.slots) if (eligible(s, true)) total += s.deployment.weight;
    if (total === 0 && failed) {
      fresh = false;
      for (const s of plan.slots) if (eligible(s, false)) total += s.deployment.weight;
    }
    if (total === 0) return undefined;
    let r = this.random() * total;
    let chosen: Slot | undefined;
    for (const s of plan.slots) {
      if (!eligible(s, fresh)) continue;
      chosen = s;
      r -= s.deployment.weight;
      if (r < 0) break;
    }
    const permit = chosen?.breaker.acquire(now);
    return chosen && permit ? { slot: chosen, permit } : undefined;
  }

  /** One upstream attempt: its breaker outcome is booked here unless it was served (then report() does it). */
  private async attempt(plan: Plan, slot: Slot, permit: Permit, st: RequestState): Promise<AttemptResult> {
    const exchange = new UpstreamExchange(slot.backend);
    st.attempts++;
    // Built whole, in one shape, before the attempt: it is the target the request is built for
    // and, if the head comes back fine, what open() returns.
    const served: Served = {
      route: plan.route,
      deployment: slot.deployment,
      backend: slot.backend,
      upstreamModel: slot.upstreamModel,
      upstreamModelJson: slot.upstreamModelJson,
      exchange,
      attempts: st.attempts,
      breaker: slot.breaker,
      permit,
    };
    st.ctx.onExchange(exchange);
    // The backend's own timeouts bound each attempt; a timer only when the deadline comes first.
    const remaining = st.deadline - this.clock();
    const cfg = slot.backend.config;
    let deadlineHit = false;
    const timer =
      remaining < cfg.timeout_ms + cfg.connect_timeout_ms
        ? setTimeout(
            () => {
              deadlineHit = true;
              exchange.abort(new DeadlineExceeded('routing deadline'));
            },
            // Whole ms: Node keeps one timer list per distinct duration, and a fractional
            // duration made a new list (and a priority-queue insert) for every request.
            Math.ceil(remaining),
          )
        : undefined;
    try {
      // Chaos (POST /admin/chaos) acts before the upstream call: retries, breakers and
      // fallbacks then treat an injected failure as a real one.
      const chaos = this.chaos?.(plan.route.name, slot.backend.name);
      if (chaos) {
        await sleep(chaos.delayMs, st.ctx.signal);
        if (chaos.fail === 'error') throw statusFailure(slot.backend.name, chaos.status, {});
        if (chaos.fail === 'abort') throw new UpstreamFailure('reset', errors.upstreamReset(slot.backend.name), true);
      }
      await exchange.open(st.ctx.buildRequest(served));
    } catch (e) {
      st.ctx.onExchange(undefined);
      if (e instanceof UpstreamFailure && e.reason !== 'client_abort' && e.reason !== 'shutdown' && !deadlineHit) {
        this.failed(plan, slot, permit, e, st);
        return { kind: 'failed', failure: e };
      }
      // Our own deadline or the client leaving says nothing about the deployment's health.
      slot.breaker.record(permit, 'neutral', this.clock());
      if (deadlineHit) {
        st.tried.push({ model: plan.route.name, backend: slot.backend.name, why: 'deadline reached' });
        return { kind: 'deadline' };
      }
      if (e instanceof UpstreamFailure) throw new ClientAbort();
      throw e;
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (exchange.status >= 400) {
      st.ctx.onExchange(undefined);
      const failure = statusFailure(slot.backend.name, exchange.status, exchange.headers);
      if (failure.reason === 'status_4xx') {
        // The client's own mistake (bad request, context too long): not the deployment's.
        slot.breaker.record(permit, 'neutral', this.clock());
        return {
          kind: 'client_error',
          error: upstreamErrorToClient(slot.backend.name, exchange.status, exchange.errorBody, slot.backend.secrets),
          contextLength: isContextLengthError(exchange.status, exchange.errorBody),
        };
      }
      // A 5xx keeps its status for the client (502/503/504); an upstream 429 has none (→ 503).
      const answer =
        failure.reason === 'status_5xx'
          ? upstreamErrorToClient(slot.backend.name, exchange.status, exchange.errorBody, slot.backend.secrets)
          : undefined;
      this.failed(plan, slot, permit, failure, st, answer);
      return { kind: 'failed', failure };
    }
    served.attempts = st.attempts;
    return { kind: 'served', served };
  }

  private failed(plan: Plan, slot: Slot, permit: Permit, f: UpstreamFailure, st: RequestState, answer?: GatewayError): void {
    slot.breaker.record(permit, f.local ? 'local_error' : 'status_error', this.clock());
    this.metrics.upstreamErrors.inc({ backend: slot.backend.name, reason: f.reason });
    st.tried.push({ model: plan.route.name, backend: slot.backend.name, why: f.status ? `status ${f.status}` : f.reason });
    if (f.retryAfterMs !== undefined) st.retryAfterMs = Math.min(st.retryAfterMs ?? f.retryAfterMs, f.retryAfterMs);
    // Local failures carry their own error (502 unreachable/reset, 504 timeout).
    st.lastError = f.local ? f.error : answer;
  }

  /** Why no deployment of a model could be tried, for the final error message. */
  private noteUnavailable(plan: Plan, now: number, st: RequestState): void {
    const model = plan.route.name;
    let any = false;
    for (const s of plan.slots) {
      if (s.deployment.weight <= 0) continue;
      if (st.ctx.pin !== undefined && s.backend.name !== st.ctx.pin) continue;
      any = true;
      const b = s.breaker;
      const next = b.nextProbeInMs(now);
      const why =
        b.state === 'half_open'
          ? 'circuit half-open, probes in flight'
          : b.forced
            ? 'circuit held open by an operator'
            : `circuit open, next probe in ${((next ?? 0) / 1000).toFixed(1)} s`;
      st.tried.push({ model, backend: s.backend.name, why });
      st.ctx.event?.('llm_gateway.circuit_open', {
        'llm_gateway.model': model,
        'llm_gateway.backend': s.backend.name,
        'llm_gateway.circuit.state': b.forced ? 'forced_open' : b.state,
      });
    }
    if (!any) st.tried.push({ model, backend: '-', why: 'no deployment with a weight above 0' });
  }
}

/**
 * The error when nothing could serve. Status and code are those of the last attempt's failure
 * (502 upstream_unreachable / upstream_reset / upstream_5xx, 504 upstream_timeout), so they still
 * say what went wrong; 503 service_unavailable when no attempt could be made (circuits open) or
 * the last answer was an upstream 429. The message names every model/backend tried and why.
 */
function exhausted(route: Route, st: RequestState): GatewayError {
  const headers: Record<string, string> = st.retryAfterMs === undefined ? {} : { 'retry-after': clientRetryAfter(st.retryAfterMs) };
  return errors.exhausted(route.name, st.tried.length ? summarise(st.tried) : '', headers, st.lastError);
}

/** "m on A: status 500 ×2; fb on B: circuit open, next probe in 3.0 s" (consecutive repeats folded). */
function summarise(tried: RequestState['tried']): string {
  const parts: string[] = [];
  let prev = '';
  let n = 0;
  const flush = () => {
    if (n) parts.push(n > 1 ? `${prev} ×${n}` : prev);
  };
  for (const t of tried) {
    const s = `${t.model} on ${t.backend}: ${t.why}`;
    if (s === prev) n++;
    else {
      flush();
      prev = s;
      n = 1;
    }
  }
  flush();
  return parts.join('; ') || 'nothing';
}
