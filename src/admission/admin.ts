// What /admin/spend, /admin/limits and /admin/budgets/reset do (listed in server/routes.ts,
// guarded by the admin token there). They read the admission of the request's policy.
import { errors } from '../errors.js';
import type { Admission, AdmissionAdmin, ResetReport, SpendReport, LimitsReport } from './types.js';

function adminOf(admission: Admission, path: string): AdmissionAdmin {
  if (!admission.admin) throw errors.notFound(path);
  return admission.admin;
}

/** GET /admin/spend → SpendReport: spend, reserved and limit of every budget, current period. */
export function spendReport(admission: Admission): Promise<SpendReport> {
  return adminOf(admission, '/admin/spend').spend();
}

/** GET /admin/limits → LimitsReport: configured limits and current usage of every scope. */
export function limitsReport(admission: Admission): Promise<LimitsReport> {
  return adminOf(admission, '/admin/limits').limits();
}

const SCOPE_KINDS = new Set(['key', 'user', 'team', 'model', 'global']);

/** POST /admin/budgets/reset {scope, name} → ResetReport. */
export function resetBudget(admission: Admission, body: Record<string, unknown>): Promise<ResetReport> {
  const scope = body.scope;
  const name = body.name ?? (scope === 'global' ? 'global' : undefined);
  if (typeof scope !== 'string' || !SCOPE_KINDS.has(scope))
    throw errors.invalidParam('scope', "'scope' must be one of key, user, team, model, global.");
  if (typeof name !== 'string' || !name)
    throw errors.invalidParam('name', "'name' must be the configured name ('global' for the global scope).");
  return adminOf(admission, '/admin/budgets/reset').resetBudget(scope, name);
}
