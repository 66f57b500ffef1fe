// A real gateway in this process on a loopback port, its log lines captured as objects (pino
// writes JSON; we parse it, as pino's own tests do), and the official SDKs pointed at it.
import { Writable } from 'node:stream';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import pino from 'pino';
import { parsePolicies } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { Arrivals } from './wait.js';

export interface LogLine {
  msg: string;
  level: number;
  [k: string]: unknown;
}

export interface TestGateway {
  gw: Gateway;
  url: string;
  baseURL: string;
  port: number;
  logs: LogLine[];
  /** Resolves with the next request log line that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  metricsText(): Promise<string>;
  close(): Promise<void>;
}

export async function startGateway(yamlText: string, env: NodeJS.ProcessEnv = {}): Promise<TestGateway> {
  const policies = parsePolicies(yamlText, 'test.yaml', { ...process.env, ...env });
  const logs = new Arrivals<LogLine>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        logs.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  const logger = pino({ level: 'debug', base: null }, sink);
  const gw = await Gateway.create(policies, { logger, metrics: new Metrics({ defaultMetrics: false }), env: { ...process.env, ...env } });
  const { port } = await gw.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${port}`;
  return {
    gw,
    url,
    baseURL: `${url}/v1`,
    port,
    logs: logs.items,
    waitForLog: (pred, timeoutMs = 5000) => logs.find(pred, timeoutMs, 'timed out waiting for a log line'),
    metricsText: () => gw.metrics.registry.metrics(),
    close: () => gw.close(1000),
  };
}

type OpenAIOptions = NonNullable<ConstructorParameters<typeof OpenAI>[0]>;
type AnthropicOptions = NonNullable<ConstructorParameters<typeof Anthropic>[0]>;

/** The OpenAI SDK as a client of a gateway (or of anything with a baseURL ending in /v1); no SDK retries, so a test sees each answer. */
export function openaiClient(gw: { baseURL: string }, apiKey = 'k', extra: Partial<OpenAIOptions> = {}): OpenAI {
  return new OpenAI({ baseURL: gw.baseURL, apiKey, maxRetries: 0, ...extra });
}

/** The Anthropic SDK as a client of a gateway (it appends /v1/messages to the bare url itself). */
export function anthropicClient(gw: { url: string }, apiKey: string | null = 'k', extra: Partial<AnthropicOptions> = {}): Anthropic {
  return new Anthropic({ baseURL: gw.url, apiKey, maxRetries: 0, ...extra });
}

export interface GatewayFixture extends TestGateway {
  /** OpenAI SDK client with `apiKey`. */
  openai: OpenAI;
  /** Anthropic SDK client with `apiKey`. */
  anthropic: Anthropic;
}

/**
 * A gateway serving `policiesYaml` and both SDKs ready to call it, as the README shows them:
 * `new OpenAI({ baseURL, apiKey })` and `new Anthropic({ baseURL, apiKey })`. close() stops it.
 */
export async function withGateway(policiesYaml: string, opts: { apiKey?: string; env?: NodeJS.ProcessEnv } = {}): Promise<GatewayFixture> {
  const gw = await startGateway(policiesYaml, opts.env);
  return { ...gw, openai: openaiClient(gw, opts.apiKey), anthropic: anthropicClient(gw, opts.apiKey) };
}

/** Value of one Prometheus sample in exposition text, e.g. metricValue(text, 'llm_gateway_requests_total', {status: '200'}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total = (total ?? 0) + Number(m[4]);
  }
  return total;
}
