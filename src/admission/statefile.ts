// The memory store's spend survives a restart through a JSON file. Writes are atomic
// (temp file, fsync, rename), so a crash leaves the old file or the new one, never half of
// one. The file is written every `state.flush_interval_ms` when spend changed, and on
// close: a crash (SIGKILL, OOM, power) loses at most the spend committed during the last
// flush interval. Rate-limit windows and in-flight reservations are not persisted: the
// requests they belong to die with the process.
//
// After a policy reload the new engine's StateFile takes the file over (takeOver()): the old
// one stops writing at once, with no final write that could land after the new engine's.
import { mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { open, rename, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { MemoryStore, PersistedBudget } from './memory.js';
import type { Scope, ScopeTable } from './scopes.js';

export interface StateFileV1 {
  version: 1;
  saved_at: string;
  budgets: Record<string, PersistedBudget>;
}

/** Far above any real state file (a few hundred bytes per budget): a bigger one is not ours. */
const MAX_STATE_FILE_BYTES = 16 * 1024 * 1024;

/**
 * The state file cannot be used: starting anyway would silently reset every budget to 0 (and
 * the first flush would overwrite the evidence), so the gateway refuses to start.
 */
export class StateFileError extends Error {
  readonly code = 'GW_STATE_FILE_UNUSABLE';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(
      `state file ${file} ${reason}: refusing to start, so that the spend it records is not silently reset to 0. ` +
        `Repair or restore it, or start once with --reset-state (or set state.on_corrupt: fresh) to move it aside ` +
        `(${file}.corrupt-<time>) and start with no recorded spend.`,
    );
  }
}

/** Where a state file is moved aside: next to it, named by the time. */
export function asidePath(file: string, why: 'corrupt' | 'reset', now = new Date()): string {
  return `${file}.${why}-${now.toISOString().replace(/[:.]/g, '-')}`;
}

/**
 * --reset-state: moves the state file aside (if there is one) so the gateway starts with no
 * recorded spend. Returns the new path, or undefined when there was no file.
 */
export function resetStateFile(file: string): string | undefined {
  const to = asidePath(file, 'reset');
  try {
    renameSync(file, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(file, `cannot be moved aside for --reset-state (${(e as Error).message})`);
  }
  return to;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
};

/** The file's content, checked field by field; throws a reason (for StateFileError) at the first wrong value. */
export function parseStateFile(text: string): StateFileV1 {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(data)) throw new Error('is not a JSON object');
  if (data['version'] !== 1) throw new Error(`has an unknown version ${show(data['version'])} (expected 1)`);
  const budgets = data['budgets'];
  if (!isRecord(budgets)) throw new Error('has no "budgets" object');
  for (const [id, b] of Object.entries(budgets)) {
    const where = `budgets[${JSON.stringify(id).slice(0, 60)}]`;
    if (!id.includes(':')) throw new Error(`has a budget id without a scope: ${where}`);
    if (!isRecord(b)) throw new Error(`has ${where} that is not an object`);
    if (typeof b['period'] !== 'string' || b['period'] === '')
      throw new Error(`has ${where}.period that is not a period id (${show(b['period'])})`);
    const spent = b['spent_nano'];
    if (typeof spent !== 'number' || !Number.isSafeInteger(spent) || spent < 0) {
      throw new Error(`has ${where}.spent_nano that is not a non-negative integer (${show(spent)})`);
    }
    const alerted = b['alerted'];
    if (alerted !== undefined && !(Array.isArray(alerted) && alerted.every((a) => typeof a === 'number' && Number.isFinite(a)))) {
      throw new Error(`has ${where}.alerted that is not a list of thresholds (${show(alerted)})`);
    }
  }
  return data as unknown as StateFileV1;
}

export type OnCorrupt = 'refuse' | 'fresh';

/**
 * Reads and checks a state file, with no effect on any store (a caller refuses before it has
 * changed anything). Undefined when there is no file yet (a first start), or when an unusable
 * one was moved aside (`onCorrupt: 'fresh'`, logged). Otherwise an unusable file throws
 * StateFileError: starting anyway would reset every budget to 0, and the first flush would
 * overwrite the evidence.
 */
export function checkStateFile(path: string, onCorrupt: OnCorrupt, logger: Logger, metrics: Metrics): StateFileV1 | undefined {
  try {
    const text = readStateText(path);
    return text === undefined ? undefined : parseStateFile(text);
  } catch (e) {
    metrics.storeErrors.inc({ store: 'memory', op: 'load' });
    const reason = (e as Error).message;
    if (onCorrupt !== 'fresh') throw new StateFileError(path, reason);
    const aside = asidePath(path, 'corrupt');
    try {
      renameSync(path, aside);
    } catch (re) {
      throw new StateFileError(path, `${reason}, and cannot be moved aside (${(re as Error).message})`);
    }
    logger.error(
      { file: path, moved_to: aside, reason },
      'the state file cannot be used: moved aside, starting with no recorded spend (state.on_corrupt: fresh)',
    );
    return undefined;
  }
}

/** The file's text; undefined when there is none. Throws (with a reason) when it cannot be read. */
function readStateText(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('is not a regular file');
    if (st.size > MAX_STATE_FILE_BYTES) throw new Error(`is ${st.size} bytes, more than a state file can be (${MAX_STATE_FILE_BYTES})`);
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw code ? new Error(`cannot be read (${code})`) : e;
  }
}

