// deploy/prometheus/alertmanager.yml: amtool accepts it, and routes each severity to seed
// 001's receivers. Needs `amtool` (Debian: prometheus-alertmanager); skipped with a warning otherwise.
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FILE = join(ROOT, 'deploy', 'prometheus', 'alertmanager.yml');
const hasAmtool = await run('amtool', ['--version'], { timeout: 20_000 }).then(
  () => true,
  () => false,
);
if (!hasAmtool)
  console.warn('\n*** amtool NOT FOUND: deploy-alertmanager.test.ts checks are SKIPPED (apt-get install prometheus-alertmanager).\n');

async function amtool(args: string[]): Promise<string> {
  try {
    const r = await run('amtool', args, { cwd: ROOT, timeout: 60_000 });
    return r.stdout + r.stderr;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`amtool ${args.join(' ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}${err.message}`);
  }
}

describe('deploy/prometheus/alertmanager.yml', () => {
  it('has seed 001 timings', async () => {
    const doc = parse(await readFile(FILE, 'utf8')) as { route: Record<string, unknown> };
    expect(doc.route).toMatchObject({
      group_by: ['alertname', 'severity'],
      group_wait: '30s',
      group_interval: '5m',
      repeat_interval: '4h',
    });
  });

  it.skipIf(!hasAmtool)(
    'passes amtool check-config',
    async () => {
      expect(await amtool(['check-config', FILE])).toMatch(/SUCCESS/);
    },
    60_000,
  );

  it.skipIf(!hasAmtool)(
    'routes critical, warning and info alerts to their receivers',
    async () => {
      for (const [severity, receiver] of [
        ['critical', 'critical-team'],
        ['warning', 'warning-team'],
        ['info', 'default'],
      ] as const) {
        const out = await amtool([
          'config',
          'routes',
          'test',
          `--config.file=${FILE}`,
          `severity=${severity}`,
          'alertname=LLMGatewayIncidentOpen',
        ]);
        expect(out.split('\n')[0]!.trim(), severity).toBe(receiver);
      }
    },
    60_000,
  );
});
