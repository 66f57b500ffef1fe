// Whether and where the gateway exports its own traces: the standard OpenTelemetry
// environment variables (OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER*,
// OTEL_BSP_*), with `telemetry.otlp` in policies.yaml taking precedence field by field.
// Pure: reads the env object it is given, loads nothing (otlp.ts loads the SDK only when
// this says export is on).
import type { OtlpConfig } from '../config/schema.js';

export type OtlpProtocol = 'http/protobuf' | 'http/json';
export type SamplerName =
  'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

export interface OtlpSettings {
  /** Full URL the spans are POSTed to (…/v1/traces). */
  tracesEndpoint: string;
  protocol: OtlpProtocol;
  headers: Record<string, string>;
  /** Per export request. */
  timeoutMs: number;
  serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES, parsed. */
  resourceAttributes: Record<string, string>;
  sampler: SamplerName;
  /** Ratio for the *traceidratio samplers, in [0, 1]. */
  samplerArg: number;
  batch: {
    maxQueueSize: number;
    maxExportBatchSize: number;
    scheduleDelayMs: number;
    exportTimeoutMs: number;
  };
}

export type OtlpResolution = { enabled: false; problems: string[] } | { enabled: true; settings: OtlpSettings; problems: string[] };

export const DEFAULT_ENDPOINT = 'http://localhost:4318';
const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

/** "k1=v1,k2=v2" with percent-encoded values (the OTLP exporter spec's header and resource format). */
export function parseKeyValues(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const part of text.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const key = part.slice(0, i).trim();
    let value = part.slice(i + 1).trim();
    try {
      value = decodeURIComponent(value);
    } catch {
      // not percent-encoded: keep as given
    }
    if (key) out[key] = value;
  }
  return out;
}

/** OTEL_EXPORTER_OTLP_ENDPOINT is a base: the signal path is appended (spec: "…/v1/traces"). */
export function tracesUrlFromBase(base: string): string {
  return base.replace(/\/+$/, '') + '/v1/traces';
}

function positive(env: Record<string, string | undefined>, name: string, problems: string[]): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    problems.push(`${name}=${raw} is not a positive number: ignored`);
    return undefined;
  }
  return n;
}

/**
 * Export is on when policies.yaml has `telemetry.otlp` (unless `enabled: false`), or an OTLP
 * endpoint variable is set, or OTEL_TRACES_EXPORTER names otlp. OTEL_SDK_DISABLED=true and
 * OTEL_TRACES_EXPORTER=none turn it off unless policies.yaml turns it on explicitly.
 */
