// The wire forms every protocol module shares: a whole upstream body read as a JSON object,
// and a server-sent event (the final error event each API writes in its own shape).
import { isRecord } from '../streamtap/tokens.js';

/** The body as a JSON object; undefined when it is not JSON or not an object (it is then passed through untouched). */
export function parseObject(body: Buffer): Record<string, unknown> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  return isRecord(json) ? json : undefined;
}

/** One server-sent event: `event: <name>` when named, then one `data:` line of JSON. */
export function sseEvent(data: unknown, name?: string): string {
  return `${name === undefined ? '' : `event: ${name}\n`}data: ${JSON.stringify(data)}\n\n`;
}
