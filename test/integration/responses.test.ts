// The Responses API through the whole pipeline, with the official openai SDK as the client and
// scripted real-socket upstreams that speak it with known timing: streamed and whole answers
// with a tool call, exact tokens and cost, TTFT bracketed, a dying upstream raised in the SDK,
// bad input refused before any upstream, limits and allow-lists held, and stored-response
// follow-ups sent to the backend that holds the response.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { startScriptedUpstream, type Script, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';
import { streamSteps, wholeResponse, type ResponsesUsage } from '../fixtures/responses-script.js';

const TTFT_MS = 80;
const TPOT_MS = 5;
const WORDS = ['Sunny', ' in', ' Paris', ' today', '.'];
const TEXT = WORDS.join('');
const USAGE: ResponsesUsage = { input: 50, cached: 20, output: 30, reasoning: 10 };
// (50 - 20) * 1 + 20 * 0.5 + 30 * 2 = 100 micro-dollars
const COST = 0.0001;
const TOOLS: OpenAI.Responses.Tool[] = [
  { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: true },
];
const JSON_HEAD = { 'content-type': 'application/json' };

const json = (body: unknown, status = 200): Script => ({
  status,
  headers: JSON_HEAD,
  steps: [{ delayMs: 0, bytes: JSON.stringify(body) }],
});

/** An upstream that creates responses named resp_<name>_<n> and answers follow-ups only for its own. */
function upstreamScript(name: string, override: { next: Script | undefined }) {
  let n = 0;
  return (body: unknown, req: { method: string; url: string }): Script => {
    const b = (body ?? {}) as { stream?: boolean };
    if (req.method === 'POST' && req.url === '/v1/responses') {
      const once = override.next;
      override.next = undefined;
      if (once) return once;
      const id = `resp_${name}_${++n}`;
      if (b.stream) return { steps: streamSteps(id, WORDS, USAGE, TTFT_MS, TPOT_MS) };
      return { headers: JSON_HEAD, steps: [{ delayMs: 0, bytes: wholeResponse(id, TEXT, USAGE) }] };
    }
    if (req.method === 'POST' && req.url === '/v1/responses/input_tokens')
      return json({ object: 'response.input_tokens', input_tokens: 7 });
    const m = /^\/v1\/responses\/(resp_([a-z]+)_\d+)(\/cancel|\/input_items)?(\?.*)?$/.exec(req.url);
    if (m && m[2] === name) {
      const id = m[1]!;
      if (m[3] === '/input_items') {
        return json({
          object: 'list',
          data: [{ id: 'msg_in', type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'hi' }] }],
          first_id: 'msg_in',
          last_id: 'msg_in',
          has_more: false,
        });
      }
      if (req.method === 'DELETE') return json({ id, object: 'response', deleted: true });
      if (m[4]?.includes('stream=true')) return { steps: streamSteps(id, WORDS, USAGE, 1, 1) };
      return { headers: JSON_HEAD, steps: [{ delayMs: 0, bytes: wholeResponse(id, TEXT, USAGE) }] };
    }
    return json({ error: { message: `no response ${req.url} here`, type: 'invalid_request_error', param: null, code: 'not_found' } }, 404);
  };
}

let a: ScriptedUpstream;
let b: ScriptedUpstream;
const overrideA = { next: undefined as Script | undefined };
let gw: TestGateway;
const client = (key = 'k-free') => openaiClient(gw, key);
const forwarded = () => a.received.length + b.received.length;
const PRICING = '{ input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.5 }';

beforeAll(async () => {
  a = await startScriptedUpstream({ steps: [] });
  b = await startScriptedUpstream({ steps: [] });
  a.setScript(upstreamScript('a', overrideA));
  b.setScript(upstreamScript('b', { next: undefined }));
  gw = await startGateway(`
backends:
  a: { type: openai, base_url: "${a.baseURL}" }
  b: { type: openai, base_url: "${b.baseURL}" }
models:
  resp: { deployments: [{ backend: a }], pricing: ${PRICING} }
  both: { deployments: [{ backend: a }, { backend: b }], pricing: ${PRICING} }
  only-b: { deployments: [{ backend: b }], pricing: ${PRICING} }
retries: { max: 0 }
keys:
  - { key: k-free, name: free }
  - { key: k-other, name: other, models: [only-b] }
  - { key: k-rpm, name: rpm1, limits: { rpm: 1 } }
  - { key: k-budget, name: budget, budget: { usd: 0.0001, period: day } }
`);
});

