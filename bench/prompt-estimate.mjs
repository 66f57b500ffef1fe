// CPU per prompt estimate (admission's token reservation): an agent turn that repeats its system
// prompt and history with one new message, and the bench's one-line prompt. Build first.
//   node bench/prompt-estimate.mjs
import { estimatePromptTokens } from '../dist/protocols/prompt-estimate.js';
const sys =
  'You are a helpful assistant for an online shop. Answer briefly, cite the order number, and never invent a tracking code. '.repeat(20);
const history = Array.from({ length: 20 }, (_, i) => ({
  role: i % 2 ? 'assistant' : 'user',
  content: `Turn ${i}: ` + 'Where is my parcel and when will it arrive at the depot near the station? '.repeat(5),
}));
const mk = (i) => ({
  model: 'm',
  messages: [{ role: 'system', content: sys }, ...history, { role: 'user', content: `new question ${i} about the parcel` }],
});
const bench = (name, f, n) => {
  f(0);
  const bodies = Array.from({ length: n }, (_, i) => f.make(i + 1));
  const t0 = process.cpuUsage();
  for (const b of bodies) estimatePromptTokens(b);
  const t = process.cpuUsage(t0);
  console.log(name, ((t.user + t.system) / n).toFixed(1), 'µs/estimate');
};
const agent = (i) => estimatePromptTokens(agent.make(i));
agent.make = (i) => JSON.parse(JSON.stringify(mk(i)));
bench('agent turn (system 2.4 KB + 20 turns ~7 KB + new msg)', agent, 2000);
const small = (i) => estimatePromptTokens(small.make(i));
small.make = () => JSON.parse(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello there how are you' }] }));
bench('bench prompt', small, 20000);
