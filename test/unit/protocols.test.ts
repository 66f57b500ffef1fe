// The protocol modules: the Responses stream grammar through the real tap at every split
// point (named events, LF and CRLF), the whole-body readers, the request checks and the
// mid-stream error events each API's SDK raises.
import { describe, expect, it } from 'vitest';
import { StreamTap } from '../../src/streamtap/index.js';
import { protocolByName, protocols } from '../../src/protocols/index.js';
import { responsesGrammar } from '../../src/protocols/responses.js';
import { errors, GatewayError } from '../../src/errors.js';
import { streamSteps, wholeResponse } from '../fixtures/responses-script.js';

const WORDS = ['Sunny', ' in', ' Paris', '.'];
const USAGE = { input: 50, cached: 20, output: 30, reasoning: 10 };
const STREAM = streamSteps('resp_1', WORDS, USAGE, 0, 0)
  .map((s) => s.bytes)
  .join('');

function feed(input: Buffer, cuts: number[]): { tap: StreamTap; out: Buffer; ids: string[]; sameBuffers: boolean } {
  const ids: string[] = [];
  const tap = new StreamTap({ grammar: responsesGrammar, stripUsage: false, onResponseId: (id) => ids.push(id) });
  const out: Buffer[] = [];
  let sameBuffers = true;
  let from = 0;
  for (const c of [...cuts, input.length]) {
    const chunk = input.subarray(from, c);
    const o = tap.push(chunk);
    if (o !== chunk) sameBuffers = false;
    if (o) out.push(o);
    from = c;
  }
  const rest = tap.end();
  if (rest) out.push(rest);
  return { tap, out: Buffer.concat(out), ids, sameBuffers };
}

function expectFacts(tap: StreamTap, ids: string[]): void {
  // reasoning summary (1) + words (4) + function-call argument pieces (2)
  expect(tap.contentEvents).toBe(1 + WORDS.length + 2);
  expect(tap.usage).toEqual({ input: 50, output: 30, cachedInput: 20, reasoning: 10 });
  expect(tap.complete).toBe(true);
  expect(tap.finishReason).toBe('completed');
  expect(tap.upstreamError).toBeUndefined();
  expect(tap.responseId).toBe('resp_1');
  expect(ids).toEqual(['resp_1']);
}

describe('Responses stream grammar through the tap', () => {
  for (const eol of ['lf', 'crlf'] as const) {
    it(`${eol}: every split point gives the same facts, and the bytes pass as the very same buffers`, () => {
      const input = Buffer.from(eol === 'lf' ? STREAM : STREAM.replace(/\n/g, '\r\n'));
      for (let cut = 0; cut <= input.length; cut += eol === 'lf' ? 1 : 3) {
        const { tap, out, ids, sameBuffers } = feed(input, [cut]);
        expect(out.equals(input)).toBe(true);
        expect(sameBuffers).toBe(true);
        expectFacts(tap, ids);
      }
    });
  }

  it('outputText rebuilds reasoning, text and arguments for a stream without usage', () => {
    const { tap } = feed(Buffer.from(STREAM), []);
    expect(tap.outputText()).toBe('Thinking' + WORDS.join('') + '{"city":"Paris"}');
  });

  it('a stream without its terminal event is not complete; an error event and response.failed are upstream errors', () => {
    const cut = feed(Buffer.from(STREAM.slice(0, STREAM.indexOf('event: response.completed'))), []);
    expect(cut.tap.complete).toBe(false);
    expect(cut.tap.usage).toBeUndefined();
    const err = feed(
      Buffer.from('event: error\ndata: {"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":3}\n\n'),
      [],
    );
    expect(err.tap.upstreamError).toEqual({ code: 'server_error', message: 'boom' });
    const failed = feed(
      Buffer.from(
        'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_9","status":"failed","error":{"code":"server_error","message":"x"},"usage":null}}\n\n',
      ),
      [],
    );
    expect(failed.tap.complete).toBe(true);
    expect(failed.tap.upstreamError).toEqual({ code: 'server_error', message: 'x' });
    expect(failed.tap.finishReason).toBe('failed');
  });

  it('a nested "type" inside content is not taken for an event type, and an empty delta is no token', () => {
    const ev =
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"{\\"type\\":\\"error\\"}"}\n\n' +
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":""}\n\n';
    const { tap } = feed(Buffer.from(ev), []);
    expect(tap.contentEvents).toBe(1);
    expect(tap.upstreamError).toBeUndefined();
  });
});

