// Child processes for tests: start one and wait until it says it is ready, run one to its
// end, stop one. The gateway as users run it (`node dist/main.js`, built by npm test's
// pretest) is one such process; its port comes from its 'listening' log line.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = `${ROOT}dist/main.js`;

export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error('dist/main.js is missing: run `npm run build` first (npm test does it)');
}

export interface StartOptions {
  cwd?: string;
  /** The whole environment of the child (not merged with this process's). */
  env?: NodeJS.ProcessEnv;
  /** True for the stdout line that says the process is ready; `obj` is the line parsed as JSON, if it is JSON. */
  ready?: (line: string, obj: Record<string, unknown> | undefined) => boolean;
  /** Named in errors. */
  what?: string;
  /** SIGKILL and reject when not ready by then (a cold start compiles every module: seconds on a busy machine). */
  timeoutMs?: number;
}

export interface Started {
  child: ChildProcess;
  /** stdout lines that are JSON objects (log lines), in order. */
  lines: Array<Record<string, unknown>>;
  /** The line `ready` accepted, parsed (undefined when it was not JSON). */
  readyLine: Record<string, unknown> | undefined;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null when a signal ended it). */
  exited: Promise<number | null>;
  /** `signal` (SIGTERM), then SIGKILL after `graceMs`; resolves with the exit code once it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const exitedAlready = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** Sends `signal`, then SIGKILL after `graceMs`; resolves with the exit code once the child has exited. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
  if (exitedAlready(child)) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  const t = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}

/**
 * Spawns `command` and resolves once a stdout line is `ready` (without `ready`: once it has
 * spawned); rejects (with its output) if it exits or times out first.
 */
export function startProcess(command: string, args: string[], opts: StartOptions = {}): Promise<Started> {
  const what = opts.what ?? command;
  const timeoutMs = opts.timeoutMs ?? 45_000;
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const started: Started = {
    child,
    lines: [],
    readyLine: undefined,
    stdout: () => out,
    stderr: () => err,
    exited: new Promise<number | null>((r) => child.once('exit', (code) => r(code))),
    stop: (signal, graceMs) => stopProcess(child, signal, graceMs),
  };
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} was not ready in ${timeoutMs} ms:\n${out}${err}`));
    }, timeoutMs);
    let isReady = false;
    const ready = () => {
      isReady = true;
      clearTimeout(t);
      resolve(started);
    };
    if (!opts.ready) child.once('spawn', ready);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      out += `${line}\n`;
      const obj = parseLine(line);
      if (obj) started.lines.push(obj);
      if (!isReady && opts.ready?.(line, obj)) {
        started.readyLine = obj;
        ready();
      }
    });
    child.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    void started.exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited (${code}) before it was ready:\n${out}${err}`));
    });
  });
}

export interface ProcessRun {
  code: number | null;
  /** stdout lines that are JSON objects. */
  lines: Array<Record<string, unknown>>;
  stdout: string;
  stderr: string;
}

/** Runs `command` to its end; SIGTERM after `timeoutMs` (SIGKILL 5 s later) if it is still running. */
export async function runProcess(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ProcessRun> {
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const t = setTimeout(() => void stopProcess(child, 'SIGTERM', 5_000), opts.timeoutMs ?? 60_000);
  const code = await exited;
  clearTimeout(t);
  const lines = out
    .split('\n')
    .map(parseLine)
    .filter((l): l is Record<string, unknown> => l !== undefined);
  return { code, lines, stdout: out, stderr: err };
}

export interface GatewayProcess extends Started {
  port: number;
  url: string;
  /** url + /v1, for the SDKs. */
  baseURL: string;
}

// The 'listening' line is logged at info: that level unless the caller's env sets another.
const gatewayEnv = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ ...process.env, GATEWAY_LOG_LEVEL: 'info', ...env });

/** `node dist/main.js ARGS` (paths relative to the repo root), resolved once it listens. */
export async function startGatewayProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<GatewayProcess> {
  const p = await startProcess(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: gatewayEnv(env),
    what: 'the gateway',
    ready: (_line, obj) => obj?.msg === 'listening',
  });
  const port = p.readyLine!.port as number;
  const url = `http://127.0.0.1:${port}`;
  return { ...p, port, url, baseURL: `${url}/v1` };
}

/** The gateway serving a policies file on a free port. */
export const spawnGateway = (policiesFile: string, env: NodeJS.ProcessEnv = {}): Promise<GatewayProcess> =>
  startGatewayProcess(['--policies', policiesFile, '--port', '0'], env);

/** Runs the gateway expecting it to exit by itself (a refusal to start). */
export const runGatewayProcess = (args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<ProcessRun> =>
  runProcess(process.execPath, [MAIN, ...args], { cwd: ROOT, env: gatewayEnv(env), timeoutMs });

/** A redis-server (or sentinel: pass `readyText`) with these arguments, resolved once it accepts connections. */
export const startRedisServer = (args: string[], readyText = 'Ready to accept connections', server = 'redis-server'): Promise<Started> =>
  startProcess(server, args, { what: server, ready: (line) => line.includes(readyText), timeoutMs: 10_000 });
