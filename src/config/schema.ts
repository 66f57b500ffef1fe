// The policies.yaml schema. Field names are a contract (see docs/architecture.md and docs/policies.md):
// extend them, never rename them. Every object is strict so a typo is an error with
// a path, not a silently ignored setting.
import { z } from 'zod';
import { parseRedisUrl } from '../admission/redis-connect.js';

const positiveInt = z.number().int().positive();
const nonNegative = z.number().nonnegative();

export const limitsSchema = z
  .object({
    rpm: positiveInt.optional(),
    tpm: positiveInt.optional(),
    concurrency: positiveInt.optional(),
  })
  .strict();

export const budgetSchema = z
  .object({
    usd: nonNegative,
    period: z.enum(['day', 'week', 'month', 'total']).default('month'),
  })
  .strict();

// The APIs a backend can serve (`apis:`). A request for one goes only to deployments whose
// backend serves it; the defaults by type are in upstream/backends.ts (DEFAULT_APIS).
export const API_NAMES = ['chat', 'completions', 'embeddings', 'responses', 'messages'] as const;
const apisSchema = z.array(z.enum(API_NAMES)).min(1).optional();

const simulatorBackendSchema = z
  .object({
    type: z.literal('simulator'),
    apis: apisSchema,
    ttft_ms: nonNegative.default(150),
    tpot_ms: nonNegative.default(20),
    output_tokens: positiveInt.default(16),
    error_rate: z.number().min(0).max(1).default(0),
    timeout_ms: positiveInt.default(60_000),
    connect_timeout_ms: positiveInt.default(5_000),
    idle_timeout_ms: positiveInt.default(30_000),
    pool_size: positiveInt.optional(),
  })
  .strict();

const httpBackendSchema = z
  .object({
    type: z.literal('openai').default('openai'),
    apis: apisSchema,
    base_url: z.url({ protocol: /^https?$/ }),
    api_key: z.string().optional(),
    // Extra headers sent upstream (e.g. OpenAI-Organization, api-version for Azure).
    headers: z.record(z.string(), z.string()).default({}),
    // Client headers forwarded to this backend beyond the built-in allow-list
    // (upstream/headers.ts): an explicit choice of ops, e.g. a vLLM deployment's own headers.
    forward_headers: z
      .array(
        z
          .string()
          .min(1)
          .transform((h) => h.toLowerCase()),
      )
      .default([]),
    // First byte (response headers) must arrive within timeout_ms.
    timeout_ms: positiveInt.default(60_000),
    connect_timeout_ms: positiveInt.default(5_000),
    // Longest silence allowed between two body chunks of a response.
    idle_timeout_ms: positiveInt.default(30_000),
    // Connections to this backend at most. Unset: no cap (a stream holds its connection for
    // its whole life, so any cap is a ceiling on concurrent streams); see docs/defaults.md.
    pool_size: positiveInt.optional(),
  })
  .strict();

// Anthropic's API (or a server that speaks it): the provider key goes as x-api-key, with the
// client's anthropic-version (or this default) and anthropic-beta.
const anthropicBackendSchema = httpBackendSchema.extend({
  type: z.literal('anthropic'),
  anthropic_version: z.string().min(1).default('2023-06-01'),
});

// Discriminated by `type` (openai when absent), so a bad field is reported with its path
// rather than as "Invalid input" of a union.
export const backendSchema = z.discriminatedUnion('type', [simulatorBackendSchema, anthropicBackendSchema, httpBackendSchema]);

export const deploymentSchema = z
  .object({
    backend: z.string().min(1),
    model: z.string().min(1).optional(),
    weight: nonNegative.default(1),
  })
  .strict();

export const pricingSchema = z
  .object({
    input_per_mtok: nonNegative.default(0),
    output_per_mtok: nonNegative.default(0),
    cached_input_per_mtok: nonNegative.optional(),
    // Prompt tokens written to the cache (Anthropic's cache_creation_input_tokens). Default:
    // the input price; Anthropic bills a 5-minute write at 1.25x input, a 1-hour one at 2x.
    cache_write_per_mtok: nonNegative.optional(),
  })
  .strict();

