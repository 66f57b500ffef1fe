// Pumps an upstream response to the client. Each chunk is written the moment it arrives;
// the tap only looks at it (and, when the gateway itself asked for usage, cuts that one
// event out). Backpressure goes straight through: a slow client pauses the upstream.
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { StreamTap } from './tap.js';
import { countTokens, type TapUsage } from './tokens.js';
import type { BodyFacts, Wire } from './grammar.js';
import type { ResponseSource } from '../upstream/exchange.js';
import { UpstreamFailure } from '../upstream/failures.js';
import { maskSecretsInPlace } from '../upstream/scrub.js';
import { DROPPED_RESPONSE_HEADERS } from '../upstream/headers.js';
import { errors, sendError } from '../errors.js';
import { ChunkWriter } from './chunk-writer.js';
import type { TokenCounts } from '../settle/index.js';
import { usageFault } from '../settle/usage.js';

export interface PromptCounter {
  promptTokens(): number;
}

export interface ForwardOptions {
  res: ServerResponse;
  /** The API's wire format: its stream grammar, body reader and error shapes. */
  wire: Wire;
  exchange: ResponseSource;
  stream: boolean;
  stripUsage: boolean;
  requestId: string;
  /** Admission's headers for the client (x-ratelimit-*). */
  headers: Record<string, string>;
  /** The model that answered, sent as x-gateway-model. */
  servedModel: string;
  /** Prompt tokens by tokenizer, computed on demand (only needed when the upstream sends no usage). */
  prompt: PromptCounter;
  /** Called once with the upstream's id for the response (Responses API), as soon as it is seen. */
  onResponseId?: (id: string) => void;
  /** Insights' bounded view of the response bytes (sampled responses only): gets each chunk by reference. */
  outputSlice?: { push(chunk: Buffer): void };
}

export interface ForwardOutcome {
  status: number;
  tokens: TokenCounts;
  estimated: boolean;
  firstTokenAt?: number;
  lastTokenAt?: number;
  finishReason?: string;
  responseId?: string;
  /** Set when the body broke after the head, or the client left (reason client_abort). */
  failure?: UpstreamFailure;
  /** The upstream reported usage that is not a plain token count: the field it was in (tokens were estimated instead). */
  usageFault?: string;
}

function clientHeaders(upstream: IncomingHttpHeaders, opts: ForwardOptions): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || name.startsWith('x-ratelimit-')) continue;
    // Removing the injected usage event changes a stream's length; streams are chunked anyway.
    if (opts.stream && name === 'content-length') continue;
    out[name] = value;
  }
  const ours = opts.headers;
  for (const name in ours) out[name] = ours[name];
  out['x-gateway-model'] = opts.servedModel;
  out['x-request-id'] = opts.requestId;
  return out;
}

function toCounts(u: TapUsage): TokenCounts {
  const t: TokenCounts = { input: u.input, output: u.output, cachedInput: u.cachedInput, reasoning: u.reasoning };
  if (u.cacheWriteInput !== undefined) t.cacheWriteInput = u.cacheWriteInput;
  return t;
}

export function forwardResponse(opts: ForwardOptions): Promise<ForwardOutcome> {
  const grammar = opts.wire.grammar;
  return opts.stream && grammar ? forwardStream(opts, grammar) : forwardWhole(opts);
}

