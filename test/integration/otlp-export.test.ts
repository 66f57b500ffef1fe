// The gateway's own traces, as a collector receives them: OTLP/HTTP to a real receiver that
// decodes protobuf and JSON. The client's W3C trace is continued, the upstream is handed the
// gateway's span as parent, the log line names the trace, the GenAI attributes are exact, and
// an unreachable collector costs requests nothing (its spans are dropped and counted).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Socket } from 'node:net';
import { openaiClient, metricValue, startGateway, type TestGateway } from '../helpers/gateway.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../fixtures/otlp-receiver.js';
import { startScriptedUpstream, chunkEvent, usageEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const PROMPT = 'tell me a secret about zebras';
const COMPLETION_WORDS = ['stripes', 'are', 'unique'];

const STREAM_SCRIPT = {
  steps: [
    ...COMPLETION_WORDS.map((w) => ({ delayMs: 1, bytes: chunkEvent({ content: w + ' ' }) })),
    { delayMs: 1, bytes: chunkEvent({}, {}, 'stop') },
    { delayMs: 1, bytes: usageEvent(17, 3, 5, 2) },
    { delayMs: 1, bytes: 'data: [DONE]\n\n' },
  ],
};

const WHOLE_BODY = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1700000000,
  model: 'up-model',
  choices: [{ index: 0, message: { role: 'assistant', content: COMPLETION_WORDS.join(' ') }, finish_reason: 'length' }],
  usage: { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 },
});

function policy(upstream: ScriptedUpstream, telemetry = ''): string {
  return `
backends: { up: { base_url: "${upstream.baseURL}" } }
models: { traced: { deployments: [{ backend: up, model: up-model }] } }
retries: { max: 1, backoff_ms: 1 }
${telemetry}
`;
}

/** Every string an attribute or event carries: none may hold prompt or completion text. */
function strings(s: ReceivedSpan): string[] {
  const all = [
    s.name,
    s.status.message,
    ...Object.values(s.attributes),
    ...s.events.flatMap((e) => [e.name, ...Object.values(e.attributes)]),
  ];
  return all.flat().filter((v): v is string => typeof v === 'string');
}

interface Rig {
  receiver: OtlpReceiver;
  upstream: ScriptedUpstream;
  gw: TestGateway;
}

/**
 * For one describe block: an OTLP receiver, a scripted upstream answering STREAM_SCRIPT, and
 * the gateway `start` puts in front of them (it may script the upstream otherwise); `ready`
 * hands them to the block, and all three are closed after it.
 */
function useRig(start: (receiver: OtlpReceiver, upstream: ScriptedUpstream) => Promise<TestGateway>, ready: (rig: Rig) => void): void {
  let rig: Partial<Rig> = {};
  beforeAll(async () => {
    rig = { receiver: await startOtlpReceiver(), upstream: await startScriptedUpstream(STREAM_SCRIPT) };
    rig.gw = await start(rig.receiver!, rig.upstream!);
    ready(rig as Rig);
  });
  afterAll(async () => {
    await rig.gw?.close();
    await rig.upstream?.close();
    await rig.receiver?.close();
  });
}

