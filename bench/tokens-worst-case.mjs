// Worst cases of the token estimate (util/bounded-count.ts), on the event loop, best of 3:
//   npm run build && node bench/tokens-worst-case.mjs
// Before the bound, 300,000 `a` took ~55 s and 40,000 CJK characters ~3 s.
import { countTokens, estimatePromptTokens, preloadTokenizer } from '../dist/streamtap/tokens.js';
import { countText } from '../dist/simulator/words.js';

preloadTokenizer();
countText('warm up');
let x = 1;
const next = () => (x = (x * 1103515245 + 12345) & 0x7fffffff);
let ascii = '';
for (let i = 0; i < 10_000_000; i++) ascii += String.fromCharCode(33 + (next() % 94));
let cjk = '';
for (let i = 0; i < 10_000_000; i++) cjk += String.fromCharCode(0x4e00 + (next() % 20000));
const english = 'The quick brown fox jumps over the lazy dog, and then it naps. '.repeat(160_000);

const cases = [
  ['300k a (one word)', 'a'.repeat(300_000)],
  ['10M a (one word)', 'a'.repeat(10_000_000)],
  ['40k CJK', cjk.slice(0, 40_000)],
  ['10M CJK', cjk],
  ['32k random ASCII', ascii.slice(0, 32_768)],
  ['10M random ASCII', ascii],
  ['10M English', english],
  ['10M spaces', ' '.repeat(10_000_000)],
];
const time = (f) => {
  let best = Infinity;
  let n = 0;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    n = f();
    best = Math.min(best, performance.now() - t);
  }
  return [best, n];
};
console.log('input'.padEnd(22), 'chars'.padStart(10), 'gateway ms'.padStart(11), 'tokens'.padStart(10), 'simulator ms'.padStart(13));
for (const [label, s] of cases) {
  const [g, n] = time(() => countTokens(s));
  const [sm] = time(() => countText(s));
  console.log(
    label.padEnd(22),
    String(s.length).padStart(10),
    g.toFixed(1).padStart(11),
    String(n).padStart(10),
    sm.toFixed(1).padStart(13),
  );
}
const [p, n] = time(() =>
  estimatePromptTokens({
    messages: Array.from({ length: 1000 }, (_, i) => ({ role: 'user', content: cjk.slice(i * 10_000, (i + 1) * 10_000) })),
  }),
);
console.log('prompt: 1000 msgs x 10k CJK', p.toFixed(1), 'ms', n, 'tokens');