function forwardStream(opts: ForwardOptions, grammar: NonNullable<Wire['grammar']>): Promise<ForwardOutcome> {
  const { res, exchange } = opts;
  const backend = exchange.backend;
  const tap = new StreamTap({ grammar, stripUsage: opts.stripUsage, retainChunks: !backend.sendsUsage, onResponseId: opts.onResponseId });
  res.writeHead(exchange.status, clientHeaders(exchange.headers, opts));
  // Send the head now: the client sees the 200 before the first token, as it would direct.
  res.flushHeaders();
  const out = new ChunkWriter(res);
  const drains = out.drainEmitter;
  let waitingForDrain = false;
  const onDrain = () => {
    waitingForDrain = false;
    exchange.resume();
  };

  return new Promise((resolve) => {
    const finish = (failure?: UpstreamFailure) => {
      drains.off('drain', onDrain);
      let tokens: TokenCounts;
      let estimated = false;
      const fault = usageFault(tap.usage);
      const usage = fault === undefined ? tap.usage : undefined;
      if (usage) tokens = toCounts(usage);
      else {
        estimated = true;
        // Without retained chunks (the backend used to send usage) each content event counts
        // as one token, which is how OpenAI, vLLM and Ollama stream; the next stream from this
        // backend keeps its chunks again and gets a tokenizer count.
        const output =
          tap.contentEvents === 0 ? 0 : backend.sendsUsage || !tap.textRetained ? tap.contentEvents : countTokens(tap.outputText());
        tokens = { input: opts.prompt.promptTokens(), output, cachedInput: 0, reasoning: 0 };
      }
      if (!failure) backend.sendsUsage = usage !== undefined;
      resolve({
        status: failure?.reason === 'client_abort' ? 499 : exchange.status,
        tokens,
        estimated,
        firstTokenAt: tap.firstTokenAt,
        lastTokenAt: tap.lastTokenAt,
        finishReason: tap.finishReason,
        responseId: tap.responseId,
        failure,
        usageFault: fault,
      });
    };
    exchange.attach({
      onData(chunk) {
        opts.outputSlice?.push(chunk);
        const clean = tap.upstreamError === undefined;
        const relay = tap.push(chunk);
        // An upstream error event is relayed as the upstream's bytes: masked if it quotes a provider secret.
        if (clean && relay !== null && tap.upstreamError !== undefined) maskSecretsInPlace(relay, backend.secrets);
        if (relay === null || out.write(relay)) return true;
        if (!waitingForDrain) {
          waitingForDrain = true;
          drains.once('drain', onDrain);
        }
        return false;
      },
      onEnd() {
        const clean = tap.upstreamError === undefined;
        const rest = tap.end();
        if (clean && rest !== null && tap.upstreamError !== undefined) maskSecretsInPlace(rest, backend.secrets);
        let failure: UpstreamFailure | undefined;
        if (tap.upstreamError !== undefined) {
          failure = new UpstreamFailure('mid_stream', errors.midStream(exchange.backend.name, 'the upstream sent an error event'), false);
        } else if (!tap.complete) {
          // A stream that ends without its end marker ([DONE], response.completed, ...) was
          // cut short: tell the client instead of letting it take a truncated answer as complete.
          failure = new UpstreamFailure(
            'mid_stream',
            errors.midStream(exchange.backend.name, 'the stream ended before its end event'),
            false,
          );
          if (rest) res.write(rest);
          res.end(opts.wire.streamError(failure.error, tap.events));
          return finish(failure);
        }
        res.end(rest ?? undefined);
        finish(failure);
      },
      onError(failure) {
        if (failure.reason !== 'client_abort' && !res.destroyed) {
          const rest = tap.end();
          if (rest) res.write(rest);
          res.end(opts.wire.streamError(failure.error, tap.events));
        }
        finish(failure);
      },
    });
  });
}

function forwardWhole(opts: ForwardOptions): Promise<ForwardOutcome> {
  const { res, exchange } = opts;
  // A non-streamed body is held until it is complete (it is one JSON document the client
  // cannot use in part, and it arrives at once after generation): a body that breaks midway
  // then becomes a clean OpenAI-shaped 502 instead of a cut connection.
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    const done = (body: Buffer | undefined, failure?: UpstreamFailure) => {
      const facts: BodyFacts | undefined = body && opts.wire.readBody(body);
      // A count the boundary refuses is not committed: the text is estimated instead.
      const fault = usageFault(facts?.usage);
      const usage = fault === undefined ? facts?.usage : undefined;
      const text = facts?.text ?? '';
      if (facts?.responseId !== undefined) opts.onResponseId?.(facts.responseId);
      resolve({
        status: failure?.reason === 'client_abort' ? 499 : failure ? failure.error.status : exchange.status,
        tokens: usage
          ? toCounts(usage)
          : { input: opts.prompt.promptTokens(), output: text ? countTokens(text) : 0, cachedInput: 0, reasoning: 0 },
        estimated: usage === undefined,
        finishReason: facts?.finishReason,
        responseId: facts?.responseId,
        failure,
        usageFault: fault,
      });
    };
    exchange.attach({
      onData(chunk) {
        chunks.push(chunk);
        return true;
      },
      onEnd() {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        const headers = clientHeaders(exchange.headers, opts);
        headers['content-length'] = body.length;
        res.writeHead(exchange.status, headers);
        res.end(body);
        opts.outputSlice?.push(body);
        done(body);
      },
      onError(failure) {
        if (failure.reason !== 'client_abort') sendError(res, failure.error, opts.requestId, undefined, opts.wire.errorBody);
        done(undefined, failure);
      },
    });
  });
}
