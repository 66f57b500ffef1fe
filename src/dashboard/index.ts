// The live dashboard: the page at GET /dashboard (page.ts) and the data behind it, GET
// /admin/stats (stats.ts): both listed in server/routes.ts.
export { computeStats, histogramQuantile, type Stats } from './stats.js';
export { handleDashboard } from './page.js';
