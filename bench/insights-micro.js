#!/usr/bin/env node
// CPU per request of insights alone (npm run build first): one streamed chat response of 16
// tokens, as the simulator sends it, through begin → slice → settled, at quality.sample 1.0.
// `node bench/insights-micro.js` prints µs per request; compare with the features scenario's
// proxy_cpu_us_per_request (bench/results) for the share insights adds.
import pino from 'pino';
import { parsePolicies } from '../dist/config/load.js';
import { Insights } from '../dist/insights/index.js';
import { Metrics } from '../dist/telemetry/metrics.js';
const pol = parsePolicies(`
backends: { a: { base_url: "http://127.0.0.1:9/v1" } }
models: { m1: { deployments: [{ backend: a }] } }
insights: {}
`, 't');
const ins = new Insights(new Metrics({ defaultMetrics: false }), pino({ level: 'silent' }));
ins.configure(pol);
const words = [' hello', ' world', ' the', ' gateway', ' is', ' a', ' fast', ' proxy'];
const chunks = [];
for (let i = 0; i < 16; i++) chunks.push(Buffer.from(`data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1,"model":"sim-model","choices":[{"index":0,"delta":{"content":${JSON.stringify(words[i % 8])}},"logprobs":null,"finish_reason":null}]}\n\n`));
chunks.push(Buffer.from('data: {"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":16}}\n\ndata: [DONE]\n\n'));
const body = { model: 'm1', messages: [{ role: 'user', content: 'hello there, how are you' }] };
const raw = Buffer.from(JSON.stringify(body));
const rec = { endpoint: 'chat/completions', routed: true, backend: 'a', status: 200, receivedAt: 0, endedAt: 20, tokens: { input: 5, output: 16 }, finishReason: 'stop' };
function one() { const ri = ins.begin(body, raw); for (const c of chunks) ri.slice.push(c); ri.settled(rec, 'm1', 0.00001, 5, 1); }
for (let i = 0; i < 20000; i++) one();
const N = 50000; const t0 = process.cpuUsage(); for (let i = 0; i < N; i++) one(); const t = process.cpuUsage(t0);
console.log('us per request (stream, sample 1.0):', ((t.user + t.system) / N).toFixed(2));
