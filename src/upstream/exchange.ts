// One request to one backend, driven through undici's dispatch handler API (no Readable
// stream layer between the socket and our tap). open() resolves when the response head
// has arrived: the router can still retry or fail over at that point, because nothing has
// been sent to the client yet. Error bodies (status >= 400) are read whole, since they are
// small and the router needs them (context_length_exceeded, retry-after).
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Backend } from './backends.js';
import { UpstreamFailure, classifyError, redirectFailure } from './failures.js';

export interface ResponseSink {
  /** A body chunk arrived. Return false to pause the upstream until sink.resume is called. */
  onData(chunk: Buffer): boolean;
  onEnd(): void;
  /** The body broke after the head (reset, idle timeout, abort). */
  onError(failure: UpstreamFailure): void;
}

/** What the forwarder reads a response from: an exchange, or a guard wrapped around one (upstream/guard.ts). */
export interface ResponseSource {
  readonly backend: Backend;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Starts the body flowing into the sink. */
  attach(sink: ResponseSink): void;
  /** The sink returned false earlier and can take more now. */
  resume(): void;
}

export interface UpstreamRequest {
  method: 'POST' | 'GET' | 'DELETE';
  /** Path relative to the backend's base_url, e.g. "/chat/completions". */
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

const MAX_ERROR_BODY = 64 * 1024;

/**
 * The exchange is its own undici dispatch handler: its on* methods are called by the pool,
 * so a request allocates no handler object or closures.
 */
export class UpstreamExchange implements Dispatcher.DispatchHandler, ResponseSource {
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** For status >= 400: the (bounded) error body. */
  errorBody: Buffer | undefined;
  /** performance.now() stamps for the gateway-overhead histogram: request handed to the socket, response head in, body ended. */
  sentAt = 0;
  headAt = 0;
  endAt = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private sink: ResponseSink | undefined;
  private ended = false;
  private failure: UpstreamFailure | undefined;
  private errorChunks: Buffer[] | undefined;
  private errorBytes = 0;
  private headResolve: (() => void) | undefined;
  private headReject: ((e: UpstreamFailure) => void) | undefined;
  private headDone = false;
  private abortReason: Error | undefined;
  /** performance.now() when handed to the pool, and when it got its connection (NaN until then). */
  dispatchedAt = 0;
  startedAt = NaN;

  constructor(readonly backend: Backend) {}

  /**
   * Time from the pool to the wire: queued behind pool_size, a connection opening, or undici's
   * one loop turn before reusing an idle keep-alive socket. Until it was written, or, if it
   * never was (failed, aborted), until `now`.
   */
  queueMs(now: number): number {
    return (this.startedAt === this.startedAt ? this.startedAt : now) - this.dispatchedAt;
  }

  /** Sends the request; resolves once the response head (and, for errors, the body) is in. */
  open(req: UpstreamRequest): Promise<void> {
    const head = new Promise<void>((resolve, reject) => {
      this.headResolve = resolve;
      this.headReject = reject;
    });
    // The request's headers are built fresh for each attempt: the provider's go in place, last.
    const headers = req.headers;
    const injected = this.backend.injectedHeaders;
    for (const name in injected) headers[name] = injected[name]!;
    const defaults = this.backend.defaultHeaders;
    for (const name in defaults) headers[name] ??= defaults[name]!;
    this.dispatchedAt = performance.now();
    this.backend.pool.dispatch(
      {
        origin: this.backend.origin,
        method: req.method,
        path: this.backend.basePath + req.path,
        headers,
        body: req.body ?? null,
      },
      this,
    );
    this.sentAt = performance.now();
    return head;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // Called as the request is written to its connection: the end of its wait in the queue.
    this.startedAt = performance.now();
    this.controller = controller;
    if (this.abortReason) controller.abort(this.abortReason);
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.headAt = performance.now();
    this.status = status;
    this.headers = headers;
    if (status >= 300 && status < 400) {
      // Never relayed (see redirectFailure): the head fails and the body is not read.
      this.headDone = true;
      this.failure = redirectFailure(this.backend.name, status);
      this.headReject!(this.failure);
      controller.abort(this.failure);
      return;
    }
    if (status < 400) {
      // Hold the body until the pipeline attaches its sink (it may be deciding to retry).
      controller.pause();
      this.headDone = true;
      this.headResolve!();
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.status >= 400) {
      if (this.errorBytes < MAX_ERROR_BODY) (this.errorChunks ??= []).push(chunk);
      this.errorBytes += chunk.length;
      return;
    }
    if (this.sink && !this.sink.onData(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.endAt = performance.now();
    this.ended = true;
    if (this.status >= 400) {
      this.errorBody = this.errorChunks ? Buffer.concat(this.errorChunks) : Buffer.alloc(0);
      this.errorChunks = undefined;
      this.headDone = true;
      this.headResolve!();
      return;
    }
    this.sink?.onEnd();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.failure?.reason === 'redirect') return; // our own abort of a redirect: already failed
    this.failure = classifyError(err, this.backend.name, this.headDone);
    if (!this.headDone) {
      this.headDone = true;
      this.headReject!(this.failure);
    } else {
      this.sink?.onError(this.failure);
    }
  }

  /** Starts the body flowing into the sink (after the head resolved with status < 400). */
  attach(sink: ResponseSink): void {
    this.sink = sink;
    if (this.failure) sink.onError(this.failure);
    else if (this.ended) sink.onEnd();
    else this.controller?.resume();
  }

  resume(): void {
    this.controller?.resume();
  }

  /** Aborts the upstream request (client left, deadline, shutdown). Safe to call twice. */
  abort(reason: Error): void {
    if (this.ended) return;
    this.abortReason = reason;
    if (this.controller && !this.controller.aborted) this.controller.abort(reason);
  }
}
