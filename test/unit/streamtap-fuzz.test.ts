// Property test of the stream tap and the non-streamed body parsers, with a seeded PRNG and a
// bounded number of cases (FUZZ_SEED / FUZZ_RUNS explore further: FUZZ_RUNS=20000 FUZZ_SEED=7).
//
// Streams: arbitrary event kinds (content, reasoning, tool-call arguments, role, finish,
// comments, other fields, multi-line data, errors, [DONE], usage events with any usage value:
// huge, negative, fractional, strings, "NaN", 1e400, null), LF / CRLF / CR line endings (mixed
// too), a missing final blank line, and arbitrary chunk splits (inside multi-byte characters
// and between a CR and its LF). Invariants:
//   - what the client receives equals what the upstream sent, minus exactly the usage-only
//     events when the gateway injected include_usage (and nothing at all otherwise);
//   - no exception escapes push() / end() / outputText();
//   - content events are counted, timestamps are finite, and after the usage boundary and a
//     settle into a store with tpm and budget, no count, window or spend is non-finite.
// Bodies: summariseBody agrees with a full parse whenever it answers and never throws on
// truncated or garbled bytes; rewriteBody yields the client's JSON with only the model (and
// include_usage) changed, or declines.
import { describe, expect, it } from 'vitest';
import { StreamTap } from '../../src/streamtap/tap.js';
import { summariseBody } from '../../src/streamtap/body.js';
import { countTokens } from '../../src/streamtap/tokens.js';
import { chunkGrammar } from '../../src/protocols/chat.js';
import { usageFromResponse } from '../../src/protocols/openai.js';
import { rewriteBody } from '../../src/upstream/body.js';
import { usageFault } from '../../src/settle/usage.js';
import { MemoryStore } from '../../src/admission/memory.js';
import { ScopeTable, toNano } from '../../src/admission/scopes.js';
import { costUsd } from '../../src/settle/index.js';
import { mulberry32 } from '../helpers/random.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const RUNS = Number(process.env.FUZZ_RUNS ?? 500);

/** Draws over mulberry32: good enough to explore inputs; the seed makes a failure reproducible. */
function prng(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

// Pieces of JSON string content, escaped where JSON needs it: keys and SSE syntax quoted inside a value must never be taken for the real thing.
const PIECES = [
  'a',
  'é',
  '日本',
  '👋',
  ' ',
  '\\n',
  '\\r',
  '\\"',
  '\\"usage\\":',
  '\\"content\\":\\"x',
  'data: x',
  '\\u00e9',
  '{',
  '}',
  ':',
  '[DONE]',
  '\\\\',
  'content',
];
function text(r: Rng, min = 0): string {
  let s = '';
  const n = min + r.int(6);
  for (let i = 0; i < n; i++) s += r.pick(PIECES);
  return s;
}
/** A JSON string token (the pieces above are already escaped where JSON needs it). */
const str = (r: Rng, min = 0) => `"${text(r, min)}"`;

// Usage values as raw JSON text: everything an upstream might send.
const COUNTS = [
  '0',
  '7',
  '12',
  '1000000000',
  '1000000001',
  '1e308',
  '1e400',
  '-1',
  '2.5',
  '"12"',
  '"NaN"',
  'null',
  'true',
  '{}',
  '[]',
  '9007199254740993',
];
function usageJson(r: Rng): string {
  const fields: string[] = [];
  if (r.chance(0.85)) fields.push(`"prompt_tokens":${r.pick(COUNTS)}`);
  if (r.chance(0.85)) fields.push(`"completion_tokens":${r.pick(COUNTS)}`);
  if (r.chance(0.4)) fields.push(`"total_tokens":${r.pick(COUNTS)}`);
  if (r.chance(0.3)) fields.push(`"prompt_tokens_details":{"cached_tokens":${r.pick(COUNTS)}}`);
  if (r.chance(0.3)) fields.push(`"completion_tokens_details":{"reasoning_tokens":${r.pick(COUNTS)}}`);
  return `{${fields.join(r.pick([',', ', ']))}}`;
}

const ENV = '"id":"c","object":"chat.completion.chunk","created":1,"model":"m"';
interface GenEvent {
  /** The event's lines, without terminators. */
  lines: string[];
  token: boolean;
}
function event(r: Rng): GenEvent {
  const sp = r.pick(['', ' ']); // "data:" or "data: "
  const d = (json: string, token = false): GenEvent => ({ lines: [`data:${sp}${json}`], token });
  const usageNull = r.chance(0.5) ? ',"usage":null' : '';
  switch (r.int(12)) {
    case 0: {
      const key = r.pick(['content', 'reasoning_content', 'reasoning', 'refusal']);
      return d(`{${ENV},"choices":[{"index":0,"delta":{"${key}":${str(r, 1)}},"finish_reason":null}]${usageNull}}`, true);
    }
    case 1:
      return d(`{${ENV},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]${usageNull}}`);
    case 2:
      return d(
        `{${ENV},"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":${str(r, 1)}}}]},"finish_reason":null}]}`,
        true,
      );
    case 3:
      return d(`{${ENV},"choices":[{"index":0,"delta":{},"finish_reason":"${r.pick(['stop', 'length', 'tool_calls'])}"}]${usageNull}}`);
    case 4: // the usage-only event (what include_usage adds)
      return d(`{${ENV},"choices":[],"usage":${usageJson(r)}}`);
    case 5: // usage on a chunk that also has choices: never removed
      return d(`{${ENV},"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":${usageJson(r)}}`);
    case 6:
      return { lines: [r.pick([': keep-alive', ':', ': ping "content":"x"'])], token: false };
    case 7:
      return {
        lines: [`event: ${r.pick(['message', 'ping'])}`, `data:${sp}{${ENV},"choices":[{"index":0,"delta":{"content":${str(r, 1)}}}]}`],
        token: true,
      };
    case 8: // one JSON split over two data lines (joined with a newline, still valid JSON)
      return { lines: [`data:${sp}{${ENV},"choices":[],`, `data:${sp}"usage":${usageJson(r)}}`], token: false };
    case 9:
      return d(`{"error":{"message":${str(r)},"type":"server_error","code":null}}`);
    case 10:
      return d(r.pick(['[DONE]', ' [DONE] ', 'not json', '{broken']));
    default:
      return { lines: [`id: ${r.int(1000)}`, `data:${sp}{${ENV},"choices":[{"index":0,"text":${str(r, 1)}}]}`], token: true };
  }
}

/** Does the gateway remove this event when it injected include_usage? The spec, on the parsed event. */
function isInjectedUsage(e: GenEvent): boolean {
  const data = e.lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l[5] === ' ' ? 6 : 5));
  if (data.length === 0) return false;
  let obj: unknown;
  try {
    obj = JSON.parse(data.join('\n'));
  } catch {
    return false;
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return false;
  const o = obj as Record<string, unknown>;
  const u = o['usage'];
  if (typeof u !== 'object' || u === null || Array.isArray(u)) return false;
  const present = (v: unknown) => v !== undefined && v !== null;
  if (!present((u as Record<string, unknown>)['prompt_tokens']) && !present((u as Record<string, unknown>)['completion_tokens']))
    return false;
  const choices = o['choices'];
  return choices === undefined || (Array.isArray(choices) && choices.length === 0);
}

