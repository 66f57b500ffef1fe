// A bounded view of one response's raw bytes for quality scoring: the chunks the forwarder
// already has, held by reference (no copy on the chunk path), the first `headBytes` and
// the last `tailBytes` of them. Once a response is longer, the middle is dropped; the text
// is then scored from its head and tail (refusals are said up front, repetition loops run
// to the end) and JSON validity is not judged.

export class OutputSlice {
  private readonly head: Buffer[] = [];
  private headLen = 0;
  private readonly tail: Buffer[] = [];
  private tailLen = 0;
  /** Some bytes between head and tail were dropped. */
  cut = false;

  constructor(
    private readonly headBytes: number,
    private readonly tailBytes: number,
  ) {}

  /** One chunk as it passes: a reference push and, past the head, a trim of the tail. */
  push(chunk: Buffer): void {
    if (this.headLen < this.headBytes) {
      this.head.push(chunk);
      this.headLen += chunk.length;
      return;
    }
    this.tail.push(chunk);
    this.tailLen += chunk.length;
    while (this.tail.length > 1 && this.tailLen - this.tail[0]!.length >= this.tailBytes) {
      this.tailLen -= this.tail.shift()!.length;
      this.cut = true;
    }
  }

  get bytes(): number {
    return this.headLen + this.tailLen;
  }

  /**
   * The held bytes (head, then tail) as latin1 strings: one char per byte, so no chunk
   * boundary can split a character and nothing is concatenated as bytes. extractText()
   * decodes the UTF-8 of the values it keeps.
   */
  text(): { head: string; tail: string } {
    let head = '';
    for (const c of this.head) head += c.toString('latin1');
    let tail = '';
    for (const c of this.tail) tail += c.toString('latin1');
    return { head, tail };
  }
}
