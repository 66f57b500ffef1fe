#!/usr/bin/env node
// CPU per request of insights alone (npm run build first): one streamed chat response of 16
// tokens, as the simulator sends it, through begin → slice → settled, at quality.sample 1.0.
// `node bench/insights-micro.js` prints µs per request; compare with the features scenario's
// proxy_cpu_us_per_request (bench/results) for the share insights adds.
import pino from 'pino';
import { parsePolicies } from '../dist/config/load.js';
import { Insights } from '../dist/insights/index.js';
import { Metrics } from '../dist/telemetry/metrics.js';
const pol = parsePolicies(
  `
backends: { a: { base_url: "http://127.0.0.1:9/v1" } }
models: { m1: { deployments: [{ backend: a }] } }
insights: {}
`,
  't',
);
const ins = new Insights(new Metrics({ defaultMetrics: false }), pino({ level: 'silent' }));
ins.configure(pol);
const words = [' hello', ' world', ' the', ' gateway', ' is', ' a', ' fast', ' proxy'];
const chunks = [];
for (let i = 0; i < 16; i++)
  chunks.push(
    Buffer.from(
      `data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1,"model":"sim-model","choices":[{"index":0,"delta":{"content":${JSON.stringify(words[i % 8])}},"logprobs":null,"finish_reason":null}]}\n\n`,
    ),
  );
chunks.push(Buffer.from('data: {"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":16}}\n\ndata: [DONE]\n\n'));
const body = { model: 'm1', messages: [{ role: 'user', content: 'hello there, how are you' }] };
const raw = Buffer.from(JSON.stringify(body));
const rec = {
  endpoint: 'chat/completions',
  routed: true,
  backend: 'a',
  status: 200,
  receivedAt: 0,
  endedAt: 20,
  tokens: { input: 5, output: 16 },
  finishReason: 'stop',
};
const whole = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-abc',
    object: 'chat.completion',
    created: 1,
    model: 'sim-model',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: words.join('').repeat(2), refusal: null, annotations: [] },
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 5, completion_tokens: 16, total_tokens: 21 },
  }),
);
const cases = {
  'streamed, 16 chunks': (ri) => {
    for (const c of chunks) ri.slice.push(c);
  },
  'non-streamed (features bench shape)': (ri) => ri.slice.push(whole),
};
// Alternating passes, the median of each: the machine may be busy.
const N = 20000;
const runs = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let pass = 0; pass < 6; pass++) {
  for (const [name, feed] of Object.entries(cases)) {
    const one = () => {
      const ri = ins.begin(body, raw);
      feed(ri);
      ri.settled(rec, 'm1', 0.00001, 5, 1);
    };
    for (let i = 0; i < 2000; i++) one();
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) one();
    const t = process.cpuUsage(t0);
    runs[name].push((t.user + t.system) / N);
  }
}
for (const [name, v] of Object.entries(runs)) {
  v.sort((a, b) => a - b);
  console.log(`insights CPU per request, ${name}, quality.sample 1.0: ${v[v.length >> 1].toFixed(2)} us (median of ${v.length} passes)`);
}
