// Token counting bounded in time whatever the input.
//
// BPE (gpt-tokenizer's, like tiktoken's reference merge loop) is quadratic in the length of
// one pre-split piece, and a piece can be as long as the text: 300,000 `a` are one piece and
// froze the event loop for ~55 s; 4,096 CJK characters take ~0.4 s. Two bounds fix that:
//
// 1. No piece reaches BPE longer than MAX_PIECE_CHARS. The pre-split regex never puts
//    whitespace and non-whitespace in one piece except for one leading character or trailing
//    newlines, so cutting every run of whitespace, and every run of non-whitespace, into
//    slices of at most MAX_PIECE_CHARS bounds every piece. Ordinary text (words, numbers,
//    punctuation, indentation) never has such runs and is counted exactly as before; a cut
//    run may differ by about one token per slice. Work is then linear in the text.
// 2. Per estimate, at most EXACT_BUDGET_CHARS characters go through BPE (a 10 MiB body at
//    ~1-3 us per character would still hold the loop for seconds). The rest is
//    extrapolated: at the tokens-per-character ratio measured on the counted part, and never
//    below UTF-8 bytes / 4 (so a head of whitespace cannot make a CJK tail look free).
//
// Both are estimates where they apply, which is what these counts are (prompt reservations
// before the upstream answers; output of an upstream that reports no usage).

export const MAX_PIECE_CHARS = 128;
export const EXACT_BUDGET_CHARS = 32_768;

/** Counts the tokens of a text with a BPE (gpt-tokenizer's countTokens, bound to its options). */
export type Bpe = (text: string) => number;

/** Work handed to BPE since start (tests read it: the bound is counted in work units, not time). */
export const bpeWork = { calls: 0, chars: 0 };

function isSpace(c: number): boolean {
  // JavaScript's \s (what the tokenizers' split regexes use).
  return (
    c === 0x20 ||
    (c >= 0x09 && c <= 0x0d) ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** A cut at `at` (< end) that does not split a surrogate pair. */
function safeCut(text: string, at: number): number {
  const c = text.charCodeAt(at - 1);
  return c >= 0xd800 && c <= 0xdbff ? at - 1 : at;
}

/** Exact counts of texts seen before (a bounded cache shared by estimates; see tokens.ts). */
export interface CountCache {
  get(text: string): number | undefined;
  set(text: string, tokens: number): void;
}

/** One estimate's counter: its BPE budget is shared by every text it counts. */
export class BoundedCounter {
  private left: number;
  private counted = 0;
  private tokens = 0;

  constructor(
    private readonly bpe: Bpe,
    budgetChars: number = EXACT_BUDGET_CHARS,
    private readonly cache?: CountCache,
  ) {
    this.left = budgetChars;
  }

  count(text: string): number {
    const len = text.length;
    if (len === 0) return 0;
    const cache = this.cache;
    if (cache !== undefined) {
      // A text counted exactly before costs no BPE and none of this estimate's budget.
      const hit = cache.get(text);
      if (hit !== undefined) {
        this.counted += len;
        this.tokens += hit;
        return hit;
      }
    }
    if (this.left <= 0) return this.extrapolate(text);
    if (len <= this.left) {
      const n = this.exact(text);
      cache?.set(text, n);
      return n;
    }
    const cut = safeCut(text, this.left);
    return this.exact(text.slice(0, cut)) + this.extrapolate(text.slice(cut));
  }

  private exact(text: string): number {
    this.left -= text.length;
    const n = text.length <= MAX_PIECE_CHARS ? this.run(text) : this.sliced(text);
    this.counted += text.length;
    this.tokens += n;
    return n;
  }

  private extrapolate(text: string): number {
    const byRatio = this.counted > 0 ? (text.length * this.tokens) / this.counted : 0;
    return Math.ceil(Math.max(byRatio, Buffer.byteLength(text, 'utf8') / 4));
  }

  /** Text longer than a piece: runs longer than MAX_PIECE_CHARS counted in slices, the rest as is. */
  private sliced(text: string): number {
    const len = text.length;
    let n = 0;
    let from = 0; // start of the text not counted yet
    let i = 0;
    while (i < len) {
      const ws = isSpace(text.charCodeAt(i));
      let j = i + 1;
      while (j < len && isSpace(text.charCodeAt(j)) === ws) j++;
      if (j - i > MAX_PIECE_CHARS) {
        if (i > from) n += this.run(text.slice(from, i));
        for (let k = i; k < j;) {
          const next = k + MAX_PIECE_CHARS >= j ? j : safeCut(text, k + MAX_PIECE_CHARS);
          n += this.run(text.slice(k, next));
          k = next;
        }
        from = j;
      }
      i = j;
    }
    if (from < len) n += this.run(from === 0 ? text : text.slice(from));
    return n;
  }

  private run(text: string): number {
    bpeWork.calls++;
    bpeWork.chars += text.length;
    return this.bpe(text);
  }
}
