// Routing decisions without a socket: the Router gets a fake clock and a seeded random, and
// the request builder stands in for the upstream. It sees which deployment the Router picked
// (each attempt builds its request first) and either answers for it with a 503, as a failing
// upstream would, or ends the request there (the pick was the decision under test).
import { afterAll, describe, expect, it } from 'vitest';
import { parsePolicies } from '../../src/config/load.js';
import { GatewayError } from '../../src/errors.js';
import { PolicyTable } from '../../src/policy/index.js';
import { Router, type RoutingContext, type Target } from '../../src/routing/index.js';
import { Backends } from '../../src/upstream/backends.js';
import type { UpstreamRequest } from '../../src/upstream/exchange.js';
import { statusFailure } from '../../src/upstream/failures.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { metricValue } from '../helpers/gateway.js';
import { mulberry32 } from '../helpers/random.js';

/** Thrown by the request builder: the Router picked this target and nothing more is asked of it. */
class Picked extends Error {
  constructor(readonly target: Target) {
    super(`picked ${target.route.name} on ${target.backend.name}`);
  }
}

// Backends on a port nothing listens on: no attempt here gets as far as connecting.
const yaml = (body: string, maxRetries: number) => `
backends:
  A: { type: openai, base_url: "http://127.0.0.1:9/v1" }
  B: { type: openai, base_url: "http://127.0.0.1:9/v1" }
  C: { type: openai, base_url: "http://127.0.0.1:9/v1" }
retries: { max: ${maxRetries}, backoff_ms: 0, max_backoff_ms: 0 }
${body}`;

const opened: Backends[] = [];
afterAll(async () => {
  await Promise.all(opened.map((b) => b.close()));
});

