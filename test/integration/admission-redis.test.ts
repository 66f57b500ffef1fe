// Three gateway processes (node dist/main.js) share one Redis: a limit or a budget holds for
// the fleet exactly, because every check-and-reserve is one Lua script; and with quota leases
// (a second fleet) never more than exactly. Each run uses its own key prefixes and deletes
// only its own keys.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import {
  fleetKeysYaml,
  flushPrefix,
  leasedLimitTests,
  redisFleetPolicies,
  sharedLimitTests,
  startFleet,
  stopFleet,
} from './admission-support.js';
import { requireBuild, type GatewayProcess } from '../helpers/process.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}:`;
const dir = mkdtempSync(join(tmpdir(), 'admission-redis-'));
const gateways: GatewayProcess[] = [];
const leasing: GatewayProcess[] = [];

beforeAll(async () => {
  requireBuild();
  gateways.push(...(await startFleet(dir, redisFleetPolicies(REDIS_URL, PREFIX, fleetKeysYaml()))));
}, 60_000); // three cold gateway starts; slow beside the cluster test in npm test

afterAll(async () => {
  await stopFleet(gateways);
  await stopFleet(leasing);
  await flushPrefix(REDIS_URL, PREFIX);
  await flushPrefix(REDIS_URL, `${PREFIX}leased:`);
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, redis store, three gateways', () => {
  sharedLimitTests(() => gateways);
});

describe('admission, redis store with quota leases, three gateways', () => {
  beforeAll(async () => {
    leasing.push(...(await startFleet(dir, redisFleetPolicies(REDIS_URL, `${PREFIX}leased:`, fleetKeysYaml(), true))));
  }, 60_000);
  leasedLimitTests(() => leasing);
});