export function resolveOtlp(cfg: OtlpConfig | undefined, env: Record<string, string | undefined> = process.env): OtlpResolution {
  const problems: string[] = [];
  if (cfg?.enabled === false) return { enabled: false, problems };
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim().toLowerCase());
  const envOff = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true' || exporters.includes('none');
  const envOn = Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT || exporters.includes('otlp'));
  if (!cfg && (envOff || !envOn)) return { enabled: false, problems };

  const tracesEndpoint =
    cfg?.traces_endpoint ??
    (cfg?.endpoint !== undefined ? tracesUrlFromBase(cfg.endpoint) : undefined) ??
    (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined) ??
    tracesUrlFromBase(env.OTEL_EXPORTER_OTLP_ENDPOINT || DEFAULT_ENDPOINT);
  try {
    const u = new URL(tracesEndpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    problems.push(`OTLP traces endpoint '${tracesEndpoint}' is not an http(s) URL: trace export is off`);
    return { enabled: false, problems };
  }

  let protocol: OtlpProtocol = 'http/protobuf';
  const envProtocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || '').trim();
  if (cfg?.protocol) protocol = cfg.protocol;
  else if (envProtocol === 'http/json' || envProtocol === 'http/protobuf') protocol = envProtocol;
  else if (envProtocol) {
    // grpc (or a typo) would be sent to a port that does not speak OTLP/HTTP: say so, export nothing.
    problems.push(`OTEL_EXPORTER_OTLP_PROTOCOL=${envProtocol} is not supported (http/protobuf, http/json): trace export is off`);
    return { enabled: false, problems };
  }

  const headers = {
    ...parseKeyValues(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseKeyValues(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS),
    ...cfg?.headers,
  };
  const timeoutMs =
    cfg?.timeout_ms ??
    positive(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', problems) ??
    positive(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', problems) ??
    10_000;

  const resourceAttributes = parseKeyValues(env.OTEL_RESOURCE_ATTRIBUTES);
  const serviceName = cfg?.service_name ?? (env.OTEL_SERVICE_NAME || undefined) ?? resourceAttributes['service.name'] ?? 'llm-gateway';

  let sampler: SamplerName = 'parentbased_always_on';
  const envSampler = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase();
  if (cfg?.sampler) sampler = cfg.sampler;
  else if (envSampler && (SAMPLERS as readonly string[]).includes(envSampler)) sampler = envSampler as SamplerName;
  else if (envSampler) problems.push(`OTEL_TRACES_SAMPLER=${envSampler} is not supported: using parentbased_always_on`);
  let samplerArg = cfg?.sampler_arg ?? 1;
  if (cfg?.sampler_arg === undefined && env.OTEL_TRACES_SAMPLER_ARG) {
    const n = Number(env.OTEL_TRACES_SAMPLER_ARG);
    if (Number.isFinite(n) && n >= 0 && n <= 1) samplerArg = n;
    else problems.push(`OTEL_TRACES_SAMPLER_ARG=${env.OTEL_TRACES_SAMPLER_ARG} is not in [0, 1]: using 1`);
  }

  const b = cfg?.batch;
  const maxQueueSize = Math.floor(b?.max_queue_size ?? positive(env, 'OTEL_BSP_MAX_QUEUE_SIZE', problems) ?? 2048);
  const batch = {
    maxQueueSize,
    // The SDK clamps a batch larger than the queue; do it here so the settings say what runs.
    maxExportBatchSize: Math.min(
      maxQueueSize,
      Math.floor(b?.max_export_batch_size ?? positive(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', problems) ?? 512),
    ),
    scheduleDelayMs: b?.schedule_delay_ms ?? positive(env, 'OTEL_BSP_SCHEDULE_DELAY', problems) ?? 5_000,
    exportTimeoutMs: b?.export_timeout_ms ?? positive(env, 'OTEL_BSP_EXPORT_TIMEOUT', problems) ?? 30_000,
  };
  return {
    enabled: true,
    problems,
    settings: { tracesEndpoint, protocol, headers, timeoutMs, serviceName, resourceAttributes, sampler, samplerArg, batch },
  };
}

export interface OtlpMetricsSettings {
  /** Full URL the metrics are POSTed to (…/v1/metrics). */
  metricsEndpoint: string;
  protocol: OtlpProtocol;
  headers: Record<string, string>;
  intervalMs: number;
  timeoutMs: number;
  serviceName: string;
  resourceAttributes: Record<string, string>;
}

/**
 * OTLP metrics are on when OTEL_METRICS_EXPORTER names otlp, or `telemetry.otlp.metrics.enabled`
 * is true; `telemetry.otlp.enabled: false` or `metrics.enabled: false` turn them off.
 */
export function resolveOtlpMetrics(
  cfg: OtlpConfig | undefined,
  env: Record<string, string | undefined> = process.env,
): OtlpMetricsSettings | undefined {
  if (cfg?.enabled === false || cfg?.metrics?.enabled === false) return undefined;
  const envOn = (env.OTEL_METRICS_EXPORTER ?? '').split(',').some((x) => x.trim().toLowerCase() === 'otlp');
  if (!(cfg?.metrics?.enabled === true || (envOn && env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== 'true'))) return undefined;
  const metricsEndpoint =
    cfg?.metrics?.endpoint ??
    (env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT || undefined) ??
    (cfg?.endpoint ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT || DEFAULT_ENDPOINT)).replace(/\/+$/, '') + '/v1/metrics';
  const envProtocol = (env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || '').trim();
  const protocol: OtlpProtocol = cfg?.protocol ?? (envProtocol === 'http/json' ? 'http/json' : 'http/protobuf');
  const headers = {
    ...parseKeyValues(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseKeyValues(env.OTEL_EXPORTER_OTLP_METRICS_HEADERS),
    ...cfg?.headers,
  };
  const ignored: string[] = [];
  const intervalMs = cfg?.metrics?.interval_ms ?? positive(env, 'OTEL_METRIC_EXPORT_INTERVAL', ignored) ?? 60_000;
  // The SDK requires the export timeout to be at most the interval.
  const timeoutMs = Math.min(intervalMs, positive(env, 'OTEL_METRIC_EXPORT_TIMEOUT', ignored) ?? 30_000);
  const resourceAttributes = parseKeyValues(env.OTEL_RESOURCE_ATTRIBUTES);
  const serviceName = cfg?.service_name ?? (env.OTEL_SERVICE_NAME || undefined) ?? resourceAttributes['service.name'] ?? 'llm-gateway';
  return { metricsEndpoint, protocol, headers, intervalMs, timeoutMs, serviceName, resourceAttributes };
}
