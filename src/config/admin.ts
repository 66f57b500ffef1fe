// POST /admin/reload: re-reads the policies file, as a file change or SIGHUP would. 200
// {ok, changed} once the new policy serves; 400 `policy_invalid` naming each bad field (path
// and line) while the previous policy keeps serving.
import { registerAdminRoute } from '../server/admin.js';
import { GatewayError } from '../errors.js';

registerAdminRoute('POST', 'reload', async ({ gw, params }) => {
  if (params.length) throw new GatewayError(404, 'invalid_request_error', 'not_found', `Unknown path /admin/reload/${params.join('/')}.`);
  const r = await gw.reload(undefined, 'admin');
  if (r.ok) return { ok: true, changed: r.changed };
  throw new GatewayError(400, 'invalid_request_error', 'policy_invalid', `The policy was not reloaded (the previous one keeps serving): ${r.problems.join('; ')}`);
});
