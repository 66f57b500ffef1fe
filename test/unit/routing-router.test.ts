// Router construction: breaker state survives a policy reload for deployments that still
// exist (a new Router takes the registry over), and the gauge follows.
import { afterAll, describe, expect, it } from 'vitest';
import { parsePolicies } from '../../src/config/load.js';
import { PolicyTable } from '../../src/policy/index.js';
import { Backends } from '../../src/upstream/backends.js';
import { Router } from '../../src/routing/index.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { metricValue } from '../helpers/gateway.js';

const yaml = (models: string) => `
backends:
  A: { type: openai, base_url: "http://127.0.0.1:9/v1" }
  B: { type: openai, base_url: "http://127.0.0.1:9/v1" }
models:
${models}
`;

describe('Router and a policy reload', () => {
  const opened: Backends[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((b) => b.close()));
  });

  async function build(models: string, metrics: Metrics, previous?: Router) {
    const policies = parsePolicies(yaml(models), 'test.yaml', {});
    const backends = await Backends.start(policies.backends);
    opened.push(backends);
    return new Router(new PolicyTable(policies), backends, metrics, policies, undefined, previous?.breakers);
  }

  it('keeps breaker state of deployments that still exist, starts new ones closed, drops removed ones', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const r1 = await build(
      `  m: { deployments: [{ backend: A }, { backend: B, model: old }] }\n  gone: { deployments: [{ backend: B }] }`,
      metrics,
    );
    r1.breakers.force('m', 'A', 'open');
    expect(metricValue(await metrics.registry.metrics(), 'llm_gateway_circuit_state', { model: 'm', backend: 'A' })).toBe(2);

    const r2 = await build(
      `  m: { deployments: [{ backend: A }, { backend: B, model: new }], circuit_breaker: { cooldown_s: 7 } }`,
      metrics,
      r1,
    );
    expect(r2.breakers).toBe(r1.breakers);
    const view = r2.breakers.view().map((c) => `${c.model}/${c.backend}/${c.upstream_model}:${c.state}`);
    expect(view.sort()).toEqual(['m/A/m:open', 'm/B/new:closed']);
    const text = await metrics.registry.metrics();
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'm', backend: 'A' })).toBe(2);
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'gone', backend: 'B' })).toBeUndefined();
    expect(r2.breakers.get({ model: 'm', backend: 'A', upstreamModel: 'm' })!.config.cooldown_s).toBe(7);
  });
});
