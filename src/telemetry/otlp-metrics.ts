// Optional OTLP metrics in the GenAI semantic conventions (the same version as the spans, see
// docs/tracing.md): gen_ai.client.token.usage, gen_ai.client.operation.duration,
// gen_ai.server.time_to_first_token and gen_ai.server.time_per_output_token, with the bucket
// boundaries the conventions advise. Prometheus /metrics stays the primary interface; this is
// for collectors that want the standard names. The SDK is loaded only when this is on.
//
// Attribute values are bounded like Prometheus labels: configured model and backend names,
// fixed enums, the status code as error.type (an upstream's own error codes are not).
import type { Attributes, Histogram } from '@opentelemetry/api';
import type { OtlpMetricsSettings } from './otlp-config.js';
import { GEN_AI_OPERATION, serverOf } from './tracing.js';
import { TRACER_NAME, TRACER_VERSION } from './otlp.js';

// The GenAI conventions' advised boundaries.
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];

/** What settle knows of a finished request (a subset of RequestRecord). */
export interface GenAiRequest {
  endpoint: string;
  routed?: boolean;
  model: string;
  upstreamModel?: string;
  system?: string;
  origin?: string;
  status: number;
  receivedAt: number;
  endedAt: number;
  tokens?: { input: number; output: number };
}

export class GenAiMetrics {
  private constructor(
    private readonly tokenUsage: Histogram,
    private readonly duration: Histogram,
    private readonly ttft: Histogram,
    private readonly tpot: Histogram,
    private readonly provider: { forceFlush(): Promise<void>; shutdown(): Promise<void> },
  ) {}

  static async start(s: OtlpMetricsSettings): Promise<GenAiMetrics> {
    const [sdk, resources, exporterModule] = await Promise.all([
      import('@opentelemetry/sdk-metrics'),
      import('@opentelemetry/resources'),
      s.protocol === 'http/json'
        ? import('@opentelemetry/exporter-metrics-otlp-http')
        : import('@opentelemetry/exporter-metrics-otlp-proto'),
    ]);
    const exporter = new exporterModule.OTLPMetricExporter({ url: s.metricsEndpoint, headers: s.headers, timeoutMillis: s.timeoutMs });
    const provider = new sdk.MeterProvider({
      resource: resources.resourceFromAttributes({
        ...s.resourceAttributes,
        'service.name': s.serviceName,
        'service.version': TRACER_VERSION,
      }),
      readers: [new sdk.PeriodicExportingMetricReader({ exporter, exportIntervalMillis: s.intervalMs, exportTimeoutMillis: s.timeoutMs })],
    });
    const meter = provider.getMeter(TRACER_NAME, TRACER_VERSION);
    const histogram = (name: string, unit: string, description: string, buckets: number[]) =>
      meter.createHistogram(name, { unit, description, advice: { explicitBucketBoundaries: buckets } });
    return new GenAiMetrics(
      histogram('gen_ai.client.token.usage', '{token}', 'Number of input and output tokens used.', TOKEN_BUCKETS),
      histogram('gen_ai.client.operation.duration', 's', 'GenAI operation duration.', DURATION_BUCKETS),
      histogram('gen_ai.server.time_to_first_token', 's', 'Time to generate first token for successful responses.', TTFT_BUCKETS),
      histogram(
        'gen_ai.server.time_per_output_token',
        's',
        'Time per output token generated after the first token for successful responses.',
        TPOT_BUCKETS,
      ),
      provider,
    );
  }

  /** One finished request; ttft/tpot in ms as settle computed them (streams only). */
  record(r: GenAiRequest, ttftMs: number | undefined, tpotMs: number | undefined): void {
    const attrs: Attributes = {
      'gen_ai.operation.name': GEN_AI_OPERATION[r.endpoint] ?? r.endpoint,
      'gen_ai.request.model': r.routed ? r.model : 'unknown',
    };
    if (r.system) attrs['gen_ai.provider.name'] = r.system;
    if (r.upstreamModel) attrs['gen_ai.response.model'] = r.upstreamModel;
    if (r.origin) {
      const s = serverOf(r.origin);
      attrs['server.address'] = s.address;
      attrs['server.port'] = s.port;
    }
    if (r.status >= 400) attrs['error.type'] = String(r.status);
    this.duration.record((r.endedAt - r.receivedAt) / 1000, attrs);
    if (r.status >= 400) return;
    if (r.tokens) {
      this.tokenUsage.record(r.tokens.input, { ...attrs, 'gen_ai.token.type': 'input' });
      this.tokenUsage.record(r.tokens.output, { ...attrs, 'gen_ai.token.type': 'output' });
    }
    if (ttftMs !== undefined) this.ttft.record(ttftMs / 1000, attrs);
    if (tpotMs !== undefined) this.tpot.record(tpotMs / 1000, attrs);
  }

  flush(): Promise<void> {
    return this.provider.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
