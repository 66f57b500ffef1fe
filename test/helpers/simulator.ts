// The bundled simulator for a test file, with the OpenAI SDK as its client.
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';

export interface SimulatorTiming {
  ttftMs: number;
  tpotMs: number;
  outputTokens: number;
}

/**
 * Starts a simulator with `timing` before the file's tests and closes it after them; after
 * each test it is put back (no fault, default error rate and usage flags, `timing`) with fresh
 * stats, so no test sees another's settings. `ready` hands the simulator and a client to the
 * file (maxRetries 0: a fault must surface as it is, not be hidden by the SDK's retries).
 */
export function useSimulator(timing: SimulatorTiming, ready: (sim: Simulator, client: OpenAI) => void): void {
  let sim: Simulator | undefined;
  beforeAll(async () => {
    sim = await startSimulator(timing);
    ready(sim, new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 }));
  });
  afterAll(async () => {
    await sim?.close();
  });
  afterEach(() => {
    sim?.configure({ fault: null, ...timing, errorRate: 0, includeUsageAlways: false, omitUsage: false });
    sim?.resetStats();
  });
}
