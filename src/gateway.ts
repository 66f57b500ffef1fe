// The composition root: builds every stage from a policy and owns the server's lifetime.
// A request takes one snapshot of the stages when it starts (gw.stages()), so a policy
// reload swaps the snapshot without touching requests already in flight.
import type { Server, ServerResponse } from 'node:http';
import type { Policies } from './config/schema.js';
import { KeyRing } from './auth/index.js';
import { PolicyTable } from './policy/index.js';
import { createAdmission, type Admission } from './admission/index.js';
import { Router } from './routing/index.js';
import { Backends } from './upstream/backends.js';
import { Metrics } from './telemetry/metrics.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { createHttpServer } from './server/http.js';
import './dashboard/index.js'; // registers GET /admin/stats (the live dashboard's data)

export interface Stages {
  policies: Policies;
  policy: PolicyTable;
  auth: KeyRing;
  admission: Admission;
  router: Router;
  backends: Backends;
  metrics: Metrics;
  logger: Logger;
}

export interface GatewayOptions {
  logger?: Logger;
  metrics?: Metrics;
  policiesFile?: string;
}

export class Gateway {
  readonly inflight = new Set<ServerResponse>();
  readonly server: Server;
  readonly metrics: Metrics;
  readonly logger: Logger;
  private current: Stages;
  private draining = false;

  private constructor(stages: Stages, readonly options: GatewayOptions) {
    this.current = stages;
    this.metrics = stages.metrics;
    this.logger = stages.logger;
    this.server = createHttpServer(this);
  }

  static async create(policies: Policies, options: GatewayOptions = {}): Promise<Gateway> {
    const metrics = options.metrics ?? new Metrics();
    const logger = options.logger ?? createLogger();
    const backends = await Backends.start(policies.backends);
    const policy = new PolicyTable(policies);
    const stages: Stages = {
      policies,
      policy,
      auth: new KeyRing(policies),
      admission: createAdmission(policies, { metrics, logger }),
      router: new Router(policy, backends, metrics, policies, logger),
      backends,
      metrics,
      logger,
    };
    return new Gateway(stages, options);
  }

  stages(): Stages {
    return this.current;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  ready(): { ok: boolean; reason?: string } {
    if (this.draining) return { ok: false, reason: 'draining' };
    if (!this.current.admission.ready()) return { ok: false, reason: 'state store unreachable' };
    return { ok: true };
  }

  listen(port: number, host: string): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const addr = this.server.address();
        resolve({ port: typeof addr === 'object' && addr ? addr.port : port, host });
      });
    });
  }

  /**
   * Graceful stop: refuse new connections, let in-flight requests (streams included) finish
   * for up to drainMs, then cut what is left, then release pools, stores and simulators.
   */
  async close(drainMs = this.current.policies.server.drain_timeout_ms): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while (this.inflight.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      this.server.closeIdleConnections();
    }
    if (this.inflight.size > 0) {
      this.logger.warn({ inflight: this.inflight.size }, 'drain timeout: closing remaining requests');
    }
    this.server.closeAllConnections();
    await closed;
    const s = this.current;
    await s.admission.close();
    await s.backends.close();
  }
}