describe('protocol modules', () => {
  it('are found by name', () => {
    expect(protocolByName('responses')).toBe(protocols.responses);
    expect(protocolByName('chat')?.upstreamPath).toBe('/chat/completions');
    expect(protocolByName('toString')).toBeUndefined();
  });

  it('read a whole Responses body: usage, finish, id', () => {
    const facts = protocols.responses.readBody(Buffer.from(wholeResponse('resp_7', 'hi', USAGE)));
    expect(facts).toEqual({
      usage: { input: 50, output: 30, cachedInput: 20, reasoning: 10 },
      finishReason: 'completed',
      responseId: 'resp_7',
    });
    const incomplete = JSON.parse(wholeResponse('resp_8', 'hi', USAGE)) as Record<string, unknown>;
    incomplete.status = 'incomplete';
    incomplete.incomplete_details = { reason: 'max_output_tokens' };
    expect(protocols.responses.readBody(Buffer.from(JSON.stringify(incomplete)))?.finishReason).toBe('max_output_tokens');
  });

  it('splice the deployment model into the client bytes; only chat and completions ask for stream usage', () => {
    const target = { upstreamModel: 'gpt-x', upstreamModelJson: Buffer.from('"gpt-x"') };
    const raw = Buffer.from('{"model":"m","input":"hi","stream":true}');
    const body = JSON.parse(raw.toString()) as Record<string, unknown>;
    expect(String(protocols.responses.upstreamBody(raw, body, target, true))).toBe('{"model":"gpt-x","input":"hi","stream":true}');
    expect(protocols.responses.injectsUsage(body, true)).toBe(false);
    expect(protocols.chat.injectsUsage(body, true)).toBe(true);
    expect(JSON.parse(String(protocols.chat.upstreamBody(raw, body, target, true))).stream_options).toEqual({ include_usage: true });
  });

  it('read the output cap and the continued response id', () => {
    expect(protocols.responses.maxOutputTokens({ max_output_tokens: 64, max_tokens: 9 })).toBe(64);
    expect(protocols.chat.maxOutputTokens({ max_completion_tokens: 5, max_tokens: 9 })).toBe(5);
    expect(protocols.embeddings.maxOutputTokens({})).toBe(0);
    expect(protocols.responses.continues?.({ previous_response_id: 'resp_1' })).toBe('resp_1');
    expect(protocols.chat.continues).toBeUndefined();
  });

  it('refuse wrong types with the parameter named', () => {
    const param = (body: Record<string, unknown>) => {
      try {
        protocols.responses.validate(body);
        return undefined;
      } catch (e) {
        return (e as GatewayError).param;
      }
    };
    expect(param({ model: 'm', input: 'x' })).toBeUndefined();
    expect(param({ model: 'm', input: [{ role: 'user', content: 'x' }], max_output_tokens: 3, tools: [] })).toBeUndefined();
    expect(param({ input: {} })).toBe('input');
    expect(param({ max_output_tokens: 1.5 })).toBe('max_output_tokens');
    expect(param({ instructions: 3 })).toBe('instructions');
    expect(param({ stream: 1 })).toBe('stream');
  });

  it('write a mid-stream failure that the SDKs raise: chat as data.error, Responses as an error event with an error object', () => {
    const err = errors.midStream('a', 'cut');
    expect(protocols.chat.streamError(err, 4)).toBe(`data: ${JSON.stringify(err.body())}\n\n`);
    const ev = protocols.responses.streamError(err, 12);
    expect(ev.startsWith('event: error\ndata: ')).toBe(true);
    const data = JSON.parse(ev.slice('event: error\ndata: '.length)) as Record<string, unknown>;
    expect(data).toMatchObject({ type: 'error', code: 'upstream_stream_error', message: err.message, sequence_number: 12 });
    expect(data.error).toEqual(err.body().error);
  });
});
