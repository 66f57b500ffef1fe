// One undici Pool per backend, keep-alive, timeouts from policies.yaml. Built-in simulator
// backends are started here on an ephemeral loopback port, so they are reached over the
// same sockets and code path as a real model server.
import { Pool } from 'undici';
import type { BackendConfig } from '../config/schema.js';
import { startSimulator, type Simulator } from '../simulator/index.js';

export class Backend {
  readonly origin: string;
  /** Path prefix of base_url without a trailing slash, e.g. "/v1". */
  readonly basePath: string;
  readonly pool: Pool;
  /** Headers added to every upstream request: provider key and configured extras. */
  readonly injectedHeaders: Record<string, string>;

  constructor(
    readonly name: string,
    baseUrl: string,
    readonly config: BackendConfig,
  ) {
    const url = new URL(baseUrl);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(this.origin, {
      connections: config.pool_size,
      connectTimeout: config.connect_timeout_ms,
      headersTimeout: config.timeout_ms,
      bodyTimeout: config.idle_timeout_ms,
      keepAliveTimeout: 30_000,
      // LLM responses are long-lived; pipelining would queue a request behind a stream.
      pipelining: 1,
    });
    this.injectedHeaders = { ...('headers' in config ? config.headers : {}) };
    const key = 'api_key' in config ? config.api_key : undefined;
    if (key) this.injectedHeaders.authorization = `Bearer ${key}`;
  }

  /** The kind of server, for the gen_ai.system span attribute. */
  get system(): string {
    if (this.config.type === 'simulator') return 'simulator';
    return this.origin.includes('openai.com') ? 'openai' : 'openai_compatible';
  }
}

export class Backends {
  private constructor(
    private readonly byName: Map<string, Backend>,
    private readonly simulators: Simulator[],
  ) {}

  static async start(configs: Record<string, BackendConfig>): Promise<Backends> {
    const byName = new Map<string, Backend>();
    const simulators: Simulator[] = [];
    for (const [name, cfg] of Object.entries(configs)) {
      let baseUrl: string;
      if (cfg.type === 'simulator') {
        const sim = await startSimulator({
          ttftMs: cfg.ttft_ms,
          tpotMs: cfg.tpot_ms,
          outputTokens: cfg.output_tokens,
          errorRate: cfg.error_rate,
        });
        simulators.push(sim);
        baseUrl = sim.url;
      } else {
        baseUrl = cfg.base_url;
      }
      byName.set(name, new Backend(name, baseUrl, cfg));
    }
    return new Backends(byName, simulators);
  }

  get(name: string): Backend | undefined {
    return this.byName.get(name);
  }

  all(): Backend[] {
    return [...this.byName.values()];
  }

  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((b) => b.pool.destroy()));
    await Promise.all(this.simulators.map((s) => s.close()));
  }
}
