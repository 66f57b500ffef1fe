// A real Prometheus against a real gateway: the shipped deploy/prometheus/prometheus.yml
// (target and intervals adjusted for a test) scrapes `node dist/main.js`, loads
// alert_rules.yml, and every rule group must evaluate with health "ok", while the SLI
// recording rules return data computed from the gateway's own series.
// Needs `prometheus` on PATH and a built gateway (npm test builds it first); skipped with a
// warning otherwise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { freePort } from '../helpers/net.js';
import { MAIN, ROOT, startGatewayProcess, startProcess, type Started } from '../helpers/process.js';
import { eventually } from '../helpers/wait.js';

const run = promisify(execFile);

const hasPrometheus = await run('prometheus', ['--version'], { timeout: 20_000 }).then(
  () => true,
  () => false,
);
const hasBuild = existsSync(MAIN);
if (!hasPrometheus) {
  console.warn(
    '\n*** prometheus NOT FOUND: deploy-prometheus.test.ts (real Prometheus against the gateway) is SKIPPED.\n' +
      '*** Install it: apt-get install -y --no-install-recommends prometheus\n',
  );
} else if (!hasBuild) {
  console.warn('\n*** dist/main.js missing: deploy-prometheus.test.ts is SKIPPED. Run `npm run build` (npm test does).\n');
}

const started: Started[] = [];
let dir: string | undefined;

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop('SIGTERM', 5_000)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Polls `probe` every 250 ms until it returns a value; past `timeoutMs`, fails naming `what` (and the last error). */
const poll = <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> =>
  eventually(
    async () => {
      const v = await probe().catch((e: unknown) => {
        throw new Error(`timed out waiting for ${what}: ${String(e)}`);
      });
      if (v === undefined) throw new Error(`timed out waiting for ${what}`);
      return v;
    },
    timeoutMs,
    250,
  );

async function chat(gwPort: number): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${gwPort}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'hello' }] }),
  });
  await r.text();
  expect(r.status).toBe(200);
}

interface RuleGroup {
  name: string;
  rules: Array<{ name: string; health: string; lastError?: string; type: string }>;
}

