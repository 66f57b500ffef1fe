// The live dashboard: GET /admin/stats (JSON from the gateway's own metrics), the page at
// /dashboard with its token → cookie exchange, and the page itself in real headless Chromium
// (playwright-core driving Debian's /usr/bin/chromium; no browser is ever downloaded).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { withGateway, type GatewayFixture } from '../helpers/gateway.js';
import { histogramQuantile, type Stats } from '../../src/dashboard/index.js';
import { newSession, sessionCookieName, validSession } from '../../src/auth/session.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) {
  console.warn(
    `\n!!!!!!!!\n!!! ${CHROMIUM} is missing: the dashboard browser test is SKIPPED. Install it (apt-get install chromium, or .ci/run).\n!!!!!!!!\n`,
  );
}
const TOKEN = 'dash-secret-token';
// Rendered only as text: if the page ever inserted data as markup, this would become an element.
const HOSTILE = '<img src=x onerror="window.__xss=1">';

let gw: GatewayFixture;
let client: OpenAI;
let browser: Browser | undefined;

beforeAll(async () => {
  gw = await withGateway(
    `
admin_token: ${TOKEN}
retries: { max: 0, backoff_ms: 0 }
backends:
  sim: { type: simulator, ttft_ms: 15, tpot_ms: 3, output_tokens: 12 }
  flaky: { type: simulator, ttft_ms: 25, tpot_ms: 6, output_tokens: 8, error_rate: 0.3 }
models:
  chat:
    deployments: [{ backend: sim, model: sim-1 }]
    pricing: { input_per_mtok: 2.5, output_per_mtok: 10 }
  flaky:
    deployments: [{ backend: flaky }]
    pricing: { input_per_mtok: 1, output_per_mtok: 4 }
  '${HOSTILE}':
    deployments: [{ backend: sim }]
`,
    { apiKey: 'any' },
  );
  client = gw.openai;
  // Budgets come from the llm_gateway_budget_* gauges, whoever sets them.
  gw.gw.metrics.budgetLimit.set({ scope: 'team', name: 'payments' }, 50);
  gw.gw.metrics.budgetSpend.set({ scope: 'team', name: 'payments' }, 37.5);
  gw.gw.metrics.budgetLimit.set({ scope: 'global', name: 'global' }, 1000);
  gw.gw.metrics.budgetSpend.set({ scope: 'global', name: 'global' }, 120);
});

afterAll(async () => {
  await browser?.close();
  await gw?.close();
});

async function chat(model: string, stream = true): Promise<void> {
  try {
    if (stream) {
      const s = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hello there' }] });
      for await (const _ of s) void _;
    } else await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello there' }] });
  } catch {
    // flaky answers 500 on purpose
  }
}

const stats = async (headers: Record<string, string>): Promise<Response> => fetch(`${gw.url}/admin/stats`, { headers });

describe('histogramQuantile', () => {
  it('interpolates inside the bucket, as Prometheus does', () => {
    const le = [0.1, 0.2, 0.4];
    expect(histogramQuantile(0.5, le, [0, 0, 0, 0])).toBeNull();
    // 10 observations, all in (0.1, 0.2]: p50 is halfway through that bucket.
    expect(histogramQuantile(0.5, le, [0, 10, 10, 10])).toBeCloseTo(0.15, 10);
    // first bucket starts at 0
    expect(histogramQuantile(0.5, le, [4, 4, 4, 4])).toBeCloseTo(0.05, 10);
    // rank in +Inf: the highest finite bound
    expect(histogramQuantile(0.95, le, [0, 0, 1, 10])).toBe(0.4);
    // 2 in the first bucket, 8 in the second: p95 rank 9.5 → 0.1 + 0.1 * 7.5/8
    expect(histogramQuantile(0.95, le, [2, 10, 10, 10])).toBeCloseTo(0.19375, 10);
  });
});

