// No leaked sockets, timers or listeners: after a gateway and its upstream close, the
// process holds exactly the handles it held before (process.getActiveResourcesInfo).
import { describe, expect, it } from 'vitest';
import { Agent, fetch as undiciFetch } from 'undici';
import { startSimulator } from '../../src/simulator/index.js';
import { openaiClient, startGateway } from '../helpers/gateway.js';

function resources(): string[] {
  return process.getActiveResourcesInfo().sort();
}

describe('lifecycle', () => {
  it('closing the gateway releases every socket and timer', async () => {
    const before = resources();
    const sim = await startSimulator({ ttftMs: 2, tpotMs: 2, outputTokens: 10 });
    const gw = await startGateway(`
backends:
  sim: { type: openai, base_url: "${sim.url}", forward_headers: [x-sim-tpot-ms] }
  builtin: { type: simulator, ttft_ms: 1, tpot_ms: 1 }
models:
  m: { deployments: [{ backend: sim }] }
  b: { deployments: [{ backend: builtin }] }
`);
    // The client's connections go through an agent of ours, so the test can close them too
    // and then demand that not one socket is left.
    const agent = new Agent();
    const client = openaiClient(gw, 'k', {
      fetch: ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher: agent })) as unknown as typeof fetch,
    });
    await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    await client.chat.completions.create({ model: 'b', messages: [{ role: 'user', content: 'x' }] });
    const s = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true });
    for await (const _ of s) {
      /* drain */
    }
    // A stream abandoned midway.
    const s2 = await client.chat.completions.create(
      { model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true },
      { headers: { 'x-sim-tpot-ms': '50' } },
    );
    for await (const _ of s2) break; // the SDK aborts the request when the loop is left
    await expect.poll(() => sim.stats.aborted).toBe(1);
    await expect(client.models.list()).resolves.toBeTruthy();
    await agent.close();
    await gw.close();
    await sim.close();
    await expect.poll(() => resources(), { timeout: 3000 }).toEqual(before);
    expect(gw.gw.inflight.size).toBe(0);
  });
});
