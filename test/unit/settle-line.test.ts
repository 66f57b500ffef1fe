import { describe, expect, it } from 'vitest';
import { decimal, requestLine } from '../../src/settle/line.js';
import type { RequestRecord } from '../../src/settle/index.js';

const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;

/** The line as a generic serialiser writes it: the reference the hand-built one must equal. */
function reference(rec: RequestRecord, servedModel: string, ttftMs: number | undefined, tpotMs: number | undefined, cost: number) {
  return JSON.parse(
    JSON.stringify({
      level: 30,
      service: 'llm-gateway',
      request_id: rec.requestId,
      trace_id: rec.traceId,
      span_id: rec.spanId,
      endpoint: rec.endpoint,
      model: rec.model,
      served_model: servedModel,
      backend: rec.backend,
      upstream_model: rec.upstreamModel,
      status: rec.status,
      stream: rec.stream,
      ttft_ms: ttftMs === undefined ? undefined : round(ttftMs),
      tpot_ms: tpotMs === undefined ? undefined : round(tpotMs),
      queue_ms: rec.queueMs === undefined ? undefined : round(rec.queueMs),
      upstream_ttft_ms:
        ttftMs !== undefined && rec.firstTokenAt !== undefined && rec.upstreamStartAt !== undefined && !Number.isNaN(rec.upstreamStartAt)
          ? round(rec.firstTokenAt - rec.upstreamStartAt)
          : undefined,
      duration_ms: round(rec.endedAt - rec.receivedAt),
      tokens: rec.tokens
        ? { input: rec.tokens.input, output: rec.tokens.output, cached_input: rec.tokens.cachedInput, reasoning: rec.tokens.reasoning }
        : undefined,
      tokens_estimated: rec.tokens ? rec.estimated === true : undefined,
      cost_usd: round(cost, 8),
      key_name: rec.keyName,
      user: rec.user,
      team: rec.team,
      attempts: rec.attempts,
      finish_reason: rec.finishReason,
      error: rec.error,
      msg: 'request',
    }),
  ) as Record<string, unknown>;
}

describe('requestLine (the hand-built request log line)', () => {
  it('is one JSON line equal to a generic serialisation, for awkward values too', () => {
    let seed = 3;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const strs = ['plain', 'with "quotes"', 'back\\slash', 'new\nline', 'tab\t', 'é ünïcode 😀', '\u0000\u001f', '</script>', ''];
    const s = () => strs[rand(strs.length)]!;
    const maybe = <T>(v: T) => (rand(3) === 0 ? undefined : v);
    for (let i = 0; i < 500; i++) {
      const rec: RequestRecord = {
        requestId: s(),
        endpoint: 'chat/completions',
        model: s(),
        routed: true,
        servedModel: maybe(s()),
        backend: maybe(s()),
        upstreamModel: maybe(s()),
        status: [200, 499, 502, 429][rand(4)]!,
        stream: rand(2) === 0,
        receivedAt: rand(100000) / 7,
        endedAt: 100000 + rand(100000) / 3,
        firstTokenAt: maybe(20000 + rand(10000) / 11),
        queueMs: maybe(rand(5000) / 9),
        // NaN: the last attempt never got a connection.
        upstreamStartAt: maybe(rand(4) === 0 ? NaN : 15000 + rand(5000) / 7),
        tokens: maybe({ input: rand(5000), output: rand(5000), cachedInput: rand(100), reasoning: rand(100) }),
        estimated: maybe(rand(2) === 0),
        keyName: maybe(s()),
        user: maybe(s()),
        team: maybe(s()),
        attempts: maybe(rand(4)),
        finishReason: maybe(s()),
        error: maybe({ code: s(), message: s() }),
      };
      if (rand(2) === 0) {
        rec.traceId = rand(16).toString(16).padStart(32, 'a');
        rec.spanId = rand(16).toString(16).padStart(16, 'b');
      }
      const ttft = maybe(rand(100000) / 13);
      const tpot = maybe(rand(1000) / 17);
      const cost = rand(1000000) / 1e9;
      const line = requestLine(rec, rec.servedModel ?? rec.model, ttft, tpot, cost);
      expect(line.endsWith('}\n')).toBe(true);
      expect(line.indexOf('\n')).toBe(line.length - 1);
      const parsed = JSON.parse(line) as Record<string, unknown>;
      expect(parsed.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      delete parsed.time;
      expect(parsed).toEqual(reference(rec, rec.servedModel ?? rec.model, ttft, tpot, cost));
    }
  });
});

describe('decimal (a rounded number as JSON prints it, from integer parts)', () => {
  const reference = (x: number, d: number) => {
    const v = round(x, d);
    return Number.isFinite(v) ? String(v) : 'null';
  };

  it('prints what String() prints, over every magnitude, sign and rounding edge', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const values: number[] = [0, -0, 0.5, -0.5, 0.0005, -0.0005, 0.0015, 1e-6, 9.9e-7, 1e-7, 1e-9, 0.1, 0.2, 0.3, 1, 10, 999.9995];
    values.push(NaN, Infinity, -Infinity, 1e14, 1e15, 1e16, 123456789012.34567, -98765.4321, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE);
    for (let i = 0; i < 200_000; i++) {
      // Spread over 1e-10 .. 1e16, both signs: latencies, costs, and the absurd.
      const v = rand() * 10 ** Math.floor(rand() * 26 - 10);
      values.push(rand() < 0.2 ? -v : v);
    }
    const wrong: string[] = [];
    let checked = 0;
    for (const x of values) {
      for (const d of [0, 1, 3, 6, 8]) {
        const got = decimal(x, d);
        const want = reference(x, d);
        if (got !== want && wrong.length < 5) wrong.push(`decimal(${x}, ${d}) = ${got}, String() ${want}`);
        checked++;
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBe(values.length * 5);
  });

  it('a value on the line parses back to the rounded number', () => {
    for (const [x, d, text] of [
      [12.3456, 3, '12.346'],
      [0.00000123, 8, '0.00000123'],
      [0.00000012, 8, '1.2e-7'],
      [-4.5, 3, '-4.5'],
      [1000, 3, '1000'],
    ] as const) {
      expect(decimal(x, d)).toBe(text);
      expect(JSON.parse(decimal(x, d))).toBe(round(x, d));
    }
  });
});
