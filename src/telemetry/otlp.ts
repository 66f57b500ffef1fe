// The OpenTelemetry SDK, loaded only when trace export is configured (otlp-config.ts): a
// tracer provider with a batch span processor in front of the OTLP/HTTP exporter
// (protobuf or JSON), and the W3C trace-context propagator. The SDK is
// @opentelemetry/sdk-trace, the code @opentelemetry/sdk-trace-base re-exports minus its
// OTEL_* fallbacks: otlp-config.ts resolves those (with policies.yaml on top), so what runs
// is exactly what it resolved. A gateway without export never
// imports any of this, so its idle RSS and hot path are those of the no-op API.
//
// An unreachable collector never slows a request: spans end into the processor's bounded
// queue (a push), exports run on its timer, and when the queue is full new spans are
// dropped and counted. The processor reports its own outcomes to a meter provider
// (`selfObsMeterProvider`, the SDK's self-observability hook); the one given here turns
// the failed ones into llm_gateway_trace_spans_dropped_total.
import type { Attributes, MeterProvider, TextMapPropagator, Tracer } from '@opentelemetry/api';
import type { OtlpSettings } from './otlp-config.js';

export const TRACER_NAME = 'llm-gateway';
export const TRACER_VERSION = '0.1.0';

/** Why spans were lost: a bounded label set. */
export type DropReason = 'queue_full' | 'export_failed';

export interface OtlpExport {
  tracer: Tracer;
  propagator: TextMapPropagator;
  /** Exports what is queued (bounded by the export timeout). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * A meter provider that only listens for the processor's "span processed" counter and
 * passes on the counts that carry an error.type (queue_full, or the export error's name).
 */
function dropListener(onDrop: (reason: DropReason, count: number) => void): MeterProvider {
  const noop = { add() {}, addCallback() {}, removeCallback() {}, record() {} };
  const counter = {
    add(count: number, attrs?: Attributes) {
      const type = attrs?.['error.type'];
      if (type === undefined) return;
      onDrop(type === 'queue_full' ? 'queue_full' : 'export_failed', count);
    },
  };
  const meter = {
    createCounter: (name: string) => (name === 'otel.sdk.processor.span.processed' ? counter : noop),
    createUpDownCounter: () => noop,
    createObservableUpDownCounter: () => noop,
    createObservableGauge: () => noop,
    createObservableCounter: () => noop,
    createHistogram: () => noop,
    createGauge: () => noop,
    addBatchObservableCallback() {},
    removeBatchObservableCallback() {},
  };
  return { getMeter: () => meter as never };
}

export async function startOtlpExport(s: OtlpSettings, onDrop: (reason: DropReason, count: number) => void): Promise<OtlpExport> {
  const [sdk, core, resources, exporterModule] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    s.protocol === 'http/json' ? import('@opentelemetry/exporter-trace-otlp-http') : import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  const exporter = new exporterModule.OTLPTraceExporter({ url: s.tracesEndpoint, headers: s.headers, timeoutMillis: s.timeoutMs });
  const processor = new sdk.BatchSpanProcessor({
    exporter,
    maxQueueSize: s.batch.maxQueueSize,
    maxExportBatchSize: s.batch.maxExportBatchSize,
    scheduledDelayMillis: s.batch.scheduleDelayMs,
    exportTimeoutMillis: s.batch.exportTimeoutMs,
    selfObsMeterProvider: dropListener(onDrop),
  });
  const ratio = new sdk.TraceIdRatioBasedSampler(s.samplerArg);
  const root = s.sampler.endsWith('always_off')
    ? new sdk.AlwaysOffSampler()
    : s.sampler.endsWith('traceidratio')
      ? ratio
      : new sdk.AlwaysOnSampler();
  const sampler = s.sampler.startsWith('parentbased_') ? new sdk.ParentBasedSampler({ root }) : root;
  const provider = new sdk.TracerProvider({
    resource: resources.resourceFromAttributes({
      ...s.resourceAttributes,
      'service.name': s.serviceName,
      'service.version': TRACER_VERSION,
    }),
    sampler,
    spanProcessors: [processor],
  });
  return {
    tracer: provider.getTracer(TRACER_NAME, TRACER_VERSION),
    propagator: new core.W3CTraceContextPropagator(),
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
