// An OpenAI-compatible fake model server over real sockets, with real timing and
// fault injection. Used as the gateway's built-in `type: simulator` backend, as an
// upstream in tests, and (via cli.ts) as its own process for the benchmark.
//
// Control surface, besides the options:
//   request headers  x-sim-ttft-ms, x-sim-tpot-ms, x-sim-output-tokens, x-sim-fault (JSON Fault),
//                    x-sim-cache-read-tokens, x-sim-cache-write-tokens (Messages API usage)
//   POST /_sim/config  (JSON patch, same as configure())   GET /_sim/stats   DELETE /_sim/stats
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { embeddingsBody } from './embeddings.js';
import type { Action, Fault } from './faults.js';
import { failTimesAction, parseFault, roll } from './faults.js';
import { chatAnswer, completionAnswer, isInvalid } from './generate.js';
import type { Answer, Invalid, Knobs } from './generate.js';
import { headerNum, readBody, sendJson } from './http.js';
import { CONTEXT_LENGTH_BODY, errorBody, errorForStatus, newId, nowMs } from './openai.js';
import { anthropicErrorBody, anthropicErrorForStatus, countTokensBody, messagesAnswer } from './messages.js';
import { ResponseStore, responseIdFrom, responsesAnswer, responsesInputTokens } from './responses.js';
import type { ResponsesAnswer } from './responses.js';
import { DEFAULTS, applyPatch, emptyStats } from './settings.js';
import type { Settings, Simulator, SimulatorOptions, SimulatorPatch } from './settings.js';
import { TokenStream } from './stream.js';
import { countText } from './words.js';

export type { Fault } from './faults.js';
export type { Simulator, SimulatorOptions, SimulatorPatch, SimulatorStats } from './settings.js';

/** Tokens for one answer: `mean`, or a normal draw around it (Box-Muller) when sd > 0; at least 1. */
function sampleTokens(mean: number, sd: number, random: () => number): number {
  if (!(sd > 0)) return Math.floor(mean);
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.max(1, Math.round(mean + sd * z));
}

/** mulberry32: a small seeded generator for reproducible traffic shapes. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Kind = 'chat' | 'completions' | 'embeddings' | 'responses' | 'messages';
const API: Record<string, Kind> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
  '/v1/messages': 'messages',
};

/** Per-request state shared with the 'close' handler. */
interface Exchange {
  stop: () => void;
  killed: boolean; // a fault dropped the connection on purpose
}

