// Measurement accuracy: TTFT and TPOT recorded by the gateway against an upstream whose
// timing is known, token counts from the tokenizer when the upstream sends no usage, and a
// /metrics page that promtool accepts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture } from '../helpers/gateway.js';
import { startScriptedUpstream, chunkEvent, usageEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';

const run = promisify(execFile);
const TTFT_MS = 120;
const TPOT_MS = 15;
const TOKENS = 21;

let scripted: ScriptedUpstream;
let noUsage: Simulator;
let gw: GatewayFixture;
let client: OpenAI;

beforeAll(async () => {
  const steps = [
    { delayMs: 0, bytes: chunkEvent({ role: 'assistant', content: '' }) },
    { delayMs: TTFT_MS, bytes: chunkEvent({ content: 'tok0' }) },
  ];
  for (let i = 1; i < TOKENS; i++) steps.push({ delayMs: TPOT_MS, bytes: chunkEvent({ content: ` tok${i}` }) });
  steps.push({ delayMs: 0, bytes: chunkEvent({}, {}, 'stop') + usageEvent(5, TOKENS) + 'data: [DONE]\n\n' });
  scripted = await startScriptedUpstream({ steps });
  noUsage = await startSimulator({ ttftMs: 1, tpotMs: 1, outputTokens: 40, omitUsage: true });
  gw = await withGateway(
    `
backends:
  timed: { type: openai, base_url: "${scripted.baseURL}" }
  nousage: { type: openai, base_url: "${noUsage.url}" }
models:
  timed: { deployments: [{ backend: timed }] }
  nousage:
    deployments: [{ backend: nousage }]
    pricing: { input_per_mtok: 1, output_per_mtok: 1 }
`,
    { apiKey: 'k' },
  );
  client = gw.openai;
});

afterAll(async () => {
  await gw?.close();
  await scripted?.close();
  await noUsage?.close();
});

describe('TTFT and TPOT', () => {
  it('match the upstream timing', async () => {
    const sent = performance.now();
    const stream = await client.chat.completions.create(
      { model: 'timed', messages: [{ role: 'user', content: 'go' }], stream: true },
      { headers: { 'x-request-id': 'timed-1' } },
    );
    let clientFirst: number | undefined;
    for await (const c of stream) if (c.choices[0]?.delta?.content && clientFirst === undefined) clientFirst = performance.now();
    const clientTtft = clientFirst! - sent;
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'timed-1');
    const ttft = line.ttft_ms as number;
    const tpot = line.tpot_ms as number;

    // TTFT is bracketed exactly: the gateway cannot see a token before the upstream waited
    // TTFT_MS (timers never fire early), and it stamps the token before the client can read
    // it (the client's clock started earlier and stops later, on the same clock).
    expect(ttft).toBeGreaterThanOrEqual(TTFT_MS - 1);
    expect(ttft).toBeLessThanOrEqual(clientTtft);

    // TPOT: the truth is what the upstream actually did, stamped at each write on the same
    // clock: (last write - first content write) / (tokens - 1). Timer jitter is in the truth,
    // not an error; what is left is the gateway's own read delay on the first and last token,
    // divided by 20 intervals. 1 ms of tolerance allows a 20 ms scheduling hiccup.
    const w = scripted.received[0]!.writeTimes;
    const truth = (w[TOKENS]! - w[1]!) / (TOKENS - 1);
    expect(Math.abs(tpot - truth)).toBeLessThan(1);
    expect(tpot).toBeGreaterThanOrEqual(TPOT_MS - 1);
  });
});

describe('tokens when the upstream sends no usage', () => {
  it('are counted with the tokenizer and flagged as estimated', async () => {
    const stream = await client.chat.completions.create(
      { model: 'nousage', messages: [{ role: 'user', content: 'estimate me' }], stream: true },
      { headers: { 'x-request-id': 'est-1' } },
    );
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'est-1');
    expect(line.tokens_estimated).toBe(true);
    // The simulator's words are one token each in o200k/cl100k, so the estimate is exact
    // here; on real text a tokenizer of another model family may differ by a few percent.
    expect((line.tokens as { output: number }).output).toBe(40);
    expect((line.tokens as { input: number }).input).toBeGreaterThan(0);
  });

  it('a backend that stops sending usage is still counted (one token per content event), then by tokenizer again', async () => {
    const drain = async (id: string) => {
      const s = await client.chat.completions.create(
        { model: 'nousage', messages: [{ role: 'user', content: 'x' }], stream: true },
        { headers: { 'x-request-id': id } },
      );
      for await (const _ of s) {
        /* drain */
      }
      return gw.waitForLog((l) => l.msg === 'request' && l.request_id === id);
    };
    noUsage.configure({ omitUsage: false });
    expect((await drain('usage-on')).tokens_estimated).toBe(false);
    noUsage.configure({ omitUsage: true });
    const a = await drain('usage-gone');
    expect(a.tokens_estimated).toBe(true);
    expect((a.tokens as { output: number }).output).toBe(40);
    const b = await drain('usage-gone-2');
    expect(b.tokens_estimated).toBe(true);
    expect((b.tokens as { output: number }).output).toBe(40);
  });

  it('non-streamed responses without usage are estimated too', async () => {
    const r = await client.chat.completions.create(
      { model: 'nousage', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'x-request-id': 'est-2' } },
    );
    expect(r.usage).toBeUndefined();
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === 'est-2');
    expect(line.tokens_estimated).toBe(true);
    expect((line.tokens as { output: number }).output).toBe(40);
  });
});

describe('/metrics', () => {
  let promtool = false;
  beforeAll(async () => {
    promtool = await run('promtool', ['--version']).then(
      () => true,
      () => false,
    );
    if (!promtool)
      console.warn(
        '\n*** promtool is missing: SKIPPING `promtool check metrics`. Install it: apt-get install -y --no-install-recommends prometheus ***\n',
      );
  });

  it('passes promtool check metrics', async (ctx) => {
    if (!promtool) ctx.skip();
    const text = await gw.metricsText();
    expect(text).toContain('llm_gateway_time_to_first_token_seconds_bucket');
    const dir = await mkdtemp(join(tmpdir(), 'gw-metrics-'));
    const file = join(dir, 'metrics.txt');
    await writeFile(file, text);
    try {
      const r = await run('sh', ['-c', `promtool check metrics < "${file}"`]);
      expect(r.stderr.trim()).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
