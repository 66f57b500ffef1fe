// A span per request with GenAI semantic-convention attributes, seen through a tracer
// provider registered the way a host app would (here a minimal in-memory one: the gateway
// depends only on @opentelemetry/api).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  trace,
  type Tracer,
  type TracerProvider,
  type Span,
  type SpanOptions,
  type Attributes,
  type AttributeValue,
  type SpanStatus,
} from '@opentelemetry/api';
import { openaiClient, startGateway, type TestGateway } from '../helpers/gateway.js';

interface Recorded {
  name: string;
  attributes: Attributes;
  status?: SpanStatus;
  ended: boolean;
}
const spans: Recorded[] = [];

function recordingSpan(name: string, options?: SpanOptions): Span {
  const rec: Recorded = { name, attributes: { ...options?.attributes }, ended: false };
  spans.push(rec);
  const span: Span = {
    spanContext: () => ({ traceId: '0'.repeat(31) + '1', spanId: '0'.repeat(15) + '1', traceFlags: 1 }),
    setAttribute: (k: string, v: AttributeValue) => ((rec.attributes[k] = v), span),
    setAttributes: (a: Attributes) => (Object.assign(rec.attributes, a), span),
    addEvent: () => span,
    addLink: () => span,
    addLinks: () => span,
    setStatus: (s: SpanStatus) => ((rec.status = s), span),
    updateName: (n: string) => ((rec.name = n), span),
    end: () => void (rec.ended = true),
    isRecording: () => true,
    recordException: () => {},
  };
  return span;
}

const provider: TracerProvider = {
  getTracer: (): Tracer =>
    ({
      startSpan: recordingSpan,
      startActiveSpan: () => {
        throw new Error('not used');
      },
    }) as unknown as Tracer,
};

let gw: TestGateway;
beforeAll(async () => {
  trace.setGlobalTracerProvider(provider);
  gw = await startGateway(`
backends: { sim: { type: simulator, ttft_ms: 1, tpot_ms: 1, output_tokens: 6 } }
models: { traced: { deployments: [{ backend: sim, model: traced-up }] } }
`);
});
afterAll(async () => {
  await gw?.close();
  trace.disable();
});

describe('tracing', () => {
  it('records one span per request with gen_ai attributes', async () => {
    const client = openaiClient(gw, 'k');
    const s = await client.chat.completions.create({ model: 'traced', messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const _ of s) {
      /* drain */
    }
    await gw.waitForLog((l) => l.msg === 'request');
    const span = spans.find((x) => x.name === 'chat traced');
    expect(span?.ended).toBe(true);
    expect(span?.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'traced',
      'gen_ai.response.model': 'traced-up',
      'gen_ai.provider.name': 'simulator',
      'gen_ai.request.stream': true,
      'gen_ai.usage.output_tokens': 6,
      'http.response.status_code': 200,
    });
    expect(typeof span?.attributes['gen_ai.usage.input_tokens']).toBe('number');
    expect(span?.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);
  });

  it('marks failed requests as errors', async () => {
    const client = openaiClient(gw, 'k');
    await expect(client.chat.completions.create({ model: 'missing', messages: [] })).rejects.toMatchObject({ status: 404 });
    const span = spans.find((x) => x.name === 'chat missing');
    expect(span?.status?.message).toMatch(/does not exist/);
    expect(span?.attributes['http.response.status_code']).toBe(404);
  });
});