function splitAll(r: Rng, bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  let i = 0;
  while (i < bytes.length) {
    const len = r.chance(0.3) ? 1 + r.int(3) : 1 + r.int(Math.max(1, bytes.length / 2));
    chunks.push(bytes.subarray(i, Math.min(bytes.length, i + len)));
    i += len;
  }
  return chunks;
}

const scopes = new ScopeTable({
  keys: [{ name: 'k', limits: { tpm: 1_000_000_000 }, budget: { usd: 1e6, period: 'total' } }] as never,
  users: {},
  teams: {},
  models: {},
  global: undefined,
}).all;
const PRICING = { input_per_mtok: 3, output_per_mtok: 15 };

describe(`stream tap property test (seed ${SEED}, ${RUNS} streams)`, () => {
  it('client bytes = upstream bytes minus exactly the injected usage event; nothing throws; nothing becomes non-finite', () => {
    const r = prng(SEED);
    for (let run = 0; run < RUNS; run++) {
      const strip = r.chance(0.7);
      const eolMode = r.pick(['\n', '\r\n', '\r', 'mixed'] as const);
      const events = Array.from({ length: 1 + r.int(8) }, () => event(r));
      const cutLast = r.chance(0.15); // the stream ends without the last blank line
      let upstream = '';
      let expected = '';
      let tokens = 0;
      events.forEach((e, i) => {
        const eol = eolMode === 'mixed' ? r.pick(['\n', '\r\n', '\r']) : eolMode;
        const last = i === events.length - 1;
        const raw = e.lines.join(eol) + (last && cutLast ? '' : eol + eol);
        upstream += raw;
        if (!(strip && isInjectedUsage(e))) expected += raw;
        if (e.token) tokens++;
      });
      const input = Buffer.from(upstream);
      const chunks = splitAll(r, input);
      const where = `seed ${SEED} run ${run}: ${JSON.stringify(upstream)} in ${chunks.length} chunks, strip=${strip}`;

      let clock = 0;
      const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: strip, now: () => ++clock });
      const out: Buffer[] = [];
      for (const c of chunks) {
        const o = tap.push(c);
        if (o) out.push(Buffer.from(o)); // copied: what was written must not change later
      }
      const rest = tap.end();
      if (rest) out.push(rest);
      expect(Buffer.concat(out).toString('latin1'), where).toBe(Buffer.from(expected).toString('latin1'));

      expect(tap.contentEvents, where).toBe(tokens);
      if (tokens > 0) expect(Number.isFinite(tap.firstTokenAt!) && Number.isFinite(tap.lastTokenAt!), where).toBe(true);
      else expect(tap.firstTokenAt, where).toBeUndefined();

      // Through the boundary and into a store: nothing non-finite anywhere.
      const usage = usageFault(tap.usage) === undefined ? tap.usage : undefined;
      const counts = usage ?? { input: 5, output: countTokens(tap.outputText()), cachedInput: 0, reasoning: 0 };
      for (const v of Object.values(counts)) expect(Number.isSafeInteger(v) && v >= 0, where).toBe(true);
      const store = new MemoryStore(
        scopes,
        [],
        undefined,
        () => 0,
        () => 0,
      );
      const res = { id: '', scopes, tokens: 100, nano: toNano(0.01), bucket: -1, gen: 0 };
      expect(store.admit(res).ok, where).toBe(true);
      store.settle(res, { tokens: counts.input + counts.output, costNano: toNano(costUsd(PRICING, counts)) });
      const [s] = store.usage();
      expect(Number.isSafeInteger(s!.tpmUsed) && Number.isSafeInteger(s!.spentNano) && s!.reservedNano === 0, where).toBe(true);
    }
  });
});