async function router(body: string, random: () => number = Math.random, maxRetries = 0) {
  const policies = parsePolicies(yaml(body, maxRetries), 'test.yaml', {});
  const backends = await Backends.start(policies.backends);
  opened.push(backends);
  const policy = new PolicyTable(policies);
  const metrics = new Metrics({ defaultMetrics: false });
  let now = 1_000_000;
  const r = new Router(policy, backends, metrics, policies, undefined, undefined, { clock: () => now, random });
  /** Backends that answer 503; the others end the request with Picked. */
  const failing = new Set<string>();
  /** "model/backend" of every attempt, in order. */
  const attempts: string[] = [];
  const events: Array<{ name: string; attributes: Record<string, string | number> }> = [];
  /** One request for `model`: the target it ended on (Picked), or the GatewayError it was refused with. */
  const send = async (model: string): Promise<Target | GatewayError> => {
    const ctx: RoutingContext = {
      buildRequest(target): UpstreamRequest {
        attempts.push(`${target.route.name}/${target.backend.name}`);
        if (failing.has(target.backend.name)) throw statusFailure(target.backend.name, 503, {});
        throw new Picked(target);
      },
      onExchange() {},
      clientGone: () => false,
      event: (name, attributes) => events.push({ name, attributes }),
    };
    const e = await r.open(ctx, policy.resolve(model)!).then(
      () => {
        throw new Error('an exchange opened: this test has no upstream');
      },
      (x: unknown) => x,
    );
    if (e instanceof Picked) return e.target;
    if (e instanceof GatewayError) return e;
    throw e;
  };
  const state = (model: string, backend: string) => r.breakers.view().find((c) => c.model === model && c.backend === backend)!.state;
  return {
    r,
    metrics,
    failing,
    attempts,
    events,
    send,
    state,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const backendOf = (x: Target | GatewayError) => (x instanceof GatewayError ? `refused ${x.status}` : x.backend.name);

describe('weighted choice', () => {
  it('splits traffic by weight (3:1) under a seeded random', async () => {
    const s = await router('models: { m: { deployments: [{ backend: A, weight: 3 }, { backend: B, weight: 1 }] } }', mulberry32(42));
    const n = 4000;
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const b = backendOf(await s.send('m'));
      counts[b] = (counts[b] ?? 0) + 1;
    }
    expect(Object.keys(counts).sort()).toEqual(['A', 'B']);
    // Expected 0.75; the bound is about 7 standard deviations of 4000 draws wide.
    expect(counts.A! / n).toBeGreaterThan(0.7);
    expect(counts.A! / n).toBeLessThan(0.8);
  });

  it('maps the random draw onto cumulative weights in order, and never picks a weight of 0', async () => {
    let draw = 0;
    const s = await router(
      'models: { m: { deployments: [{ backend: A, weight: 3 }, { backend: C, weight: 0 }, { backend: B, weight: 1 }] } }',
      () => draw,
    );
    const pickAt = async (d: number) => {
      draw = d;
      return backendOf(await s.send('m'));
    };
    // Total weight 4: [0, 3) is A, [3, 4) is B; C holds no share.
    expect(await pickAt(0)).toBe('A');
    expect(await pickAt(0.74)).toBe('A');
    expect(await pickAt(0.76)).toBe('B');
    expect(await pickAt(0.999)).toBe('B');
    expect(s.attempts).not.toContain('m/C');
  });

  it('a retry prefers a deployment this request has not failed on', async () => {
    // A draw of 0 always lands on the first eligible deployment.
    const s = await router('models: { m: { deployments: [{ backend: A }, { backend: B }] } }', () => 0, 1);
    s.failing.add('A');
    expect(backendOf(await s.send('m'))).toBe('B');
    expect(s.attempts).toEqual(['m/A', 'm/B']);
  });
});

describe('circuit breaker on the fake clock', () => {
  const BREAKER =
    'circuit_breaker: { window_s: 60, min_requests: 4, error_rate: 0.5, cooldown_s: 5, max_cooldown_s: 60, half_open_probes: 1 }';

  it('opens at the threshold, refuses without an attempt while open, and lets one probe through after the cooldown', async () => {
    const s = await router(`${BREAKER}\nmodels: { m: { deployments: [{ backend: A }] } }`);
    s.failing.add('A');
    for (let i = 0; i < 3; i++) {
      expect(backendOf(await s.send('m'))).toBe('refused 503');
      expect(s.state('m', 'A')).toBe('closed'); // below min_requests
    }
    await s.send('m'); // the 4th error: 4 requests, error rate 1 ≥ 0.5
    expect(s.state('m', 'A')).toBe('open');
    expect(s.attempts).toHaveLength(4);

    const refused = await s.send('m');
    expect(refused).toBeInstanceOf(GatewayError);
    expect((refused as GatewayError).code).toBe('service_unavailable');
    expect((refused as GatewayError).message).toContain('m on A: circuit open, next probe in 5.0 s');
    expect(s.attempts).toHaveLength(4); // nothing was sent
    expect(s.events.map((e) => e.name)).toContain('llm_gateway.circuit_open');

    s.advance(4_999);
    await s.send('m');
    expect(s.attempts).toHaveLength(4);
    expect(s.state('m', 'A')).toBe('open');

    s.advance(1);
    s.failing.delete('A');
    expect(backendOf(await s.send('m'))).toBe('A'); // the probe
    expect(s.attempts).toHaveLength(5);
    expect(s.state('m', 'A')).toBe('half_open');
  });

  it('a failed probe opens it again, for a longer cooldown', async () => {
    const s = await router(`${BREAKER}\nmodels: { m: { deployments: [{ backend: A }] } }`);
    s.failing.add('A');
    for (let i = 0; i < 4; i++) await s.send('m');
    s.advance(5_000);
    await s.send('m'); // the probe fails
    expect(s.attempts).toHaveLength(5);
    expect(s.state('m', 'A')).toBe('open');
    s.advance(5_000); // the first cooldown again is not enough now (5 s × 2 openings)
    await s.send('m');
    expect(s.attempts).toHaveLength(5);
    s.advance(5_000);
    await s.send('m');
    expect(s.attempts).toHaveLength(6);
  });
});

describe('fallback order', () => {
  const MODELS = `models:
  m: { deployments: [{ backend: A }], fallbacks: [f1, f2] }
  f1: { deployments: [{ backend: B }] }
  f2: { deployments: [{ backend: C }] }`;

  it('walks [model, ...fallbacks] in the configured order until one serves', async () => {
    const s = await router(MODELS);
    s.failing.add('A');
    s.failing.add('B');
    const t = await s.send('m');
    expect(backendOf(t)).toBe('C');
    expect((t as Target).route.name).toBe('f2');
    expect(s.attempts).toEqual(['m/A', 'f1/B', 'f2/C']);
    const fallbacks = s.events
      .filter((e) => e.name === 'llm_gateway.fallback')
      .map((e) => `${e.attributes['llm_gateway.fallback.from']}>${e.attributes['llm_gateway.fallback.to']}`);
    expect(fallbacks).toEqual(['m>f1', 'f1>f2']);
    const text = await s.metrics.registry.metrics();
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'm', to: 'f1', reason: 'upstream_error' })).toBe(1);
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'f1', to: 'f2', reason: 'upstream_error' })).toBe(1);
  });

  it('stops at the first model that serves', async () => {
    const s = await router(MODELS);
    s.failing.add('A');
    expect(backendOf(await s.send('m'))).toBe('B');
    expect(s.attempts).toEqual(['m/A', 'f1/B']);
  });

  it('passes over a model whose circuit is open without sending to it (reason circuit_open)', async () => {
    const s = await router(MODELS);
    s.r.breakers.force('m', 'A', 'open');
    expect(backendOf(await s.send('m'))).toBe('B');
    expect(s.attempts).toEqual(['f1/B']);
    const text = await s.metrics.registry.metrics();
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'm', to: 'f1', reason: 'circuit_open' })).toBe(1);
  });

  it('names every model and backend tried when nothing serves', async () => {
    const s = await router(MODELS);
    for (const b of ['A', 'B', 'C']) s.failing.add(b);
    const e = await s.send('m');
    expect(e).toBeInstanceOf(GatewayError);
    expect((e as GatewayError).message).toBe(
      "No deployment could serve model 'm'. Tried: m on A: status 503; f1 on B: status 503; f2 on C: status 503.",
    );
  });
});
