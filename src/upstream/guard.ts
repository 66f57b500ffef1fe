// What an upstream response must be before the forwarder relays it, and what happens when
// it is not. Sits between the exchange and streamtap/forward.ts:
//
//   content-encoding gzip / deflate / br   decoded here (zlib, streaming): the tap reads
//                                          and the client gets plain bytes, never a mix of
//                                          compressed bytes and our plaintext events
//   any other content-encoding             502 before the head is sent (nothing to decode with)
//   stream request, body not SSE           read whole (bounded), its usage billed, 502
//   non-streamed body > max_upstream_body  cut, 502 (the forwarder holds a whole body in memory)
//
// The gateway asks for `accept-encoding: identity`; this is for upstreams (and proxies in
// front of them) that compress regardless.
import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, constants as zc } from 'node:zlib';
import type { Backend } from './backends.js';
import type { ResponseSink, ResponseSource, UpstreamExchange } from './exchange.js';
import { UpstreamFailure } from './failures.js';
import { errors, sendError, type GatewayError } from '../errors.js';
import { forwardResponse, type ForwardOptions, type ForwardOutcome } from '../streamtap/forward.js';

export interface GuardedForwardOptions extends Omit<ForwardOptions, 'exchange'> {
  exchange: UpstreamExchange;
  /** server.max_upstream_body_bytes: the most a whole (non-streamed) body may hold, decoded. */
  maxBodyBytes: number;
}

/** Relays the served exchange to the client (see the table above). */
export function forwardGuarded(opts: GuardedForwardOptions): Promise<ForwardOutcome> {
  const ex = opts.exchange;
  const encoding = headerText(ex.headers['content-encoding']).trim().toLowerCase();
  let decoder: Transform | undefined;
  if (encoding !== '' && encoding !== 'identity') {
    decoder = decoderFor(encoding);
    if (!decoder) return refuse(opts, errors.upstreamEncoding(ex.backend.name, encoding));
  }
  const contentType = headerText(ex.headers['content-type']);
  const notSse = opts.stream && contentType !== '' && !/event-stream/i.test(contentType);
  const cap = opts.stream && !notSse ? Infinity : opts.maxBodyBytes;
  const source = decoder || cap !== Infinity ? new GuardedSource(ex, decoder, cap) : ex;
  if (notSse) return refuseNonSse(opts, source, contentType);
  if (source === ex) return forwardResponse(opts);
  // The options object is the pipeline's, made for this one call: the source is swapped in
  // place rather than the options copied on every non-streamed request.
  const fwd: ForwardOptions = opts;
  fwd.exchange = source;
  return forwardResponse(fwd);
}

function headerText(v: string | string[] | undefined): string {
  return typeof v === 'string' ? v : Array.isArray(v) ? v.join(', ') : '';
}

function decoderFor(encoding: string): Transform | undefined {
  // Each write is decoded as it comes (a compressed SSE stream still reaches the client event
  // by event); the end is strict, so a truncated or corrupt body is an error, not a short answer.
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip({ flush: zc.Z_SYNC_FLUSH });
    case 'deflate':
      return createInflate({ flush: zc.Z_SYNC_FLUSH });
    case 'br':
      return createBrotliDecompress({ flush: zc.BROTLI_OPERATION_FLUSH });
    default:
      return undefined;
  }
}

const NO_TOKENS = { input: 0, output: 0, cachedInput: 0, reasoning: 0 };

/** Nothing can be read from this body: abort it and answer with `err`. */
function refuse(opts: GuardedForwardOptions, err: GatewayError): Promise<ForwardOutcome> {
  const failure = new UpstreamFailure('bad_response', err, false, opts.exchange.status);
  opts.exchange.abort(failure);
  sendError(opts.res, err, opts.requestId, opts.headers, opts.wire.errorBody);
  return Promise.resolve({ status: err.status, tokens: { ...NO_TOKENS, input: opts.prompt.promptTokens() }, estimated: true, failure });
}

/**
 * A stream request answered with JSON or HTML. Relaying it would leave an SSE client with an
 * empty stream (the SDKs find no events in it) and appending an SSE error to it corrupts it:
 * the client gets a clean 502. The answer was generated, so its usage is read and billed.
 */
