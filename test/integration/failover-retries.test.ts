// Issue [3]: retries before the first byte (invisible to the client), retry-after, never a
// retry after the first byte or after the client left, client 4xx never opening a breaker,
// context-length fallback, the deadline, and the 503 that names what was tried. Every test
// counts the attempts the upstream saw (simulator stats) and checks the official SDK gets a
// whole stream or a clean APIError.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { withGateway, type GatewayFixture, metricValue, type TestGateway } from '../helpers/gateway.js';

const messages = [{ role: 'user' as const, content: 'hi' }];
const SIM = { ttftMs: 2, tpotMs: 2, outputTokens: 6 };
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads a stream to its end; returns the text, or throws what the SDK threw. */
async function readStream(client: OpenAI, model: string, opts: { signal?: AbortSignal } = {}) {
  const { data, response } = await client.chat.completions.create({ model, messages, stream: true }, opts).withResponse();
  let text = '';
  let finish: string | null | undefined;
  for await (const chunk of data) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish ??= chunk.choices[0]?.finish_reason;
  }
  return { text, finish, servedBy: response.headers.get('x-gateway-model') };
}

/** The rejection of a promise that must reject. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

function circuit(gw: TestGateway, model: string, backend: string) {
  return gw.gw
    .stages()
    .router.breakers.view()
    .find((c) => c.model === model && c.backend === backend)!;
}

describe('failover: retries, fallbacks and clean errors', () => {
  const sims: Record<'R' | 'E' | 'F' | 'S' | 'Sm' | 'L', Simulator> = {} as never;
  let gw: GatewayFixture;
  let client: OpenAI;

  beforeAll(async () => {
    for (const name of ['R', 'E', 'F', 'S', 'Sm', 'L'] as const) sims[name] = await startSimulator(SIM);
    const b = (n: keyof typeof sims) => `  ${n}: { type: openai, base_url: "${sims[n].url}" }`;
    gw = await withGateway(
      `
admin_token: admin-secret
backends:
${(['R', 'E', 'F', 'S', 'Sm', 'L'] as const).map(b).join('\n')}
models:
  flaky:
    deployments: [{ backend: R }]
    circuit_breaker: { min_requests: 1000 }
  pair:
    deployments: [{ backend: E }, { backend: F }]
    circuit_breaker: { min_requests: 1000 }
  strict:
    deployments: [{ backend: S }]
  small:
    deployments: [{ backend: Sm }]
    context_window_fallbacks: [large]
  large:
    deployments: [{ backend: L }]
    pricing: { input_per_mtok: 5, output_per_mtok: 15 }
circuit_breaker: { window_s: 10, min_requests: 5, error_rate: 0.5, cooldown_s: 30, half_open_probes: 1 }
retries: { max: 2, backoff_ms: 10, max_backoff_ms: 50, max_retry_after_ms: 3000, deadline_ms: 20000 }
`,
      { apiKey: 'x' },
    );
    client = gw.openai;
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all(Object.values(sims).map((s) => s.close()));
  });

  beforeEach(() => {
    for (const s of Object.values(sims)) {
      s.configure({ fault: null });
      s.resetStats();
    }
  });

  it('an upstream that fails once then succeeds is invisible to the client (whole and streamed)', async () => {
    const { R } = sims;
    R.configure({ fault: { kind: 'fail_times', times: 1, status: 500 } });
    const { data, response } = await client.chat.completions.create({ model: 'flaky', messages }).withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get('x-gateway-model')).toBe('flaky');
    expect(R.stats.requests).toBe(2);

    R.configure({ fault: { kind: 'fail_times', times: 2, status: 502 } });
    const s = await readStream(client, 'flaky');
    expect(s.text.length).toBeGreaterThan(0);
    expect(s.finish).toBe('stop');
    expect(R.stats.requests).toBe(2 + 3);
    const log = await gw.waitForLog((l) => l.msg === 'request' && l.model === 'flaky' && l.stream === true && l.status === 200);
    expect(log.attempts).toBe(3);
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_retries_total', { model: 'flaky', backend: 'R', reason: 'status_5xx' })).toBe(3);
  });

  it('honours retry-after up to max_retry_after_ms; beyond it, no retry and a 503 passing retry-after on', async () => {
    const { R } = sims;
    R.configure({ fault: { kind: 'fail_times', times: 1, status: 429, retryAfterS: 1 } });
    let t0 = performance.now();
    const r = await client.chat.completions.create({ model: 'flaky', messages });
    expect(r.choices[0]?.message.content).toBeTruthy();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1000); // the retry waited the upstream's 1 s
    expect(R.stats.requests).toBe(2);

    R.resetStats();
    R.configure({ fault: { kind: 'fail_times', times: 1, status: 429, retryAfterS: 30 } });
    t0 = performance.now();
    const err = await rejection(client.chat.completions.create({ model: 'flaky', messages }));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(503);
    expect(e.message).toContain('flaky on R: status 429');
    expect(e.headers?.get('retry-after')).toBe('30');
    expect(R.stats.requests).toBe(1);
  });

  it('never retries after the first byte: a stream dying mid-way ends with an error event, 1 attempt', async () => {
    const { R } = sims;
    R.configure({ fault: { kind: 'die_mid_stream', afterChunks: 2 } });
    let chunks = 0;
    const err = await rejection(
      (async () => {
        const stream = await client.chat.completions.create({ model: 'flaky', messages, stream: true });
        for await (const _ of stream) chunks++;
      })(),
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toContain('broke');
    expect(chunks).toBeGreaterThan(0);
    expect(R.stats.requests).toBe(1);

    // Whole (non-streamed) body cut in half: the gateway holds whole bodies until they end,
    // so the client gets a clean OpenAI-shaped 502, not a truncated object; still 1 attempt.
    const err2 = await rejection(client.chat.completions.create({ model: 'flaky', messages }));
    expect(err2).toBeInstanceOf(OpenAI.APIError);
    expect((err2 as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect((err2 as Error).message).toContain('broke');
    expect(R.stats.requests).toBe(2);

    await pause(50); // report() runs right after forwarding ends
    const c = circuit(gw, 'flaky', 'R');
    expect(c.local_errors).toBe(2); // counted against the deployment, as failures seen locally
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_upstream_errors_total', { backend: 'R', reason: 'mid_stream' })).toBe(2);
  });

  it('never retries a request whose client left (upstream hangs; or during a retry-after wait)', async () => {
    const { R } = sims;
    R.configure({ fault: { kind: 'hang' } });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const err = await rejection(readStream(client, 'flaky', { signal: ac.signal }));
    expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    await gw.waitForLog((l) => l.msg === 'request' && l.model === 'flaky' && l.status === 499);
    await pause(150); // > max_backoff_ms: a retry would have happened by now
    expect(R.stats.requests).toBe(1);
    expect(R.stats.aborted).toBe(1); // the gateway hung up on the upstream too

    R.resetStats();
    R.configure({ fault: { kind: 'fail_times', times: 1, status: 429, retryAfterS: 1 } });
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 200);
    const n499 = gw.logs.filter((l) => l.msg === 'request' && l.status === 499).length;
    expect(await rejection(client.chat.completions.create({ model: 'flaky', messages }, { signal: ac2.signal }))).toBeInstanceOf(
      OpenAI.APIUserAbortError,
    );
    await pause(1100); // past the retry-after
    expect(R.stats.requests).toBe(1);
    expect(gw.logs.filter((l) => l.msg === 'request' && l.status === 499).length).toBe(n499 + 1);
    expect(circuit(gw, 'flaky', 'R').status_errors).toBeGreaterThan(0); // the 429 counted; the abort did not add a local error
  });

  it('retries on a different healthy deployment of the same model', async () => {
    const { E, F } = sims;
    E.configure({ fault: { kind: 'status', status: 500 } });
    for (let i = 0; i < 40; i++) {
      const r = await client.chat.completions.create({ model: 'pair', messages });
      expect(r.choices[0]?.message.content).toBeTruthy();
    }
    // Each request that hit E first went to F next (not E again, which would fail twice and then F).
    expect(F.stats.requests).toBe(40);
    expect(E.stats.requests).toBeGreaterThan(5);
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_retries_total', { model: 'pair', backend: 'E', reason: 'status_5xx' })).toBe(E.stats.requests);
  });

  it('client 4xx errors never open a breaker; the same count of 5xx does', async () => {
    const { S } = sims;
    S.configure({ fault: { kind: 'status', status: 400 } });
    for (let i = 0; i < 30; i++) {
      const err = await rejection(client.chat.completions.create({ model: 'strict', messages }));
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    }
    expect(S.stats.requests).toBe(30); // no retries either
    expect(circuit(gw, 'strict', 'S')).toMatchObject({ state: 'closed', requests: 0 });
    expect(metricValue(await gw.metricsText(), 'llm_gateway_circuit_state', { model: 'strict', backend: 'S' })).toBe(0);

    S.configure({ fault: { kind: 'status', status: 500 } });
    for (let i = 0; i < 4; i++) {
      const err = await rejection(readStream(client, 'strict'));
      expect(err).toBeInstanceOf(OpenAI.APIError);
      // 502 while S is tried and answers 500; 503 once its breaker is open.
      expect([502, 503]).toContain((err as InstanceType<typeof OpenAI.APIError>).status);
    }
    // Opened after min_requests = 5 errors (2 requests of 3 attempts); then nothing reached S.
    expect(S.stats.requests - 30).toBe(5);
    expect(circuit(gw, 'strict', 'S').state).toBe('open');
    const err = (await rejection(client.chat.completions.create({ model: 'strict', messages }))) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(503);
    expect(err.code).toBe('service_unavailable');
    expect(err.message).toMatch(/strict on S: circuit open, next probe in \d+\.\d s/);
    gw.gw.stages().router.breakers.force('strict', 'S', 'closed');
  });

  it('a context-length error moves to the context fallback, charged at its price', async () => {
    const { Sm, L } = sims;
    Sm.configure({ fault: { kind: 'context_length' } });
    const { data, response } = await client.chat.completions.create({ model: 'small', messages }).withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get('x-gateway-model')).toBe('large');
    expect([Sm.stats.requests, L.stats.requests]).toEqual([1, 1]);
    const log = await gw.waitForLog((l) => l.msg === 'request' && l.model === 'small');
    expect(log).toMatchObject({ served_model: 'large', backend: 'L', status: 200 });
    expect(log.cost_usd as number).toBeGreaterThan(0); // small is free, large is not
    const text = await gw.metricsText();
    expect(metricValue(text, 'llm_gateway_fallbacks_total', { from: 'small', to: 'large', reason: 'context_length' })).toBe(1);
    expect(circuit(gw, 'small', 'Sm').requests).toBe(0);

    // No larger model left: the client gets the upstream's own 400.
    L.configure({ fault: { kind: 'context_length' } });
    const err = (await rejection(readStream(client, 'small'))) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.code).toBe('context_length_exceeded');
  });

  it('when nothing can serve: an error naming what was tried, with the last cause as status (whole and streamed)', async () => {
    const { R } = sims;
    R.configure({ fault: { kind: 'status', status: 500 } });
    const e1 = (await rejection(client.chat.completions.create({ model: 'flaky', messages }))) as InstanceType<typeof OpenAI.APIError>;
    expect(e1).toBeInstanceOf(OpenAI.InternalServerError);
    expect(e1).toMatchObject({ status: 502, code: 'upstream_500' });
    expect(e1.message).toContain("No deployment could serve model 'flaky'. Tried: flaky on R: status 500 ×3.");
    expect(R.stats.requests).toBe(3);
    const e2 = (await rejection(readStream(client, 'flaky'))) as InstanceType<typeof OpenAI.APIError>;
    expect(e2.status).toBe(502);
    expect(R.stats.requests).toBe(6);
  });
});

describe('failover: deadline and per-attempt timeout', () => {
  let H: Simulator;
  let T: Simulator;
  let gw: GatewayFixture;
  let client: OpenAI;

  beforeAll(async () => {
    H = await startSimulator(SIM);
    T = await startSimulator(SIM);
    gw = await withGateway(
      `
backends:
  H: { type: openai, base_url: "${H.url}" }
  T: { type: openai, base_url: "${T.url}", timeout_ms: 300 }
models:
  hangs: { deployments: [{ backend: H }] }
  slow: { deployments: [{ backend: T }] }
retries: { max: 1, backoff_ms: 10, max_backoff_ms: 20, deadline_ms: 3000 }
`,
      { apiKey: 'x' },
    );
    client = gw.openai;
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all([H?.close(), T?.close()]);
  });

  it('gives up at deadline_ms with a 504, without blaming the deployment', async () => {
    H.configure({ fault: { kind: 'hang' } });
    const t0 = performance.now();
    const err = (await rejection(readStream(client, 'hangs'))) as InstanceType<typeof OpenAI.APIError>;
    const elapsed = performance.now() - t0;
    expect(err.status).toBe(504);
    expect(err.message).toContain('3000 ms deadline');
    expect(elapsed).toBeGreaterThanOrEqual(2990);
    expect(elapsed).toBeLessThan(6000);
    expect(H.stats.requests).toBe(1);
    await pause(20);
    expect(H.stats.aborted).toBe(1);
    expect(
      gw.gw
        .stages()
        .router.breakers.view()
        .find((c) => c.backend === 'H'),
    ).toMatchObject({ requests: 0, state: 'closed' });
  });

  // undici checks headersTimeout on a ~1 s timer wheel, so each attempt takes ~1 s here, not 300 ms.
  it('a per-attempt headers timeout is a local error, retried, and counted apart from status errors', async () => {
    T.configure({ fault: { kind: 'hang' } });
    const err = (await rejection(client.chat.completions.create({ model: 'slow', messages }))) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toMatchObject({ status: 504, code: 'upstream_timeout' });
    expect(err.message).toContain('slow on T: headers_timeout ×2');
    expect(T.stats.requests).toBe(2);
    expect(
      gw.gw
        .stages()
        .router.breakers.view()
        .find((c) => c.backend === 'T'),
    ).toMatchObject({ requests: 2, local_errors: 2, status_errors: 0 });
    expect(metricValue(await gw.metricsText(), 'llm_gateway_upstream_errors_total', { backend: 'T', reason: 'headers_timeout' })).toBe(2);
  });
});
