// Request paths are made canonical before they are routed, so that no spelling of a path can
// reach the upstream by a way its canonical form cannot (an upstream, or a proxy library,
// may normalise `/v1/chat/./completions` into a chat completion the gateway never governed).
//
//   spelling                              | becomes
//   --------------------------------------+-------------------------------------------
//   `//`, trailing `/`                    | one `/`, none (`/v1//chat/completions/` → `/v1/chat/completions`)
//   `.` and `..` segments                 | resolved (RFC 3986 5.2.4); `..` above the root is refused
//   %-encoded unreserved (`%2e`, `%63`)   | decoded first, so `/v1/chat/%2e/completions` resolves too
//   other %-encodings                     | kept, hex in upper case; `%2F` and `%5C` stay inside
//                                         |   their segment (a model id may hold a `/`), and the
//                                         |   pass-through refuses any path that has one
//   `\`, `%25`, `;`, `#`, control         | refused (400 invalid_path): segment boundaries or double
//   characters, bad `%` escapes           |   decoding would be up to whoever reads the path next
//   anything but origin-form (`/…`)       | refused
//
// Letter case is kept: paths are case-sensitive, and the router refuses to pass through a
// path that names a governed route in another case (see routes.ts).

export type NormalisedPath = { ok: true; path: string; query: string } | { ok: false; reason: string };

/** Longest request target looked at; longer ones are refused (the node parser already caps headers at 16 KiB). */
export const MAX_PATH_CHARS = 8192;

const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20; // lower case
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function unreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e
  );
}

/** Characters allowed raw in a path segment: pchar without "%" and without ";" (refused), by code (a table: this runs on every request). */
const RAW_ALLOWED = new Uint8Array(128);
for (let c = 0; c < 128; c++) RAW_ALLOWED[c] = unreserved(c) || "!$&'()*+,=:@".includes(String.fromCharCode(c)) ? 1 : 0;
const rawAllowed = (c: number): boolean => c < 128 && RAW_ALLOWED[c] === 1;

const fail = (reason: string): NormalisedPath => ({ ok: false, reason });

/** The canonical path of a request target (`req.url`), and its query string as sent (with its `?`, or ''). */
export function normalisePath(url: string): NormalisedPath {
  if (url.length > MAX_PATH_CHARS) return fail('the path is too long');
  if (url.charCodeAt(0) !== 0x2f) return fail('only origin-form paths (starting with /) are served');
  const q = url.indexOf('?');
  const raw = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  // The common case first: nothing to decode or resolve.
  if (simple(raw)) return { ok: true, path: raw, query };

  const segments: string[] = [];
  let seg = '';
  for (let i = 0; i <= raw.length; i++) {
    const c = i < raw.length ? raw.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      if (seg === '..') {
        if (segments.length === 0) return fail("'..' climbs above the root");
        segments.pop();
      } else if (seg !== '' && seg !== '.') segments.push(seg);
      seg = '';
      continue;
    }
    if (c === 0x25) {
      const h = i + 2 < raw.length ? hexVal(raw.charCodeAt(i + 1)) : -1;
      const l = h >= 0 ? hexVal(raw.charCodeAt(i + 2)) : -1;
      if (l < 0) return fail('a % escape is malformed');
      const b = h * 16 + l;
      if (b === 0x25) return fail('encoded % (%25) is not accepted');
      if (b < 0x20 || b === 0x7f) return fail('control characters are not accepted');
      if (b === 0x3b) return fail('path parameters (;) are not accepted');
      seg += unreserved(b) ? String.fromCharCode(b) : '%' + HEX[h]! + HEX[l]!;
      i += 2;
      continue;
    }
    if (c === 0x3b) return fail('path parameters (;) are not accepted');
    if (c === 0x5c) return fail('backslashes are not accepted');
    if (!rawAllowed(c)) return fail(c === 0x23 ? 'a fragment (#) is not accepted' : 'the path holds a character that must be %-encoded');
    seg += raw[i];
  }
  return { ok: true, path: '/' + segments.join('/'), query };
}

/** True when `raw` is already canonical: allowed characters only, no empty, "." or ".." segments, no trailing slash. */
function simple(raw: string): boolean {
  let segStart = 1;
  for (let i = 1; i <= raw.length; i++) {
    const c = i < raw.length ? raw.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const len = i - segStart;
      if (len === 0) return raw.length === 1; // "/" alone is canonical; an empty segment is not
      if (raw.charCodeAt(segStart) === 0x2e && (len === 1 || (len === 2 && raw.charCodeAt(segStart + 1) === 0x2e))) return false;
      segStart = i + 1;
    } else if (!rawAllowed(c)) return false;
  }
  return true;
}
