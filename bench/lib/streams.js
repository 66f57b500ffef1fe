// The streaming client: many concurrent SSE completions on one undici Pool (one connection
// per stream), read through the dispatch API so a chunk is timestamped the moment the
// client's event loop sees it.
//
// Every content chunk from the simulator carries "sim_ts" (epoch ms, sub-ms precision,
// taken right before the simulator's write). The client stamps each chunk's arrival with the
// same clock formula (performance.timeOrigin + performance.now()), so arrival − sim_ts is
// the one-way delay of that chunk through the target. Both processes derive that clock from
// the system's realtime clock at start-up; any fixed offset between them is the same for
// every target and cancels when a proxy is compared with direct.
import { Pool } from 'undici';
import { nowMs } from './stats.js';

const SIM_TS = '"sim_ts":';
// Without sim_ts (a foreign target), an event with a non-empty generated string counts as content.
const CONTENT = /"(?:content|text|reasoning_content|reasoning|refusal|arguments)":"[^"]/;
// Responses API streams name each event (`event:` line, and "type" in the data); these carry
// generated tokens, and a stream is whole once it reaches response.completed/incomplete.
const RESPONSES_CONTENT = new Set([
  'response.output_text.delta',
  'response.function_call_arguments.delta',
  'response.reasoning_text.delta',
  'response.reasoning_summary_text.delta',
  'response.refusal.delta',
]);
const RESPONSES_END = new Set(['response.completed', 'response.incomplete']);
const RESPONSES_ERROR = new Set(['error', 'response.failed']);
// Anthropic's Messages API: deltas of text, thinking and tool input; whole at message_stop.
const NAMED = {
  responses: { content: RESPONSES_CONTENT, end: RESPONSES_END, error: RESPONSES_ERROR, endName: 'response.completed' },
  messages: {
    content: new Set(['content_block_delta']),
    end: new Set(['message_stop']),
    error: new Set(['error']),
    endName: 'message_stop',
  },
};

/** The event name of the SSE event at s[i..end): its `event:` line, else the data's leading "type". */
function eventName(s, i, end) {
  if (s.startsWith('event: ', i)) {
    const nl = s.indexOf('\n', i);
    return s.slice(i + 7, nl < 0 || nl > end ? end : nl).trim();
  }
  if (s.startsWith('data: {"type":"', i)) {
    const q = s.indexOf('"', i + 15);
    return q > 0 && q < end ? s.slice(i + 15, q) : '';
  }
  return '';
}

export function streamPool(origin, connections) {
  return new Pool(origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
}

/**
 * Opens one streamed completion. Returns the record (filled as the stream goes) whose
 * `done` promise resolves when it ends. `onChunk(rec, arrival, simTs, prevArrival, prevSimTs)`
 * is called for every content event (simTs NaN when the target sends none; prev* NaN on the first).
 * `api`: 'chat' (chat and legacy completions: ends with data: [DONE]) or 'responses' (named
 * events; ends with response.completed).
 */
export function openStream(pool, { path, headers, body, id, onChunk, api = 'chat' }) {
  // Named-event APIs (responses, messages): their content, end and error events.
  const named = NAMED[api];
  const rec = {
    id,
    status: 0,
    sendAt: 0,
    headAt: NaN,
    simT0: NaN, // x-sim-request-ms: when the simulator had read the request (sim clock)
    firstAt: NaN,
    lastAt: NaN,
    firstSim: NaN,
    lastSim: NaN,
    n: 0,
    sawDone: false,
    error: undefined,
    controller: undefined,
    done: undefined,
  };
  let carry = '';
  rec.done = new Promise((resolve) => {
    const handler = {
      onRequestStart(c) {
        rec.controller = c;
      },
      onResponseStart(_c, status, hdrs) {
        rec.status = status;
        rec.headAt = nowMs();
        const t0 = hdrs['x-sim-request-ms'];
        if (t0 !== undefined) rec.simT0 = Number(t0);
      },
      onResponseData(_c, chunk) {
        const at = nowMs();
        let s = carry + chunk.toString('latin1');
        if (s.includes('\r')) s = s.replace(/\r\n?/g, '\n');
        let i = 0;
        for (;;) {
          const end = s.indexOf('\n\n', i);
          if (end < 0) break;
          const k = s.indexOf(SIM_TS, i);
          if (k >= 0 && k < end) {
            const ts = parseFloat(s.slice(k + SIM_TS.length, end));
            content(at, ts);
          } else if (named) {
            const name = eventName(s, i, end);
            if (named.end.has(name)) rec.sawDone = true;
            else if (named.error.has(name)) rec.error ??= 'error event';
            else if (named.content.has(name) && !s.slice(i, end).includes('"delta":""')) content(at, NaN);
          } else if (s.startsWith('data: [DONE]', i)) {
            rec.sawDone = true;
          } else if (s.startsWith('data: {"error"', i)) {
            rec.error ??= 'error event';
          } else if (CONTENT.test(s.slice(i, end))) {
            content(at, NaN);
          }
          i = end + 2;
        }
        carry = i === 0 ? s : s.slice(i);
      },
      onResponseEnd() {
        if (rec.status !== 200) rec.error ??= `status ${rec.status}`;
        else if (!rec.sawDone) rec.error ??= named ? `no ${named.endName}` : 'no [DONE]';
        resolve(rec);
      },
      onResponseError(_c, err) {
        rec.error ??= err.code ?? err.message;
        resolve(rec);
      },
    };
    function content(at, ts) {
      const prevAt = rec.lastAt;
      const prevSim = rec.lastSim;
      if (rec.n === 0) {
        rec.firstAt = at;
        rec.firstSim = ts;
      }
      rec.lastAt = at;
      rec.lastSim = ts;
      rec.n++;
      onChunk?.(rec, at, ts, prevAt, prevSim);
    }
    rec.sendAt = nowMs();
    pool.dispatch({ method: 'POST', path, headers, body }, handler);
  });
  return rec;
}
