// Child processes of the benchmark: the simulator, the bare proxy and the gateway, each its
// own Node process, optionally pinned to a CPU with taskset. Every child is tracked and
// killed when the benchmark exits, however it exits (normal end, error, SIGINT, SIGTERM);
// each child also preloads parent-watch.mjs, so even a SIGKILLed benchmark leaves nothing
// running behind.
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const WATCH = pathToFileURL(fileURLToPath(new URL('./parent-watch.mjs', import.meta.url))).href;

/** @type {Set<Child>} */
const live = new Set();
let hooksInstalled = false;
let cleaningUp = null;

export class Child {
  constructor(name, proc, logFile, errFile) {
    this.name = name;
    this.proc = proc;
    this.pid = proc.pid;
    this.logFile = logFile;
    this.errFile = errFile;
    this.exited = false;
    this.exitCode = null;
    this.exitPromise = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code ?? signal;
        live.delete(this);
        resolve(this.exitCode);
      });
    });
  }

  /** The log (stdout) text so far. */
  log() {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  stderr() {
    return existsSync(this.errFile) ? readFileSync(this.errFile, 'utf8') : '';
  }

  /** Resident set size in bytes, from /proc/PID/status (VmRSS). */
  rss() {
    const status = readFileSync(`/proc/${this.pid}/status`, 'latin1');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  }

  /** CPU time (user + system, all threads) in ms, from /proc/PID/stat; 10 ms resolution at CLK_TCK 100. */
  cpuMs() {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks();
    } catch {
      return NaN;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
  async stop(graceMs = 5000) {
    if (this.exited) return this.exitCode;
    try {
      this.proc.kill('SIGTERM');
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => {
      try {
        this.proc.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }, graceMs);
    const code = await this.exitPromise;
    clearTimeout(t);
    return code;
  }
}

let ticks;
function clockTicks() {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export function tasksetAvailable() {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins this process (every thread) to `cpu`; returns false if that failed. */
export function pinSelf(cpu) {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The soft limit on open files of a shell started from here (what a child inherits). */
export function openFileLimit() {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  } catch {
    return NaN;
  }
}

/**
 * Starts `node [nodeArgs] script [args]` with stdout and stderr going to files in `dir`,
 * pinned to `cpu` when given. Resolves once `ready(line)` returns a value for a stdout line.
 */
export async function startNode({ name, script, args = [], nodeArgs = [], dir, cpu, env, ready, timeoutMs = 20_000 }) {
  installHooks();
  const logFile = join(dir, `${name}.log`);
  const errFile = join(dir, `${name}.err`);
  const out = openSync(logFile, 'w');
  const err = openSync(errFile, 'w');
  const nodeCmd = [process.execPath, '--import', WATCH, ...nodeArgs, script, ...args];
  const [cmd, ...cmdArgs] = cpu === undefined || cpu === null ? nodeCmd : ['taskset', '-c', String(cpu), ...nodeCmd];
  const proc = spawn(cmd, cmdArgs, { stdio: ['ignore', out, err], env: { ...process.env, ...env } });
  closeSync(out);
  closeSync(err);
  const child = new Child(name, proc, logFile, errFile);
  live.add(child);
  proc.on('error', () => {}); // reported through the exit / timeout below
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = child.log();
    for (const line of text.split('\n')) {
      if (!line) continue;
      const v = ready(line);
      if (v !== undefined && v !== null && v !== false) return { child, info: v };
    }
    if (child.exited || Date.now() > deadline) {
      await child.stop(1000);
      const why = child.exited ? `exited (${child.exitCode})` : `not ready after ${timeoutMs} ms`;
      throw new Error(`${name} ${why}\n--- stdout ---\n${text.slice(-2000)}\n--- stderr ---\n${child.stderr().slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Parses a JSON line, or undefined. */
export function jsonLine(line) {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/** Stops every child still running (SIGTERM, then SIGKILL after graceMs). */
export function stopAll(graceMs = 3000) {
  cleaningUp ??= Promise.all([...live].map((c) => c.stop(graceMs))).finally(() => (cleaningUp = null));
  return cleaningUp;
}

/** Synchronous last resort (process 'exit'): SIGKILL whatever is left. */
function killAllNow() {
  for (const c of live) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

const exitHandlers = [];
/** Runs `fn` (sync) on exit, after children are killed: temp dir removal and the like. */
export function onExit(fn) {
  exitHandlers.push(fn);
}

function installHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    killAllNow();
    for (const fn of exitHandlers) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
  });
  const onSignal = (signal, code) => {
    process.stderr.write(`\n${signal}: stopping child processes\n`);
    // A second signal while cleaning up: stop waiting.
    process.once(signal, () => process.exit(code));
    stopAll(1500).finally(() => process.exit(code));
  };
  process.once('SIGINT', () => onSignal('SIGINT', 130));
  process.once('SIGTERM', () => onSignal('SIGTERM', 143));
  process.once('SIGHUP', () => onSignal('SIGHUP', 129));
}