describe.skipIf(!hasPrometheus || !hasBuild)('Prometheus scraping a running gateway with deploy/prometheus', () => {
  let gwPort = 0;
  let api = '';
  let expectedGroups: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'llm-gw-prom-'));
    const gw = await startGatewayProcess(['--policies', 'policies/policies.yaml', '--port', '0'], { GATEWAY_HOST: '127.0.0.1' });
    started.push(gw);
    gwPort = gw.port;
    // A few real requests, so the request, TTFT and TPOT series exist before the first scrape.
    for (let i = 0; i < 3; i++) await chat(gwPort);

    // The shipped config, pointed at this gateway, with 1 s intervals so the test is quick.
    const config = parse(await readFile(join(ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')) as {
      global: Record<string, string>;
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; scrape_interval?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const rulesText = await readFile(join(ROOT, 'deploy', 'prometheus', config.rule_files[0]!), 'utf8');
    expectedGroups = (parse(rulesText) as { groups: Array<{ name: string }> }).groups.map((g) => g.name);
    await writeFile(join(dir, config.rule_files[0]!), rulesText);
    config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
    config.scrape_configs[0]!.scrape_interval = '1s';
    config.scrape_configs[0]!.static_configs = [{ targets: [`127.0.0.1:${gwPort}`] }];
    await writeFile(join(dir, 'prometheus.yml'), stringify(config));

    const promPort = await freePort();
    api = `http://127.0.0.1:${promPort}/api/v1`;
    const prom = await startProcess(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { cwd: dir },
    );
    started.push(prom);
    void prom.exited.then((code) => {
      if (code) console.error(`prometheus exited ${code}:\n${prom.stderr()}`);
    });
  }, 60_000);

  it('scrapes the gateway: the target is up with job="llm-gateway"', async () => {
    const target = await poll('the gateway target to be up', 30_000, async () => {
      const body = (await (await fetch(`${api}/targets`)).json()) as {
        data: { activeTargets: Array<{ health: string; lastError: string; labels: Record<string, string> }> };
      };
      const t = body.data.activeTargets.find((x) => x.labels.instance === `127.0.0.1:${gwPort}`);
      return t?.health === 'up' ? t : undefined;
    });
    expect(target.labels.job).toBe('llm-gateway');
    expect(target.lastError).toBe('');
  }, 40_000);

  it('loads every rule group of alert_rules.yml and evaluates every rule with health "ok"', async () => {
    const groups = await poll('every rule to be evaluated', 30_000, async () => {
      const body = (await (await fetch(`${api}/rules`)).json()) as { data: { groups: RuleGroup[] } };
      const gs = body.data.groups;
      const evaluated = gs.length === expectedGroups.length && gs.every((g) => g.rules.every((r) => r.health !== 'unknown'));
      return evaluated ? gs : undefined;
    });
    expect(groups.map((g) => g.name).sort()).toEqual([...expectedGroups].sort());
    const bad = groups.flatMap((g) =>
      g.rules.filter((r) => r.health !== 'ok').map((r) => `${g.name}/${r.name}: ${r.health} ${r.lastError ?? ''}`),
    );
    expect(bad).toEqual([]);
  }, 40_000);

  it("computes the SLI recording rules from the gateway's own series", async () => {
    const query = async (q: string) => {
      const body = (await (await fetch(`${api}/query?query=${encodeURIComponent(q)}`)).json()) as {
        data: { result: Array<{ value: [number, string] }> };
      };
      return body.data.result;
    };
    // Traffic between scrapes, so rate() over the 5m window has something to see.
    const samples = await poll('SLI samples', 30_000, async () => {
      await chat(gwPort);
      const avail = await query('llm_gateway:slo_availability_errors:ratio_rate5m');
      const ttft = await query('llm_gateway:slo_ttft_slow:ratio_rate5m');
      // NaN (0/0) until a scrape has seen the traffic rise: wait for a number.
      const seen = (r: Array<{ value: [number, string] }>) => r.length > 0 && !Number.isNaN(Number(r[0]!.value[1]));
      return seen(avail) && seen(ttft) ? { avail, ttft } : undefined;
    });
    // The simulator answers every request, with first tokens well under 1 s.
    expect(Number(samples.avail[0]!.value[1])).toBe(0);
    expect(Number(samples.ttft[0]!.value[1])).toBe(0);
    const firing = (
      (await (await fetch(`${api}/alerts`)).json()) as { data: { alerts: Array<{ labels: { alertname: string }; state: string }> } }
    ).data.alerts
      .filter((a) => a.state === 'firing')
      .map((a) => a.labels.alertname);
    expect(firing).toEqual([]);
  }, 40_000);

  it('runs every Grafana dashboard query without error', async () => {
    const dash = JSON.parse(await readFile(join(ROOT, 'deploy', 'grafana', 'dashboard.json'), 'utf8')) as {
      panels: Array<{
        title?: string;
        targets?: Array<{ expr?: string }>;
        panels?: Array<{ title?: string; targets?: Array<{ expr?: string }> }>;
      }>;
    };
    const values: Record<string, string> = { model: '.*', team: '.*', __rate_interval: '1m', __interval: '30s', __range: '1h' };
    const exprs = dash.panels
      .flatMap((p) => [p, ...(p.panels ?? [])])
      .flatMap((p) =>
        (p.targets ?? []).map((t) => ({
          title: p.title,
          expr: (t.expr ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a?: string, b?: string) => values[(a ?? b)!] ?? m),
        })),
      );
    expect(exprs.length).toBeGreaterThan(20);
    const failed: string[] = [];
    let withData = 0;
    for (const { title, expr } of exprs) {
      const r = await fetch(`${api}/query?query=${encodeURIComponent(expr)}`);
      const body = (await r.json()) as { status: string; error?: string; data?: { result: unknown[] } };
      if (body.status !== 'success') failed.push(`${title}: ${body.error}`);
      else if (body.data?.result.length) withData++;
    }
    expect(failed).toEqual([]);
    // Against a gateway that has served a few streams, most panels show something.
    expect(withData).toBeGreaterThan(exprs.length / 2);
  }, 40_000);
});
