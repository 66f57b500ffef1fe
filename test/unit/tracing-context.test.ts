// W3C trace context in and out of the gateway's span, checked against the reference
// propagator of @opentelemetry/core (export on; the collector is never reached here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, trace, defaultTextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { Tracing } from '../../src/telemetry/tracing.js';

const reference = new W3CTraceContextPropagator();
const refInject = (span: ReturnType<Tracing['start']>) => {
  const h: Record<string, string> = {};
  reference.inject(trace.setSpan(ROOT_CONTEXT, span), h, defaultTextMapSetter);
  return h;
};

let on: Tracing;
let sampledOff: Tracing;
beforeAll(async () => {
  on = await Tracing.create({ endpoint: 'http://127.0.0.1:9', timeout_ms: 200 }, { env: {} });
  sampledOff = await Tracing.create({ endpoint: 'http://127.0.0.1:9', timeout_ms: 200, sampler: 'parentbased_always_off' }, { env: {} });
});
afterAll(async () => {
  await on.shutdown();
  await sampledOff.shutdown();
});

describe('Tracing.inject', () => {
  it('writes what the W3C propagator writes, for sampled, unsampled and tracestate-carrying spans', () => {
    const parent = {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
    };
    const cases = [
      on.start(parent, 'chat', 'm', true),
      on.start({}, 'chat', 'm', false),
      sampledOff.start({}, 'chat', 'm', false),
      on.start({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' }, 'chat', 'm', false),
    ];
    for (const span of cases) {
      const h: Record<string, string> = {};
      on.inject(span, h);
      expect(h).toEqual(refInject(span));
      span.end();
    }
    const h: Record<string, string> = {};
    on.inject(cases[0]!, h);
    expect(h.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(h.tracestate).toBe(parent.tracestate);
  });

  it("replaces the client's traceparent and drops a tracestate that is not the span's", () => {
    const span = on.start({ traceparent: 'garbage', tracestate: 'x=1' }, 'chat', 'm', true);
    const h: Record<string, string> = { traceparent: 'garbage', tracestate: 'x=1' };
    on.inject(span, h);
    expect(h.traceparent).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
    expect(h.tracestate).toBeUndefined();
    span.end();
  });

  it('does nothing without export', () => {
    const off = Tracing.global();
    const h: Record<string, string> = { traceparent: 'from-client' };
    off.inject(off.start({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, 'chat', 'm', true), h);
    expect(h).toEqual({ traceparent: 'from-client' });
  });
});
