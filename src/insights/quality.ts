// Quality signals of one response's text: refusal (seed 001's patterns, English and
// Chinese), trigram repetition (seed 000: over ≥ 10 words, flagged above 0.3), PII (email,
// Luhn-checked card number, phone) and JSON validity. The text is read once, scored, and
// dropped: it is never stored, logged or put in a label; a PII hit counts its kind only.

/** Seed 001's refusal patterns, and a few common phrasings of the same. Case-insensitive for Latin text. */
const REFUSAL = new RegExp(
  [
    'I cannot',
    "I can't",
    'I can not',
    "I'm unable",
    'I am unable',
    "I'm not able to",
    'I am not able to',
    'As an AI',
    "I won't be able to",
    "I'm sorry, but I can",
    "I'm sorry, I can",
    '我无法',
    '我不能',
    '作为AI',
    '作为一个AI',
    '作为人工智能',
    '我没有能力',
    '抱歉，我无法',
    '很抱歉，我不能',
  ]
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/'/g, "['’]"))
    .join('|'),
  'i',
);

/** A refusal is said up front: only the first REFUSAL_SPAN characters are searched. */
const REFUSAL_SPAN = 400;

export function isRefusal(text: string): boolean {
  return REFUSAL.test(text.length > REFUSAL_SPAN ? text.slice(0, REFUSAL_SPAN) : text);
}

/** Words looked at: the last ones, where a repetition loop runs (and a bound on the work). */
const MAX_WORDS = 400;

/** Share of repeated word trigrams: 1 − unique/total, 0 under 10 words (seed 000). */
export function trigramRepetition(text: string): number {
  let words = text.split(/\s+/).filter(Boolean);
  if (words.length > MAX_WORDS) words = words.slice(-MAX_WORDS);
  if (words.length < 10) return 0;
  const seen = new Set<string>();
  const total = words.length - 2;
  for (let i = 0; i < total; i++) seen.add(words[i] + '\u0000' + words[i + 1] + '\u0000' + words[i + 2]);
  return 1 - seen.size / total;
}

export const REPETITION_THRESHOLD = 0.3;

export type PiiKind = 'email' | 'card' | 'phone';

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/;
// 13 to 19 digits, optionally grouped by spaces or dashes.
const CARD = /\b\d(?:[ -]?\d){12,18}\b/g;
// International (+CC ...), North American (3-3-4) and Chinese mobile (1[3-9] + 9 digits) forms.
const PHONE =
  /(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}[ .-]?\d{3,4}[ .-]?\d{3,4})|(?:\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4})|(?:\b\d{3}[.-]\d{3}[.-]\d{4}\b)|(?:(?<!\d)1[3-9]\d{9}(?!\d))/;

/** Luhn checksum of a digit string. */
export function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** The kinds of PII in text (each at most once). */
export function piiKinds(text: string): PiiKind[] {
  const kinds: PiiKind[] = [];
  if (EMAIL.test(text)) kinds.push('email');
  CARD.lastIndex = 0;
  for (let m = CARD.exec(text); m; m = CARD.exec(text)) {
    const digits = m[0].replace(/[ -]/g, '');
    if (digits.length >= 13 && digits.length <= 19 && luhn(digits)) {
      kinds.push('card');
      break;
    }
  }
  if (PHONE.test(text)) kinds.push('phone');
  return kinds;
}

/** True when text parses as JSON (a ```json fence around it is tolerated, as SDK helpers do). */
export function isValidJson(text: string): boolean {
  let t = text.trim();
  const fence = /^```(?:json)?\s*([\s\S]*?)\s*```$/.exec(t);
  if (fence) t = fence[1]!;
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

/** True when the request asked for JSON output: response_format json_object / json_schema (chat), text.format (responses). */
export function wantsJson(body: Record<string, unknown>): boolean {
  const rf = body['response_format'];
  const t = typeof rf === 'object' && rf !== null ? (rf as { type?: unknown }).type : undefined;
  if (t === 'json_object' || t === 'json_schema') return true;
  const text = body['text'];
  const fmt = typeof text === 'object' && text !== null ? (text as { format?: { type?: unknown } }).format : undefined;
  return fmt?.type === 'json_object' || fmt?.type === 'json_schema';
}

// ---- text from raw response bytes ----------------------------------------------------

/**
 * A string value under a key that carries generated text, in any of the APIs' shapes: chat
 * `content` (delta or message), completions and Anthropic `text`, Responses `delta`, tool-call
 * `arguments`, structured `refusal`. Inside a JSON string every quote is escaped, so
 * `"key":"` can only be a real key (the same reasoning as the stream tap's). One regex pass
 * over the raw bytes instead of a JSON.parse per event: it is what keeps scoring cheap.
 */
const TEXT_VALUE = /"(content|text|delta|arguments|refusal)"\s*:\s*"((?:[^"\\]|\\.)*)"/g;

export interface ExtractedText {
  text: string;
  /** The model said it refuses in a `refusal` field (OpenAI structured refusals). */
  refusalField: boolean;
}

/**
 * The generated text in raw response bytes, given as a latin1 string (one char per byte):
 * an SSE stream or a whole JSON body. A value cut at a slice's edge is skipped; usage
 * objects carry no strings; echoed inputs are not part of chat or completions responses.
 */
export function extractText(raw: string): ExtractedText {
  const parts: string[] = [];
  let refusal = false;
  TEXT_VALUE.lastIndex = 0;
  for (let m = TEXT_VALUE.exec(raw); m; m = TEXT_VALUE.exec(raw)) {
    const v = m[2]!;
    if (v.length === 0) continue;
    if (m[1] === 'refusal') refusal = true;
    parts.push(v);
  }
  if (parts.length === 0) return { text: '', refusalField: refusal };
  // The values are JSON string bodies in UTF-8 bytes: joined, they are one, decoded in a single parse.
  const utf8 = (s: string) => Buffer.from(s, 'latin1').toString('utf8');
  let text: string;
  try {
    text = JSON.parse('"' + utf8(parts.join('')) + '"') as string;
  } catch {
    text = parts
      .map((p) => {
        try {
          return JSON.parse('"' + utf8(p) + '"') as string;
        } catch {
          return '';
        }
      })
      .join('');
  }
  return { text, refusalField: refusal };
}

export type TextSignal = 'refusal' | 'repetition' | 'invalid_json' | 'pii';

export interface TextScore {
  signals: TextSignal[];
  pii: PiiKind[];
  repetition: number;
}

/** Scores a response's text. `whole`: the text is complete (JSON validity is judged only then). */
export function scoreText(x: ExtractedText, wantJson: boolean, whole: boolean): TextScore {
  const signals: TextSignal[] = [];
  if (x.refusalField || isRefusal(x.text)) signals.push('refusal');
  const repetition = trigramRepetition(x.text);
  if (repetition > REPETITION_THRESHOLD) signals.push('repetition');
  if (wantJson && whole && x.text.length > 0 && !isValidJson(x.text)) signals.push('invalid_json');
  const pii = piiKinds(x.text);
  if (pii.length) signals.push('pii');
  return { signals, pii, repetition };
}
