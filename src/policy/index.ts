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
  /**
   * True when some scope has a token limit or a budget: only then does admission need a
   * prompt-token estimate (a tokenizer pass) for every request.
   */
  readonly needsTokenEstimates: boolean;

  constructor(readonly policies: Policies) {
    for (const [name, config] of Object.entries(policies.models)) {
      this.routes.set(name, { name, config, breaker: { ...policies.circuit_breaker, ...config.circuit_breaker } });
    }
    const scopes = [
      ...policies.keys,
      ...Object.values(policies.users),
      ...Object.values(policies.teams),
      ...Object.values(policies.models),
      ...(policies.global ? [policies.global] : []),
    ];
    this.needsTokenEstimates = scopes.some((s) => s.limits?.tpm !== undefined || s.budget !== undefined);
  }

  resolve(model: string): Route | undefined {
    return this.routes.get(model);
  }

  names(): string[] {
    return [...this.routes.keys()];
  }
}
