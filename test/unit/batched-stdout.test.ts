import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../helpers/wait.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { BatchedWriter } from '../../src/telemetry/batched-stdout.js';
import { createLogger } from '../../src/telemetry/logger.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmpdir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'batched-'));
  dirs.push(d);
  return d;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function line(i: number, pad = 200): string {
  return JSON.stringify({ level: 30, seq: i, msg: 'request', pad: 'x'.repeat(pad + (i % 37)) }) + '\n';
}

/**
 * A fifo read by `cat` into a file. Our write end is non-blocking (EAGAIN when the pipe is
 * full); SIGSTOP on cat stalls the reader, SIGCONT resumes it.
 */
function pipeToFile() {
  const dir = tmpdir();
  const fifo = path.join(dir, 'fifo');
  const outFile = path.join(dir, 'out');
  execFileSync('mkfifo', [fifo]);
  // A reader must exist to open the write end non-blocking; this one never reads.
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  const outFd = fs.openSync(outFile, 'w');
  const cat = spawn('cat', [fifo], { stdio: ['ignore', outFd, 'inherit'] });
  children.push(cat);
  fs.closeSync(outFd);
  const exited = new Promise<void>((r) => cat.on('exit', () => r()));
  return {
    wfd,
    cat,
    /** Closes the write end, waits for cat to have copied everything, returns it. */
    async finish(): Promise<string> {
      fs.closeSync(wfd);
      await exited;
      fs.closeSync(rfd);
      return fs.readFileSync(outFile, 'utf8');
    },
  };
}

function closed(w: BatchedWriter): Promise<void> {
  return new Promise((r) => w.close(r));
}

