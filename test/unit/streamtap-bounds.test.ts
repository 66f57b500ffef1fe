// The stream tap holds nothing without bound: an event that never ends is released past
// MAX_HELD_EVENT_BYTES (and forwarded byte for byte), and the chunks kept for a tokenizer
// count stop at MAX_RETAINED_BYTES.
import { describe, expect, it } from 'vitest';
import { StreamTap } from '../../src/streamtap/index.js';
import { chunkGrammar } from '../../src/protocols/chat.js';
import { MAX_HELD_EVENT_BYTES } from '../../src/streamtap/sse.js';
import { MAX_RETAINED_BYTES } from '../../src/streamtap/tap.js';

const USAGE = 'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n';
const content = (t: string) => `data: {"choices":[{"index":0,"delta":{"content":${JSON.stringify(t)}}}]}\n\n`;

/** Pushes `chunks` and returns everything the tap handed back, plus the most bytes it was holding after any push. */
function run(tap: StreamTap, chunks: Buffer[]): { out: Buffer; maxHeld: number } {
  const out: Buffer[] = [];
  let inBytes = 0;
  let outBytes = 0;
  let maxHeld = 0;
  for (const c of chunks) {
    inBytes += c.length;
    const o = tap.push(c);
    if (o) {
      out.push(o);
      outBytes += o.length;
    }
    // Bytes in minus bytes out is what the tap holds (nothing is cut in these streams until the usage event).
    maxHeld = Math.max(maxHeld, inBytes - outBytes);
  }
  const rest = tap.end();
  if (rest) out.push(rest);
  return { out: Buffer.concat(out), maxHeld };
}

describe('unbounded buffering in the stream tap', () => {
  it('a data: event with no blank line is not held past the cap while the usage event is being stripped', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true, retainChunks: false });
    const piece = Buffer.alloc(64 * 1024, 0x61);
    const chunks = [Buffer.from(content('hi')), Buffer.from('data: {"x":"')];
    // 8 MiB of one event that never ends, then its end, more events and the usage event.
    for (let i = 0; i < 128; i++) chunks.push(piece);
    chunks.push(Buffer.from('"}\n\n' + content('there') + USAGE + 'data: [DONE]\n\n'));
    const { out, maxHeld } = run(tap, chunks);
    expect(maxHeld).toBeLessThanOrEqual(MAX_HELD_EVENT_BYTES + piece.length);
    // Every byte forwarded except the usage event the gateway asked for.
    const input = Buffer.concat(chunks).toString('latin1');
    expect(out.toString('latin1')).toBe(input.replace(USAGE, ''));
    expect(tap.usage).toEqual({ input: 3, output: 2, cachedInput: 0, reasoning: 0 });
    expect(tap.contentEvents).toBe(2);
    expect(tap.sawDone).toBe(true);
  });

  it('an oversized event that is never finished is forwarded as is at the end', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: true, retainChunks: false });
    const chunks = [Buffer.from('data: '), Buffer.alloc(MAX_HELD_EVENT_BYTES + 10, 0x62), Buffer.alloc(100, 0x63)];
    const { out } = run(tap, chunks);
    expect(out.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('without stripping, the scanner lets go of an oversized event too (observed events still counted)', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: false, retainChunks: false });
    const chunks = [
      Buffer.from('data: {"y":"'),
      Buffer.alloc(2 * MAX_HELD_EVENT_BYTES, 0x61),
      Buffer.from('"}\n\n' + content('a') + USAGE),
    ];
    const { out } = run(tap, chunks);
    expect(out.equals(Buffer.concat(chunks))).toBe(true);
    expect(tap.contentEvents).toBe(1);
    expect(tap.usage?.output).toBe(2);
  });

  it('chunks kept for a tokenizer count stop at MAX_RETAINED_BYTES', () => {
    const tap = new StreamTap({ grammar: chunkGrammar, stripUsage: false });
    const ev = Buffer.from(content('x'.repeat(4000)));
    let n = 0;
    while (n * ev.length <= MAX_RETAINED_BYTES) {
      tap.push(ev);
      n++;
    }
    expect(tap.textRetained).toBe(false);
    expect(tap.contentEvents).toBe(n);
  });
});
