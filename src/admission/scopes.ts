// The scopes a request is checked against, compiled once per policy: key → user → team →
// model → global. Only scopes that configure a limit or a budget exist at all, so a policy
// without any resolves every request to "nothing to check" without touching a store.
import type { Budget, Limits, Policies } from '../config/schema.js';
import type { Identity } from '../auth/index.js';
import type { Route } from '../policy/index.js';
import type { Period } from './periods.js';

export type ScopeKind = 'key' | 'user' | 'team' | 'model' | 'global';
export type LimitKind = 'rpm' | 'tpm' | 'concurrency' | 'budget';
export const SCOPE_KINDS: readonly ScopeKind[] = ['key', 'user', 'team', 'model', 'global'];

/** USD are kept as integer nano-dollars everywhere, so sums are exact (100 × $0.01 is $1.00, not 1.0000000000000007). */
export const NANO = 1e9;
export const toNano = (usd: number): number => Math.round(usd * NANO);
export const fromNano = (nano: number): number => nano / NANO;

export interface ScopeBudget {
  readonly usd: number;
  readonly nano: number;
  readonly period: Period;
}

export interface Scope {
  readonly kind: ScopeKind;
  /** The configured name ("global" for the global scope). Bounded: safe as a metric label. */
  readonly name: string;
  /** "kind:name", the scope's identity in stores and the state file. */
  readonly id: string;
  /** Index into a store's per-scope arrays. */
  readonly slot: number;
  /** 0 = no such limit. */
  readonly rpm: number;
  readonly tpm: number;
  readonly concurrency: number;
  readonly budget: ScopeBudget | undefined;
}

export class ScopeTable {
  readonly all: Scope[] = [];
  private readonly byKind: Record<ScopeKind, Map<string, Scope>> = {
    key: new Map(),
    user: new Map(),
    team: new Map(),
    model: new Map(),
    global: new Map(),
  };
  private readonly global: Scope | undefined;

  constructor(p: Pick<Policies, 'keys' | 'users' | 'teams' | 'models' | 'global'>) {
    for (const k of p.keys) this.add('key', k.name, k.limits, k.budget);
    for (const [name, s] of Object.entries(p.users)) this.add('user', name, s.limits, s.budget);
    for (const [name, s] of Object.entries(p.teams)) this.add('team', name, s.limits, s.budget);
    for (const [name, m] of Object.entries(p.models)) this.add('model', name, m.limits, m.budget);
    this.global = p.global ? this.add('global', 'global', p.global.limits, p.global.budget) : undefined;
  }

  private add(kind: ScopeKind, name: string, limits: Limits | undefined, budget: Budget | undefined): Scope | undefined {
    const map = this.byKind[kind];
    // Two keys may share a name: the first one that configures something defines the scope.
    if (map.has(name)) return map.get(name);
    const rpm = limits?.rpm ?? 0;
    const tpm = limits?.tpm ?? 0;
    const concurrency = limits?.concurrency ?? 0;
    if (!rpm && !tpm && !concurrency && !budget) return undefined;
    const scope: Scope = {
      kind,
      name,
      id: `${kind}:${name}`,
      slot: this.all.length,
      rpm,
      tpm,
      concurrency,
      budget: budget && { usd: budget.usd, nano: toNano(budget.usd), period: budget.period },
    };
    this.all.push(scope);
    map.set(name, scope);
    return scope;
  }

  get empty(): boolean {
    return this.all.length === 0;
  }

  get budgets(): Scope[] {
    return this.all.filter((s) => s.budget);
  }

  find(kind: string, name: string): Scope | undefined {
    // Own kinds only: an admin body or a state file saying "__proto__" or "constructor" is no kind.
    if (!Object.hasOwn(this.byKind, kind)) return undefined;
    return this.byKind[kind as ScopeKind].get(name);
  }

  /** The scopes that apply to a request, most specific first; undefined when none does. */
  resolve(identity: Identity, route: Route | undefined): Scope[] | undefined {
    const k = identity.config ? this.byKind.key.get(identity.key) : undefined;
    const u = identity.user !== undefined ? this.byKind.user.get(identity.user) : undefined;
    const t = identity.team !== undefined ? this.byKind.team.get(identity.team) : undefined;
    const m = route ? this.byKind.model.get(route.name) : undefined;
    const g = this.global;
    if (!k && !u && !t && !m && !g) return undefined;
    const out: Scope[] = [];
    if (k) out.push(k);
    if (u) out.push(u);
    if (t) out.push(t);
    if (m) out.push(m);
    if (g) out.push(g);
    return out;
  }
}
