// What /admin/circuits does (listed in server/routes.ts, guarded by the admin token there):
// every deployment's breaker, and an operator override.
//   GET  /admin/circuits                      → { circuits: CircuitView[] }
//   POST /admin/circuits/{model}/{backend}    {"state":"open"|"closed"} → { circuits: [...changed] }
// A model name may contain '/', so the backend is the last segment and the model the rest.
import { errors } from '../errors.js';
import type { Router } from './index.js';

export function circuitsView(router: Router): { circuits: unknown[] } {
  return { circuits: router.breakers.view() };
}

/** `target`: the path segments after /admin/circuits/, decoded. */
export function forceCircuit(router: Router, target: string[], body: Record<string, unknown>): { circuits: unknown[] } {
  if (target.length < 2) throw errors.circuitUsage();
  const state = body.state;
  if (state !== 'open' && state !== 'closed') throw errors.invalidParam('state', `'state' must be "open" or "closed".`);
  const backend = target[target.length - 1]!;
  const model = target.slice(0, -1).join('/');
  const circuits = router.breakers.force(model, backend, state);
  if (!circuits.length) throw errors.noSuchDeployment(model, backend);
  return { circuits };
}
