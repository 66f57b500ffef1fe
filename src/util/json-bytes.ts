// Byte-level helpers for reading JSON without parsing it, shared by the stream tap (SSE
// events), the usage scan of non-streamed answers and the upstream body splice. Inside a
// JSON string every quote is escaped, which is what makes these scans sound.

export const LF = 0x0a;
export const SPACE = 0x20;
export const TAB = 0x09;
export const QUOTE = 0x22;
export const COMMA = 0x2c;
export const COLON = 0x3a;
export const BACKSLASH = 0x5c;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;

/** JSON whitespace (space, tab, CR, LF). */
export const isSpace = (b: number | undefined): boolean => b === SPACE || b === LF || b === 0x0d || b === TAB;

/**
 * Index just past the string that opens at `start` (a quote), or -1. Jumps from quote to
 * quote with the native indexOf (prompts are mostly string bytes); a quote preceded by an
 * odd run of backslashes is escaped.
 */
export function stringEnd(buf: Buffer, start: number): number {
  let q = start;
  for (;;) {
    q = buf.indexOf(QUOTE, q + 1);
    if (q < 0) return -1;
    let slashes = 0;
    while (buf[q - 1 - slashes] === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return q + 1;
  }
}

/**
 * True when the JSON text nests objects/arrays deeper than `max`. JSON.parse copes with any
 * depth, but every recursive walk after it (JSON.stringify, token estimates) overflows the
 * stack on a 100k-deep body: such a body is refused up front. Strings are skipped natively,
 * so the loop only visits the few structural bytes between them.
 */
export function nestedDeeperThan(buf: Buffer, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === QUOTE) {
      const e = stringEnd(buf, i);
      if (e < 0) return false;
      i = e - 1;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}