/** One simulator server: new SimulatorServer(opts).start() listens; close() stops it. */
export class SimulatorServer implements Simulator {
  /** http://127.0.0.1:PORT/v1 (base_url form), set by start(). */
  url = '';
  port = 0;
  readonly stats = emptyStats();
  private readonly settings: Settings = { ...DEFAULTS };
  private readonly random: () => number;
  private fault: Fault | null = null;
  private faultLeft = 0; // for a configured fail_times
  // x-sim-fault fail_times: SDK retries resend the same header, so count per header value.
  private readonly headerFails = new Map<string, number>();
  private readonly stored = new ResponseStore(); // Responses API: what GET /responses/{id} and previous_response_id find
  // Stop functions of in-flight API requests, so close() can clear their timers at once.
  private readonly live = new Set<() => void>();
  private readonly startedS = Math.floor(Date.now() / 1000);
  private readonly server: http.Server;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: SimulatorOptions = {}) {
    applyPatch(this.settings, opts as Record<string, unknown>);
    this.random = opts.seed === undefined ? Math.random : seeded(opts.seed);
    // The tokenizer builds its tables on first use (a few ms): do it now, not inside the
    // first request's TTFT.
    countText('warm up');
    this.server = http.createServer({ noDelay: true }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // A request stream error (client vanished mid-body) or a bug: never crash the process.
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, errorBody(String(err), 'server_error'));
        else res.destroy();
      });
    });
  }

  async start(): Promise<this> {
    const host = this.opts.host ?? '127.0.0.1';
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A deep accept backlog: the bench opens thousands of connections at once.
      server.listen({ host, port: this.opts.port ?? 0, backlog: 8192 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    this.url = `http://${urlHost}:${this.port}/v1`;
    return this;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const stop of this.live) stop();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  configure(patch: SimulatorPatch): void {
    const p = patch as Record<string, unknown>;
    const next = { ...this.settings };
    applyPatch(next, p);
    const f = p.fault === undefined || p.fault === null ? p.fault : parseFault(p.fault);
    Object.assign(this.settings, next);
    if (f !== undefined) {
      this.fault = f;
      this.faultLeft = f?.kind === 'fail_times' ? f.times : 0;
      if (f?.kind === 'fail_times' && this.faultLeft <= 0) this.fault = null;
    }
  }

  resetStats(): void {
    // Mutate in place: callers may hold a reference to sim.stats.
    Object.assign(this.stats, emptyStats());
    delete this.stats.lastRequest;
    this.headerFails.clear();
  }

  /** The fault for this request: x-sim-fault header first, else the configured one; then errorRate. */
  private decide(req: IncomingMessage): Action | null {
    const raw = req.headers['x-sim-fault'];
    let action: Action | null = null;
    if (typeof raw === 'string' && raw !== '') {
      const f = parseFault(JSON.parse(raw));
      if (f.kind === 'fail_times') {
        const left = this.headerFails.get(raw) ?? f.times;
        if (this.headerFails.size > 10_000) this.headerFails.clear(); // bound memory under odd use
        this.headerFails.set(raw, Math.max(0, left - 1));
        if (left > 0) action = failTimesAction(f);
      } else action = roll(f);
    } else if (this.fault?.kind === 'fail_times') {
      if (this.faultLeft > 0) action = failTimesAction(this.fault);
      if (--this.faultLeft <= 0) this.fault = null;
    } else if (this.fault) action = roll(this.fault);
    if (!action && this.settings.errorRate > 0 && Math.random() < this.settings.errorRate) {
      action = { kind: 'status', status: this.settings.errorStatus };
    }
    return action;
  }

  private api(kind: Kind, req: IncomingMessage, res: ServerResponse, body: unknown, t0: number, ex: Exchange): void {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      return sendJson(res, 400, errorBody('The request body must be a JSON object.', 'invalid_request_error'));
    }
    const b = body as Record<string, unknown>;
    let action: Action | null;
    try {
      action = this.decide(req);
    } catch (e) {
      return sendJson(res, 400, errorBody(`bad x-sim-fault: ${(e as Error).message}`, 'invalid_request_error'));
    }
    if (action) this.stats.faults++;
    switch (action?.kind) {
      case 'status': {
        const { status, body: fb, retryAfterS } = action;
        const text =
          fb === undefined
            ? kind === 'messages'
              ? anthropicErrorForStatus(status)
              : errorForStatus(status)
            : typeof fb === 'string'
              ? fb
              : JSON.stringify(fb);
        return sendJson(res, status, text, retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) });
      }
      case 'context_length':
        return sendJson(res, 400, CONTEXT_LENGTH_BODY);
      case 'hang':
        return; // never answer; the 'close' handler counts the client giving up
      case 'reset':
        ex.killed = true;
        req.socket.resetAndDestroy();
        return;
    }
    const ttftMs = action?.kind === 'slow_first_token' ? action.ttftMs : (headerNum(req, 'x-sim-ttft-ms') ?? this.settings.ttftMs);
    const tpotMs = headerNum(req, 'x-sim-tpot-ms') ?? this.settings.tpotMs;
    const dieAfter = action?.kind === 'die_mid_stream' ? action.afterChunks : undefined;
    const errorAfter = action?.kind === 'error_mid_stream' ? action.afterChunks : undefined;
    const knobs: Knobs = {
      ...this.settings,
      outputTokens: sampleTokens(
        headerNum(req, 'x-sim-output-tokens') ?? this.settings.outputTokens,
        this.settings.outputTokensSd,
        this.random,
      ),
      refuse: this.settings.refusalRate > 0 && this.random() < this.settings.refusalRate,
    };
    const reqHeaders = { 'x-request-id': newId('req'), 'x-sim-request-ms': String(t0) };

    // A failing generation that is not streamed is a plain 500.
    if (errorAfter !== undefined && (kind === 'embeddings' || b.stream !== true)) return sendJson(res, 500, errorForStatus(500));
    if (kind === 'embeddings') {
      const r = embeddingsBody(b, this.settings.modelName ?? (typeof b.model === 'string' ? b.model : 'simulator'));
      if ('error' in r) return sendJson(res, 400, errorBody(r.error, 'invalid_request_error', null, r.param));
      // An embedding model answers in one go: ttftMs stands for its latency.
      return this.delayed(res, r.body, t0 + ttftMs, dieAfter, ex, reqHeaders);
    }
    if (kind === 'chat' && !Array.isArray(b.messages)) {
      return sendJson(
        res,
        400,
        errorBody("Missing required parameter: 'messages'.", 'invalid_request_error', 'missing_required_parameter', 'messages'),
      );
    }
    const answer: Answer | ResponsesAnswer | Invalid =
      kind === 'chat'
        ? chatAnswer(b, knobs)
        : kind === 'responses'
          ? responsesAnswer(b, knobs, this.stored)
          : kind === 'messages'
            ? messagesAnswer(b, knobs, {
                cacheRead: headerNum(req, 'x-sim-cache-read-tokens') ?? 0,
                cacheWrite: headerNum(req, 'x-sim-cache-write-tokens') ?? 0,
              })
            : completionAnswer(b, knobs);
    if (isInvalid(answer)) {
      return sendJson(
        res,
        400,
        kind === 'messages' ? anthropicErrorBody(answer.invalid) : errorBody(answer.invalid, 'invalid_request_error', null, answer.param),
      );
    }
    const onSent = 'onSent' in answer ? (answer as ResponsesAnswer).onSent : undefined;
    const hidden = answer.hiddenTokens ?? 0;
    if ('refused' in answer && answer.refused) this.stats.refusals++;
    if (!answer.stream) {
      // A non-streamed answer arrives when the whole generation would have finished.
      const total = ttftMs + Math.max(0, hidden + answer.n - 1) * tpotMs;
      return this.delayed(res, answer.body, t0 + total, dieAfter, ex, reqHeaders, onSent);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...reqHeaders });
    const plan = {
      format: answer.format,
      tokens: answer.tokens,
      n: answer.n,
      ttftMs: ttftMs + hidden * tpotMs,
      tpotMs,
      dieAfter: dieAfter === undefined ? undefined : Math.min(dieAfter, answer.n),
      errorAfter: errorAfter === undefined ? undefined : Math.min(errorAfter, answer.n),
    };
    const stream = new TokenStream(res, plan, () => (ex.killed = true), onSent);
    ex.stop = () => stream.stop();
    stream.start(t0);
  }

  /** Send a JSON body at `dueAt`; with die_mid_stream, send half of it and drop the socket. */
  private delayed(
    res: ServerResponse,
    body: string,
    dueAt: number,
    dieAfter: number | undefined,
    ex: Exchange,
    headers: Record<string, string>,
    onSent?: () => void,
  ): void {
    let timer: NodeJS.Timeout | undefined;
    const fire = (): void => {
      const early = dueAt - nowMs();
      if (early > 0) {
        // The timer clock is coarse (see stream.ts): wait out the remainder rather than answer early.
        timer = setTimeout(fire, Math.ceil(early));
        return;
      }
      if (dieAfter === undefined) {
        sendJson(res, 200, body, headers);
        return onSent?.();
      }
      ex.killed = true;
      const socket = res.socket;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
      res.write(body.slice(0, body.length >> 1), () => socket?.destroy());
    };
    timer = setTimeout(fire, Math.max(0, Math.ceil(dueAt - nowMs())));
    ex.stop = () => clearTimeout(timer);
  }

  /** GET/DELETE /responses/{id}, POST …/cancel, GET …/input_items, POST /responses/input_tokens. */
  private responseFollowUp(method: string, rest: string, body: unknown, res: ServerResponse): void {
    if (rest === 'input_tokens' && method === 'POST') {
      const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
      return sendJson(res, 200, JSON.stringify({ object: 'response.input_tokens', input_tokens: responsesInputTokens(b) }));
    }
    const [raw = '', sub, ...more] = rest.split('/');
    const id = responseIdFrom(raw);
    const found = id === null || more.length > 0 ? undefined : this.stored.get(id);
    const action = `${method} ${sub ?? ''}`;
    if (!['GET ', 'DELETE ', 'POST cancel', 'GET input_items'].includes(action)) {
      return sendJson(res, 404, errorBody(`Invalid URL (${method} /v1/responses/${rest})`, 'invalid_request_error'));
    }
    if (!found)
      return sendJson(res, 404, errorBody(`Response with id '${id ?? ''}' not found.`, 'invalid_request_error', null, 'response_id'));
    switch (action) {
      case 'GET ':
        return sendJson(res, 200, found.body);
      case 'DELETE ':
        this.stored.delete(id!);
        return sendJson(res, 200, JSON.stringify({ id, object: 'response', deleted: true }));
      case 'POST cancel':
        // The simulator answers at once; only background responses could still be cancelled.
        return sendJson(
          res,
          400,
          errorBody('Only responses created with background=true can be cancelled.', 'invalid_request_error', null, 'response_id'),
        );
      default: {
        const data = found.input;
        const ids = data.map((d) => (d as { id: string }).id);
        return sendJson(
          res,
          200,
          JSON.stringify({ object: 'list', data, first_id: ids[0] ?? null, last_id: ids.at(-1) ?? null, has_more: false }),
        );
      }
    }
  }

  private control(method: string, path: string, body: unknown, res: ServerResponse): void {
    if (path === '/_sim/config' && method === 'POST') {
      try {
        this.configure(body ?? {});
      } catch (e) {
        return sendJson(res, 400, errorBody((e as Error).message, 'invalid_request_error'));
      }
      return sendJson(res, 200, JSON.stringify({ ok: true, settings: this.settings, fault: this.fault }));
    }
    if (path === '/_sim/stats' && method === 'GET') return sendJson(res, 200, JSON.stringify(this.stats));
    if (path === '/_sim/stats' && method === 'DELETE') {
      this.resetStats();
      return sendJson(res, 200, JSON.stringify({ ok: true }));
    }
    sendJson(res, 404, errorBody(`Invalid URL (${method} ${path})`, 'invalid_request_error'));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const isControl = path.startsWith('/_sim/');
    const ex: Exchange = { stop: () => {}, killed: false };
    if (!isControl) {
      this.stats.requests++;
      this.stats.byPath[path] = (this.stats.byPath[path] ?? 0) + 1;
      const stop = () => ex.stop();
      this.live.add(stop);
      res.on('close', () => {
        this.live.delete(stop);
        ex.stop(); // client gone: no timer may fire after this
        if (res.writableFinished) {
          if (res.statusCode < 300) this.stats.completed++;
        } else if (!ex.killed) this.stats.aborted++;
      });
    }
    const raw = await readBody(req);
    if (raw === null) {
      res.setHeader('connection', 'close');
      return sendJson(res, 413, errorBody('Request body too large.', 'invalid_request_error'));
    }
    const t0 = nowMs(); // the body has been read: TTFT counts from here
    let body: unknown;
    try {
      body = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
    } catch {
      return sendJson(res, 400, errorBody('We could not parse the JSON body of your request.', 'invalid_request_error'));
    }
    if (isControl) return this.control(method, path, body, res);
    this.stats.lastRequest = { headers: req.headers, body };

    const kind = method === 'POST' ? API[path] : undefined;
    if (kind) return this.api(kind, req, res, body, t0, ex);
    if (method === 'POST' && path === '/v1/messages/count_tokens') {
      const b = body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
      return sendJson(res, 200, countTokensBody(b));
    }
    if (path.startsWith('/v1/responses/')) return this.responseFollowUp(method, path.slice('/v1/responses/'.length), body, res);
    if (method === 'GET' && path === '/v1/models') {
      const id = this.settings.modelName ?? 'simulator';
      const list = { object: 'list', data: [{ id, object: 'model', created: this.startedS, owned_by: 'llm-gateway-simulator' }] };
      return sendJson(res, 200, JSON.stringify(list));
    }
    sendJson(res, 404, errorBody(`Invalid URL (${method} ${path})`, 'invalid_request_error'));
  }
}

/** Starts a simulator on `opts.host`:`opts.port` (default 127.0.0.1, an ephemeral port). */
export function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  return new SimulatorServer(opts).start();
}
