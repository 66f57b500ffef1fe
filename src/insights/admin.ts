// Mounts the insights routes (routes.ts) on the admin registry, in one place until the
// server's route table takes them over.
import { registerAdminRoute } from '../server/admin.js';
import { errors } from '../errors.js';
import { getChaos, getInsights, postBaseline, postChaos, stopChaos } from './routes.js';

registerAdminRoute('GET', 'insights', ({ gw, req, params, body }) => {
  if (params.length) throw errors.notFound('/admin/insights/' + params.join('/'));
  return getInsights(gw.stages(), req, body);
});
registerAdminRoute('POST', 'insights', ({ gw, req, params, body }) => {
  if (params.length !== 1 || params[0] !== 'baseline') throw errors.notFound('/admin/insights/' + params.join('/'));
  return postBaseline(gw.stages(), req, body);
});
registerAdminRoute('GET', 'chaos', ({ gw }) => getChaos(gw.stages()));
registerAdminRoute('POST', 'chaos', ({ gw, req, params, body }) => {
  if (params.length === 0) return postChaos(gw.stages(), req, body);
  if (params.length === 1 && params[0] === 'stop') return stopChaos(gw.stages(), req, body);
  throw errors.notFound('/admin/chaos/' + params.join('/'));
});