export class StateFile {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  /** Another StateFile owns the file now: never write again. */
  private stopped = false;

  constructor(
    readonly path: string,
    private readonly intervalMs: number,
    private readonly store: MemoryStore,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Reads the file into the store (synchronously: once, at start). Spend of a period that has
   * ended is dropped. `only` picks the scopes to restore (after a reload: those not carried over).
   */
  load(table: ScopeTable, only: (s: Scope) => boolean = () => true, onCorrupt: OnCorrupt = 'refuse'): void {
    this.restore(checkStateFile(this.path, onCorrupt, this.logger, this.metrics), table, only);
  }

  /** Puts checked file content into the store. */
  restore(data: StateFileV1 | undefined, table: ScopeTable, only: (s: Scope) => boolean = () => true): void {
    if (!data) return;
    let restored = 0;
    for (const [id, b] of Object.entries(data.budgets)) {
      const i = id.indexOf(':');
      const scope = table.find(id.slice(0, i), id.slice(i + 1));
      if (scope && only(scope) && this.store.setSpent(scope, b.period, b.spent_nano, b.alerted)) restored++;
    }
    this.logger.info({ file: this.path, budgets: restored, saved_at: data.saved_at }, 'spend restored from the state file');
  }

  start(): void {
    try {
      mkdirSync(dirname(this.path), { recursive: true });
    } catch (e) {
      // Keep serving; every flush will retry (and count its failure).
      this.metrics.storeErrors.inc({ store: 'memory', op: 'flush' });
      this.logger.error({ err: e, file: this.path }, 'cannot create the state file directory');
    }
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Takes the file over from the previous engine's StateFile: that one stops now (its timer,
   * and its close() will not write); a write of its still in progress finishes before our
   * first one starts, so an older snapshot can never land after a newer one.
   */
  takeOver(prev: StateFile): void {
    prev.stopped = true;
    if (prev.timer) clearInterval(prev.timer);
    prev.timer = undefined;
    const pending = prev.writing;
    if (!pending || this.writing) return;
    const w: Promise<void> = pending.finally(() => {
      if (this.writing === w) this.writing = undefined;
    });
    this.writing = w;
  }

  /** Writes the file if spend changed since the last write (or always, when forced). */
  flush(force = false): Promise<void> {
    if (this.stopped) return this.writing ?? Promise.resolve();
    if (this.writing) return force ? this.writing.then(() => this.flush(true)) : this.writing;
    if (!this.store.dirty && !force) return Promise.resolve();
    this.store.dirty = false;
    const body: StateFileV1 = { version: 1, saved_at: new Date().toISOString(), budgets: this.store.snapshot() };
    this.writing = this.write(JSON.stringify(body, null, 1))
      .catch((e: unknown) => {
        this.store.dirty = true; // try again next interval
        this.metrics.storeErrors.inc({ store: 'memory', op: 'flush' });
        this.logger.error({ err: e, file: this.path }, 'cannot write the state file');
      })
      .finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async write(text: string): Promise<void> {
    const tmp = `${this.path}.${process.pid}.tmp`;
    await mkdir(dirname(this.path), { recursive: true });
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush(true);
  }
}
