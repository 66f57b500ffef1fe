// Request bodies read whole, with a size cap: the JSON APIs, admin routes, and pass-through
// requests whose JSON body is checked for a model.
import type { IncomingMessage } from 'node:http';
import { errors } from '../errors.js';

/** Reads the body up to `limit` bytes; rejects with 413 as soon as it is known to be larger. */
export function readBody(req: IncomingMessage, limit: number, timeoutMs = 0): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(errors.tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // server.body_timeout_ms: a body that never ends gets a shaped 408 (see server/limits.ts).
    const timer = timeoutMs > 0 ? setTimeout(() => (cleanup(), reject(errors.requestTimeout(timeoutMs))), timeoutMs) : undefined;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        cleanup();
        reject(errors.tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onAborted = () => {
      cleanup();
      reject(errors.clientClosed());
    };
    const cleanup = () => {
      if (timer) clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** A JSON object body: 400 invalid_json / not an object otherwise. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw errors.invalidJson((e as Error).message);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw errors.notObject();
  return body as Record<string, unknown>;
}
