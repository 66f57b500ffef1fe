// /admin/spend, /admin/limits, /admin/budgets/reset: registered with the admin router
// (guarded by the admin token there). They read the admission of the current policy.
import { registerAdminRoute, type AdminRequest } from '../server/admin.js';
import { errors } from '../errors.js';
import type { AdmissionAdmin } from './types.js';

function adminOf(r: AdminRequest): AdmissionAdmin {
  const a = r.gw.stages().admission.admin;
  if (!a) throw errors.notFound('/admin/' + r.params.join('/'));
  return a;
}

/** GET /admin/spend → SpendReport: spend, reserved and limit of every budget, current period. */
registerAdminRoute('GET', 'spend', (r) => adminOf(r).spend());

/** GET /admin/limits → LimitsReport: configured limits and current usage of every scope. */
registerAdminRoute('GET', 'limits', (r) => adminOf(r).limits());

const SCOPE_KINDS = new Set(['key', 'user', 'team', 'model', 'global']);

/** POST /admin/budgets/reset {scope, name} → ResetReport. */
registerAdminRoute('POST', 'budgets', (r) => {
  if (r.params[0] !== 'reset' || r.params.length !== 1) throw errors.notFound('/admin/budgets/' + r.params.join('/'));
  const scope = r.body.scope;
  const name = r.body.name ?? (scope === 'global' ? 'global' : undefined);
  if (typeof scope !== 'string' || !SCOPE_KINDS.has(scope)) throw errors.invalidParam('scope', "'scope' must be one of key, user, team, model, global.");
  if (typeof name !== 'string' || !name) throw errors.invalidParam('name', "'name' must be the configured name ('global' for the global scope).");
  return adminOf(r).resetBudget(scope, name);
});
