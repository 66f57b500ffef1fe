// The Dockerfile, without a Docker engine: its instructions are parsed and executed as plain
// commands. The build context (minus .dockerignore) is copied to a temp dir, each stage gets
// its own temp "filesystem root" (an in-image path /x maps to <root>/x), the builder's RUN lines
// run there (npm ci from the local npm cache), the runtime stage is assembled from its COPY
// lines, and its CMD is started with the in-image paths mapped into the temp root and port 0.
// Then /healthz must answer, the HEALTHCHECK command must exit 0 against it, and the runtime
// stage must hold no devDependency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.js';
import { startProcess, type Started } from '../helpers/process.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BUILD_TIMEOUT_MS = 240_000;

// ---- a small Dockerfile reader ----------------------------------------------------------------

interface Instruction {
  op: string;
  /** Leading --name=value flags (COPY --from, HEALTHCHECK --interval, ...). */
  flags: Record<string, string>;
  /** The rest of the line after the flags. */
  args: string;
  /** The exec (JSON array) form, when used. */
  exec?: string[];
  line: number;
}
interface Stage {
  image: string;
  name: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const logical: Array<{ text: string; line: number }> = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const t = raw.trim();
    if (t === '' || t.startsWith('#')) return; // comments and blank lines, also inside continuations
    if (!buf) start = i + 1;
    if (t.endsWith('\\')) {
      buf += `${t.slice(0, -1).trim()} `;
      return;
    }
    logical.push({ text: buf + t, line: start });
    buf = '';
  });
  const stages: Stage[] = [];
  for (const { text: l, line } of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(l);
    if (!m) throw new Error(`Dockerfile:${line}: cannot parse ${l}`);
    const op = m[1]!.toUpperCase();
    let rest = m[2]!;
    const flags: Record<string, string> = {};
    for (let f = /^--([\w-]+)=(\S+)\s+/.exec(rest); f; f = /^--([\w-]+)=(\S+)\s+/.exec(rest)) {
      flags[f[1]!] = f[2]!;
      rest = rest.slice(f[0].length);
    }
    if (op === 'HEALTHCHECK') rest = rest.replace(/^CMD\s+/i, '');
    const exec = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : undefined;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ image: f[1]!, name: f[2] ?? String(stages.length), instructions: [] });
      continue;
    }
    if (!stages.length) throw new Error(`Dockerfile:${line}: ${op} before FROM`);
    stages.at(-1)!.instructions.push({ op, flags, args: rest, exec, line });
  }
  return stages;
}

const find = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);