describe('BatchedWriter', () => {
  it('delivers lines complete and in order through a non-blocking pipe', async () => {
    const p = pipeToFile();
    const w = new BatchedWriter({ fd: p.wfd });
    const expected: string[] = [];
    // ~1.5 MB in bursts: many 64 KiB batches, partial writes and EAGAIN on a 64 KiB pipe.
    for (let i = 0; i < 6000;) {
      for (let k = 0; k < 500; k++, i++) {
        const l = line(i);
        expected.push(l);
        w.write(l);
      }
      await new Promise((r) => setImmediate(r));
    }
    await closed(w);
    const st = w.stats();
    expect(st).toMatchObject({ pendingBytes: 0, writing: false, dropped: 0, lostBytes: 0 });
    // The pipe (64 KiB) pushed back: short writes or EAGAIN happened and were recovered.
    expect(st.partialWrites + st.eagain).toBeGreaterThan(0);
    expect(st.writes).toBeLessThan(6000 / 50);
    const out = await p.finish();
    expect(out.length).toBe(expected.join('').length);
    expect(out === expected.join('')).toBe(true);
  });

  it('writes a batch below the batch size when the timer fires', async () => {
    const file = path.join(tmpdir(), 'log');
    const fd = fs.openSync(file, 'w');
    const w = new BatchedWriter({ fd, flushIntervalMs: 100 });
    const t0 = Date.now();
    w.write(line(1));
    w.write(line(2));
    await sleep(20);
    expect(fs.readFileSync(file, 'utf8')).toBe('');
    await until(() => fs.readFileSync(file, 'utf8') === line(1) + line(2), 2000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    // A full batch does not wait for the timer.
    const w2 = new BatchedWriter({ fd, flushIntervalMs: 60_000 });
    let big = '';
    for (let i = 0; big.length < 64 * 1024; i++) {
      big += line(i);
      w2.write(line(i));
    }
    await until(() => fs.readFileSync(file, 'utf8') === line(1) + line(2) + big, 2000);
    await closed(w);
    await closed(w2);
    fs.closeSync(fd);
  });

  it('flushSync writes everything queued before it returns', () => {
    const file = path.join(tmpdir(), 'log');
    const fd = fs.openSync(file, 'w');
    const w = new BatchedWriter({ fd });
    let all = '';
    for (let i = 0; i < 100; i++) {
      all += line(i);
      w.write(line(i));
    }
    w.flushSync();
    expect(fs.readFileSync(file, 'utf8')).toBe(all);
    expect(w.stats().pendingBytes).toBe(0);
    w.close();
    fs.closeSync(fd);
  });

  it('flushSync with a write in flight writes only the lines behind it, once', async () => {
    const file = path.join(tmpdir(), 'log');
    const fd = fs.openSync(file, 'w');
    const w = new BatchedWriter({ fd });
    const lines: string[] = [];
    for (let i = 0; w.stats().writing === false; i++) {
      lines.push(line(i));
      w.write(line(i));
    }
    const inFlight = lines.join('');
    const behind: string[] = [];
    for (let i = lines.length; i < lines.length + 10; i++) {
      behind.push(line(i));
      w.write(line(i));
    }
    w.flushSync();
    // The lines behind the write in flight are out now; the batch in flight completes later.
    expect(fs.readFileSync(file, 'utf8')).toContain(behind.join(''));
    await closed(w);
    const out = fs.readFileSync(file, 'utf8');
    expect(out.length).toBe(inFlight.length + behind.join('').length);
    expect(out).toContain(inFlight);
    expect(out).toContain(behind.join(''));
    fs.closeSync(fd);
  });

  it('flushSync writes the remainder of a batch waiting for an EAGAIN retry first', async () => {
    const p = pipeToFile();
    p.cat.kill('SIGSTOP');
    const w = new BatchedWriter({ fd: p.wfd, syncRetryMs: 5000 });
    let all = '';
    for (let i = 0; i < 1500; i++) {
      all += line(i);
      w.write(line(i));
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    // The pipe is full: the batch waits for a retry.
    await until(() => !w.stats().writing && w.stats().pendingBytes > 0);
    p.cat.kill('SIGCONT');
    w.flushSync();
    expect(w.stats().pendingBytes).toBe(0);
    await closed(w);
    expect((await p.finish()) === all).toBe(true);
  });

  it('bounds the queue when the reader stalls and reports the dropped lines once it drains', async () => {
    const p = pipeToFile();
    p.cat.kill('SIGSTOP');
    const cap = 512 * 1024;
    const w = new BatchedWriter({ fd: p.wfd, maxPendingBytes: cap, flushIntervalMs: 50, fields: { service: 'test' } });
    const N = 20_000; // ~5 MB, ten times the cap
    let maxPending = 0;
    for (let i = 0; i < N;) {
      for (let k = 0; k < 500; k++, i++) w.write(line(i));
      maxPending = Math.max(maxPending, w.stats().pendingBytes);
      await new Promise((r) => setImmediate(r));
    }
    expect(maxPending).toBeLessThanOrEqual(cap);
    const dropped = w.stats().dropped;
    expect(dropped).toBeGreaterThan(N / 2);
    await sleep(120); // stalled: retries keep failing, nothing is lost, nothing grows
    expect(w.stats().pendingBytes).toBeLessThanOrEqual(cap);
    expect(w.stats().eagain).toBeGreaterThan(1);
    expect(w.stats().lostBytes).toBe(0);

    p.cat.kill('SIGCONT');
    await until(() => w.stats().pendingBytes === 0 && !w.stats().writing);
    // Logging resumes after the drain.
    for (let i = N; i < N + 10; i++) w.write(line(i));
    await closed(w);
    const out = (await p.finish()).split('\n');
    expect(out.pop()).toBe('');
    const parsed = out.map(
      (l) => JSON.parse(l) as { level: number; seq?: number; dropped_lines?: number; time?: string; msg: string; service?: string },
    );
    const warns = parsed.filter((l) => l.level === 40);
    expect(warns).toHaveLength(1);
    expect(warns[0]!.dropped_lines).toBe(dropped);
    expect(warns[0]!.service).toBe('test');
    expect(typeof warns[0]!.msg).toBe('string');
    expect(Number.isNaN(Date.parse(warns[0]!.time!))).toBe(false);
    const seqs = parsed.filter((l) => l.level === 30).map((l) => l.seq!);
    expect(seqs.length + dropped).toBe(N + 10);
    // In order, and the warning sits where the gap is.
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    const at = parsed.indexOf(warns[0]!);
    expect(parsed[at + 1]!.seq! - parsed[at - 1]!.seq!).toBe(dropped + 1);
  });

  it('reports other write errors once and keeps going without throwing', async () => {
    const dir = tmpdir();
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const wfd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.closeSync(rfd); // no reader: EPIPE
    const w = new BatchedWriter({ fd: wfd, flushIntervalMs: 20 });
    for (let i = 0; i < 400; i++) w.write(line(i));
    await until(() => w.stats().pendingBytes === 0 && !w.stats().writing);
    for (let i = 0; i < 10; i++) w.write(line(i));
    await closed(w);
    expect(w.stats().lostBytes).toBeGreaterThan(400 * 200);
    fs.closeSync(wfd);
  });

  it('leaves no timer behind after close, also with a retry pending', async () => {
    // In a process of its own, with timers that keep it alive (unref: false): it can only
    // exit by itself if close() cleared every timer, the EAGAIN retry included. Counting the
    // test worker's own timers instead races with whatever else the worker has scheduled.
    const dir = tmpdir();
    const script = `
      import fs from 'node:fs';
      import { execFileSync, spawn } from 'node:child_process';
      const { BatchedWriter } = await import(process.argv[1]);
      const dir = process.argv[2];
      const fd = fs.openSync(dir + '/log', 'w');
      const w = new BatchedWriter({ fd, unref: false });
      w.write('one\\n');
      await new Promise((r) => w.close(r));
      fs.closeSync(fd);
      const fifo = dir + '/fifo';
      execFileSync('mkfifo', [fifo]);
      const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const wfd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      const outFd = fs.openSync(dir + '/out', 'w');
      const cat = spawn('cat', [fifo], { stdio: ['ignore', outFd, 'inherit'] });
      fs.closeSync(outFd);
      cat.kill('SIGSTOP');
      const w2 = new BatchedWriter({ fd: wfd, unref: false, syncRetryMs: 5000 });
      for (let i = 0; i < 1000; i++) w2.write(JSON.stringify({ seq: i, pad: 'x'.repeat(200) }) + '\\n');
      const sawRetry = await new Promise((r) => {
        const check = () => (w2.stats().timers === 2 ? r(true) : setImmediate(check));
        check();
      });
      cat.kill('SIGCONT');
      await new Promise((r) => w2.close(r));
      fs.closeSync(wfd);
      await new Promise((r) => cat.on('exit', r));
      fs.closeSync(rfd);
      const lines = fs.readFileSync(dir + '/out', 'utf8').split('\\n').length;
      console.log(JSON.stringify({ sawRetry, timers: [w.stats().timers, w2.stats().timers], log: fs.readFileSync(dir + '/log', 'utf8'), lines }));
    `;
    const mod = path.resolve('dist/telemetry/batched-stdout.js');
    expect(fs.existsSync(mod), 'dist/ is built by the pretest script').toBe(true);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, mod, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    // A leaked timer keeps the child alive: it is killed, and the exit code says so.
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    clearTimeout(killer);
    expect(code, 'the process did not end by itself: a timer was left behind').toBe(0);
    expect(JSON.parse(out)).toEqual({ sawRetry: true, timers: [0, 0], log: 'one\n', lines: 1001 });
  }, 40_000);

  it('createLogger: closeLog calls back and leaves nothing active', async () => {
    const before = process.getActiveResourcesInfo().length;
    const logger = createLogger();
    await new Promise<void>((r) => logger.closeLog!(r));
    expect(process.getActiveResourcesInfo().length).toBe(before);
  });
});
