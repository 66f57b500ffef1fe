// /admin/circuits: every deployment's breaker, and an operator override.
//   GET  /admin/circuits                      → { circuits: CircuitView[] }
//   POST /admin/circuits/{model}/{backend}    {"state":"open"|"closed"} → { circuits: [...changed] }
// A model name may contain '/', so the backend is the last segment and the model the rest.
import { registerAdminRoute } from '../server/admin.js';
import { GatewayError } from '../errors.js';

registerAdminRoute('GET', 'circuits', ({ gw }) => ({ circuits: gw.stages().router.breakers.view() }));

registerAdminRoute('POST', 'circuits', ({ gw, params, body }) => {
  if (params.length < 2) {
    throw new GatewayError(400, 'invalid_request_error', 'invalid_request', 'Use POST /admin/circuits/{model}/{backend} with {"state":"open"|"closed"}.');
  }
  const state = body.state;
  if (state !== 'open' && state !== 'closed') {
    throw new GatewayError(400, 'invalid_request_error', 'invalid_value', `'state' must be "open" or "closed".`, 'state');
  }
  const backend = params[params.length - 1]!;
  const model = params.slice(0, -1).join('/');
  const circuits = gw.stages().router.breakers.force(model, backend, state);
  if (!circuits.length) {
    throw new GatewayError(404, 'invalid_request_error', 'not_found', `No deployment of model '${model}' on backend '${backend}'.`);
  }
  return { circuits };
});
