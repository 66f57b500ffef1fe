// Issue [3]: traffic is split by deployment weight. 3:1 over n = 2000 requests: the share of
// the weight-3 deployment is binomial with p = 0.75, σ = √(p(1−p)/n) ≈ 0.97 points, so the
// ±4 point tolerance is 4.1σ (a false failure about once in 30,000 runs) while still far
// from 50/50 or 2:1 (66.7%).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { metricValue, withGateway, type GatewayFixture } from '../helpers/gateway.js';

describe('failover: weighted split between deployments', () => {
  let C: Simulator;
  let D: Simulator;
  let gw: GatewayFixture;

  beforeAll(async () => {
    C = await startSimulator({ ttftMs: 0, tpotMs: 0, outputTokens: 2 });
    D = await startSimulator({ ttftMs: 0, tpotMs: 0, outputTokens: 2 });
    gw = await withGateway(
      `
backends:
  C: { type: openai, base_url: "${C.url}" }
  D: { type: openai, base_url: "${D.url}" }
models:
  split:
    deployments: [{ backend: C, model: c-model, weight: 3 }, { backend: D, model: d-model, weight: 1 }]
`,
      { apiKey: 'x' },
    );
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([C?.close(), D?.close()]);
  });

  it('3:1 weights give 75/25 within ±4 points over 2000 requests', { timeout: 120_000 }, async () => {
    const client = gw.openai;
    const n = 2000;
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < n) {
          next++;
          const r = await client.chat.completions.create({ model: 'split', messages: [{ role: 'user', content: 'hi' }] });
          expect(r.choices[0]?.message.content).toBeTruthy();
        }
      }),
    );
    expect(C.stats.requests + D.stats.requests).toBe(n);
    const share = C.stats.requests / n;
    expect(share).toBeGreaterThan(0.71);
    expect(share).toBeLessThan(0.79);
    // The upstream model name is each deployment's own.
    expect((C.stats.lastRequest?.body as { model: string }).model).toBe('c-model');
    expect((D.stats.lastRequest?.body as { model: string }).model).toBe('d-model');
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_requests_total', { model: 'split', backend: 'C', status: '200' })).toBe(C.stats.requests);
    expect(metricValue(text, 'llm_gateway_requests_total', { model: 'split', backend: 'D', status: '200' })).toBe(D.stats.requests);
  });

  it('only deployments whose breaker admits traffic share it', { timeout: 120_000 }, async () => {
    const client = gw.openai;
    gw.gw.stages().router.breakers.force('split', 'C', 'open');
    C.resetStats();
    D.resetStats();
    for (let i = 0; i < 50; i++) await client.chat.completions.create({ model: 'split', messages: [{ role: 'user', content: 'hi' }] });
    expect([C.stats.requests, D.stats.requests]).toEqual([0, 50]);
    gw.gw.stages().router.breakers.force('split', 'C', 'closed');
  });
});
