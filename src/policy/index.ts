// Model name → route: its deployments, pricing, limits, fallbacks and breaker settings.
import type { CircuitBreakerConfig, ModelConfig, Policies } from '../config/schema.js';

export interface Route {
  /** The name clients send. */
  name: string;
  config: ModelConfig;
  breaker: CircuitBreakerConfig;
}

export class PolicyTable {
  private readonly routes = new Map<string, Route>();

  constructor(readonly policies: Policies) {
    for (const [name, config] of Object.entries(policies.models)) {
      this.routes.set(name, { name, config, breaker: { ...policies.circuit_breaker, ...config.circuit_breaker } });
    }
  }

  resolve(model: string): Route | undefined {
    return this.routes.get(model);
  }

  names(): string[] {
    return [...this.routes.keys()];
  }
}