describe('OTLP export, protobuf, configured by OTEL_* variables', () => {
  let receiver: OtlpReceiver;
  let upstream: ScriptedUpstream;
  let gw: TestGateway;
  useRig(
    (r, up) =>
      startGateway(policy(up), {
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-token=s3cret%20value',
        OTEL_SERVICE_NAME: 'gateway-under-test',
        OTEL_BSP_SCHEDULE_DELAY: '20',
      }),
    (rig) => ({ receiver, upstream, gw } = rig),
  );

  it("continues the client's trace, hands the upstream our span, logs the trace id, and sends exact GenAI attributes", async () => {
    const client = openaiClient(gw, 'k', {
      defaultHeaders: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: 'app=1' },
    });
    const stream = await client.chat.completions.create({ model: 'traced', messages: [{ role: 'user', content: PROMPT }], stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    expect(text).toBe(COMPLETION_WORDS.map((w) => w + ' ').join(''));

    const span = await receiver.waitForSpan((s) => s.traceId === CLIENT_TRACE);
    expect(span.service).toBe('gateway-under-test');
    expect(span.scope).toBe('llm-gateway');
    expect(span.parentSpanId).toBe(CLIENT_SPAN);
    expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(span.spanId).not.toBe(CLIENT_SPAN);
    expect(span.name).toBe('chat traced');
    expect(span.kind).toBe(2); // SPAN_KIND_SERVER
    const upstreamPort = Number(new URL(upstream.baseURL).port);
    const { 'gen_ai.response.time_to_first_chunk': ttfc, ...rest } = span.attributes;
    expect(rest).toEqual({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai_compatible',
      'gen_ai.request.model': 'traced',
      'gen_ai.request.stream': true,
      'gen_ai.response.model': 'up-model',
      'gen_ai.usage.input_tokens': 17,
      'gen_ai.usage.output_tokens': 3,
      'gen_ai.usage.cache_read.input_tokens': 5,
      'gen_ai.usage.reasoning.output_tokens': 2,
      'gen_ai.response.finish_reasons': ['stop'],
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': upstreamPort,
    });
    expect(typeof ttfc).toBe('number');
    expect(ttfc as number).toBeGreaterThan(0);
    for (const s of strings(span)) {
      expect(s).not.toContain('zebra');
      for (const w of COMPLETION_WORDS) expect(s).not.toContain(w);
    }

    // The upstream's parent is the gateway's span, in the client's trace.
    const seen = await upstream.settled(1);
    expect(seen.headers.traceparent).toBe(`00-${CLIENT_TRACE}-${span.spanId}-01`);
    expect(seen.headers.tracestate).toBe('app=1');

    const line = await gw.waitForLog((l) => l.msg === 'request');
    expect(line.trace_id).toBe(CLIENT_TRACE);
    expect(line.span_id).toBe(span.spanId);

    expect(receiver.requests[0]!.contentType).toBe('application/x-protobuf');
    expect(receiver.requests[0]!.headers['x-collector-token']).toBe('s3cret value');
  });

  it('marks a refused request as an error with error.type', async () => {
    const client = openaiClient(gw, 'k');
    await expect(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: PROMPT }] }),
    ).rejects.toMatchObject({ status: 404 });
    const span = await receiver.waitForSpan((s) => s.name === 'chat no-such-model');
    expect(span.parentSpanId).toBe('');
    expect(span.attributes['error.type']).toBe('model_not_found');
    expect(span.attributes['http.response.status_code']).toBe(404);
    expect(span.status.code).toBe(2); // STATUS_CODE_ERROR
  });
});

describe('OTLP export, JSON, configured by telemetry.otlp in policies.yaml', () => {
  let receiver: OtlpReceiver;
  let upstream: ScriptedUpstream;
  let gw: TestGateway;
  let calls = 0;
  useRig(
    (r, up) => {
      // The first attempt fails with a 500, the retry answers whole.
      up.setScript(() =>
        ++calls === 1
          ? { status: 500, headers: { 'content-type': 'application/json' }, steps: [{ delayMs: 0, bytes: '{"error":{"message":"boom"}}' }] }
          : { headers: { 'content-type': 'application/json' }, steps: [{ delayMs: 0, bytes: WHOLE_BODY }] },
      );
      return startGateway(
        policy(
          up,
          `telemetry: { otlp: { traces_endpoint: "${r.url}/v1/traces", protocol: http/json, service_name: from-policies, batch: { schedule_delay_ms: 20 } } }`,
        ),
      );
    },
    (rig) => ({ receiver, upstream, gw } = rig),
  );

  it('starts a new trace without a traceparent, records the retry as an event, and the upstream joins the trace', async () => {
    const client = openaiClient(gw, 'k');
    const answer = await client.chat.completions.create({ model: 'traced', messages: [{ role: 'user', content: PROMPT }] });
    expect(answer.choices[0]?.message.content).toBe(COMPLETION_WORDS.join(' '));

    const span = await receiver.waitForSpan((s) => s.name === 'chat traced');
    expect(receiver.requests[0]!.contentType).toBe('application/json');
    expect(span.service).toBe('from-policies');
    expect(span.parentSpanId).toBe('');
    expect(span.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(span.attributes).toMatchObject({
      'gen_ai.request.stream': false,
      'gen_ai.usage.input_tokens': 11,
      'gen_ai.usage.output_tokens': 4,
      'gen_ai.response.finish_reasons': ['length'],
      'http.response.status_code': 200,
    });
    expect(span.attributes['gen_ai.response.time_to_first_chunk']).toBeUndefined();
    const retry = span.events.find((e) => e.name === 'llm_gateway.retry');
    expect(retry?.attributes).toMatchObject({
      'llm_gateway.model': 'traced',
      'llm_gateway.backend': 'up',
      'error.type': 'status_5xx',
      'llm_gateway.attempt': 2,
    });

    // Both attempts carried the gateway's span as parent.
    for (const n of [1, 2]) expect((await upstream.settled(n)).headers.traceparent).toBe(`00-${span.traceId}-${span.spanId}-01`);
    const line = await gw.waitForLog((l) => l.msg === 'request');
    expect(line.trace_id).toBe(span.traceId);
  });
});

describe('OTLP export with the collector unreachable (accepts connections, never answers)', () => {
  let gw: TestGateway;
  const sockets = new Set<Socket>();
  const blackhole = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  beforeAll(async () => {
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    const port = (blackhole.address() as { port: number }).port;
    // One export hangs for timeout_ms while the small queue fills: later spans are dropped.
    gw = await startGateway(`
backends: { sim: { type: simulator, ttft_ms: 0, tpot_ms: 0, output_tokens: 3 } }
models: { m: { deployments: [{ backend: sim }] } }
telemetry: { otlp: { endpoint: "http://127.0.0.1:${port}", timeout_ms: 1000, batch: { max_queue_size: 4, max_export_batch_size: 2, schedule_delay_ms: 10 } } }
`);
  });
  afterAll(async () => {
    await gw?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => blackhole.close(() => r()));
  });

  it('serves every request and counts every span it could not deliver', async () => {
    const client = openaiClient(gw, 'k');
    const N = 20;
    const answers = await Promise.all(
      Array.from({ length: N }, () => client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })),
    );
    expect(answers.every((a) => a.choices[0]?.message.content)).toBe(true);
    const lines = gw.logs.filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(N);
    expect(lines.every((l) => l.status === 200 && typeof l.trace_id === 'string')).toBe(true);

    // Each span is dropped once: from the full queue, or with the export that timed out.
    const count = async (reason: string) => metricValue(await gw.metricsText(), 'llm_gateway_trace_spans_dropped_total', { reason }) ?? 0;
    const dropped = async () => (await count('queue_full')) + (await count('export_failed'));
    for (let i = 0; i < 300 && (await dropped()) < N; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await dropped()).toBe(N);
    expect(await count('queue_full')).toBeGreaterThan(0);
    expect(await count('export_failed')).toBeGreaterThan(0);
    // One warn line, not one per drop.
    expect(gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('trace spans dropped'))).toHaveLength(1);
  });
});

