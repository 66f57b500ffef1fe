// llm_gateway_overhead_seconds: the time the gateway itself adds, observed once per request
// served at the first attempt, and its p99 on /admin/stats.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { startScriptedUpstream, chunkEvent, usageEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';

const TOKEN = 'overhead-admin-token';
let gw: TestGateway;
let upstream: ScriptedUpstream;
let calls = 0;
let failNext = false;

beforeAll(async () => {
  upstream = await startScriptedUpstream({ steps: [] });
  upstream.setScript((body) => {
    calls++;
    if (failNext) {
      failNext = false;
      return {
        status: 503,
        headers: { 'content-type': 'application/json' },
        steps: [{ delayMs: 0, bytes: '{"error":{"message":"busy"}}' }],
      };
    }
    const stream = (body as { stream?: boolean }).stream === true;
    // The upstream takes its time before the first byte: none of it may count as overhead.
    return stream
      ? {
          steps: [
            { delayMs: 40, bytes: chunkEvent({ content: 'a' }) },
            { delayMs: 1, bytes: usageEvent(3, 1) },
            { delayMs: 1, bytes: 'data: [DONE]\n\n' },
          ],
        }
      : {
          headers: { 'content-type': 'application/json' },
          steps: [
            {
              delayMs: 40,
              bytes: JSON.stringify({
                id: 'x',
                object: 'chat.completion',
                created: 1,
                model: 'up',
                choices: [{ index: 0, message: { role: 'assistant', content: 'a' }, finish_reason: 'stop' }],
                usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
              }),
            },
          ],
        };
  });
  gw = await startGateway(`
admin_token: ${TOKEN}
backends: { up: { base_url: "${upstream.baseURL}" } }
models: { m: { deployments: [{ backend: up, model: up }] } }
retries: { max: 1, backoff_ms: 1 }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe('llm_gateway_overhead_seconds', () => {
  it('observes requests served at the first attempt, by stream, excluding the upstream time', async () => {
    const client = openaiClient(gw, 'k');
    for (let i = 0; i < 3; i++) {
      const s = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true });
      for await (const _ of s) {
        /* drain */
      }
    }
    for (let i = 0; i < 2; i++) await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    // Served at the second attempt: its wait is the upstream's failure, not overhead.
    failNext = true;
    await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(calls).toBe(7);
    await gw.waitForLog((l) => l.msg === 'request' && l.attempts === 2);

    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_overhead_seconds_count', { model: 'm', stream: 'true' })).toBe(3);
    expect(metricValue(text, 'llm_gateway_overhead_seconds_count', { model: 'm', stream: 'false' })).toBe(2);
    // Overhead is part of each request's duration, and the upstream's 40 ms before its first
    // byte is not in it: the sum stays below the durations minus that wait.
    const overhead = metricValue(text, 'llm_gateway_overhead_seconds_sum')!;
    const durations = gw.logs.filter((l) => l.msg === 'request' && l.attempts === 1).map((l) => (l.duration_ms as number) / 1000);
    expect(durations).toHaveLength(5);
    expect(overhead).toBeGreaterThan(0);
    expect(overhead).toBeLessThan(durations.reduce((a, d) => a + d - 0.04, 0));

    const res = await fetch(`${gw.url}/admin/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const stats = (await res.json()) as {
      overhead: { count: number; p99: number | null };
      models: Array<{ model: string; overhead: { count: number; p99: number | null } }>;
    };
    expect(stats.overhead.count).toBe(5);
    expect(stats.overhead.p99).toBeGreaterThan(0);
    expect(stats.models.find((m) => m.model === 'm')?.overhead.count).toBe(5);
  });
});