export const circuitBreakerSchema = z
  .object({
    window_s: z.number().positive().default(30),
    min_requests: positiveInt.default(20),
    error_rate: z.number().gt(0).max(1).default(0.5),
    cooldown_s: z.number().positive().default(30),
    max_cooldown_s: z.number().positive().default(300),
    half_open_probes: positiveInt.default(3),
  })
  .strict();

export const retriesSchema = z
  .object({
    max: z.number().int().min(0).default(2),
    backoff_ms: nonNegative.default(100),
    max_backoff_ms: nonNegative.default(2_000),
    max_retry_after_ms: nonNegative.default(5_000),
    deadline_ms: positiveInt.default(120_000),
  })
  .strict();

export const modelSchema = z
  .object({
    deployments: z.array(deploymentSchema).min(1),
    pricing: pricingSchema.default({ input_per_mtok: 0, output_per_mtok: 0 }),
    fallbacks: z.array(z.string()).default([]),
    context_window_fallbacks: z.array(z.string()).default([]),
    limits: limitsSchema.optional(),
    budget: budgetSchema.optional(),
    circuit_breaker: circuitBreakerSchema.partial().optional(),
    // Output tokens reserved when a request sets no max_tokens.
    default_max_tokens: positiveInt.optional(),
  })
  .strict();

export const keySchema = z
  .object({
    key: z.string().min(1).optional(),
    key_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/i, 'must be 64 hex characters')
      .optional(),
    name: z.string().min(1),
    user: z.string().min(1).optional(),
    team: z.string().min(1).optional(),
    limits: limitsSchema.optional(),
    budget: budgetSchema.optional(),
    models: z.array(z.string()).optional(),
  })
  .strict()
  .refine((k) => (k.key === undefined) !== (k.key_sha256 === undefined), {
    message: 'exactly one of key or key_sha256 is required',
  });

const scopeSettingsSchema = z.object({ limits: limitsSchema.optional(), budget: budgetSchema.optional() }).strict();

export const stateSchema = z
  .object({
    store: z.enum(['memory', 'redis']).default('memory'),
    // redis://, rediss://, redis+cluster://h1:p1,h2:p2, redis+sentinel://s1:p1,s2:p2/master (src/admission/redis-connect.ts)
    redis_url: z
      .string()
      .default('redis://127.0.0.1:6379')
      .superRefine((u, ctx) => {
        try {
          parseRedisUrl(u);
        } catch (e) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
        }
      }),
    redis_prefix: z.string().default('llmgw:'),
    // How long an admit may wait for Redis before on_store_error applies.
    redis_timeout_ms: positiveInt.max(60_000).default(1_000),
    file: z.string().optional(),
    flush_interval_ms: positiveInt.default(1_000),
    on_store_error: z.enum(['open', 'closed']).default('open'),
    // Redis store: busy scopes are admitted locally against slices of their limits leased
    // from Redis (src/admission/lease.ts): no round trip per request, never over a limit,
    // at the price of up to one slice per gateway refused early near a limit.
    leased_quota: z.boolean().default(false),
    // A state file that cannot be used (corrupt, wrong types, unreadable): refuse to start
    // (its spend must not silently become 0), or move it aside and start with no spend.
    on_corrupt: z.enum(['refuse', 'fresh']).default('refuse'),
    // Responses API: how long (and, in memory, how many) response ids are remembered with
    // the deployment that holds them. OpenAI keeps stored responses for 30 days.
    response_affinity_ttl_s: positiveInt.default(30 * 86_400),
    response_affinity_max: positiveInt.default(100_000),
  })
  .strict();

