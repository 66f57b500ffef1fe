import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
// Provider secrets never leave the gateway through an upstream's own words. An upstream's
// error message is relayed to the client (and lands in the request log line and span); a
// provider that quotes the key it was sent ("Incorrect API key provided: sk-...") would hand
// it to every client. Every configured secret of the backend (api_key, header values) is
// replaced, whole or quoted in part (a run of 12+ of its leading characters), before the
// message is used anywhere.

const REDACTED = '[redacted]';
/** Values shorter than this are not treated as secrets (api-version dates, "true"). */
const MIN_SECRET = 8;
/** A quoted prefix of a secret this long is redacted too. */
const MIN_PREFIX = 12;

/** The secrets of a backend worth scrubbing: its key and the values of its configured headers. */
export function secretsOf(values: Iterable<string | undefined>): string[] {
  const out = new Set<string>();
  for (const v of values) {
    if (!v) continue;
    const bare = v.replace(/^(Bearer|Basic)\s+/i, '');
    if (bare.length >= MIN_SECRET) out.add(bare);
  }
  // Longest first: a secret containing another is redacted whole.
  return [...out].sort((a, b) => b.length - a.length);
}

/** `text` with every whole secret, and every run of MIN_PREFIX+ of a secret's leading characters, replaced. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
    const head = s.slice(0, Math.min(MIN_PREFIX, s.length));
    let at = out.indexOf(head);
    while (at !== -1) {
      let n = head.length;
      while (n < s.length && out[at + n] === s[n]) n++;
      out = out.slice(0, at) + REDACTED + out.slice(at + n);
      at = out.indexOf(head, at + REDACTED.length);
    }
  }
  return out;
}

/** The most of an upstream error body held to be scrubbed (error bodies are a few hundred bytes). */
export const MAX_SCRUBBED_BODY = 64 * 1024;

/**
 * An upstream error body with the secrets replaced, decoded first when it came compressed.
 * `body` is what to send; `decoded` says the content-encoding header must go. Undefined when
 * the body cannot be read (corrupt encoding, unknown encoding): the caller sends its own error.
 */
export function scrubBody(
  raw: Buffer,
  encoding: string | undefined,
  secrets: readonly string[],
): { body: Buffer; decoded: boolean } | undefined {
  const enc = (encoding ?? '').trim().toLowerCase();
  let plain = raw;
  const decoded = enc !== '' && enc !== 'identity';
  if (decoded) {
    try {
      const opts = { maxOutputLength: 1024 * 1024 };
      if (enc === 'gzip' || enc === 'x-gzip') plain = gunzipSync(raw, opts);
      else if (enc === 'deflate') plain = inflateSync(raw, opts);
      else if (enc === 'br') plain = brotliDecompressSync(raw, opts);
      else return undefined;
    } catch {
      return undefined;
    }
  }
  const text = plain.toString('utf8');
  const clean = scrubSecrets(text, secrets);
  if (clean === text) return { body: plain, decoded };
  return { body: Buffer.from(clean, 'utf8'), decoded };
}

/**
 * Overwrites, in place and at the same length, every secret (or a 12+ character run of its
 * leading characters) in `buf` with '*'. For pass-through bytes the gateway does not
 * re-serialise: an upstream error event in a stream. Only called for chunks that carried one.
 */
export function maskSecretsInPlace(buf: Buffer, secrets: readonly string[]): void {
  for (const s of secrets) {
    const secret = Buffer.from(s, 'utf8');
    const head = secret.subarray(0, Math.min(MIN_PREFIX, secret.length));
    let at = buf.indexOf(head);
    while (at !== -1) {
      let n = head.length;
      while (n < secret.length && at + n < buf.length && buf[at + n] === secret[n]) n++;
      buf.fill(0x2a, at, at + n);
      at = buf.indexOf(head, at + n);
    }
  }
}
