// A state file that cannot be used (corrupt JSON, values of the wrong type, not a readable
// file) used to reset every budget to 0 silently, and the first flush then overwrote the
// evidence. Now the gateway refuses to start with an error naming the file and leaves the
// file as it is; `state.on_corrupt: fresh` or a one-off `--reset-state` moves it aside and
// starts with no recorded spend.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createAdmission } from '../../src/admission/index.js';
import { StateFileError } from '../../src/admission/statefile.js';
import { periodAt } from '../../src/admission/periods.js';
import { parsePolicies } from '../../src/config/load.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { KeyRing } from '../../src/auth/index.js';
import { PolicyTable } from '../../src/policy/index.js';
import { metricValue } from '../helpers/gateway.js';
import { requireBuild, runGatewayProcess, startGatewayProcess, type GatewayProcess } from '../helpers/process.js';
import { ADMIN_TOKEN, budgetOf } from './admission-support.js';

const dir = mkdtempSync(join(tmpdir(), 'gw-statefile-'));
const live: GatewayProcess[] = [];
let n = 0;

afterAll(async () => {
  await Promise.all(live.map((g) => g.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const month = () => periodAt('month', Date.now()).id;
const validFile = (spentNano: unknown = 250_000_000, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    version: 1,
    saved_at: new Date().toISOString(),
    budgets: { 'key:a': { period: month(), spent_nano: spentNano, spent_usd: 0.25, alerted: [], ...extra } },
  });

function policyYaml(stateFile: string, onCorrupt?: 'refuse' | 'fresh'): string {
  return `
admin_token: ${ADMIN_TOKEN}
state: { store: memory, file: "${stateFile}", flush_interval_ms: 100000${onCorrupt ? `, on_corrupt: ${onCorrupt}` : ''} }
backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 0, output_tokens: 4 }
models:
  m:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 0, output_per_mtok: 1000 }
keys:
  - { key: k-a, name: a, budget: { usd: 1, period: month } }
`;
}

/** A fresh state file path holding `content` (a string, or a directory when null). */
function stateWith(content: string | null): string {
  const f = join(dir, `state-${++n}`, 'state.json');
  mkdirSync(join(f, '..'), { recursive: true });
  if (content === null) mkdirSync(f);
  else writeFileSync(f, content);
  return f;
}

const build = (stateFile: string, onCorrupt?: 'refuse' | 'fresh') => {
  const metrics = new Metrics({ defaultMetrics: false });
  const admission = createAdmission(parsePolicies(policyYaml(stateFile, onCorrupt), 'p.yaml', {}), {
    metrics,
    logger: pino({ level: 'silent' }),
  });
  return { admission, metrics };
};

const UNUSABLE: Array<[string, string | null, RegExp]> = [
  ['truncated JSON', validFile().slice(0, 40), /is not valid JSON/],
  ['not JSON at all', '\u0000\u0001garbage', /is not valid JSON/],
  ['a spend of "abc" (used to disable the budget)', validFile('abc'), /budgets\["key:a"\]\.spent_nano .*"abc"/],
  ['a numeric string spend (used to be string-concatenated)', validFile('250000000'), /spent_nano .*"250000000"/],
  ['a negative spend', validFile(-5), /spent_nano/],
  ['a fractional spend', validFile(1.5), /spent_nano/],
  ['a null spend (what Infinity was written as)', validFile(null), /spent_nano .*null/],
  ['no version', JSON.stringify({ budgets: {} }), /version/],
  ['budgets not an object', JSON.stringify({ version: 1, budgets: [] }), /budgets/],
  ['alerted not a list', validFile(1, { alerted: 'x' }), /alerted/],
  ['a directory where the file should be', null, /is not a regular file/],
];

describe('state file that cannot be used (in process)', () => {
  it.each(UNUSABLE)('%s: admission refuses with an error naming the file, and the file is left as it was', (_name, content, reason) => {
    const f = stateWith(content);
    let err: unknown;
    try {
      build(f);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateFileError);
    const e = err as StateFileError;
    expect(e.file).toBe(f);
    expect(e.message).toContain(f);
    expect(e.message).toMatch(reason);
    expect(e.message).toMatch(/--reset-state/);
    if (content !== null) expect(readFileSync(f, 'utf8')).toBe(content);
    expect(readdirSync(join(f, '..'))).toEqual(['state.json']); // nothing moved, nothing written
  });

  it('state.on_corrupt: fresh moves the file aside (bytes intact) and starts with no recorded spend', async () => {
    const content = validFile('abc');
    const f = stateWith(content);
    const { admission, metrics } = build(f, 'fresh');
    try {
      const spend = await admission.admin!.spend();
      expect(spend.budgets.find((b) => b.name === 'a')).toMatchObject({ spend_usd: 0 });
      const aside = readdirSync(join(f, '..')).filter((x) => x.startsWith('state.json.corrupt-'));
      expect(aside).toHaveLength(1);
      expect(readFileSync(join(f, '..', aside[0]!), 'utf8')).toBe(content);
      expect(metricValue(await metrics.registry.metrics(), 'llm_gateway_store_errors_total', { store: 'memory', op: 'load' })).toBe(1);
    } finally {
      await admission.close();
    }
    // The new file is a valid one.
    expect(JSON.parse(readFileSync(f, 'utf8'))).toMatchObject({ version: 1 });
  });

  it('a valid file is still restored', async () => {
    const f = stateWith(validFile(250_000_000));
    const { admission } = build(f);
    try {
      expect((await admission.admin!.spend()).budgets.find((b) => b.name === 'a')).toMatchObject({ spend_usd: 0.25 });
    } finally {
      await admission.close();
    }
  });

  it('a reload onto a corrupt file is refused before it touches the running state (which keeps flushing)', async () => {
    const good = stateWith(validFile(100_000_000));
    const bad = stateWith(validFile('abc'));
    const metrics = new Metrics({ defaultMetrics: false });
    const logger = pino({ level: 'silent' });
    const policies = parsePolicies(policyYaml(good), 'p.yaml', {});
    const first = createAdmission(policies, { metrics, logger });
    const badContent = readFileSync(bad, 'utf8');
    expect(() => createAdmission(parsePolicies(policyYaml(bad), 'p.yaml', {}), { metrics, logger }, first)).toThrow(StateFileError);
    // The running engine still commits spend and writes it to its own file.
    const identity = new KeyRing(policies).identify({ authorization: 'Bearer k-a' });
    const route = new PolicyTable(policies).resolve('m')!;
    const ticket = await first.admit({ identity, route, promptTokens: 1, maxOutputTokens: 1, worstCaseUsd: 0.1 });
    ticket.settle({ servedModel: 'm', inputTokens: 1, outputTokens: 1, costUsd: 0.05 });
    await first.close();
    const saved = JSON.parse(readFileSync(good, 'utf8')) as { budgets: Record<string, { spent_nano: number }> };
    expect(saved.budgets['key:a']!.spent_nano).toBe(150_000_000);
    expect(readFileSync(bad, 'utf8')).toBe(badContent);
  });
});

// Each test starts a gateway process: a cold start on a busy machine takes several seconds.
const PROCESS_TEST_MS = 90_000;

describe('state file that cannot be used (node dist/main.js)', () => {
  beforeAll(() => requireBuild());

  it(
    'refuses to start: exit 1, stderr names the file and the way out, the file is unchanged',
    async () => {
      const content = validFile('abc');
      const f = stateWith(content);
      const policies = join(f, '..', 'p.yaml');
      writeFileSync(policies, policyYaml(f));
      const r = await runGatewayProcess(['--policies', policies, '--port', '0']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`state file ${f} `);
      expect(r.stderr).toMatch(/spent_nano/);
      expect(r.stderr).toMatch(/--reset-state/);
      expect(r.lines.some((l) => l.msg === 'listening')).toBe(false);
      expect(readFileSync(f, 'utf8')).toBe(content);
    },
    PROCESS_TEST_MS,
  );

  it(
    '--reset-state moves the file aside and starts with no recorded spend',
    async () => {
      const content = validFile('abc');
      const f = stateWith(content);
      const policies = join(f, '..', 'p.yaml');
      writeFileSync(policies, policyYaml(f));
      const gw = await startGatewayProcess(['--policies', policies, '--port', '0', '--reset-state']);
      live.push(gw);
      const url = `http://127.0.0.1:${gw.port}`;
      expect(await budgetOf(url, 'key', 'a')).toMatchObject({ spend_usd: 0 });
      const moved = gw.lines.find((l) => l.msg?.toString().includes('--reset-state'));
      expect(moved).toMatchObject({ level: 40, file: f });
      expect(readFileSync(moved!.moved_to as string, 'utf8')).toBe(content);
      expect(existsSync(f)).toBe(false);
    },
    PROCESS_TEST_MS,
  );

  it(
    'state.on_corrupt: fresh starts, keeping the bad file aside',
    async () => {
      const content = '{"version":1,"budgets":{"key:a":{"period":"x","spent_nano":"1"+}}}';
      const f = stateWith(content);
      const policies = join(f, '..', 'p.yaml');
      writeFileSync(policies, policyYaml(f, 'fresh'));
      const gw = await startGatewayProcess(['--policies', policies, '--port', '0']);
      live.push(gw);
      expect(await budgetOf(`http://127.0.0.1:${gw.port}`, 'key', 'a')).toMatchObject({ spend_usd: 0 });
      const line = gw.lines.find((l) => typeof l.moved_to === 'string');
      expect(line).toMatchObject({ level: 50, file: f });
      expect(readFileSync(line!.moved_to as string, 'utf8')).toBe(content);
    },
    PROCESS_TEST_MS,
  );
});
