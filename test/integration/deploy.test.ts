// deploy/ as ops consume it: Prometheus rules and their unit tests, the local Prometheus
// config, the Grafana dashboard's PromQL, and the Kubernetes manifests. The promtool checks
// need `promtool` on PATH (CI installs it); without it they are skipped with a warning.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parsePolicies } from '../../src/config/load.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = join(ROOT, 'deploy');
const PROM = join(DEPLOY, 'prometheus');
const K8S = join(DEPLOY, 'k8s');

async function works(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args, { timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

const hasPromtool = await works('promtool', ['--version']);
const hasKubectl = await works('kubectl', ['version', '--client']);
if (!hasPromtool) {
  console.warn(
    '\n*** promtool NOT FOUND: the Prometheus rule/config/dashboard checks in deploy.test.ts are SKIPPED.\n' +
      '*** Install it: apt-get install -y --no-install-recommends prometheus\n' +
      '***   (or unpack promtool from https://github.com/prometheus/prometheus/releases onto PATH)\n',
  );
}

const tmpDirs: string[] = [];
async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Runs promtool; on failure the assertion message carries its whole output. */
async function promtool(args: string[], cwd = ROOT): Promise<string> {
  try {
    const r = await run('promtool', args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    return r.stdout + r.stderr;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}${err.message}`);
  }
}

// ----------------------------------------------------------------------------------------
// Metric names

const metricNames = new Set(
  (await readFile(join(DEPLOY, 'metric-names.txt'), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean),
);

/** llm_gateway_* identifiers in a PromQL expression that are not exported metric names. */
function unknownMetrics(expr: string): string[] {
  const found = expr.match(/\bllm_gateway_[A-Za-z0-9_]+/g) ?? [];
  return found.filter((name) => {
    if (metricNames.has(name)) return false;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return !(base !== name && metricNames.has(base));
  });
}

describe('deploy/metric-names.txt', () => {
  it('lists the contract metrics once each, in base units', () => {
    const lines = [...metricNames];
    expect(lines.length).toBeGreaterThan(15);
    for (const name of lines) expect(name).toMatch(/^llm_gateway_[a-z0-9_]+$/);
    for (const name of [
      'llm_gateway_requests_total',
      'llm_gateway_request_duration_seconds',
      'llm_gateway_time_to_first_token_seconds',
      'llm_gateway_time_per_output_token_seconds',
      'llm_gateway_tokens_total',
      'llm_gateway_cost_usd_total',
      'llm_gateway_active_requests',
      'llm_gateway_rate_limited_total',
      'llm_gateway_budget_spend_usd',
      'llm_gateway_budget_limit_usd',
      'llm_gateway_circuit_state',
      'llm_gateway_fallbacks_total',
      'llm_gateway_upstream_errors_total',
      'llm_gateway_retries_total',
      'llm_gateway_store_errors_total',
      'llm_gateway_policy_reloads_total',
      'llm_gateway_budget_alerts_total',
      'llm_gateway_process_resident_memory_bytes',
    ]) {
      expect(metricNames, name).toContain(name);
    }
  });
});

// ----------------------------------------------------------------------------------------
// Prometheus rules

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
/** promtool rule-test files: the main one, and the day-long ones evaluated every 10m. */
const RULE_TESTS = ['alert_rules.test.yml', 'alert_rules.daily.test.yml'];
const rulesDoc = parse(await readFile(join(PROM, 'alert_rules.yml'), 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> };
const rules = rulesDoc.groups.flatMap((g) => g.rules);
const alerts = rules.filter((r): r is Rule & { alert: string } => typeof r.alert === 'string');
const runbook = await readFile(join(DEPLOY, 'RUNBOOK.md'), 'utf8');
/** GitHub-style anchors of the runbook's headings. */
const runbookAnchors = new Set(
  [...runbook.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) =>
    m[1]!
      .trim()
      .toLowerCase()
      .replace(/[^a-z0-9 _-]/g, '')
      .replace(/ /g, '-'),
  ),
);

describe('deploy/prometheus', () => {
  it.skipIf(!hasPromtool)(
    'alert_rules.yml passes promtool check rules',
    async () => {
      const out = await promtool(['check', 'rules', 'deploy/prometheus/alert_rules.yml']);
      expect(out).toMatch(/SUCCESS/);
    },
    120_000,
  );

  it.skipIf(!hasPromtool)(
    'the rule unit tests in alert_rules.test.yml pass',
    async () => {
      const out = await promtool(['test', 'rules', ...RULE_TESTS.map((f) => `deploy/prometheus/${f}`)]);
      expect(out).toMatch(/SUCCESS/);
    },
    120_000,
  );

  it.skipIf(!hasPromtool)(
    'prometheus.yml passes promtool check config (with its rule file)',
    async () => {
      const out = await promtool(['check', 'config', 'deploy/prometheus/prometheus.yml']);
      expect(out).toMatch(/SUCCESS: 1 rule files found/);
      expect(out).not.toMatch(/FAILED/);
    },
    120_000,
  );

  it('covers the alerts ops asked for', () => {
    const names = alerts.map((a) => a.alert);
    expect(new Set(names).size).toBe(names.length);
    const wanted: Array<[string, RegExp]> = [
      ['5xx error rate', /llm_gateway_requests_total\{status=~"5\.\."\}/],
      ['p95 TTFT', /histogram_quantile\(0\.95, .*llm_gateway_time_to_first_token_seconds_bucket/],
      ['p95 TPOT', /histogram_quantile\(0\.95, .*llm_gateway_time_per_output_token_seconds_bucket/],
      ['circuit open', /llm_gateway_circuit_state.*== 2/],
      ['fallbacks', /llm_gateway_fallbacks_total/],
      ['budget 80%', /llm_gateway:budget_used:ratio >= 0\.80/],
      ['budget 95%', /llm_gateway:budget_used:ratio >= 0\.95/],
      ['rate-limit rejections', /llm_gateway_rate_limited_total/],
      ['store errors', /llm_gateway_store_errors_total/],
      ['gateway down', /up\{job="llm-gateway"\} == 0/],
      [
        'availability fast burn',
        /availability_errors:ratio_rate1h > \(14\.4 \* 0\.001\)[\s\S]*ratio_rate5m[\s\S]*ratio_rate6h > \(6 \* 0\.001\)[\s\S]*ratio_rate30m/,
      ],
      [
        'availability slow burn',
        /availability_errors:ratio_rate1d > \(3 \* 0\.001\)[\s\S]*ratio_rate2h[\s\S]*ratio_rate3d > 0\.001[\s\S]*ratio_rate6h/,
      ],
      ['latency fast burn', /slo_ttft_slow:ratio_rate1h > \(14\.4 \* 0\.01\)/],
      ['latency slow burn', /slo_ttft_slow:ratio_rate1d > \(3 \* 0\.01\)/],
    ];
    for (const [what, re] of wanted) {
      expect(
        alerts.some((a) => re.test(a.expr)),
        `no alert for ${what} (${re})`,
      ).toBe(true);
    }
  });

  it('every alert has severity, priority, summary, description and a runbook section', () => {
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.labels?.priority, a.alert).toMatch(/^P[0-3]$/);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const url = a.annotations?.runbook_url ?? '';
      expect(url, a.alert).toBe(`deploy/RUNBOOK.md#${a.alert.toLowerCase()}`);
      expect(runbookAnchors, `RUNBOOK.md has no "## ${a.alert}" section`).toContain(a.alert.toLowerCase());
    }
  });

  it('rules name only exported metrics (deploy/metric-names.txt) and recorded series', () => {
    const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    for (const r of rules) {
      expect(unknownMetrics(r.expr), r.alert ?? r.record).toEqual([]);
      for (const name of r.expr.match(/\bllm_gateway:[A-Za-z0-9_:]+/g) ?? [])
        expect(recorded, `${r.alert ?? r.record} uses ${name}`).toContain(name);
    }
  });

  it('each alert has a unit test that fires it and is checked silent on healthy series', async () => {
    type Doc = { tests: Array<{ name: string; alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }> };
    const docs = await Promise.all(RULE_TESTS.map(async (f) => parse(await readFile(join(PROM, f), 'utf8')) as Doc));
    const fired = new Set<string>();
    const silent = new Set<string>();
    for (const t of docs.flatMap((d) => d.tests)) {
      for (const a of t.alert_rule_test ?? []) {
        if (a.exp_alerts?.length) fired.add(a.alertname);
        else if (/healthy/.test(t.name)) silent.add(a.alertname);
      }
    }
    for (const a of alerts) {
      expect(fired, `no test makes ${a.alert} fire`).toContain(a.alert);
      expect(silent, `the healthy test does not check ${a.alert}`).toContain(a.alert);
    }
  });
});

