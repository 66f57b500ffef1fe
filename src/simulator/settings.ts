// The simulator's public types, its live-tunable settings and their validation
// (patches also arrive as JSON over HTTP, so nothing is trusted).
import type { Fault } from './faults.js';

export interface SimulatorOptions {
  host?: string; // default 127.0.0.1
  port?: number; // default 0 (ephemeral)
  ttftMs?: number; // delay before the first content chunk (default 150)
  tpotMs?: number; // delay between content chunks (default 20)
  outputTokens?: number; // tokens per completion (default 16); max_tokens / max_completion_tokens caps it
  errorRate?: number; // 0..1 probability a request fails with `errorStatus`
  errorStatus?: number; // default 500
  includeUsageAlways?: boolean; // emit a usage chunk even if not requested (some servers do)
  omitUsage?: boolean; // never send usage (models servers that don't)
  modelName?: string; // if set, the `model` field of responses; else echo the request's model
  // Traffic-shape knobs (insights tests), all settable at run time through configure():
  refusalRate?: number; // 0..1 probability a text answer is a refusal ("I cannot help with that.")
  outputTokensSd?: number; // > 0: tokens per completion ~ N(outputTokens, outputTokensSd), at least 1
  seed?: number; // seeds the draws of refusalRate and outputTokensSd (reproducible runs); default Math.random
}

export interface SimulatorStats {
  /** API requests received (not /_sim/*) */
  requests: number;
  /** the client went away before the response ended */
  aborted: number;
  /** 2xx responses sent in full */
  completed: number;
  /** requests a fault (or errorRate) applied to */
  faults: number;
  /** text answers sent as refusals (refusalRate) */
  refusals: number;
  byPath: Record<string, number>;
  lastRequest?: { headers: Record<string, string | string[] | undefined>; body: unknown };
}

export type SimulatorPatch = Partial<SimulatorOptions> & { fault?: Fault | null };

export interface Simulator {
  url: string; // http://127.0.0.1:PORT/v1 (base_url form)
  port: number;
  stats: SimulatorStats;
  configure(patch: SimulatorPatch): void; // change behaviour live; throws on an invalid patch
  resetStats(): void;
  close(): Promise<void>; // closes the server, destroys open sockets, stops every timer
}

export type Settings = Required<Omit<SimulatorOptions, 'host' | 'port' | 'modelName' | 'seed'>> & { modelName: string | undefined };

export const DEFAULTS: Settings = {
  ttftMs: 150,
  tpotMs: 20,
  outputTokens: 16,
  errorRate: 0,
  errorStatus: 500,
  includeUsageAlways: false,
  omitUsage: false,
  modelName: undefined,
  refusalRate: 0,
  outputTokensSd: 0,
};

const NUMERIC = ['ttftMs', 'tpotMs', 'outputTokens', 'errorRate', 'errorStatus', 'refusalRate', 'outputTokensSd'] as const;
const FLAGS = ['includeUsageAlways', 'omitUsage'] as const;

/** Apply a patch to settings, validating it (patches also arrive as JSON over HTTP). */
export function applyPatch(s: Settings, patch: Record<string, unknown>): void {
  for (const k of NUMERIC) {
    const v = patch[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${k} must be a number >= 0`);
    s[k] = v;
  }
  if (s.errorRate > 1) throw new Error('errorRate must be 0..1');
  if (s.refusalRate > 1) throw new Error('refusalRate must be 0..1');
  if (s.errorStatus < 100 || s.errorStatus > 599) throw new Error('errorStatus must be 100..599');
  for (const k of FLAGS) {
    const v = patch[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw new Error(`${k} must be a boolean`);
    s[k] = v;
  }
  if ('modelName' in patch) {
    const v = patch.modelName;
    if (v !== undefined && v !== null && typeof v !== 'string') throw new Error('modelName must be a string');
    s.modelName = v ?? undefined;
  }
}

export function emptyStats(): SimulatorStats {
  return { requests: 0, aborted: 0, completed: 0, faults: 0, refusals: 0, byPath: {} };
}