/** A canonical pass-through path: /v1/…, plain segments (no '.', '..', '%', ';', empty or trailing ones). */
const passthroughPathSchema = z
  .string()
  .regex(/^\/v1(\/[A-Za-z0-9_~!$&'()*+,=:@.-]+)+$/, 'must be a canonical path under /v1/, such as /v1/batches')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not hold . or .. segments');

export const passthroughSchema = z
  .object({
    // Pass-through routes that may spend money the gateway cannot price (batches, images,
    // audio, fine-tuning, ...), opened to keys with a budget or a model allow-list. Each entry
    // is a path prefix on segment boundaries: /v1/batches allows /v1/batches and /v1/batches/*.
    allow: z.array(passthroughPathSchema).default([]),
  })
  .strict();

export const serverSchema = z
  .object({
    host: z.string().optional(),
    port: z.number().int().min(0).max(65535).optional(),
    max_body_bytes: positiveInt.default(10 * 1024 * 1024),
    drain_timeout_ms: nonNegative.default(25_000),
    trusted_identity_headers: z.boolean().default(false),
    // Backend that other /v1/* routes (files, batches, ...) are passed through to.
    passthrough_backend: z.string().optional(),
    passthrough: passthroughSchema.default({ allow: [] }),
    // Front-door timeouts (see docs/hardening.md). headers: the whole
    // request head must arrive in this time (slowloris); body: the whole request body;
    // keep_alive: an idle keep-alive connection is closed after this. None applies to the
    // response, so long streams are never cut by them.
    headers_timeout_ms: positiveInt.default(30_000),
    body_timeout_ms: positiveInt.default(120_000),
    keep_alive_timeout_ms: positiveInt.default(65_000),
    // Open client connections at most; more are refused at accept (counted and logged).
    max_connections: positiveInt.default(8192),
    // A non-streamed upstream body (after decoding) larger than this is refused with a 502.
    max_upstream_body_bytes: positiveInt.default(32 * 1024 * 1024),
    // When set, requests whose Host header (port ignored) is not listed get a 421.
    allowed_hosts: z.array(z.string().min(1)).optional(),
  })
  .strict();

// insights: traffic intelligence (src/insights/). Absent: off, nothing is computed or
// allocated. `insights: {}` turns it on with these defaults, which the bench shows cheap
// enough to keep at quality.sample 1.0 (docs/insights.md).
export const insightsSchema = z
  .object({
    quality: z
      .object({
        sample: z.number().min(0).max(1).default(1),
        // Raw response bytes kept per scored response: the first head_bytes and last tail_bytes.
        head_bytes: positiveInt.max(1024 * 1024).default(32 * 1024),
        tail_bytes: positiveInt.max(1024 * 1024).default(16 * 1024),
      })
      .strict()
      .default({ sample: 1, head_bytes: 32 * 1024, tail_bytes: 16 * 1024 }),
    drift: z
      .object({ window: z.number().int().min(20).default(1000), buckets: z.number().int().min(2).max(100).default(10) })
      .strict()
      .default({ window: 1000, buckets: 10 }),
    anomaly: z
      .object({
        window: z.number().int().min(10).max(10_000).default(100),
        z: z.number().positive().default(3),
        // Of the last `persist_of` points, `persist` anomalous ones open an incident.
        persist: positiveInt.default(5),
        persist_of: positiveInt.max(64).default(10),
      })
      .strict()
      .default({ window: 100, z: 3, persist: 5, persist_of: 10 }),
    webhook: z.url({ protocol: /^https?$/ }).optional(),
    notify: z
      .object({
        batch_ms: positiveInt.default(10_000),
        retries: z.number().int().min(0).max(10).default(3),
        backoff_ms: positiveInt.default(1_000),
        timeout_ms: positiveInt.default(5_000),
        queue: positiveInt.max(100_000).default(1_000),
      })
      .strict()
      .default({ batch_ms: 10_000, retries: 3, backoff_ms: 1_000, timeout_ms: 5_000, queue: 1_000 }),
  })
  .strict();

// OTLP/HTTP export of the gateway's own traces (docs/tracing.md). Every field is optional: an
// unset one falls back to its standard OTEL_* environment variable, then to the SDK default.
export const otlpSchema = z
  .object({
    /** false turns export off even when OTEL_* variables are set. */
    enabled: z.boolean().optional(),
    /** Base URL; /v1/traces is appended (as OTEL_EXPORTER_OTLP_ENDPOINT). */
    endpoint: z.string().url().optional(),
    /** Full URL of the traces endpoint, used as is (as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). */
    traces_endpoint: z.string().url().optional(),
    protocol: z.enum(['http/protobuf', 'http/json']).optional(),
    headers: z.record(z.string(), z.string()).optional(),
    timeout_ms: positiveInt.optional(),
    service_name: z.string().min(1).optional(),
    sampler: z
      .enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'])
      .optional(),
    sampler_arg: z.number().min(0).max(1).optional(),
    /** OTLP metrics (gen_ai.client.*, gen_ai.server.*); Prometheus /metrics stays the primary interface. */
    metrics: z
      .object({
        enabled: z.boolean().optional(),
        /** Full URL of the metrics endpoint (as OTEL_EXPORTER_OTLP_METRICS_ENDPOINT); default endpoint + /v1/metrics. */
        endpoint: z.string().url().optional(),
        interval_ms: positiveInt.optional(),
      })
      .strict()
      .optional(),
    batch: z
      .object({
        max_queue_size: positiveInt.optional(),
        max_export_batch_size: positiveInt.optional(),
        schedule_delay_ms: positiveInt.optional(),
        export_timeout_ms: positiveInt.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const telemetrySchema = z.object({ otlp: otlpSchema.optional() }).strict();

export const policiesSchema = z
  .object({
    admin_token: z.string().optional(),
    // prefault: the defaults of every server field come from serverSchema itself.
    server: serverSchema.prefault({}),
    state: stateSchema.default({
      store: 'memory',
      redis_url: 'redis://127.0.0.1:6379',
      redis_prefix: 'llmgw:',
      redis_timeout_ms: 1_000,
      flush_interval_ms: 1_000,
      on_store_error: 'open',
      leased_quota: false,
      on_corrupt: 'refuse',
      response_affinity_ttl_s: 30 * 86_400,
      response_affinity_max: 100_000,
    }),
    backends: z.record(z.string(), backendSchema),
    models: z.record(z.string(), modelSchema),
    circuit_breaker: circuitBreakerSchema.default({
      window_s: 30,
      min_requests: 20,
      error_rate: 0.5,
      cooldown_s: 30,
      max_cooldown_s: 300,
      half_open_probes: 3,
    }),
    retries: retriesSchema.default({
      max: 2,
      backoff_ms: 100,
      max_backoff_ms: 2_000,
      max_retry_after_ms: 5_000,
      deadline_ms: 120_000,
    }),
    keys: z.array(keySchema).default([]),
    teams: z.record(z.string(), scopeSettingsSchema).default({}),
    users: z.record(z.string(), scopeSettingsSchema).default({}),
    global: scopeSettingsSchema.optional(),
    budget_alerts: z.array(z.number().gt(0).max(1)).default([0.7, 0.8, 0.95, 1.0]),
    budget_webhook: z.string().optional(),
    insights: insightsSchema.optional(),
    telemetry: telemetrySchema.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    for (const [name, model] of Object.entries(p.models)) {
      model.deployments.forEach((d, i) => {
        if (!(d.backend in p.backends)) {
          ctx.addIssue({
            code: 'custom',
            path: ['models', name, 'deployments', i, 'backend'],
            message: `unknown backend "${d.backend}"`,
          });
        }
      });
      for (const list of ['fallbacks', 'context_window_fallbacks'] as const) {
        model[list].forEach((f, i) => {
          if (!(f in p.models)) {
            ctx.addIssue({
              code: 'custom',
              path: ['models', name, list, i],
              message: `unknown model "${f}"`,
            });
          } else if (f === name) {
            ctx.addIssue({
              code: 'custom',
              path: ['models', name, list, i],
              message: 'a model cannot fall back to itself',
            });
          }
        });
      }
    }
    const pb = p.server.passthrough_backend;
    if (pb !== undefined && !(pb in p.backends)) {
      ctx.addIssue({ code: 'custom', path: ['server', 'passthrough_backend'], message: `unknown backend "${pb}"` });
    }
    p.keys.forEach((k, i) => {
      k.models?.forEach((m, j) => {
        if (!(m in p.models)) {
          ctx.addIssue({ code: 'custom', path: ['keys', i, 'models', j], message: `unknown model "${m}"` });
        }
      });
    });
  });

export type Policies = z.infer<typeof policiesSchema>;
export type BackendConfig = z.infer<typeof backendSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type Pricing = z.infer<typeof pricingSchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type Budget = z.infer<typeof budgetSchema>;
export type KeyConfig = z.infer<typeof keySchema>;
export type CircuitBreakerConfig = z.infer<typeof circuitBreakerSchema>;
export type RetriesConfig = z.infer<typeof retriesSchema>;
export type InsightsConfig = z.infer<typeof insightsSchema>;
export type OtlpConfig = z.infer<typeof otlpSchema>;
