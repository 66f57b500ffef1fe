// Which OTEL_* variables and telemetry.otlp settings turn trace export on, and what they resolve to.
import { describe, expect, it } from 'vitest';
import { parseKeyValues, resolveOtlp, resolveOtlpMetrics } from '../../src/telemetry/otlp-config.js';

const on = (r: ReturnType<typeof resolveOtlp>) => {
  if (!r.enabled) throw new Error(`expected export on, problems: ${r.problems.join('; ')}`);
  return r.settings;
};

describe('resolveOtlp', () => {
  it('is off without configuration, and with OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none', () => {
    expect(resolveOtlp(undefined, {}).enabled).toBe(false);
    expect(resolveOtlp(undefined, { OTEL_SERVICE_NAME: 'x' }).enabled).toBe(false);
    expect(resolveOtlp(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false);
    expect(resolveOtlp(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(false);
    expect(resolveOtlp({ enabled: false }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).enabled).toBe(false);
  });

  it('reads the standard variables, with the spec defaults', () => {
    const s = on(resolveOtlp(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }));
    expect(s).toEqual({
      tracesEndpoint: 'http://collector:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      timeoutMs: 10_000,
      serviceName: 'llm-gateway',
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerArg: 1,
      batch: { maxQueueSize: 2048, maxExportBatchSize: 512, scheduleDelayMs: 5000, exportTimeoutMs: 30_000 },
    });
    const t = on(
      resolveOtlp(undefined, {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp/traces',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_HEADERS: 'a=1,b=x%20y',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'b=2',
        OTEL_EXPORTER_OTLP_TIMEOUT: '2500',
        OTEL_SERVICE_NAME: 'sidecar',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod,service.name=overridden',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
        OTEL_BSP_MAX_QUEUE_SIZE: '100',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '500',
        OTEL_BSP_SCHEDULE_DELAY: '200',
        OTEL_BSP_EXPORT_TIMEOUT: '3000',
      }),
    );
    expect(t).toEqual({
      tracesEndpoint: 'https://traces.example/otlp/traces',
      protocol: 'http/json',
      headers: { a: '1', b: '2' },
      timeoutMs: 2500,
      serviceName: 'sidecar',
      resourceAttributes: { 'deployment.environment': 'prod', 'service.name': 'overridden' },
      sampler: 'parentbased_traceidratio',
      samplerArg: 0.25,
      // A batch larger than the queue is clamped to it.
      batch: { maxQueueSize: 100, maxExportBatchSize: 100, scheduleDelayMs: 200, exportTimeoutMs: 3000 },
    });
    expect(on(resolveOtlp(undefined, { OTEL_TRACES_EXPORTER: 'otlp' })).tracesEndpoint).toBe('http://localhost:4318/v1/traces');
  });

  it('lets telemetry.otlp in policies.yaml win field by field', () => {
    const s = on(
      resolveOtlp(
        {
          endpoint: 'http://from-policies:4318',
          headers: { b: 'p' },
          service_name: 'p',
          sampler: 'always_off',
          batch: { max_queue_size: 10 },
        },
        {
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://from-env/v1/traces',
          OTEL_EXPORTER_OTLP_HEADERS: 'a=e,b=e',
          OTEL_SERVICE_NAME: 'e',
          OTEL_BSP_SCHEDULE_DELAY: '7',
        },
      ),
    );
    expect(s.tracesEndpoint).toBe('http://from-policies:4318/v1/traces');
    expect(s.headers).toEqual({ a: 'e', b: 'p' });
    expect(s.serviceName).toBe('p');
    expect(s.sampler).toBe('always_off');
    expect(s.batch).toMatchObject({ maxQueueSize: 10, scheduleDelayMs: 7 });
    // Present without an endpoint: export to the default collector address.
    expect(on(resolveOtlp({}, {})).tracesEndpoint).toBe('http://localhost:4318/v1/traces');
  });

  it('refuses grpc and bad URLs with a reason, and ignores bad numbers with a reason', () => {
    const g = resolveOtlp(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    expect(g.enabled).toBe(false);
    expect(g.problems.join()).toMatch(/grpc is not supported/);
    const u = resolveOtlp(undefined, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318' });
    expect(u.enabled).toBe(false);
    expect(u.problems.join()).toMatch(/not an http\(s\) URL/);
    const n = resolveOtlp(undefined, {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c',
      OTEL_BSP_MAX_QUEUE_SIZE: 'lots',
      OTEL_TRACES_SAMPLER_ARG: '2',
    });
    expect(on(n).batch.maxQueueSize).toBe(2048);
    expect(on(n).samplerArg).toBe(1);
    expect(n.problems).toHaveLength(2);
  });
});

describe('parseKeyValues', () => {
  it('parses k=v pairs with percent-encoded values and skips malformed parts', () => {
    expect(parseKeyValues('a=1, b = two%2Cthree ,bad,=x,c=%E0%A4%A')).toEqual({ a: '1', b: 'two,three', c: '%E0%A4%A' });
    expect(parseKeyValues(undefined)).toEqual({});
  });
});

describe('telemetry.otlp in policies.yaml', () => {
  const base = 'backends: { sim: { type: simulator } }\nmodels: { m: { deployments: [{ backend: sim }] } }\n';
  it('is validated: known fields only, http protocols only', async () => {
    const { parsePolicies } = await import('../../src/config/load.js');
    const ok = parsePolicies(
      base + 'telemetry: { otlp: { endpoint: "http://c:4318", protocol: http/json, sampler: traceidratio, sampler_arg: 0.5 } }',
      't.yaml',
      {},
    );
    expect(ok.telemetry?.otlp).toEqual({ endpoint: 'http://c:4318', protocol: 'http/json', sampler: 'traceidratio', sampler_arg: 0.5 });
    expect(() => parsePolicies(base + 'telemetry: { otlp: { protocol: grpc } }', 't.yaml', {})).toThrow(/telemetry\.otlp\.protocol/);
    expect(() => parsePolicies(base + 'telemetry: { otlp: { endpont: "http://c" } }', 't.yaml', {})).toThrow(/endpont/);
  });

  it('is reported by a reload as needing a restart', async () => {
    const { parsePolicies } = await import('../../src/config/load.js');
    const { diffPolicies } = await import('../../src/config/diff.js');
    const off = parsePolicies(base, 't.yaml', {});
    const on = parsePolicies(base + 'telemetry: { otlp: { endpoint: "http://c:4318" } }', 't.yaml', {});
    expect(diffPolicies(off, on).needs_restart).toEqual(['telemetry']);
    expect(diffPolicies(on, on).needs_restart).toEqual([]);
  });
});

describe('resolveOtlpMetrics', () => {
  it('is on with OTEL_METRICS_EXPORTER=otlp or telemetry.otlp.metrics.enabled, with the spec defaults', () => {
    expect(resolveOtlpMetrics(undefined, {})).toBeUndefined();
    expect(resolveOtlpMetrics(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBeUndefined();
    expect(resolveOtlpMetrics({ metrics: { enabled: false } }, { OTEL_METRICS_EXPORTER: 'otlp' })).toBeUndefined();
    expect(resolveOtlpMetrics({ enabled: false }, { OTEL_METRICS_EXPORTER: 'otlp' })).toBeUndefined();
    expect(
      resolveOtlpMetrics(undefined, { OTEL_METRICS_EXPORTER: 'prometheus,otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }),
    ).toEqual({
      metricsEndpoint: 'http://c:4318/v1/metrics',
      protocol: 'http/protobuf',
      headers: {},
      intervalMs: 60_000,
      timeoutMs: 30_000,
      serviceName: 'llm-gateway',
      resourceAttributes: {},
    });
    const s = resolveOtlpMetrics(
      { metrics: { enabled: true, interval_ms: 1000 }, protocol: 'http/json' },
      { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m/v1/metrics', OTEL_EXPORTER_OTLP_METRICS_HEADERS: 'k=v' },
    );
    // The export timeout never exceeds the interval (the SDK refuses that).
    expect(s).toMatchObject({
      metricsEndpoint: 'http://m/v1/metrics',
      protocol: 'http/json',
      headers: { k: 'v' },
      intervalMs: 1000,
      timeoutMs: 1000,
    });
  });
});