describe('the dashboard session cookie', () => {
  it('is signed with the admin token, expires, and is per gateway port', () => {
    const now = Date.now();
    const cookie = (v: string, port = 4000) => `other=1; ${sessionCookieName(port)}=${v}`;
    expect(validSession(cookie(newSession('t', now)), 't', 4000, now)).toBe(true);
    expect(validSession(cookie(newSession('t', now)), 'rotated', 4000, now)).toBe(false);
    expect(validSession(cookie(newSession('t', now), 4001), 't', 4000, now)).toBe(false);
    expect(validSession(cookie(newSession('t', now - 13 * 3600_000)), 't', 4000, now)).toBe(false);
    const [exp, sig] = newSession('t', now).split('.');
    expect(validSession(cookie(`${Number(exp) + 1}.${sig}`), 't', 4000, now)).toBe(false);
    expect(validSession(undefined, 't', 4000, now)).toBe(false);
  });
});

describe('GET /admin/stats', () => {
  it('refuses a wrong or missing token with 401', async () => {
    expect((await stats({ authorization: 'Bearer nope' })).status).toBe(401);
    expect((await stats({})).status).toBe(401);
    expect(
      (await stats({ cookie: `llm_gateway_dashboard_${gw.port}=9999999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA` })).status,
    ).toBe(401);
  });

  it('answers per-model counters, quantiles, tokens, cost, budgets and circuits', async () => {
    await Promise.all([chat('chat'), chat('chat'), chat('chat', false)]);
    const r = await stats({ authorization: `Bearer ${TOKEN}` });
    expect(r.status).toBe(200);
    const s = (await r.json()) as Stats;
    expect(Math.abs(s.ts - Date.now())).toBeLessThan(5000);
    expect(s.models.map((m) => m.model)).toEqual(['chat', 'flaky', HOSTILE]);
    const m = s.models[0]!;
    expect(m.requests).toBeGreaterThanOrEqual(3);
    expect(m.by_status['200']).toBe(m.requests);
    expect(m.errors).toBe(0);
    expect(m.ttft.count).toBeGreaterThanOrEqual(2); // streamed requests only
    expect(m.ttft.p50).toBeGreaterThanOrEqual(0.01);
    expect(m.ttft.p95!).toBeGreaterThanOrEqual(m.ttft.p50!);
    expect(m.ttft.cumulative).toHaveLength(m.ttft.le.length + 1);
    expect(m.tpot.p50).toBeGreaterThan(0);
    expect(m.tokens.output).toBeGreaterThanOrEqual(36);
    expect(m.cost_usd).toBeGreaterThan(0);
    expect(m.circuits).toEqual([{ model: 'chat', backend: 'sim', state: 'closed' }]);
    expect(s.budgets[0]).toEqual({ scope: 'global', name: 'global', spend_usd: 120, limit_usd: 1000, used: 0.12 });
    expect(s.budgets[1]).toEqual({ scope: 'team', name: 'payments', spend_usd: 37.5, limit_usd: 50, used: 0.75 });
    expect(s.totals.requests).toBe(s.models.reduce((a, x) => a + x.requests, 0));
  });
});

