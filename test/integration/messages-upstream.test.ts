// Anthropic-shaped upstreams over real sockets (a scripted upstream with known write times),
// the @anthropic-ai/sdk as client: usage from message_start and the cumulative message_delta
// (not from counting events), TTFT bracketed by the upstream's write stamps and the client's
// clock, the upstream's own error event and a cut stream raised by the SDK, upstream 4xx and
// 529 answers in Anthropic's shape, and failover from one Claude model to another when the
// first one's error rate opens its circuit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { startScriptedUpstream, type ScriptedUpstream, type ScriptStep } from '../fixtures/scripted-upstream.js';
import { withGateway, type GatewayFixture, openaiClient, metricValue } from '../helpers/gateway.js';

const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

const START = ev('message_start', {
  type: 'message_start',
  message: {
    id: 'msg_s',
    type: 'message',
    role: 'assistant',
    model: 'claude-x',
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 12, cache_creation_input_tokens: 30, cache_read_input_tokens: 200, output_tokens: 1 },
  },
});
const BLOCK = ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
const PING = ev('ping', { type: 'ping' });
const delta = (text: string) => ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
const STOP_BLOCK = ev('content_block_stop', { type: 'content_block_stop', index: 0 });
const messageDelta = (out: number) =>
  ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: out } });
const STOP = ev('message_stop', { type: 'message_stop' });

const DELTAS = 10;
const GAP_MS = 15;
// Anthropic's count, deliberately not the number of delta events: usage must win over counting.
const OUTPUT = 13;
const WORDS = Array.from({ length: DELTAS }, (_, i) => ` w${i}`);

function timedSteps(): ScriptStep[] {
  return [
    { delayMs: 0, bytes: START },
    { delayMs: 0, bytes: BLOCK + PING },
    ...WORDS.map((w, i) => ({ delayMs: i === 0 ? 40 : GAP_MS, bytes: delta(w) })),
    { delayMs: 5, bytes: PING },
    { delayMs: 0, bytes: STOP_BLOCK + messageDelta(OUTPUT) + STOP },
  ];
}

let up: ScriptedUpstream;
let failing: ScriptedUpstream;
let sim: Simulator;
let gw: GatewayFixture;
let client: Anthropic;

beforeAll(async () => {
  up = await startScriptedUpstream({ steps: timedSteps() });
  failing = await startScriptedUpstream({
    status: 529,
    headers: { 'content-type': 'application/json' },
    steps: [{ delayMs: 0, bytes: JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }) }],
  });
  sim = await startSimulator({ ttftMs: 2, tpotMs: 1, outputTokens: 4 });
  gw = await withGateway(
    `
backends:
  scripted: { type: anthropic, base_url: "${up.baseURL}", api_key: sk-ant-1 }
  busy: { type: anthropic, base_url: "${failing.baseURL}", api_key: sk-ant-2 }
  backup: { type: anthropic, base_url: "${sim.url}", api_key: sk-ant-3 }
  oai: { base_url: "${sim.url}", api_key: sk-oai }
retries: { max: 0, backoff_ms: 1 }
models:
  claude-timed:
    deployments: [{ backend: scripted, model: claude-x }]
    pricing: { input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_per_mtok: 3.75 }
  claude-busy:
    deployments: [{ backend: busy, model: claude-opus }]
  claude-primary:
    deployments: [{ backend: busy, model: claude-opus }]
    fallbacks: [claude-backup]
    circuit_breaker: { window_s: 60, min_requests: 3, error_rate: 0.5, cooldown_s: 60 }
  claude-backup:
    deployments: [{ backend: backup, model: claude-haiku }]
  claude-then-gpt:
    deployments: [{ backend: busy, model: claude-opus }]
    fallbacks: [gpt]
  gpt:
    deployments: [{ backend: oai, model: gpt-x }]
  mixed:
    deployments: [{ backend: backup, model: m-anthropic }, { backend: oai, model: m-openai }]
`,
    { apiKey: 'k' },
  );
  client = gw.anthropic;
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
  await failing?.close();
  await sim?.close();
});

