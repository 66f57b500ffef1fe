// What a policy reload changed, for its log line and the POST /admin/reload answer. Names
// only (models, backends, top-level sections): never values, which may hold secrets.
import { isDeepStrictEqual } from 'node:util';
import type { Policies } from './schema.js';

export interface NamedChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface PolicyChanges {
  models: NamedChanges;
  backends: NamedChanges;
  /** Other top-level sections that differ (keys, teams, state, retries, ...). */
  sections: string[];
  /** Settings that cannot change in a running process (server.host, server.port, telemetry): a restart applies them. */
  needs_restart: string[];
}

function named<T>(before: Record<string, T>, after: Record<string, T>): NamedChanges {
  const names = (o: Record<string, T>) => Object.keys(o);
  return {
    added: names(after).filter((n) => !(n in before)),
    removed: names(before).filter((n) => !(n in after)),
    changed: names(after).filter((n) => n in before && !isDeepStrictEqual(before[n], after[n])),
  };
}

export function diffPolicies(before: Policies, after: Policies): PolicyChanges {
  const sections = (Object.keys({ ...before, ...after }) as Array<keyof Policies>).filter(
    (k) => k !== 'models' && k !== 'backends' && !isDeepStrictEqual(before[k], after[k]),
  );
  const needsRestart = (['host', 'port'] as const).filter((k) => before.server[k] !== after.server[k]).map((k) => `server.${k}`);
  // Trace export is set up once, when the gateway starts.
  if (!isDeepStrictEqual(before.telemetry, after.telemetry)) needsRestart.push('telemetry');
  return {
    models: named(before.models, after.models),
    backends: named(before.backends, after.backends),
    sections,
    needs_restart: needsRestart,
  };
}
