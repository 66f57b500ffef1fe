// The memory store's spend survives a restart through a JSON file. Writes are atomic
// (temp file, fsync, rename), so a crash leaves the old file or the new one, never half of
// one. The file is written every `state.flush_interval_ms` when spend changed, and on
// close: a crash (SIGKILL, OOM, power) loses at most the spend committed during the last
// flush interval. Rate-limit windows and in-flight reservations are not persisted: the
// requests they belong to die with the process.
//
// After a policy reload the new engine's StateFile takes the file over (takeOver()): the old
// one stops writing at once, with no final write that could land after the new engine's.
import { mkdirSync, readFileSync } from 'node:fs';
import { open, rename, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { MemoryStore, PersistedBudget } from './memory.js';
import type { Scope, ScopeTable } from './scopes.js';

interface StateFileV1 {
  version: 1;
  saved_at: string;
  budgets: Record<string, PersistedBudget>;
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
  load(table: ScopeTable, only: (s: Scope) => boolean = () => true): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.metrics.storeErrors.inc({ store: 'memory', op: 'load' });
        this.logger.error({ err: e, file: this.path }, 'cannot read the state file: starting with no recorded spend');
      }
      return;
    }
    try {
      const data = JSON.parse(text) as StateFileV1;
      let restored = 0;
      for (const [id, b] of Object.entries(data.budgets ?? {})) {
        const i = id.indexOf(':');
        const scope = table.find(id.slice(0, i), id.slice(i + 1));
        if (scope && only(scope) && this.store.setSpent(scope, b.period, b.spent_nano, b.alerted)) restored++;
      }
      this.logger.info({ file: this.path, budgets: restored, saved_at: data.saved_at }, 'spend restored from the state file');
    } catch (e) {
      this.metrics.storeErrors.inc({ store: 'memory', op: 'load' });
      this.logger.error({ err: e, file: this.path }, 'the state file is corrupt: starting with no recorded spend');
    }
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
