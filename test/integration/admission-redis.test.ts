// Three gateway processes (node dist/main.js) share one Redis: a limit or a budget holds for
// the fleet exactly, because every check-and-reserve is one Lua script. Each run uses its
// own key prefix and deletes only its own keys.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { fleetKeysYaml, flushPrefix, redisFleetPolicies, sharedLimitTests, startFleet, stopFleet } from './admission-support.js';
import { requireBuild, type GatewayProcess } from '../helpers/process.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `llmgw-test-${process.pid}-${Date.now()}:`;
const dir = mkdtempSync(join(tmpdir(), 'admission-redis-'));
const gateways: GatewayProcess[] = [];

beforeAll(async () => {
  requireBuild();
  gateways.push(...(await startFleet(dir, redisFleetPolicies(REDIS_URL, PREFIX, fleetKeysYaml()))));
}, 60_000); // three cold gateway starts; slow beside the cluster test in npm test

afterAll(async () => {
  await stopFleet(gateways);
  await flushPrefix(REDIS_URL, PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

describe('admission, redis store, three gateways', () => {
  sharedLimitTests(() => gateways);
});
