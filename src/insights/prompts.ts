// Identical prompts, for the exact-cache recommendation: a 53-bit hash of each request's
// bytes (model, messages and parameters: what an exact cache would key on) and a bounded
// memory of the last RECENT distinct hashes. A request whose hash is remembered is a
// repeat: an exact cache with that much room would have answered it.

const RECENT = 4096;
/** Bytes hashed from each end of a large body; its length is mixed in too. */
const EDGE = 16 * 1024;

/** Two FNV-1a passes (different offsets) over the head and tail of the bytes, folded to 53 bits. */
export function hashPrompt(raw: Buffer): number {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ raw.length;
  const n = raw.length;
  const step = (i: number) => {
    const c = raw[i]!;
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  };
  if (n <= 2 * EDGE) for (let i = 0; i < n; i++) step(i);
  else {
    for (let i = 0; i < EDGE; i++) step(i);
    for (let i = n - EDGE; i < n; i++) step(i);
  }
  return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
}

export class PromptSketch {
  private readonly ring = new Float64Array(RECENT);
  private at = 0;
  private filled = 0;
  private readonly count = new Map<number, number>();

  /** Records h; true when it was among the last RECENT distinct hashes. */
  seen(h: number): boolean {
    const c = this.count.get(h);
    if (c !== undefined) return true;
    if (this.filled === RECENT) {
      const old = this.ring[this.at]!;
      this.count.delete(old);
    } else this.filled++;
    this.ring[this.at] = h;
    this.at = (this.at + 1) % RECENT;
    this.count.set(h, 1);
    return false;
  }

  get size(): number {
    return this.count.size;
  }

  /** Its ring, and ~16 bytes per remembered hash (at most RECENT). */
  get bytes(): number {
    return this.ring.byteLength + this.count.size * 16;
  }
}
