// `promtool check metrics` on the /metrics page of a gateway run with the default policies
// (node dist/main.js --policies policies/policies.yaml): the page ops scrape must lint clean.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.js';

const hasPromtool = await new Promise<boolean>((r) => execFile('promtool', ['--version'], { timeout: 20_000 }, (e) => r(!e)));
if (!hasPromtool) console.warn('\n*** promtool NOT FOUND: metrics-lint.test.ts is SKIPPED (apt-get install prometheus).\n');

/** Feeds `text` to `promtool check metrics`; resolves with its exit code and output. */
function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', ['check', 'metrics'], { timeout: 60_000 }, (e, stdout, stderr) => {
      const code = e ? ((e as { code?: number }).code ?? 1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
    child.stdin!.end(text);
  });
}

let gw: GatewayProcess | undefined;
afterAll(async () => {
  await gw?.stop();
});

describe('/metrics lint', () => {
  it.skipIf(!hasPromtool)(
    'the default-config /metrics page passes promtool check metrics (no *_total gauges)',
    async () => {
      gw = await startGatewayProcess(['--policies', 'policies/policies.yaml', '--port', '0']);
      const base = `http://127.0.0.1:${gw.port}`;
      // One request first, so the per-request families are on the page too.
      const r = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      });
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      const page = await (await fetch(`${base}/metrics`)).text();
      expect(page).toMatch(/^llm_gateway_nodejs_active_handles\{/m); // the default metrics are there...
      const { code, output } = await promtoolCheck(page);
      expect(output).toBe(''); // ...and promtool has nothing to say about any of them
      expect(code).toBe(0);
    },
    90_000,
  ); // a cold start on a busy machine takes several seconds
});