describe(`body parsers property test (seed ${SEED})`, () => {
  const ws = (r: Rng) => r.pick(['', '', ' ', '\n  ', '\t']);
  function responseBody(r: Rng): string {
    const finish = r.pick(['"stop"', '"length"', 'null', '"st\\u006fp"', '"a\\"b"']);
    const parts = [
      `"id":${str(r)}`,
      `"choices":[{"index":0,"message":{"role":"assistant","content":${str(r)}},"finish_reason":${finish}}]`,
      r.chance(0.8) ? `"usage":${ws(r)}${usageJson(r)}` : `"note":${str(r)}`,
    ];
    if (r.chance(0.3)) parts.push(`"extra":{"usage":${usageJson(r)}}`);
    if (r.chance(0.5)) parts.reverse();
    return `{${ws(r)}${parts.join(`,${ws(r)}`)}${ws(r)}}`;
  }

  it('summariseBody agrees with a full parse whenever it answers, and never throws on broken bytes', () => {
    const r = prng(SEED ^ 0x5bd1e995);
    for (let run = 0; run < RUNS; run++) {
      const body = responseBody(r);
      const where = `seed ${SEED} run ${run}: ${body}`;
      const s = summariseBody(Buffer.from(body));
      if (s) {
        const json = JSON.parse(body) as { choices: Array<{ finish_reason: unknown }> };
        const f = json.choices[0]!.finish_reason;
        expect(s, where).toEqual({ usage: usageFromResponse(json), finishReason: typeof f === 'string' ? f : undefined });
      }
      // Truncated or garbled: an answer or undefined, never an exception.
      const cut = Buffer.from(body).subarray(0, r.int(body.length));
      expect(() => summariseBody(cut), where).not.toThrow();
      const garbled = Buffer.from(body);
      for (let k = 0; k < 3; k++) garbled[r.int(garbled.length)] = r.pick([0x22, 0x5c, 0x7b, 0x7d, 0x3a, 0x2c, 0x00]);
      expect(() => summariseBody(garbled), where).not.toThrow();
    }
  });

  // Keys are written unescaped here: a key spelled with escapes (`mod\u0065l`) is issue 12
  // item 9, owned by the harden-io branch.
  function requestBody(r: Rng): string {
    const parts = [`"messages":[{"role":"user","content":${str(r)}}]`, `"model":${ws(r)}${str(r, 1)}`];
    if (r.chance(0.3)) parts.push(`"metadata":{"model":${str(r)}}`);
    if (r.chance(0.3)) parts.push(`"tools":[{"function":{"name":"f","parameters":{"model":{"type":"string"}}}}]`);
    if (r.chance(0.2)) parts.push(`"stream":true`);
    if (r.chance(0.1)) parts.push(`"model":${str(r)}`); // a duplicate: must be declined
    for (let i = parts.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [parts[i], parts[j]] = [parts[j]!, parts[i]!];
    }
    return `${ws(r)}{${ws(r)}${parts.join(`${ws(r)},${ws(r)}`)}${ws(r)}}${ws(r)}`;
  }

  it('rewriteBody changes only the model (and adds include_usage), or declines', () => {
    const r = prng(SEED ^ 0x27d4eb2f);
    for (let run = 0; run < RUNS; run++) {
      const raw = requestBody(r);
      const model = text(r, 1);
      const addUsage = r.chance(0.5);
      const where = `seed ${SEED} run ${run}: ${raw} -> ${model} usage=${addUsage}`;
      const out = rewriteBody(Buffer.from(raw), Buffer.from(JSON.stringify(model)), addUsage);
      const dup =
        (raw.match(/"model":/g) ?? []).length -
          (raw.match(/\{"model":\{/g) ?? []).length -
          (raw.match(/"metadata":\{"model"/g) ?? []).length >
        1;
      if (dup) {
        expect(out, where).toBeUndefined();
        continue;
      }
      if (!out) continue;
      const want: Record<string, unknown> = { ...(JSON.parse(raw) as Record<string, unknown>), model };
      if (addUsage) want['stream_options'] = { include_usage: true };
      expect(JSON.parse(out.toString('utf8')), where).toEqual(want);
    }
  });
});