describe('GET /dashboard', () => {
  it('without a token answers 401, with a wrong one too', async () => {
    const none = await fetch(`${gw.url}/dashboard`, { redirect: 'manual' });
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('invalid_admin_token');
    expect((await fetch(`${gw.url}/dashboard?token=wrong`, { redirect: 'manual' })).status).toBe(401);
    expect((await fetch(`${gw.url}/dashboard`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  });

  it('exchanges ?token= for an HttpOnly SameSite=Strict cookie that reads /admin/stats, never writes', async () => {
    const r = await fetch(`${gw.url}/dashboard?token=${TOKEN}&interval_ms=500`, { redirect: 'manual' });
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/dashboard?interval_ms=500');
    const setCookie = r.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0]!;
    const page = await fetch(`${gw.url}/dashboard`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect((await stats({ cookie })).status).toBe(200);
    // A session cookie is for reads: POST admin routes still need the Bearer header.
    const post = await fetch(`${gw.url}/admin/stats`, { method: 'POST', headers: { cookie } });
    expect(post.status).toBe(401);
    // Bearer works for the page as well.
    expect((await fetch(`${gw.url}/dashboard`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});

describe('the page in headless Chromium', () => {
  it.skipIf(!HAVE_CHROMIUM)(
    'loads, shows the models and live numbers that change with traffic; screenshot in test-output/',
    async () => {
      const { chromium } = await import('playwright-core');
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });

      const resp = await page.goto(`${gw.url}/dashboard?token=${TOKEN}&interval_ms=300`);
      expect(resp?.status()).toBe(200);
      expect(new URL(page.url()).search).toBe('?interval_ms=300'); // the token left the address bar
      await page.locator('#status.ok').waitFor({ timeout: 5000 });

      const card = page.locator('section.card[data-model="chat"]');
      await card.waitFor({ timeout: 5000 });
      await expect.poll(() => card.locator('h3').textContent()).toBe('chat');
      // The hostile model name is shown as text, not parsed as markup.
      await expect.poll(() => page.locator('section.card h3').allTextContents()).toContain(HOSTILE);
      expect(await page.locator('section.card img').count()).toBe(0);
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      await expect.poll(() => card.locator('.badge.closed').count()).toBe(1);
      await expect.poll(() => page.locator('[data-budget="team:payments"] .bar div.warn').count()).toBe(1);

      const requests = card.locator('[data-field="requests"]');
      const before = Number(await requests.textContent());
      // Traffic between two reads of the displayed counter.
      const traffic = async (ms: number) => {
        const until = Date.now() + ms;
        const lane = async () => {
          while (Date.now() < until) await Promise.all([chat('chat'), chat('flaky')]);
        };
        await Promise.all([lane(), lane(), lane()]);
      };
      await traffic(1500);
      const sent = (await (await stats({ authorization: `Bearer ${TOKEN}` })).json()) as Stats;
      const chatNow = sent.models.find((m) => m.model === 'chat')!.requests;
      expect(chatNow).toBeGreaterThan(before);
      await expect.poll(async () => Number(await requests.textContent()), { timeout: 5000 }).toBeGreaterThanOrEqual(chatNow);

      // Live rates and quantiles: requests/s > 0 while traffic flows, TTFT shown in ms.
      const bg = traffic(2500);
      const rps = card.locator('[data-chart="rps"] .val');
      await expect.poll(async () => Number(await rps.textContent()), { timeout: 5000 }).toBeGreaterThan(0);
      await expect
        .poll(() => card.locator('[data-chart="ttft"] .val').textContent(), { timeout: 5000 })
        .toMatch(/^[\d.]+ m?s · [\d.]+ m?s$/);
      await expect.poll(() => card.locator('[data-chart="tpot"] .val').textContent(), { timeout: 5000 }).toMatch(/ms/);
      const line = await card.locator('[data-chart="rps"] path.l0').getAttribute('d');
      expect(line).toMatch(/^M[\d.]+ [\d.]+/);
      // The gateway's own overhead (llm_gateway_overhead_seconds), p99 in a totals tile.
      await expect.poll(() => page.locator('[data-field="total-overhead"] .val').textContent(), { timeout: 5000 }).toMatch(/^[\d.]+ m?s$/);
      await bg;
      const flaky = page.locator('section.card[data-model="flaky"]');
      await expect
        .poll(async () => Number(await flaky.locator('[data-field="errors"]').textContent()), { timeout: 5000 })
        .toBeGreaterThan(0);

      await mkdir('test-output', { recursive: true });
      await page.screenshot({ path: join('test-output', 'dashboard.png'), fullPage: true });
      expect(problems).toEqual([]);
    },
    60_000,
  );
});