describe('OTLP metrics (OTEL_METRICS_EXPORTER=otlp), JSON', () => {
  let receiver: OtlpReceiver;
  let gw: TestGateway;
  useRig(
    (r, up) =>
      startGateway(policy(up), {
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_METRIC_EXPORT_INTERVAL: '100',
      }),
    (rig) => ({ receiver, gw } = rig),
  );

  type Point = {
    attributes: Array<{ key: string; value: Record<string, unknown> }>;
    count: string | number;
    sum: number;
    explicitBounds: number[];
  };
  const points = (name: string): Point[] =>
    receiver.metrics.flatMap((m) =>
      (
        (m.resourceMetrics as Array<{ scopeMetrics: Array<{ metrics: Array<{ name: string; histogram?: { dataPoints: Point[] } }> }> }>) ??
        []
      ).flatMap((rm) =>
        rm.scopeMetrics.flatMap((sm) => sm.metrics.filter((x) => x.name === name).flatMap((x) => x.histogram?.dataPoints ?? [])),
      ),
    );
  const attr = (p: Point, key: string) => Object.values(p.attributes.find((a) => a.key === key)?.value ?? {})[0];

  it('exports the GenAI histograms with the advised buckets and exact token counts, and no spans', async () => {
    const client = openaiClient(gw, 'k');
    const stream = await client.chat.completions.create({ model: 'traced', messages: [{ role: 'user', content: PROMPT }], stream: true });
    for await (const _ of stream) {
      /* drain */
    }
    await gw.waitForLog((l) => l.msg === 'request');
    await gw.gw.genai!.flush();
    const usage = points('gen_ai.client.token.usage');
    const input = usage.filter((p) => attr(p, 'gen_ai.token.type') === 'input').at(-1)!;
    const output = usage.filter((p) => attr(p, 'gen_ai.token.type') === 'output').at(-1)!;
    expect(input.sum).toBe(17);
    expect(output.sum).toBe(3);
    expect(Number(input.count)).toBe(1);
    expect(input.explicitBounds).toEqual([1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]);
    expect(attr(input, 'gen_ai.operation.name')).toBe('chat');
    expect(attr(input, 'gen_ai.request.model')).toBe('traced');
    expect(attr(input, 'gen_ai.response.model')).toBe('up-model');
    expect(attr(input, 'gen_ai.provider.name')).toBe('openai_compatible');
    const duration = points('gen_ai.client.operation.duration').at(-1)!;
    expect(duration.explicitBounds).toEqual([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]);
    expect(Number(points('gen_ai.server.time_to_first_token').at(-1)!.count)).toBe(1);
    expect(points('gen_ai.server.time_to_first_token').at(-1)!.explicitBounds[0]).toBe(0.001);
    expect(Number(points('gen_ai.server.time_per_output_token').at(-1)!.count)).toBe(1);
    // OTEL_TRACES_EXPORTER=none: metrics only.
    expect(gw.gw.tracing.exporting).toBe(false);
    expect(receiver.spans).toHaveLength(0);
  });
});
