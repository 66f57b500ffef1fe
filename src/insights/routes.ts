// The admin surface of insights as plain functions (stages, request, body) → result, for the
// route table. Guarded by the admin token wherever they are mounted.
//   GET  /admin/insights             → { enabled, sla, quality, drift, anomalies, incidents, recommendations, chaos, webhook }
//   POST /admin/insights/baseline    {model?, unpin?, anomalies?} → { pinned, skipped, anomalies? }
//   GET  /admin/chaos                → { chaos: ChaosRule[] }
//   POST /admin/chaos                {model?, backend?, kind?, latency_ms?, duration_s?, status?, rate?} → { chaos: ChaosRule }
//   POST /admin/chaos/stop           {id?} → { stopped: ChaosRule[] }
import type { IncomingMessage } from 'node:http';
import { errors } from '../errors.js';
import { ChaosError } from './chaos.js';
import type { BudgetFact, Insights } from './index.js';

/** What these routes need of the gateway's stages. */
export interface InsightsStages {
  insights: Insights;
  admission: { admin?: { spend(): Promise<{ budgets: BudgetFact[] }> } };
}

type Body = Record<string, unknown>;

export async function getInsights(stages: InsightsStages, _req?: IncomingMessage, _body?: Body): Promise<Record<string, unknown>> {
  // Budgets come from admission's own report (spend and period of each); without budgets, none.
  const budgets = stages.insights.enabled ? ((await stages.admission.admin?.spend().catch(() => undefined))?.budgets ?? []) : [];
  return stages.insights.report(budgets);
}

export function postBaseline(stages: InsightsStages, _req: IncomingMessage | undefined, body: Body): Record<string, unknown> {
  if (!stages.insights.enabled) throw errors.insightsDisabled();
  const model = body.model;
  if (model !== undefined && (typeof model !== 'string' || !stages.insights.known().models.has(model))) {
    throw errors.invalidParam('model', "'model' must be one of the configured model names.");
  }
  if (body.unpin !== undefined && typeof body.unpin !== 'boolean') throw errors.invalidParam('unpin', "'unpin' must be a boolean.");
  if (body.anomalies !== undefined && typeof body.anomalies !== 'boolean')
    throw errors.invalidParam('anomalies', "'anomalies' must be a boolean.");
  const drift = stages.insights.pinBaseline(model, body.unpin === true);
  // {anomalies: true}: the current latency and error levels become the new normal too.
  return body.anomalies === true ? { ...drift, anomalies: stages.insights.resetAnomalies(model) } : drift;
}

export function getChaos(stages: InsightsStages): Record<string, unknown> {
  return { chaos: stages.insights.chaos.list() };
}

export function postChaos(stages: InsightsStages, _req: IncomingMessage | undefined, body: Body): Record<string, unknown> {
  try {
    return { chaos: stages.insights.chaos.start(body, stages.insights.known()) };
  } catch (e) {
    if (e instanceof ChaosError) throw errors.invalidParam(e.param, e.message);
    throw e;
  }
}

export function stopChaos(stages: InsightsStages, _req: IncomingMessage | undefined, body: Body): Record<string, unknown> {
  if (body.id !== undefined && typeof body.id !== 'string') throw errors.invalidParam('id', "'id' must be a chaos rule id.");
  return { stopped: stages.insights.chaos.stop(body.id) };
}
