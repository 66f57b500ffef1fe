// One undici Pool per backend, keep-alive, timeouts from policies.yaml. Built-in simulator
// backends are started (by the factory the composition root gives: this layer never loads
// the simulator) on an ephemeral loopback port, so they are reached over the same sockets
// and code path as a real model server.
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';
import type { BackendConfig } from '../config/schema.js';
import { secretsOf } from './scrub.js';
import { SIMULATOR_HEADERS } from './headers.js';

// undici's Pool module alone: its index also loads fetch, WebSocket, caches, mocks and more
// that the gateway never uses (idle RSS +20 MiB for the index, +11 MiB for the Pool).
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
type Pool = UndiciPool;

/** What a backend serves when its config lists no `apis:`. */
export const DEFAULT_APIS: Record<BackendConfig['type'], readonly string[]> = {
  openai: ['chat', 'completions', 'embeddings', 'responses'],
  anthropic: ['messages'],
  simulator: ['chat', 'completions', 'embeddings', 'responses', 'messages'],
};

/** A backend server the gateway runs itself (the built-in simulator): where it listens, how to stop it. */
export interface InProcessServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the server of a `type: simulator` backend. */
export type StartInProcess = (config: Extract<BackendConfig, { type: 'simulator' }>) => Promise<InProcessServer>;

/** How long an idle upstream connection is kept for reuse. */
export const KEEP_ALIVE_MS = 30_000;

export class Backend {
  readonly origin: string;
  /** Path prefix of base_url without a trailing slash, e.g. "/v1". */
  readonly basePath: string;
  readonly pool: Pool;
  /** Headers added to every upstream request: provider key and configured extras. */
  readonly injectedHeaders: Record<string, string>;
  /** Client headers forwarded beyond the built-in allow-list (forward_headers; the simulator's knobs). */
  readonly forwardHeaders: readonly string[];
  /** Headers sent upstream when the client's request did not carry them (anthropic-version). */
  readonly defaultHeaders: Record<string, string>;
  /** The APIs this backend serves (`apis:`, else DEFAULT_APIS of its type). */
  readonly apis: ReadonlySet<string>;
  /**
   * Whether this backend's last completed stream carried usage. While it does, the stream
   * tap need not keep chunks for a tokenizer count (see StreamTapOptions.retainChunks).
   */
  sendsUsage = false;
  /** The provider key and configured header values: scrubbed from anything an upstream says (upstream/scrub.ts). */
  readonly secrets: readonly string[];

  constructor(
    readonly name: string,
    baseUrl: string,
    readonly config: BackendConfig,
  ) {
    const url = new URL(baseUrl);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(this.origin, {
      // A stream holds its connection for its whole life, so a connection cap is a cap on
      // concurrent streams: none unless ops set pool_size (docs/defaults.md). Requests over
      // the cap wait in the pool's queue: llm_gateway_upstream_pending, queue_ms.
      connections: config.pool_size ?? null,
      connectTimeout: config.connect_timeout_ms,
      headersTimeout: config.timeout_ms,
      bodyTimeout: config.idle_timeout_ms,
      // Idle cleanup: a connection unused this long is closed (sooner if the server's
      // keep-alive hint says so), so a burst of streams leaves no sockets open behind it.
      keepAliveTimeout: KEEP_ALIVE_MS,
      // LLM responses are long-lived; pipelining would queue a request behind a stream.
      pipelining: 1,
    });
    this.injectedHeaders = { ...('headers' in config ? config.headers : {}) };
    this.forwardHeaders = config.type === 'simulator' ? SIMULATOR_HEADERS : config.forward_headers;
    this.apis = new Set(config.apis ?? DEFAULT_APIS[config.type]);
    this.defaultHeaders = config.type === 'anthropic' ? { 'anthropic-version': config.anthropic_version } : {};
    const key = 'api_key' in config ? config.api_key : undefined;
    // Anthropic reads the key from x-api-key; OpenAI-compatible servers from a bearer token.
    if (key)
      this.injectedHeaders[config.type === 'anthropic' ? 'x-api-key' : 'authorization'] =
        config.type === 'anthropic' ? key : `Bearer ${key}`;
    this.secrets = secretsOf([key, ...Object.values(this.injectedHeaders)]);
  }

  serves(api: string): boolean {
    return this.apis.has(api);
  }

  /** The kind of server, for the gen_ai.system span attribute. */
  get system(): string {
    if (this.config.type === 'simulator') return 'simulator';
    if (this.config.type === 'anthropic') return 'anthropic';
    return this.origin.includes('openai.com') ? 'openai' : 'openai_compatible';
  }
}

export class Backends {
  private constructor(
    private readonly byName: Map<string, Backend>,
    /** Simulators started for this set (a built-in backend's server lives with its Backend). */
    private readonly simulators: Map<Backend, InProcessServer>,
  ) {}

  /**
   * Builds the backends of a policy. With `previous` (a reload), a backend whose config is
   * unchanged is carried over as is: its pool keeps its warm keep-alive connections and its
   * in-flight requests. Call `retire(previous)` on the new set afterwards. `startSimulator`
   * starts the server of each `type: simulator` backend (gateway.ts gives it).
   */
  static async start(configs: Record<string, BackendConfig>, previous?: Backends, startSimulator?: StartInProcess): Promise<Backends> {
    const byName = new Map<string, Backend>();
    const simulators = new Map<Backend, InProcessServer>();
    for (const [name, cfg] of Object.entries(configs)) {
      const old = previous?.byName.get(name);
      if (old && JSON.stringify(old.config) === JSON.stringify(cfg)) {
        byName.set(name, old);
        const sim = previous!.simulators.get(old);
        if (sim) simulators.set(old, sim);
        continue;
      }
      let baseUrl: string;
      let sim: InProcessServer | undefined;
      if (cfg.type === 'simulator') {
        if (!startSimulator) throw new Error(`backend '${name}' is type: simulator, and no simulator was given to Backends.start`);
        sim = await startSimulator(cfg);
        baseUrl = sim.url;
      } else {
        baseUrl = cfg.base_url;
      }
      const backend = new Backend(name, baseUrl, cfg);
      byName.set(name, backend);
      if (sim) simulators.set(backend, sim);
    }
    return new Backends(byName, simulators);
  }

  get(name: string): Backend | undefined {
    return this.byName.get(name);
  }

  all(): Backend[] {
    return [...this.byName.values()];
  }

  /**
   * Closes the backends of `previous` that this set did not carry over. pool.close() lets
   * requests already dispatched on them finish (in-flight requests keep the policy they
   * started with); only then are their simulators stopped.
   */
  async retire(previous: Backends): Promise<void> {
    const mine = new Set(this.byName.values());
    const gone = [...previous.byName.values()].filter((b) => !mine.has(b));
    await Promise.all(
      gone.map(async (b) => {
        await b.pool.close();
        await previous.simulators.get(b)?.close();
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((b) => b.pool.destroy()));
    await Promise.all([...this.simulators.values()].map((s) => s.close()));
  }
}