/** .dockerignore, roughly as Docker reads it: globs relative to the context root, `**`, `!`. */
function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const neg = l.startsWith('!');
      const glob = posix.normalize((neg ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
      let re = '';
      for (let i = 0; i < glob.length; i++) {
        const c = glob[i]!;
        if (c === '*' && glob[i + 1] === '*') {
          i++;
          if (glob[i + 1] === '/') {
            i++;
            re += '(?:.*/)?';
          } else re += '.*';
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { neg, re: new RegExp(`^${re}$`) };
    });
  return (rel) => {
    let ignored = false;
    for (const r of rules) if (r.re.test(rel)) ignored = !r.neg;
    return ignored;
  };
}

async function copyContext(from: string, to: string, ignored: (rel: string) => boolean, rel = ''): Promise<void> {
  for (const e of await readdir(join(from, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (ignored(r)) continue;
    if (e.isDirectory()) await copyContext(from, to, ignored, r);
    else if (e.isFile() || e.isSymbolicLink()) {
      await mkdir(join(to, rel), { recursive: true });
      await cp(join(from, r), join(to, r), { verbatimSymlinks: true });
    }
  }
}

/** The environment a RUN line sees: the image's (no NODE_ENV, no npm lifecycle variables), plus network and cache settings. */
function baseEnv(): NodeJS.ProcessEnv {
  const keep = /^(PATH|HOME|USER|LANG|LC_ALL|TMPDIR|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|npm_config_(registry|cache|userconfig))$|_proxy$/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (keep.test(k)) env[k] = v;
  return env;
}

interface Built {
  root: string;
  workdir: string;
  env: Record<string, string>;
}

/** Executes one stage into its own root dir. */
async function runStage(stage: Stage, root: string, context: string, built: Map<string, Built>): Promise<Built> {
  let wd = '/';
  const env: Record<string, string> = {};
  const inImage = (p: string) => join(root, posix.resolve(wd, p));
  for (const ins of stage.instructions) {
    switch (ins.op) {
      case 'WORKDIR':
        wd = posix.resolve(wd, ins.args);
        await mkdir(join(root, wd), { recursive: true });
        break;
      case 'ENV':
        for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
        break;
      case 'COPY': {
        const words = ins.exec ?? ins.args.split(/\s+/);
        const dest = words.pop()!;
        const src = ins.flags.from;
        const fromRoot = src === undefined ? undefined : built.get(src)?.root;
        if (src !== undefined && !fromRoot) throw new Error(`Dockerfile:${ins.line}: unknown stage ${src}`);
        for (const w of words) {
          const s = fromRoot ? join(fromRoot, posix.resolve('/', w)) : join(context, posix.normalize(w));
          let d = inImage(dest);
          if ((await stat(s)).isFile() && (dest.endsWith('/') || words.length > 1)) d = join(d, basename(s));
          await mkdir(dirname(d), { recursive: true });
          await cp(s, d, { recursive: true, verbatimSymlinks: true });
        }
        break;
      }
      case 'RUN': {
        const [file, args] = ins.exec ? [ins.exec[0]!, ins.exec.slice(1)] : ['sh', ['-c', ins.args]];
        await run(file, args, {
          cwd: join(root, wd),
          env: {
            ...baseEnv(),
            ...env,
            // Offline-ish and quiet: the local npm cache is enough.
            npm_config_prefer_offline: 'true',
            npm_config_audit: 'false',
            npm_config_fund: 'false',
            npm_config_update_notifier: 'false',
          },
          maxBuffer: 64 * 1024 * 1024,
          timeout: BUILD_TIMEOUT_MS,
        }).catch((e: { stderr?: string; stdout?: string; message: string }) => {
          throw new Error(`Dockerfile:${ins.line}: RUN ${ins.args} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
        });
        break;
      }
      default: // USER, EXPOSE, HEALTHCHECK, CMD, LABEL...: metadata, checked by the tests
    }
  }
  const b = { root, workdir: wd, env };
  built.set(stage.name, b);
  return b;
}

// ---- the build ------------------------------------------------------------------------------

const dockerfile = existsSync(join(ROOT, 'Dockerfile')) ? await readFile(join(ROOT, 'Dockerfile'), 'utf8') : '';
const stages = dockerfile ? parseDockerfile(dockerfile) : [];
const runtime = stages.at(-1)!;
const builder = stages[0]!;
const temps: string[] = [];
let image: Built;
let gateway: Started | undefined;
let port = 0;

/** The runtime command as Docker runs it: ENTRYPOINT (exec form) followed by CMD. */
function command(): string[] {
  return [...(find(runtime, 'ENTRYPOINT').at(-1)?.exec ?? []), ...(find(runtime, 'CMD').at(-1)?.exec ?? [])];
}

/** The runtime command with in-image paths mapped into the temp root and the port set to 0. */
function mappedCmd(): string[] {
  const cmd = command();
  return cmd.map((a, i) => {
    if (cmd[i - 1] === '--port') return '0';
    if (a.startsWith('/') && existsSync(join(image.root, a))) return join(image.root, a);
    return a;
  });
}

beforeAll(async () => {
  const ctx = await mkdtemp(join(tmpdir(), 'gw-docker-ctx-'));
  temps.push(ctx);
  await copyContext(ROOT, ctx, dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8')));
  const built = new Map<string, Built>();
  for (const stage of stages) {
    const root = await mkdtemp(join(tmpdir(), `gw-docker-${stage.name}-`));
    temps.push(root);
    image = await runStage(stage, root, ctx, built);
  }

  const [bin, ...args] = mappedCmd();
  expect(bin).toBe('node');
  // The container's environment: the image's ENV only (no GATEWAY_* from the test runner).
  gateway = await startProcess(process.execPath, args, {
    cwd: join(image.root, image.workdir),
    env: { PATH: process.env.PATH, ...image.env },
    what: 'the gateway',
    ready: (_line, obj) => obj?.msg === 'listening' && typeof obj.port === 'number',
    timeoutMs: 15_000,
  });
  port = gateway.readyLine!.port as number;
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await gateway?.stop('SIGTERM', 5_000);
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
}, 30_000);

// ---- the checks -------------------------------------------------------------------------------

describe('the Dockerfile', () => {
  it('is multi-stage on a current Node LTS slim image; the runtime runs as node, on loopback by default', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image).toMatch(/^node:(20|22|24)(\.\d+)*-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    const runs = find(builder, 'RUN').map((i) => i.args);
    expect(runs.some((r) => /^npm ci\b/.test(r))).toBe(true);
    expect(runs).toContain('npm run build');
    expect(runs.some((r) => /npm (prune|ci) .*--omit=dev/.test(r))).toBe(true);

    expect(find(runtime, 'USER').at(-1)?.args).toBe('node');
    expect(find(runtime, 'EXPOSE').map((i) => i.args)).toContain('4000');
    expect(
      find(runtime, 'ENV')
        .map((i) => i.args)
        .join(' '),
    ).not.toMatch(/GATEWAY_HOST/);
    expect(command()).toEqual(['node', 'dist/main.js', '--policies', '/etc/llm-gateway/policies.yaml', '--port', '4000']);
    // deploy/k8s passes only `args:`, so the entrypoint must be `node dist/main.js` on its own.
    expect(find(runtime, 'ENTRYPOINT').at(-1)?.exec).toEqual(['node', 'dist/main.js']);
    const hc = find(runtime, 'HEALTHCHECK').at(-1)!;
    expect(hc.exec?.slice(0, 2)).toEqual(['node', '-e']);
    expect(hc.exec?.[2]).toContain('/healthz');
  });

  it('.dockerignore keeps node_modules, dist, test-output, bench/results and .git out of the context', async () => {
    const ignored = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8'));
    for (const p of ['node_modules', 'dist', 'test-output', 'bench/results', '.git', 'bench/node_modules'])
      expect(ignored(p), p).toBe(true);
    for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'src/main.ts', 'policies/policies.yaml'])
      expect(ignored(p), p).toBe(false);
  });
});

describe('the image, assembled as the Dockerfile says', () => {
  it('holds dist/, production dependencies only, package.json and the policies at their documented path', async () => {
    const app = join(image.root, image.workdir);
    const pkg = JSON.parse(await readFile(join(app, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(existsSync(join(app, 'dist/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/dashboard/index.js'))).toBe(true);
    expect(existsSync(join(image.root, 'etc/llm-gateway/policies.yaml'))).toBe(true);
    expect(existsSync(join(app, 'policies/policies.yaml'))).toBe(true);
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(app, 'node_modules', dep)), dep).toBe(true);
    for (const dev of ['vitest', 'typescript', 'playwright-core', 'openai', 'autocannon', 'vite', 'esbuild']) {
      expect(existsSync(join(app, 'node_modules', dev)), `${dev} is a devDependency`).toBe(false);
    }
    for (const dev of Object.keys(pkg.devDependencies))
      expect(existsSync(join(app, 'node_modules', dev)), `${dev} is a devDependency`).toBe(false);
    for (const absent of ['src', 'test', 'tsconfig.json', '.git', 'test-output']) expect(existsSync(join(app, absent)), absent).toBe(false);
  });

  it('starts with its ENTRYPOINT + CMD: /healthz answers and the HEALTHCHECK command exits 0 (and 1 when nothing listens)', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ok' });

    const hc = find(runtime, 'HEALTHCHECK').at(-1)!.exec!;
    const probe = (p: number) =>
      run(process.execPath, [hc[1]!, hc[2]!.replace(':4000/', `:${p}/`)], { timeout: 10_000 }).then(
        () => 0,
        (e: { code?: number }) => e.code ?? -1,
      );
    expect(hc[2]).toContain('127.0.0.1:4000/');
    expect(await probe(port)).toBe(0);
    // A closed port: a free one, found by binding and releasing it.
    expect(await probe(await freePort())).toBe(1);
  });

  it('runs as is: the default policies serve the simulator model `demo` on loopback', async () => {
    const listening = gateway!.lines.find((l) => l.msg === 'listening');
    expect(listening).toMatchObject({ host: '127.0.0.1', models: ['demo', 'claude-demo'] });
    const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]!.message.content.length).toBeGreaterThan(0);
  });
});
