// Incidents: an anomaly that persists opens one per (model, signal); it resolves when the
// signal is back. Each is logged (warn, error from high), counted, listed (the last
// MAX_KEPT), and sent to the webhook. Its hint says what the gateway knows about the
// cause: which backends, TTFT or TPOT, the error reasons, breakers, a recent policy reload.
import type { Signal } from './anomaly.js';

export type Severity = 'critical' | 'high' | 'medium' | 'low';
const RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2, critical: 3 };

export interface Incident {
  id: string;
  model: string;
  /** The one backend it is confined to, or null when it is on all of the model's backends. */
  backend: string | null;
  kind: Signal;
  severity: Severity;
  started_at: string;
  resolved_at: string | null;
  evidence: Record<string, unknown>;
  hint: string;
}

export const MAX_KEPT = 100;

export interface HintFacts {
  kind: Signal;
  model: string;
  /** Backends that carried the anomalous points, and those whose points stayed normal. */
  anomalousBackends: string[];
  normalBackends: string[];
  /** For ttft incidents: is TPOT anomalous too (and the reverse)? */
  otherLatencyAnomalous: boolean | undefined;
  /** Recent error reasons of the model, with counts. */
  errorReasons: Record<string, number>;
  /** Breakers of the model not closed now, or opened recently. */
  breakers: Array<{ backend: string; state: string; openings: number }>;
  /** Seconds since the last policy reload, if one happened in the last 10 minutes. */
  reloadAgoS: number | undefined;
}

/** A one-paragraph root-cause hint from the facts (each clause only when it says something). */
export function buildHint(f: HintFacts): string {
  const parts: string[] = [];
  if (f.anomalousBackends.length === 1 && f.normalBackends.some((b) => b !== f.anomalousBackends[0])) {
    parts.push(
      `only backend '${f.anomalousBackends[0]}' is affected (${f.normalBackends.filter((b) => b !== f.anomalousBackends[0]).join(', ')} normal): suspect that backend, not the model or the gateway`,
    );
  } else if (f.anomalousBackends.length === 1) {
    parts.push(`on backend '${f.anomalousBackends[0]}', the only one serving '${f.model}' recently`);
  } else if (f.anomalousBackends.length > 1) {
    parts.push(`all backends affected (${f.anomalousBackends.join(', ')}): suspect the model's provider, the prompts, or the gateway host`);
  }
  if (f.kind === 'ttft') {
    parts.push(
      f.otherLatencyAnomalous
        ? 'TTFT and TPOT both rose: the backend generates slower (load, a smaller GPU share)'
        : 'TTFT rose while TPOT stayed normal: waiting before the first token (queueing, prefill of longer prompts, connection setup)',
    );
  } else if (f.kind === 'tpot') {
    parts.push(
      f.otherLatencyAnomalous
        ? 'TPOT and TTFT both rose: the backend is overloaded'
        : 'TPOT rose while TTFT stayed normal: decoding got slower (batch size, longer outputs)',
    );
  } else if (f.kind === 'duration') {
    parts.push('whole-request duration rose: check output lengths (drift) and TTFT/TPOT');
  }
  const reasons = Object.entries(f.errorReasons).sort((a, b) => b[1] - a[1]);
  if (reasons.length) parts.push(`recent errors: ${reasons.map(([r, n]) => `${r} ×${n}`).join(', ')}`);
  else if (f.kind === 'error_rate') parts.push('no upstream error reason recorded');
  for (const b of f.breakers) parts.push(`circuit breaker ${f.model}/${b.backend} is ${b.state} (opened ${b.openings}×)`);
  if (f.reloadAgoS !== undefined) parts.push(`a policy reload ${Math.round(f.reloadAgoS)} s before: check what it changed`);
  return parts.join('; ') || 'no further clue from the gateway';
}

/** Bounded reason of an error code/status, for hints (never the raw upstream code: it is not ours to bound). */
export function errorReason(status: number, code: string | undefined): string | undefined {
  if (status === 499 || status < 400) return undefined;
  const c = code ?? '';
  if (c.includes('timeout')) return 'timeout';
  if (c.includes('unreachable') || c.includes('dns')) return 'connect';
  if (c.includes('reset')) return 'reset';
  if (c.includes('stream')) return 'mid_stream';
  if (status === 429 || c === 'rate_limit_exceeded') return '429';
  if (c === 'insufficient_quota') return 'budget';
  if (status >= 500) return '5xx';
  return undefined;
}

export const ERROR_REASONS = ['timeout', 'connect', 'reset', 'mid_stream', '429', 'budget', '5xx'] as const;

export function worse(a: Severity, b: Severity): Severity {
  return RANK[a] >= RANK[b] ? a : b;
}

export function isLoud(s: Severity): boolean {
  return RANK[s] >= RANK.high;
}
