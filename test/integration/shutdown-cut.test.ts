// SIGTERM past server.drain_timeout_ms: a stream still running is cut by the gateway. It must
// end with an error event the client can read (not a bare reset), be recorded as the
// gateway's own cut (503 shutting_down, not 499 "client left"), and have its spend in the
// state file's last flush (settled before the admission store closes).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { openaiClient, startGateway, type TestGateway } from '../helpers/gateway.js';
import { chunkEvent, startScriptedUpstream, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';

const dir = mkdtempSync(join(tmpdir(), 'shutdown-cut-'));
const stateFile = join(dir, 'spend.json');
let upstream: ScriptedUpstream;
let gw: TestGateway;

beforeAll(async () => {
  // Two content events, then nothing: the stream outlives any drain.
  upstream = await startScriptedUpstream({
    steps: [
      { delayMs: 0, bytes: chunkEvent({ role: 'assistant', content: 'one two three' }) },
      { delayMs: 10, bytes: chunkEvent({ content: ' four five six' }) },
    ],
    finish: 'hang',
  });
  gw = await startGateway(`
state: { store: memory, file: "${stateFile}", flush_interval_ms: 60000 }
backends:
  up: { type: openai, base_url: "${upstream.baseURL}", idle_timeout_ms: 60000 }
models:
  m:
    deployments: [{ backend: up }]
    pricing: { input_per_mtok: 1000, output_per_mtok: 1000 }
keys:
  - { key: k-cut, name: cut, budget: { usd: 100, period: month } }
`);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('shutdown past the drain timeout', () => {
  it('a cut stream gets a final shutting_down event, is logged as 503 (not 499), and its spend is in the last state flush', async () => {
    const client = openaiClient(gw, 'k-cut');
    const stream = await client.chat.completions.create({
      model: 'm',
      stream: true,
      messages: [{ role: 'user', content: 'tell me a long story' }],
    });
    let text = '';
    let closing: Promise<void> | undefined;
    const err = await (async () => {
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? '';
        // Both events are in: stop the gateway with a short drain, the stream is still open.
        if (text.includes('six')) closing ??= gw.gw.close(100);
      }
    })().catch((e: unknown) => e);
    await closing;
    expect(text).toBe('one two three four five six');
    // The SDK raises the final error event: the client knows the answer is cut, and why.
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toMatch(/shutting down/);

    const line = gw.logs.find((l) => l.msg === 'request');
    expect(line).toMatchObject({ status: 503, error: { code: 'shutting_down' } });
    const cost = line!.cost_usd as number;
    expect(cost).toBeGreaterThan(0);

    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { budgets: Record<string, { spent_nano: number }> };
    expect(saved.budgets['key:cut']!.spent_nano).toBe(Math.round(cost * 1e9));
  });
});
