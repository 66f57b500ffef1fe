// Watches a policies file for changes, including Kubernetes ConfigMap updates: the kubelet
// writes a new timestamped directory and swaps the `..data` symlink, so the file's own
// inode never changes and watching the file alone misses the update. We watch the parent
// directory and debounce; the caller compares content hashes and reloads only on change.
import { watch, type FSWatcher } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';

export interface PolicyWatcher {
  close(): void;
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Calls onEvent() (debounced) when anything in the file's directory changes. A poll every
 * `pollMs` backs up fs.watch, which can miss events on some filesystems (network mounts,
 * overlayfs); both are unref'd so they never keep the process alive.
 */
export function watchPolicies(file: string, onEvent: () => void, opts: { debounceMs?: number; pollMs?: number } = {}): PolicyWatcher {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onEvent();
    }, opts.debounceMs ?? 200);
    timer.unref();
  };
  let watcher: FSWatcher | undefined;
  try {
    const name = basename(file);
    // Only the file itself and the kubelet's `..data` / `..<timestamp>` entries matter: other
    // files in the directory (a log written next to it, editor swap files) must not trigger
    // a read-and-hash of the policy on every write.
    watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed && changed !== name && !changed.startsWith('..')) return;
      schedule();
    });
    watcher.on('error', () => {});
  } catch {
    watcher = undefined;
  }
  const poll = setInterval(schedule, opts.pollMs ?? 5_000);
  poll.unref();
  return {
    close() {
      closed = true;
      watcher?.close();
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    },
  };
}