function refuseNonSse(opts: GuardedForwardOptions, source: ResponseSource, contentType: string): Promise<ForwardOutcome> {
  const err = errors.upstreamNotStream(source.backend.name, contentType);
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    const answer = (body: Buffer | undefined, broke?: UpstreamFailure) => {
      if (broke?.reason !== 'client_abort') sendError(opts.res, err, opts.requestId, opts.headers, opts.wire.errorBody);
      // Read as the API's whole body (its protocol's reader): chat usage, a Response's usage, ...
      const usage = body ? opts.wire.readBody(body)?.usage : undefined;
      const failure = broke ?? new UpstreamFailure('bad_response', err, false, source.status);
      resolve({
        status: broke?.reason === 'client_abort' ? 499 : err.status,
        tokens: usage
          ? { input: usage.input, output: usage.output, cachedInput: usage.cachedInput, reasoning: usage.reasoning }
          : { ...NO_TOKENS, input: opts.prompt.promptTokens() },
        estimated: usage === undefined,
        failure,
      });
    };
    source.attach({
      onData(c) {
        chunks.push(c);
        return true;
      },
      onEnd: () => answer(Buffer.concat(chunks)),
      onError: (f) => answer(undefined, f),
    });
  });
}

/** Headers the client must not get once the body is decoded (they describe the encoded bytes). */
const ENCODED_BODY_HEADERS = ['content-encoding', 'content-length', 'content-md5', 'digest', 'etag'];

/**
 * The exchange's body, decoded and/or capped, with the same backpressure: the upstream is
 * paused while the decoder is full, the decoder while the client is.
 */
class GuardedSource implements ResponseSource, ResponseSink {
  readonly headers: IncomingHttpHeaders;
  private sink: ResponseSink | undefined;
  private bytes = 0;
  private done = false;

  constructor(
    private readonly inner: UpstreamExchange,
    private readonly decoder: Transform | undefined,
    private readonly cap: number,
  ) {
    let h = inner.headers;
    if (decoder) {
      h = { ...h };
      for (const name of ENCODED_BODY_HEADERS) delete h[name];
    }
    this.headers = h;
    if (decoder) {
      decoder.on('data', (c: Buffer) => {
        if (!this.deliver(c)) decoder.pause();
      });
      decoder.on('drain', () => inner.resume());
      decoder.once('end', () => this.finish());
      decoder.once('error', (e: Error) =>
        this.fail(
          new UpstreamFailure(
            'bad_response',
            errors.upstreamBadResponse(inner.backend.name, `the compressed body is corrupt (${e.message})`),
            false,
          ),
        ),
      );
    }
  }

  get backend(): Backend {
    return this.inner.backend;
  }

  get status(): number {
    return this.inner.status;
  }

  attach(sink: ResponseSink): void {
    this.sink = sink;
    this.inner.attach(this);
  }

  resume(): void {
    this.decoder?.resume();
    this.inner.resume();
  }

  // The exchange's sink side.
  onData(chunk: Buffer): boolean {
    if (this.done) return true;
    return this.decoder ? this.decoder.write(chunk) : this.deliver(chunk);
  }

  onEnd(): void {
    if (this.decoder) this.decoder.end();
    else this.finish();
  }

  onError(failure: UpstreamFailure): void {
    this.decoder?.destroy();
    this.fail(failure);
  }

  private deliver(chunk: Buffer): boolean {
    if (this.done) return true;
    this.bytes += chunk.length;
    if (this.bytes > this.cap) {
      const failure = new UpstreamFailure('bad_response', errors.upstreamTooLarge(this.inner.backend.name, this.cap), false);
      // Failed first: the abort below calls onError synchronously with a generic failure.
      this.fail(failure);
      this.inner.abort(failure);
      this.decoder?.destroy();
      return true;
    }
    return this.sink!.onData(chunk);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.sink!.onEnd();
  }

  private fail(failure: UpstreamFailure): void {
    if (this.done) return;
    this.done = true;
    this.sink!.onError(failure);
  }
}
