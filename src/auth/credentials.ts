// The credential primitives every surface shares (virtual keys, the admin guard, the
// dashboard): one `Authorization: Bearer` parser and one constant-time comparison. A leaf
// module (node:crypto only).
import { hash, timingSafeEqual } from 'node:crypto';

/** One-shot hash: no Hash object per call. */
export function sha256(text: string): Buffer {
  return hash('sha256', text, 'buffer');
}

/** The token of an `Authorization: Bearer <token>` header (case-insensitive scheme, padding trimmed); undefined otherwise. */
export function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  // The usual exact form first (no regex match object per request); any other spelling
  // (case, extra spaces, padding) takes the regex.
  if (header.startsWith('Bearer ') && header.charCodeAt(7) > 0x20 && header.charCodeAt(header.length - 1) > 0x20) return header.slice(7);
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m?.[1]?.trim();
}

/** Constant-time string comparison: hashing first makes the lengths equal. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}
