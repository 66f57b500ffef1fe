// The fleet's exactness on Valkey (the BSD fork of Redis): three gateway processes share one
// Valkey server, then a Valkey cluster of three masters, both started by this test from
// Debian's valkey-server (bookworm-backports; .ci/run installs it, and without it the file
// is skipped with a loud warning). The same bursts as on Redis: rpm 100 → exactly 100 of 300,
// $1.00 → exactly 100 requests of $0.01; and on the cluster, a fleet with quota leases
// (never over; exactly what fits once asked again).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fleetKeysYaml,
  leasedLimitTests,
  privateCluster,
  type RedisCluster,
  redisFleetPolicies,
  sharedLimitTests,
  startFleet,
  stopFleet,
} from './admission-support.js';
import { freePort } from '../helpers/net.js';
import { requireBuild, startRedisServer, type GatewayProcess, type Started } from '../helpers/process.js';

const run = promisify(execFile);
const hasValkey = await Promise.all([run('valkey-server', ['--version']), run('valkey-cli', ['--version'])]).then(
  () => true,
  () => false,
);
if (!hasValkey)
  console.warn(
    '\n*** valkey-server/valkey-cli NOT FOUND: admission-valkey.test.ts is SKIPPED (Debian 12: apt-get install -t bookworm-backports valkey-server valkey-tools).\n',
  );

const dir = mkdtempSync(join(tmpdir(), 'admission-valkey-'));
const standaloneGateways: GatewayProcess[] = [];
const clusterGateways: GatewayProcess[] = [];
const leasing: GatewayProcess[] = [];
let server: Started | undefined;
let serverPort = 0;
let cluster: RedisCluster | undefined;

const policies = (url: string, leased = false): string =>
  redisFleetPolicies(url, leased ? 'llmgw-leased:' : 'llmgw:', fleetKeysYaml(), leased);

afterAll(async () => {
  await stopFleet(standaloneGateways);
  await stopFleet(clusterGateways);
  await stopFleet(leasing);
  await server?.stop('SIGKILL');
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe.runIf(hasValkey)('admission on one Valkey server, three gateways', () => {
  beforeAll(async () => {
    requireBuild();
    serverPort = await freePort();
    server = await startRedisServer(
      ['--port', String(serverPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      undefined,
      'valkey-server',
    );
    // Each fleet has its own policies file: a gateway reloads when its file changes.
    const fleetDir = join(dir, 'standalone');
    mkdirSync(fleetDir);
    standaloneGateways.push(...(await startFleet(fleetDir, policies(`redis://127.0.0.1:${serverPort}`))));
  }, 60_000);

  sharedLimitTests(() => standaloneGateways);

  it('the server the fleet uses is Valkey, not Redis', async () => {
    const c = new Redis({ host: '127.0.0.1', port: serverPort, lazyConnect: true });
    try {
      await c.connect();
      const info = await c.info('server');
      expect(info).toMatch(/^server_name:valkey\r?$/m);
      expect(info).toMatch(/^valkey_version:\d+\.\d+/m);
      // After the bursts, the fleet's keys are there, under its prefix.
      expect((await c.keys('llmgw:*')).length).toBeGreaterThan(0);
    } finally {
      c.disconnect();
    }
  });
});

describe.runIf(hasValkey)('admission on a Valkey cluster of three masters, three gateways', () => {
  beforeAll(async () => {
    requireBuild();
    const clusterDir = join(dir, 'cluster');
    mkdirSync(clusterDir);
    cluster = await privateCluster(clusterDir, { server: 'valkey-server', redisCli: 'valkey-cli' });
    clusterGateways.push(...(await startFleet(clusterDir, policies(cluster.url))));
  }, 60_000);

  sharedLimitTests(() => clusterGateways);

  describe('with quota leases', () => {
    beforeAll(async () => {
      const leasedDir = join(dir, 'leased');
      mkdirSync(leasedDir);
      leasing.push(...(await startFleet(leasedDir, policies(cluster!.url, true))));
    }, 60_000);
    leasedLimitTests(() => leasing);
  });
});
