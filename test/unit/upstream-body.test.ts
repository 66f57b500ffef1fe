import { describe, expect, it } from 'vitest';
import { rewriteBody } from '../../src/upstream/body.js';

const token = (s: string) => Buffer.from(JSON.stringify(s));
const rewrite = (text: string, model: string, usage = false) => rewriteBody(Buffer.from(text), token(model), usage);
const parsed = (b: Buffer | undefined) => (b === undefined ? undefined : (JSON.parse(b.toString('utf8')) as unknown));

describe('rewriteBody (the client bytes with the model spliced in)', () => {
  it('replaces the top-level model wherever it is and keeps every other byte', () => {
    const text = '{"messages":[{"role":"user","content":"hi"}],"model":"alias","temperature":0.2}';
    const out = rewrite(text, 'gpt-4o-mini-2024-07-18')!;
    expect(out.toString()).toBe('{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini-2024-07-18","temperature":0.2}');
  });

  it('returns the very same buffer when the model name does not change and nothing is added', () => {
    const raw = Buffer.from('{ "model" : "same", "messages": [] }');
    expect(rewriteBody(raw, token('same'), false)).toBe(raw);
  });

  it('ignores "model" keys nested in tools, messages and strings', () => {
    const body = {
      messages: [{ role: 'user', content: 'say "model": "x" and {"model":"y"} \\" }' }],
      tools: [{ type: 'function', function: { name: 'pick', parameters: { type: 'object', properties: { model: { type: 'string' } } } } }],
      model: 'alias',
      metadata: { model: 'not-this-one' },
    };
    const out = parsed(rewrite(JSON.stringify(body), 'upstream'));
    expect(out).toEqual({ ...body, model: 'upstream' });
  });

  it('adds stream_options.include_usage for streams', () => {
    const body = { model: 'alias', stream: true, messages: [{ role: 'user', content: 'x' }] };
    expect(parsed(rewrite(JSON.stringify(body), 'up', true))).toEqual({ ...body, model: 'up', stream_options: { include_usage: true } });
    expect(parsed(rewrite(JSON.stringify(body), 'alias', true))).toEqual({ ...body, stream_options: { include_usage: true } });
  });

  it('hands over to JSON.stringify for layouts it does not rewrite', () => {
    expect(rewrite('{"model":"a","model":"b"}', 'x')).toBeUndefined(); // duplicate key: JSON.parse takes the last
    expect(rewrite('{"messages":[]}', 'x')).toBeUndefined(); // no model
    expect(rewrite('{"model":42}', 'x')).toBeUndefined(); // not a string
    expect(rewrite('[{"model":"a"}]', 'x')).toBeUndefined(); // not an object
    expect(rewrite('{"model":"a"', 'x')).toBeUndefined(); // truncated
  });

  it('agrees with parse-and-serialise on random bodies', () => {
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const pieces = ['"', '\\', '{', '}', '[', ']', ',', ':', 'model', '"model":', ' ', 'é', '😀', '\n', 'a'];
    const str = () => {
      let s = '';
      for (let k = rand(10); k > 0; k--) s += pieces[rand(pieces.length)];
      return s;
    };
    const value = (depth: number): unknown => {
      const kind = rand(depth > 2 ? 3 : 5);
      if (kind === 0) return str();
      if (kind === 1) return rand(1000) / 7;
      if (kind === 2) return rand(2) === 0 ? null : true;
      if (kind === 3) return Array.from({ length: rand(3) }, () => value(depth + 1));
      const o: Record<string, unknown> = {};
      for (let k = rand(3); k > 0; k--) o[rand(3) === 0 ? 'model' : str()] = value(depth + 1);
      return o;
    };
    let rewritten = 0;
    for (let i = 0; i < 1500; i++) {
      const keys: Array<[string, unknown]> = [];
      for (let k = rand(4); k > 0; k--) keys.push([str() + 'k', value(1)]);
      keys.splice(rand(keys.length + 1), 0, ['model', str()]);
      const body = Object.fromEntries(keys);
      const usage = rand(2) === 0;
      const out = rewrite(rand(2) === 0 ? JSON.stringify(body) : JSON.stringify(body, null, 2), 'new-model', usage);
      if (out === undefined) continue;
      rewritten++;
      const expected: Record<string, unknown> = { ...body, model: 'new-model' };
      if (usage) expected.stream_options = { include_usage: true };
      expect(parsed(out)).toEqual(expected);
    }
    expect(rewritten).toBeGreaterThan(1400);
  });
});

describe('rewriteBody and escaped keys', () => {
  it('falls back to serialising when a top-level key is escaped (it may decode to "model")', () => {
    expect(rewrite('{"model":"x","mod\\u0065l":"m"}', 'up')).toBeUndefined();
    expect(rewrite('{"mod\\u0065l":"m","model":"x"}', 'up')).toBeUndefined();
  });
  it('still splices when only nested keys or values carry escapes', () => {
    const out = parsed(rewrite('{"model":"x","messages":[{"c\\u006fntent":"a\\"b"}]}', 'up'));
    expect(out).toEqual({ model: 'up', messages: [{ content: 'a"b' }] });
  });
});