afterAll(async () => {
  await gw?.close();
  await a?.close();
  await b?.close();
});

beforeEach(() => {
  overrideA.next = undefined;
});

const line = (id: string) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === id);

describe('POST /v1/responses', () => {
  it('streamed with a tool call: events pass intact, exact tokens and cost, TTFT bracketed', async () => {
    const before = await gw.metricsText();
    const sent = performance.now();
    const stream = await client().responses.create(
      { model: 'resp', input: 'Weather in Paris?', tools: TOOLS, stream: true },
      { headers: { 'x-request-id': 'rs-1' } },
    );
    let clientFirst: number | undefined;
    let text = '';
    let args = '';
    let final: OpenAI.Responses.Response | undefined;
    for await (const ev of stream) {
      if (ev.type.endsWith('.delta') && clientFirst === undefined) clientFirst = performance.now();
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.function_call_arguments.delta') args += ev.delta;
      if (ev.type === 'response.completed') final = ev.response;
    }
    expect(text).toBe(TEXT);
    expect(args).toBe('{"city":"Paris"}');
    expect(final?.usage?.input_tokens_details.cached_tokens).toBe(20);

    const l = await line('rs-1');
    expect(l).toMatchObject({
      endpoint: 'responses',
      model: 'resp',
      backend: 'a',
      status: 200,
      stream: true,
      finish_reason: 'completed',
      tokens_estimated: false,
    });
    expect(l.tokens).toEqual({ input: 50, output: 30, cached_input: 20, reasoning: 10 });
    expect(l.cost_usd).toBeCloseTo(COST, 10);
    // The first content (the reasoning summary delta) is sent after TTFT_MS; the gateway stamps
    // it before the client can read it.
    const ttft = l.ttft_ms as number;
    expect(ttft).toBeGreaterThanOrEqual(TTFT_MS - 1);
    expect(ttft).toBeLessThanOrEqual(clientFirst! - sent);
    expect(l.tpot_ms).toBeGreaterThan(0);

    const after = await gw.metricsText();
    const delta = (type: string) =>
      (metricValue(after, 'llm_gateway_tokens_total', { model: 'resp', type }) ?? 0) -
      (metricValue(before, 'llm_gateway_tokens_total', { model: 'resp', type }) ?? 0);
    expect([delta('input'), delta('output'), delta('cached_input'), delta('reasoning')]).toEqual([50, 30, 20, 10]);
    const cost =
      (metricValue(after, 'llm_gateway_cost_usd_total', { model: 'resp' }) ?? 0) -
      (metricValue(before, 'llm_gateway_cost_usd_total', { model: 'resp' }) ?? 0);
    expect(cost).toBeCloseTo(COST, 10);
    // The upstream got the client's body with the deployment's model and nothing injected.
    const up = JSON.parse(a.received.at(-1)!.body) as Record<string, unknown>;
    expect(up.model).toBe('resp');
    expect(up.stream_options).toBeUndefined();
  });

  it('not streamed, with a tool call: the SDK reads the answer; tokens and cost exact', async () => {
    const res = await client().responses.create(
      { model: 'resp', input: [{ role: 'user', content: 'Weather in Paris?' }], tools: TOOLS },
      { headers: { 'x-request-id': 'rw-1' } },
    );
    expect(res.output_text).toBe(TEXT);
    const call = res.output.find((o) => o.type === 'function_call');
    expect(call).toMatchObject({ name: 'get_weather', arguments: '{"city":"Paris"}' });
    const l = await line('rw-1');
    expect(l).toMatchObject({ endpoint: 'responses', status: 200, stream: false, finish_reason: 'completed', tokens_estimated: false });
    expect(l.tokens).toEqual({ input: 50, output: 30, cached_input: 20, reasoning: 10 });
    expect(l.cost_usd).toBeCloseTo(COST, 10);
  });

  it('an upstream that dies mid-stream: the SDK raises the Responses error event', async () => {
    const steps = streamSteps('resp_a_dead', WORDS, USAGE, 1, 1).slice(0, 4);
    overrideA.next = { steps, finish: 'destroy' };
    const stream = await client().responses.create({ model: 'resp', input: 'hi', stream: true }, { headers: { 'x-request-id': 'rd-1' } });
    const seen: string[] = [];
    const run = async () => {
      for await (const ev of stream) seen.push(ev.type);
    };
    const err = await run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(String((err as Error).message)).toMatch(/broke/);
    expect(seen).toContain('response.reasoning_summary_text.delta');
    const l = await line('rd-1');
    expect((l.error as { code: string }).code).toBe('upstream_stream_error');
  });

  it('a stream that ends cleanly without response.completed is raised too', async () => {
    overrideA.next = { steps: streamSteps('resp_a_cut', WORDS, USAGE, 1, 1).slice(0, 5) };
    const stream = await client().responses.create({ model: 'resp', input: 'hi', stream: true });
    const run = async () => {
      for await (const ev of stream) void ev;
    };
    await expect(run()).rejects.toBeInstanceOf(OpenAI.APIError);
  });

  it('bad input gets the same OpenAI-shaped errors as chat and is never forwarded', async () => {
    const n = forwarded();
    const raw = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer k-free', 'content-type': 'application/json' },
      body: '{"model":"resp","input":',
    });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    const c = client();
    await expect(c.responses.create({ model: 'nope', input: 'hi' })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    for (const [field, value] of [
      ['input', 5],
      ['stream', 'yes'],
      ['max_output_tokens', -3],
      ['previous_response_id', 7],
      ['tools', 'x'],
    ] as const) {
      const e = await c.responses.create({ model: 'resp', input: 'hi', [field]: value } as never).catch((x: unknown) => x);
      expect(e, field).toBeInstanceOf(OpenAI.BadRequestError);
      expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(field);
    }
    const noModel = await c.responses.create({ input: 'hi' } as never).catch((x: unknown) => x);
    expect(noModel).toBeInstanceOf(OpenAI.BadRequestError);
    expect(forwarded()).toBe(n);
  });

  it('the allow-list, an rpm limit and a spent budget refuse it', async () => {
    const n = forwarded();
    await expect(client('k-other').responses.create({ model: 'resp', input: 'hi' })).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(client('k-nobody').responses.create({ model: 'resp', input: 'hi' })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(forwarded()).toBe(n);

    await client('k-rpm').responses.create({ model: 'resp', input: 'hi' });
    await expect(client('k-rpm').responses.create({ model: 'resp', input: 'hi', stream: true })).rejects.toBeInstanceOf(
      OpenAI.RateLimitError,
    );

    // Worst case of the first (~1 prompt token, 40 output) fits $0.0001; it spends exactly $0.0001.
    await client('k-budget').responses.create(
      { model: 'resp', input: 'hi', max_output_tokens: 40 },
      { headers: { 'x-request-id': 'rb-1' } },
    );
    expect((await line('rb-1')).cost_usd).toBeCloseTo(COST, 10);
    const spent = await client('k-budget')
      .responses.create({ model: 'resp', input: 'hi', max_output_tokens: 40 })
      .catch((e: unknown) => e);
    expect(spent).toBeInstanceOf(OpenAI.RateLimitError);
    expect((spent as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('insufficient_quota');
    expect(forwarded()).toBe(n + 2);
  });

  it('POST /v1/responses/input_tokens is routed by model and costs nothing', async () => {
    const n = b.received.length;
    const r = await fetch(`${gw.baseURL}/responses/input_tokens`, {
      method: 'POST',
      headers: { authorization: 'Bearer k-free', 'content-type': 'application/json', 'x-request-id': 'rit-1' },
      body: JSON.stringify({ model: 'only-b', input: 'count me' }),
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ object: 'response.input_tokens', input_tokens: 7 });
    expect(b.received.length).toBe(n + 1);
    expect(b.received.at(-1)!.url).toBe('/v1/responses/input_tokens');
    const l = await line('rit-1');
    expect(l).toMatchObject({ endpoint: 'responses/input_tokens', backend: 'b', cost_usd: 0 });
  });
});

describe('stored-response follow-ups go to the backend that holds the response', () => {
  const ids: string[] = [];

  beforeAll(async () => {
    // Two deployments with equal weights: 14 creates land on both (all on one: p = 2^-13).
    const c = client();
    for (let i = 0; i < 12; i++) ids.push((await c.responses.create({ model: 'both', input: 'hi' })).id);
    for (let i = 0; i < 2; i++) {
      const s = await c.responses.create({ model: 'both', input: 'hi', stream: true });
      for await (const ev of s) if (ev.type === 'response.created') ids.push(ev.response.id);
    }
  });

  it('the creates were spread over both backends', () => {
    expect(ids.some((id) => id.startsWith('resp_a_'))).toBe(true);
    expect(ids.some((id) => id.startsWith('resp_b_'))).toBe(true);
  });

  it('retrieve, input_items and cancel reach the holder (the other backend would answer 404)', async () => {
    const c = client();
    for (const id of ids) {
      expect((await c.responses.retrieve(id)).id).toBe(id);
      const items = await c.responses.inputItems.list(id, { limit: 5 });
      expect(items.data[0]?.id).toBe('msg_in');
      expect((await c.responses.cancel(id)).id).toBe(id);
    }
    const holder = (id: string) => (id.startsWith('resp_a_') ? a : b);
    const last = ids.at(-1)!;
    expect(holder(last).received.some((r) => r.url === `/v1/responses/${last}/input_items?limit=5`)).toBe(true);
  });

  it('GET ?stream=true replays the stored response from the holder, through the tap, billed nothing', async () => {
    const id = ids.find((x) => x.startsWith('resp_b_'))!;
    const replay = await client().responses.retrieve(id, { stream: true }, { headers: { 'x-request-id': 'replay-1' } });
    let text = '';
    for await (const ev of replay) if (ev.type === 'response.output_text.delta') text += ev.delta;
    expect(text).toBe(TEXT);
    const l = await line('replay-1');
    expect(l).toMatchObject({ endpoint: 'responses/get', backend: 'b', status: 200, stream: true, cost_usd: 0 });
    expect(l.tokens).toBeUndefined();
  });

  it('previous_response_id continues on the holder', async () => {
    const c = client();
    for (const prev of [ids.find((id) => id.startsWith('resp_a_'))!, ids.find((id) => id.startsWith('resp_b_'))!]) {
      for (let i = 0; i < 3; i++) {
        const next = await c.responses.create({ model: 'both', input: 'and tomorrow?', previous_response_id: prev });
        expect(next.id.slice(0, 7)).toBe(prev.slice(0, 7));
      }
    }
    // A model with no deployment on the holder is refused before anything is sent.
    const onA = ids.find((id) => id.startsWith('resp_a_'))!;
    const e = await c.responses.create({ model: 'only-b', input: 'x', previous_response_id: onA }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('previous_response_unreachable');
  });

  it('follow-ups pass auth and the allow-list, and count in rpm', async () => {
    const id = ids[0]!;
    await expect(client('k-other').responses.retrieve(id)).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(client('k-nobody').responses.retrieve(id)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    // k-rpm spent its one request per minute in the test above.
    await expect(client('k-rpm').responses.retrieve(id)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const l = await gw.waitForLog((x) => x.msg === 'request' && x.endpoint === 'responses/get' && x.status === 200);
    expect(l).toMatchObject({ model: 'both', cost_usd: 0 });
  });

  it('an unknown id is 404; a deleted response is forgotten', async () => {
    const c = client();
    const e = await c.responses.retrieve('resp_zz_1').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect((e as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('response_not_found');
    const id = ids[1]!;
    await c.responses.delete(id);
    await expect(c.responses.retrieve(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const bad = await fetch(`${gw.baseURL}/responses/${ids[2]}`, { method: 'PATCH', headers: { authorization: 'Bearer k-free' } });
    expect(bad.status).toBe(405);
  });
});

describe('affinity shared through Redis', () => {
  it('a follow-up on another gateway of the fleet reaches the holder', async () => {
    const prefix = `llmgw-test-${randomUUID()}:`;
    const yaml = `
state: { store: redis, redis_url: "redis://127.0.0.1:6379", redis_prefix: "${prefix}" }
backends:
  a: { type: openai, base_url: "${a.baseURL}" }
  b: { type: openai, base_url: "${b.baseURL}" }
models:
  both: { deployments: [{ backend: a }, { backend: b }] }
`;
    const g1 = await startGateway(yaml);
    const g2 = await startGateway(yaml);
    try {
      const c1 = openaiClient(g1, 'x');
      const c2 = openaiClient(g2, 'x');
      const made: string[] = [];
      for (let i = 0; i < 10; i++) made.push((await c1.responses.create({ model: 'both', input: 'hi' })).id);
      for (const id of made) {
        // The write to Redis is not awaited by the request: allow it a moment.
        let got: string | undefined;
        for (let t = 0; t < 50 && got === undefined; t++) {
          got = await c2.responses.retrieve(id).then(
            (r) => r.id,
            (e: unknown) => (e instanceof OpenAI.NotFoundError ? undefined : Promise.reject(e)),
          );
          if (got === undefined) await new Promise((r) => setTimeout(r, 20));
        }
        expect(got).toBe(id);
      }
    } finally {
      await g1.close();
      await g2.close();
    }
  });
});
