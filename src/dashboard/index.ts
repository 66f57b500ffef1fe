// The live dashboard: GET /admin/stats (JSON, admin-guarded by server/admin.ts) and the page
// at GET /dashboard (page.ts, routed by server/http.ts). Importing this module registers the
// admin route; gateway.ts does so once.
import { registerAdminRoute } from '../server/admin.js';
import { computeStats } from './stats.js';

registerAdminRoute('GET', 'stats', ({ gw }) => computeStats(gw.metrics, gw.stages().policy.names()));

export { computeStats, histogramQuantile, type Stats } from './stats.js';
export { handleDashboard } from './page.js';
