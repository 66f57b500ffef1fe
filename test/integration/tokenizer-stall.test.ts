// The tokenizer cannot stall the gateway. One prompt of 300,000 `a` (one BPE piece) froze every
// request and /healthz for ~55 s; an upstream that sends no usage made the gateway count a
// streamed 300k-char word the same way. Both are now bounded (util/bounded-count.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startScriptedUpstream, chunkEvent, type ScriptedUpstream } from '../fixtures/scripted-upstream.js';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.js';
import { EXACT_BUDGET_CHARS, bpeWork } from '../../src/util/bounded-count.js';

const WORD = 'a'.repeat(300_000);
// Another word for the second case: the tokenizer caches pieces, and a cached one costs nothing.
const OTHER_WORD = 'b'.repeat(300_000);
/**
 * The longest a /healthz may take while the estimate runs: the estimate's worst case is tens
 * of milliseconds (docs in util/bounded-count.ts); this leaves two orders of magnitude for a
 * busy machine, and is still ten times less than the 55 s stall it prevents.
 */
const HEALTHZ_BOUND_MS = 5_000;

describe('a gateway process (node dist/main.js) with a budgeted key', () => {
  let dir: string;
  let gw: GatewayProcess | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gw-tok-'));
    const file = join(dir, 'p.yaml');
    await writeFile(
      file,
      `backends:
  sim: { type: simulator, ttft_ms: 0, tpot_ms: 0, output_tokens: 2 }
models:
  m:
    deployments: [{ backend: sim }]
    pricing: { input_per_mtok: 1, output_per_mtok: 1 }
keys:
  - { key: k-big, name: big, budget: { usd: 1000, period: month } }
server: { max_body_bytes: 2000000 }
`,
    );
    gw = await startGatewayProcess(['--policies', file, '--port', '0']);
  }, 90_000); // a cold start on a busy machine takes several seconds

  afterAll(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a 300k-char single word is estimated without stalling /healthz', async () => {
    const base = `http://127.0.0.1:${gw!.port}`;
    let done = false;
    const big = fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k-big' },
      body: JSON.stringify({ model: 'm', max_tokens: 2, messages: [{ role: 'user', content: WORD }] }),
    })
      .then(async (r) => ({ status: r.status, body: (await r.json()) as unknown }))
      .catch((e: unknown) => ({ status: -1, body: e }))
      .finally(() => (done = true));
    // /healthz, one after another, for as long as the big request is in flight.
    let slowest = 0;
    let probes = 0;
    while (!done) {
      const t0 = performance.now();
      const h = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(HEALTHZ_BOUND_MS * 2) });
      await h.arrayBuffer();
      slowest = Math.max(slowest, performance.now() - t0);
      probes++;
      expect(h.status).toBe(200);
    }
    const r = await big;
    expect(r.status).toBe(200);
    expect(probes).toBeGreaterThan(0);
    expect(slowest).toBeLessThan(HEALTHZ_BOUND_MS);
  }, 90_000);
});

describe('an upstream that sends no usage', () => {
  let upstream: ScriptedUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startScriptedUpstream({ steps: [] });
    upstream.setScript((body) =>
      (body as { stream?: boolean }).stream
        ? {
            steps: [
              { delayMs: 0, bytes: chunkEvent({ role: 'assistant', content: '' }) },
              // The word arrives in pieces, as a real stream would send it.
              ...Array.from({ length: 30 }, () => ({ delayMs: 0, bytes: chunkEvent({ content: WORD.slice(0, 10_000) }) })),
              { delayMs: 0, bytes: chunkEvent({}, {}, 'stop') + 'data: [DONE]\n\n' },
            ],
          }
        : {
            headers: { 'content-type': 'application/json' },
            steps: [
              {
                delayMs: 0,
                bytes: JSON.stringify({
                  id: 'c',
                  object: 'chat.completion',
                  created: 1,
                  model: 'up',
                  choices: [{ index: 0, message: { role: 'assistant', content: OTHER_WORD }, finish_reason: 'stop' }],
                }),
              },
            ],
          },
    );
    gw = await startGateway(`
backends:
  up: { base_url: "${upstream.baseURL}" }
models:
  m:
    deployments: [{ backend: up }]
    pricing: { input_per_mtok: 1, output_per_mtok: 1 }
`);
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it.each([true, false])('a streamed (%s) 300k-char word is counted with bounded tokenizer work', async (stream) => {
    const id = `nousage-${stream}`;
    const before = bpeWork.chars;
    const r = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': id },
      body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'go' }] }),
    });
    expect(r.status).toBe(200);
    expect((await r.text()).length).toBeGreaterThan(WORD.length);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === id);
    expect(line.tokens_estimated).toBe(true);
    const out = (line.tokens as { output: number }).output;
    // 'aaaaaaaa' is one cl100k token: the estimate does not under-count the word.
    expect(out).toBeGreaterThanOrEqual(WORD.length / 8);
    // The output and the prompt: one budget each.
    expect(bpeWork.chars - before).toBeLessThanOrEqual(2 * EXACT_BUDGET_CHARS);
  });
});