// ----------------------------------------------------------------------------------------
// Grafana dashboard

interface Panel {
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Array<{ expr?: string; datasource?: { uid?: string } }>;
  panels?: Panel[];
}
const dashboard = JSON.parse(await readFile(join(DEPLOY, 'grafana', 'dashboard.json'), 'utf8')) as {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string; datasource?: { uid?: string } }> };
};
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const dashboardExprs = allPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title ?? p.type, expr: t.expr ?? '' })));

/** Grafana's variables replaced by values a real dashboard would send. */
function substitute(expr: string): string {
  const values: Record<string, string> = { model: '.*', team: '.*', __rate_interval: '1m', __interval: '30s', __range: '1h' };
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => values[(a ?? b)!] ?? m);
}

describe('deploy/grafana/dashboard.json', () => {
  it('is a schemaVersion ~39 dashboard on a ${DS_PROMETHEUS} datasource with model and team variables', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.DS_PROMETHEUS?.type).toBe('datasource');
    for (const name of ['model', 'team']) {
      expect(vars[name]?.type, name).toBe('query');
      expect(vars[name]?.definition, name).toMatch(/^label_values\(llm_gateway_\w+, \w+\)$/);
      expect(unknownMetrics(vars[name]!.definition!), name).toEqual([]);
      expect(vars[name]?.datasource?.uid).toBe('${DS_PROMETHEUS}');
    }
    for (const p of allPanels.filter((p) => p.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
  });

  it('has the panels ops asked for', () => {
    const exprs = dashboardExprs.map((e) => e.expr).join('\n');
    for (const re of [
      /rate\(llm_gateway_requests_total/,
      /status=~"5\.\."/,
      /llm_gateway_active_requests/,
      /increase\(llm_gateway_cost_usd_total/,
      /histogram_quantile\(0\.99, sum by \(le\) \(rate\(llm_gateway_request_duration_seconds_bucket/,
      /histogram_quantile\(0\.95, sum by \(model, le\) \(rate\(llm_gateway_time_to_first_token_seconds_bucket/,
      /histogram_quantile\(0\.5, sum by \(model, le\) \(rate\(llm_gateway_time_per_output_token_seconds_bucket/,
      /sum by \(type\) \(rate\(llm_gateway_tokens_total/,
      /sum by \(team\) \(rate\(llm_gateway_cost_usd_total/,
      /llm_gateway_budget_limit_usd/,
      /llm_gateway_circuit_state/,
      /llm_gateway_fallbacks_total/,
      /llm_gateway_rate_limited_total/,
      /llm_gateway_store_errors_total/,
    ]) {
      expect(exprs).toMatch(re);
    }
  });

  it('names only exported metrics (deploy/metric-names.txt)', () => {
    expect(dashboardExprs.length).toBeGreaterThan(20);
    for (const { title, expr } of dashboardExprs) expect(unknownMetrics(expr), `${title}: ${expr}`).toEqual([]);
  });

  it.skipIf(!hasPromtool)(
    'every PromQL expression parses (as recording rules, through promtool)',
    async () => {
      const dir = await tmp('llm-gw-dash-');
      const exprs = dashboardExprs.map(({ title, expr }) => ({ title, expr: substitute(expr) }));
      for (const { title, expr } of exprs) expect(expr, `${title}: unsubstituted variable`).not.toMatch(/\$/);
      // JSON is YAML; one group, one recording rule per panel query.
      const file = join(dir, 'dashboard_rules.yml');
      await writeFile(
        file,
        JSON.stringify(
          { groups: [{ name: 'dashboard', rules: exprs.map(({ expr }, i) => ({ record: `dashboard:expr_${i}`, expr })) }] },
          null,
          2,
        ),
      );
      const out = await promtool(['check', 'rules', file]);
      expect(out).toMatch(new RegExp(`SUCCESS: ${exprs.length} rules found`));
    },
    120_000,
  );
});

// ----------------------------------------------------------------------------------------
// Kubernetes manifests

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  restartPolicy?: string;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: Record<string, unknown>;
}

async function yamlFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await yamlFiles(p)));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

const manifestFiles = await yamlFiles(K8S);
const manifests = new Map<string, Manifest[]>();
for (const f of manifestFiles) {
  const docs = parseAllDocuments(await readFile(f, 'utf8'));
  manifests.set(
    relative(K8S, f),
    docs.map((d) => {
      if (d.errors.length) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as Manifest;
    }),
  );
}
const one = (file: string, kind: string): Manifest => {
  const m = manifests.get(file)?.find((x) => x.kind === kind);
  if (!m) throw new Error(`${file} has no ${kind}`);
  return m;
};

const deployment = one('deployment.yaml', 'Deployment');
const podSpec = (deployment.spec as { template: { spec: Record<string, unknown> } }).template.spec as {
  terminationGracePeriodSeconds?: number;
  containers: Container[];
  initContainers?: Container[];
  securityContext?: Record<string, unknown>;
};
const allContainers = [...(podSpec.initContainers ?? []), ...podSpec.containers];
const gateway = allContainers.find((c) => c.image.startsWith('llm-gateway:'))!;
const app = podSpec.containers.find((c) => c !== gateway)!;
const basePoliciesText = one('configmap.yaml', 'ConfigMap').data!['policies.yaml']!;
const redisPoliciesText = one('redis/configmap-patch.yaml', 'ConfigMap').data!['policies.yaml']!;
const placeholderEnv = { OPENAI_API_KEY: 'sk-test', GATEWAY_ADMIN_TOKEN: 'admin', APP_KEY: 'sk-app', REDIS_URL: 'redis://127.0.0.1:6379' };

describe('deploy/k8s', () => {
  it('every manifest parses as YAML into objects with apiVersion, kind and a name', () => {
    expect(manifestFiles.map((f) => relative(K8S, f))).toEqual(
      expect.arrayContaining([
        'configmap.yaml',
        'deployment.yaml',
        'kustomization.yaml',
        'networkpolicy.yaml',
        'podmonitor.yaml',
        'secret.yaml',
        'redis/kustomization.yaml',
      ]),
    );
    for (const [file, docs] of manifests) {
      expect(docs.length, file).toBeGreaterThan(0);
      for (const d of docs) {
        expect(d.apiVersion, file).toBeTruthy();
        expect(d.kind, file).toBeTruthy();
        if (!/^(Kustomization|Component)$/.test(d.kind)) expect(d.metadata?.name, file).toBeTruthy();
      }
    }
  });

  it("the pod's terminationGracePeriodSeconds exceeds the gateway's preStop plus drain timeout", () => {
    const grace = podSpec.terminationGracePeriodSeconds ?? 30;
    const preStop = gateway.lifecycle?.preStop?.sleep?.seconds ?? 0;
    for (const [which, text] of [
      ['base', basePoliciesText],
      ['redis', redisPoliciesText],
    ] as const) {
      const drainMs = (parse(text) as { server?: { drain_timeout_ms?: number } }).server?.drain_timeout_ms ?? 25_000;
      expect(drainMs, which).toBe(25_000);
      expect(grace * 1000, `${which}: grace ${grace}s vs preStop ${preStop}s + drain ${drainMs}ms`).toBeGreaterThan(
        preStop * 1000 + drainMs,
      );
    }
    expect(grace).toBe(30);
  });

  it("the ConfigMap's policies pass the gateway's own validation", () => {
    const base = parsePolicies(basePoliciesText, 'deploy/k8s/configmap.yaml', placeholderEnv);
    expect(base.state.store).toBe('memory');
    expect(Object.keys(base.backends)).toEqual(expect.arrayContaining(['openai', 'vllm']));
    expect(base.budget_alerts).toEqual(expect.arrayContaining([0.7, 0.8, 0.95]));
    const redis = parsePolicies(redisPoliciesText, 'deploy/k8s/redis/configmap-patch.yaml', placeholderEnv);
    expect(redis.state.store).toBe('redis');
    expect(redis.state.redis_url).toBe(placeholderEnv.REDIS_URL);
  });

  it('the redis component changes only the state store of the base policies', () => {
    const strip = (text: string) => {
      const p = parse(text) as Record<string, unknown>;
      delete p.state;
      return p;
    };
    expect(strip(redisPoliciesText)).toEqual(strip(basePoliciesText));
    const patch = one('redis/deployment-patch.yaml', 'Deployment');
    const patched = (patch.spec as { template: { spec: { initContainers?: Container[]; containers?: Container[] } } }).template.spec;
    const gw = [...(patched.initContainers ?? []), ...(patched.containers ?? [])].find((c) => c.name === gateway.name);
    expect(gw?.env?.find((e) => e.name === 'REDIS_URL')?.valueFrom?.secretKeyRef).toEqual({ name: 'llm-gateway-redis', key: 'redis-url' });
    expect(one('redis/secret-redis.yaml', 'Secret').stringData?.['redis-url']).toMatch(/^rediss?:\/\//);
  });

  it('wires the sidecar: args, loopback base URL for the app, probes, port, resources, security', () => {
    expect(gateway.args).toEqual(['--policies', '/etc/llm-gateway/policies.yaml', '--port', '4000']);
    const env = Object.fromEntries((gateway.env ?? []).map((e) => [e.name, e]));
    expect(env.GATEWAY_HOST?.value).toBe('0.0.0.0');
    expect(app.env?.find((e) => e.name === 'OPENAI_BASE_URL')?.value).toBe('http://127.0.0.1:4000/v1');
    const metricsPort = gateway.ports?.find((p) => p.name === 'metrics');
    expect(metricsPort?.containerPort).toBe(4000);
    expect(gateway.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(gateway.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(gateway.resources?.requests).toEqual({ cpu: '100m', memory: '128Mi' });
    expect(gateway.resources?.limits).toEqual({ cpu: '1', memory: '256Mi' });
    expect(gateway.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(podSpec.securityContext).toMatchObject({ runAsNonRoot: true });
    // Native sidecar (init container, restartPolicy Always) or a plain container with a preStop.
    if (podSpec.initContainers?.includes(gateway)) expect(gateway.restartPolicy).toBe('Always');
    else expect(gateway.lifecycle?.preStop).toBeTruthy();
    expect(app.lifecycle?.preStop?.sleep?.seconds ?? 0).toBeGreaterThan(0);

    // Every secret the pod reads exists in secret.yaml.
    const secret = one('secret.yaml', 'Secret');
    for (const c of allContainers) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          expect(ref.name, `${c.name} ${e.name}`).toBe(secret.metadata.name);
          expect(Object.keys(secret.stringData ?? {}), `${c.name} ${e.name}`).toContain(ref.key);
        }
      }
    }
  });

  it('PodMonitor scrapes the "metrics" port every 15s; NetworkPolicy admits only monitoring to 4000', () => {
    const pm = one('podmonitor.yaml', 'PodMonitor').spec as {
      selector: { matchLabels: Record<string, string> };
      podMetricsEndpoints: Array<{ port: string; path: string; interval: string }>;
    };
    expect(pm.podMetricsEndpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics', interval: '15s' });
    const podLabels = (deployment.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    expect(podLabels).toMatchObject(pm.selector.matchLabels);

    const np = one('networkpolicy.yaml', 'NetworkPolicy').spec as {
      podSelector: { matchLabels: Record<string, string> };
      ingress: Array<{ from?: Array<{ namespaceSelector?: { matchLabels: Record<string, string> } }>; ports: Array<{ port: number }> }>;
    };
    expect(podLabels).toMatchObject(np.podSelector.matchLabels);
    const to4000 = np.ingress.filter((r) => r.ports.some((p) => p.port === 4000));
    expect(to4000.length).toBe(1);
    expect(to4000[0]!.from?.[0]?.namespaceSelector?.matchLabels).toEqual({ 'kubernetes.io/metadata.name': 'monitoring' });
  });

  it.skipIf(!hasKubectl)(
    'kustomize builds the base and the base with the redis component',
    async () => {
      const base = await run('kubectl', ['kustomize', K8S], { timeout: 60_000 });
      expect(base.stdout).toMatch(/store: memory/);
      const dir = await tmp('llm-gw-kustomize-');
      const rel = relative(dir, K8S);
      await writeFile(
        join(dir, 'kustomization.yaml'),
        `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${rel}]\ncomponents: [${rel}/redis]\n`,
      );
      const withRedis = await run('kubectl', ['kustomize', dir], { timeout: 60_000 });
      expect(withRedis.stdout).toMatch(/store: redis/);
      expect(withRedis.stdout).toMatch(/name: REDIS_URL/);
      expect(withRedis.stdout).toMatch(/name: llm-gateway-redis/);
    },
    120_000,
  );
});
