// The gateway as users run it: `node dist/main.js` (what `npm start` runs, built by the
// test script's pretest), `check FILE`, and a graceful SIGTERM that lets a stream finish.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGatewayProcess, startGatewayProcess, type GatewayProcess } from '../helpers/process.js';
import { openaiClient } from '../helpers/gateway.js';

const gateways: GatewayProcess[] = [];
let dir: string | undefined;

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The gateway on port 0, stopped after the file if a test leaves it running. */
async function startGateway(args: string[]): Promise<GatewayProcess> {
  const gw = await startGatewayProcess(args);
  gateways.push(gw);
  return gw;
}

describe('llm-gateway CLI', () => {
  it('check accepts the shipped policies and exits 0', async () => {
    const r = await runGatewayProcess(['check', 'policies/policies.yaml']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/policies\/policies\.yaml: ok \(2 models/);
  });

  it('check refuses a bad file with the field path and line, exit code 1', async () => {
    dir = await mkdtemp(join(tmpdir(), 'gw-cli-'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'backends:\n  a: { base_url: "not a url" }\nmodels:\n  m: { deployments: [{ backend: a, weight: -2 }] }\n');
    const r = await runGatewayProcess(['check', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/backends\.a\.base_url \(line 2\)/);
    expect(r.stderr).toMatch(/models\.m\.deployments\.0\.weight \(line 4\)/);
  });

  it('refuses to start on an invalid policies file (non-zero exit, readable error)', async () => {
    const bad = join(dir!, 'bad2.yaml');
    await writeFile(bad, 'models: {}\n');
    const r = await runGatewayProcess(['--policies', bad, '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/backends/);
  });

  it('serves the default policies: the demo model answers through the built-in simulator', async () => {
    const gw = await startGateway(['--policies', 'policies/policies.yaml', '--port', '0']);
    const client = openaiClient(gw, 'none');
    const r = await client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'hello' }] });
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(gw.lines.find((l) => l.msg === 'listening')?.host).toBe('127.0.0.1');
    gw.child.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  });

  it('SIGTERM lets an in-flight stream finish, refuses new connections, then exits 0', async () => {
    const gw = await startGateway(['--policies', 'policies/policies.yaml', '--port', '0']);
    const client = openaiClient(gw, 'none');
    const stream = await client.chat.completions.create(
      { model: 'demo', messages: [{ role: 'user', content: 'long one' }], stream: true },
      { headers: { 'x-sim-output-tokens': '30', 'x-sim-tpot-ms': '20' } },
    );
    let tokens = 0;
    let signalled = false;
    for await (const c of stream) {
      if (c.choices[0]?.delta?.content) tokens++;
      if (!signalled) {
        signalled = true;
        gw.child.kill('SIGTERM');
        // Let the gateway close its listener, then check that a new client is turned away.
        await new Promise((r) => setTimeout(r, 100));
        await expect(fetch(`http://127.0.0.1:${gw.port}/healthz`)).rejects.toThrow();
      }
    }
    // Every token arrived: the stream ran to its end after the signal.
    expect(tokens).toBe(30);
    expect(await gw.exited).toBe(0);
    const req = gw.lines.find((l) => l.msg === 'request');
    expect(req?.status).toBe(200);
    expect(gw.lines.some((l) => l.msg === 'stopped')).toBe(true);
  });
});
