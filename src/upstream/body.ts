// The upstream request body, made from the client's bytes rather than re-serialised.
//
// The gateway changes at most two things in a request: the top-level "model" (the
// deployment's name) and, for streams, stream_options.include_usage. Everything else (the
// prompt, tools, images) is passed through as the client sent it: the model value is
// spliced in place and the stream option is inserted after the opening brace. A prompt of
// 100 KB is then copied once (Buffer.concat) instead of being walked by JSON.stringify.
// Whenever the layout is not the simple one (no top-level "model" string found, or a
// stream_options object already there), the caller falls back to JSON.stringify.

import {
  nestedDeeperThan,
  BACKSLASH,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  OPEN_BRACE,
  OPEN_BRACKET,
  QUOTE,
  isSpace,
  stringEnd,
} from '../util/json-bytes.js';

const MODEL_KEY = Buffer.from('model');
const USAGE_OPTION = Buffer.from('"stream_options":{"include_usage":true}');
const COMMA_BYTES = Buffer.from(',');

/**
 * Where the value of the top-level "model" key is: [start, end) of its string token, quotes
 * included. Walks the whole body (strings skipped natively, nested values by bracket depth)
 * so that a body with two top-level "model" keys, which JSON.parse resolves to the last,
 * is refused rather than half rewritten.
 */
function topLevelModel(raw: Buffer): [number, number] | undefined {
  let i = 0;
  while (isSpace(raw[i])) i++;
  if (raw[i] !== OPEN_BRACE) return undefined;
  let depth = 0;
  let expectKey = false;
  let found: [number, number] | undefined;
  for (; i < raw.length; i++) {
    const b = raw[i];
    if (b === QUOTE) {
      const end = stringEnd(raw, i);
      if (end < 0) return undefined;
      if (depth === 1 && expectKey) {
        // An escaped top-level key ("mod\u0065l") may decode to one the gateway reads: JSON.parse
        // sees it, a byte compare does not. Serialise from the parsed body instead, so the model
        // routed and billed is the one sent.
        if (raw.indexOf(BACKSLASH, i + 1) !== -1 && raw.indexOf(BACKSLASH, i + 1) < end) return undefined;
        const isModel = end - i === MODEL_KEY.length + 2 && raw.compare(MODEL_KEY, 0, MODEL_KEY.length, i + 1, end - 1) === 0;
        let v = end;
        while (isSpace(raw[v])) v++;
        if (raw[v] !== COLON) return undefined;
        v++;
        while (isSpace(raw[v])) v++;
        if (isModel) {
          if (found || raw[v] !== QUOTE) return undefined;
          const vEnd = stringEnd(raw, v);
          if (vEnd < 0) return undefined;
          found = [v, vEnd];
          expectKey = false;
          i = vEnd - 1;
          continue;
        }
        expectKey = false;
        i = v - 1;
        continue;
      }
      i = end - 1;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      depth--;
    } else if (b === COMMA && depth === 1) {
      expectKey = true;
    }
  }
  return depth === 0 ? found : undefined;
}

/**
 * The client's body with the top-level model replaced by `modelJson` (a JSON string token,
 * quotes included) and, when `addUsage`, stream_options.include_usage added; undefined when
 * the body does not have the simple layout and must be serialised instead.
 */
export function rewriteBody(raw: Buffer, modelJson: Buffer, addUsage: boolean): Buffer | undefined {
  const at = topLevelModel(raw);
  if (!at) return undefined;
  const [start, end] = at;
  const sameModel = end - start === modelJson.length && raw.compare(modelJson, 0, modelJson.length, start, end) === 0;
  if (!addUsage) {
    if (sameModel) return raw;
    return Buffer.concat([raw.subarray(0, start), modelJson, raw.subarray(end)]);
  }
  // Inserted right after the opening brace; the object has at least "model", so a comma follows.
  const open = raw.indexOf(OPEN_BRACE);
  const head = raw.subarray(0, open + 1);
  if (sameModel) return Buffer.concat([head, USAGE_OPTION, COMMA_BYTES, raw.subarray(open + 1)]);
  return Buffer.concat([head, USAGE_OPTION, COMMA_BYTES, raw.subarray(open + 1, start), modelJson, raw.subarray(end)]);
}

/**
 * Deepest nesting the gateway walks recursively (JSON.stringify, prompt estimates). JSON.parse
 * copes with any depth, but those walks overflow the stack on a 100k-deep body; real API
 * payloads, JSON schemas included, stay far below. Checked only where such a walk would run
 * (the scan is cheap next to the walk), never on the plain splice path.
 */
export const MAX_WALK_DEPTH = 128;

export function tooDeepToWalk(raw: Buffer): boolean {
  return nestedDeeperThan(raw, MAX_WALK_DEPTH);
}