describe('an Anthropic upstream with known write times', () => {
  it('tokens from message_start and message_delta, cost of every part, TTFT bracketed by upstream and client stamps', async () => {
    up.setScript({ steps: timedSteps() });
    const n = up.received.length + 1;
    const t0 = performance.now();
    const { data: stream, response } = await client.messages
      .create({ model: 'claude-timed', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    let text = '';
    let clientFirst: number | undefined;
    for await (const e of stream) {
      if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') {
        clientFirst ??= performance.now();
        text += e.delta.text;
      }
    }
    expect(text).toBe(WORDS.join(''));
    const rec = await up.settled(n);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === response.headers.get('x-request-id'));
    expect(line.tokens).toEqual({ input: 242, output: OUTPUT, cached_input: 200, reasoning: 0, cache_write_input: 30 });
    expect(line.tokens_estimated).toBe(false);
    expect(line.cost_usd).toBeCloseTo((12 * 3 + 200 * 0.3 + 30 * 3.75 + OUTPUT * 15) / 1e6, 8);
    // Same process, same clock: the gateway got the request before the upstream wrote message_start,
    // and stamped the first token after the upstream wrote it and before the client read it.
    const firstDeltaWritten = rec.writeTimes[2]!;
    const ttft = line.ttft_ms as number;
    expect(ttft).toBeGreaterThanOrEqual(firstDeltaWritten - rec.writeTimes[0]! - 1);
    expect(ttft).toBeLessThanOrEqual(clientFirst! - t0);
    // TPOT: (last - first token stamp) / (output - 1), never below the upstream's own spacing of the deltas it timed.
    const upstreamSpan = rec.writeTimes[DELTAS + 1]! - firstDeltaWritten;
    expect(line.tpot_ms as number).toBeGreaterThan(0);
    expect((line.tpot_ms as number) * (OUTPUT - 1)).toBeLessThanOrEqual(performance.now() - t0);
    expect(upstreamSpan).toBeGreaterThan(0);
    expect(line.finish_reason).toBe('end_turn');
  });

  it("the upstream's own error event goes to the client, which raises it; the input already reported is counted", async () => {
    up.setScript({
      steps: [
        { delayMs: 0, bytes: START + BLOCK },
        { delayMs: 5, bytes: delta(' a') },
        { delayMs: 5, bytes: ev('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }) },
      ],
    });
    const stream = client.messages.stream({ model: 'claude-timed', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    const e = await stream.finalMessage().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.APIError);
    expect((e as APIError).error).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
    const line = await gw.waitForLog(
      (l) =>
        l.msg === 'request' &&
        (l.error as { code?: string } | undefined)?.code === 'upstream_stream_error' &&
        (l.tokens as { cached_input: number }).cached_input === 200,
    );
    expect((line.tokens as { input: number }).input).toBe(242);
  });

  it('a stream cut before message_stop: the gateway ends it with an api_error event the SDK raises', async () => {
    up.setScript({
      steps: [
        { delayMs: 0, bytes: START + BLOCK },
        { delayMs: 5, bytes: delta(' a') },
      ],
      finish: 'destroy',
    });
    const e = await client.messages
      .stream({ model: 'claude-timed', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage()
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.APIError);
    expect((e as APIError).error).toMatchObject({ type: 'error', error: { type: 'api_error' } });
  });

  it("an upstream 400 reaches the client as a BadRequestError with the upstream's message", async () => {
    up.setScript({
      status: 400,
      headers: { 'content-type': 'application/json' },
      steps: [
        {
          delayMs: 0,
          bytes: JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'messages: roles must alternate' } }),
        },
      ],
    });
    const e = await client.messages
      .create({ model: 'claude-timed', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
    expect((e as APIError).error).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'messages: roles must alternate' },
    });
  });

  it('an upstream 529 (overloaded) is answered 529 overloaded_error', async () => {
    const e = await client.messages
      .create({ model: 'claude-busy', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.OverloadedError);
    expect((e as APIError).status).toBe(529);
    expect((e as APIError).error).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
  });
});

describe('failover from one Claude model to another', () => {
  it('errors fall back to the backup model; once the error rate opens the circuit, the primary is not called at all', async () => {
    const before = failing.received.length;
    const REQUESTS = 8;
    for (let i = 0; i < REQUESTS; i++) {
      const { data, response } = await client.messages
        .create({ model: 'claude-primary', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] })
        .withResponse();
      expect(data.model).toBe('claude-haiku');
      expect(response.headers.get('x-gateway-model')).toBe('claude-backup');
    }
    // min_requests 3, all failing: the circuit opened after the third; the rest never reached it.
    expect(failing.received.length - before).toBe(3);
    const text = await gw.metricsText();
    expect(
      metricValue(text, 'llm_gateway_fallbacks_total', { from: 'claude-primary', to: 'claude-backup', reason: 'upstream_error' }),
    ).toBe(3);
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'claude-primary', to: 'claude-backup', reason: 'circuit_open' })).toBe(
      REQUESTS - 3,
    );
    expect(metricValue(text, 'llm_gateway_circuit_state', { model: 'claude-primary', backend: 'busy' })).toBe(2);
  });
});

describe('routing by API', () => {
  it('a model with deployments on both kinds of backend: messages go only to the anthropic one, chat only to the openai one', async () => {
    const openai = openaiClient(gw, 'k');
    for (let i = 0; i < 6; i++) {
      const m = await client.messages.create({ model: 'mixed', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
      expect(m.model).toBe('m-anthropic');
      const c = await openai.chat.completions.create({ model: 'mixed', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
      expect(c.model).toBe('m-openai');
    }
  });

  it('a fallback with no deployment for the API is passed over: nothing is sent to it', async () => {
    const before = sim.stats.requests;
    const e = await client.messages
      .create({ model: 'claude-then-gpt', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Anthropic.OverloadedError);
    expect(sim.stats.requests).toBe(before);
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'claude-then-gpt', to: 'gpt' })).toBeUndefined();
  });
});
