// Picks a deployment for a route and opens the upstream exchange. Everything here happens
// before the first byte reaches the client, which is the only time a failure can still be
// hidden from it.
import type { Policies } from '../config/schema.js';
import type { Route } from '../policy/index.js';
import type { PolicyTable } from '../policy/index.js';
import type { Backend, Backends } from '../upstream/backends.js';
import { UpstreamExchange, type UpstreamRequest } from '../upstream/exchange.js';
import { UpstreamFailure, statusFailure } from '../upstream/failures.js';
import { GatewayError, errors } from '../server/errors.js';
import type { Metrics } from '../telemetry/metrics.js';

export type Deployment = Route['config']['deployments'][number];

export interface Target {
  route: Route;
  deployment: Deployment;
  backend: Backend;
  /** The model name sent upstream. */
  upstreamModel: string;
}

export interface Served extends Target {
  exchange: UpstreamExchange;
  attempts: number;
}

export interface RoutingContext {
  /** Builds the upstream request for a target (model name rewritten). */
  buildRequest(target: Target): UpstreamRequest;
  /** The exchange in flight, so the pipeline can abort it if the client leaves. */
  onExchange(exchange: UpstreamExchange | undefined): void;
  clientGone(): boolean;
}

/** Weighted random choice; deployments with weight 0 are never chosen. */
export function pickWeighted<T extends { weight: number }>(items: readonly T[], random = Math.random): T | undefined {
  let total = 0;
  for (const it of items) total += it.weight;
  if (total <= 0) return undefined;
  let r = random() * total;
  for (const it of items) {
    r -= it.weight;
    if (r < 0) return it;
  }
  return items[items.length - 1];
}

/** Turns an upstream error answer into the OpenAI-shaped error the client gets. */
export function upstreamErrorToClient(backend: string, status: number, body: Buffer | undefined): GatewayError {
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
  // 4xx pass with their status (the client's own mistake); 5xx become 502 unless 503/504.
  const clientStatus = status < 500 ? status : status === 503 || status === 504 ? status : 502;
  return new GatewayError(clientStatus, type, code, message, param);
}

export class Router {
  constructor(
    private readonly policy: PolicyTable,
    private readonly backends: Backends,
    private readonly metrics: Metrics,
    private readonly settings: Pick<Policies, 'retries'>,
  ) {}

  private target(route: Route, deployment: Deployment): Target {
    const backend = this.backends.get(deployment.backend);
    if (!backend) throw errors.internal();
    return { route, deployment, backend, upstreamModel: deployment.model ?? route.name };
  }

  /** Opens an exchange whose head has arrived with status < 400, or throws a GatewayError. */
  async open(ctx: RoutingContext, route: Route): Promise<Served> {
    const deployment = pickWeighted(route.config.deployments);
    if (!deployment) throw errors.unavailable(`No deployment of model '${route.name}' has a weight above 0.`);
    const target = this.target(route, deployment);
    const exchange = new UpstreamExchange(target.backend);
    ctx.onExchange(exchange);
    try {
      await exchange.open(ctx.buildRequest(target));
    } catch (e) {
      ctx.onExchange(undefined);
      if (e instanceof UpstreamFailure) {
        this.metrics.upstreamErrors.inc({ backend: target.backend.name, reason: e.reason });
        throw e.error;
      }
      throw e;
    }
    if (exchange.status >= 400) {
      ctx.onExchange(undefined);
      const failure = statusFailure(target.backend.name, exchange.status, exchange.headers);
      if (failure.reason !== 'status_4xx') this.metrics.upstreamErrors.inc({ backend: target.backend.name, reason: failure.reason });
      throw upstreamErrorToClient(target.backend.name, exchange.status, exchange.errorBody);
    }
    return { ...target, exchange, attempts: 1 };
  }

  /** The outcome of a served exchange, once its body ended (feeds breakers). */
  report(_served: Served, _ok: boolean, _failure?: UpstreamFailure): void {}

  get policyTable(): PolicyTable {
    return this.policy;
  }
}
