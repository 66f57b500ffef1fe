// Small node:http helpers: JSON replies with OpenAI's headers, a capped body reader.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { newId } from './openai.js';

const MAX_BODY_BYTES = 32 * 1024 * 1024;

export function headerNum(req: IncomingMessage, name: string): number | undefined {
  const v = req.headers[name];
  if (typeof v !== 'string' || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

export function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': newId('req'),
    ...headers,
  });
  res.end(body);
}

export function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(null); // caller answers 413
        req.removeAllListeners('data');
        req.resume();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    // Closed before the body was complete: the client vanished mid-body. (Checked first:
    // building an Error per request for nothing costs real time at thousands of streams.)
    req.on('close', () => {
      if (!req.complete) reject(new Error('request aborted'));
    });
  });
}
