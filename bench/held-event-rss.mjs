// Peak RSS of a gateway process (dist/main.js) while an upstream streams 40 MiB in one SSE
// event that has no blank line, next to 40 MiB of well-formed 64 KiB events (the baseline).
// Issue [8] item 7: 0.1.0 went from 76 to 305 MiB on the first; the scanner now holds at
// most 1 MiB of an unfinished event. Usage: npm run build && node bench/held-event-rss.mjs
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MIB = 1024 * 1024;
const PIECES = 640; // x 64 KiB = 40 MiB

function upstream(oneEvent) {
  return createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' + (oneEvent ? 'data: {"x":"' : ''));
      const piece = oneEvent
        ? Buffer.alloc(64 * 1024, 0x61)
        : Buffer.concat([Buffer.from('data: {"x":"'), Buffer.alloc(64 * 1024 - 16, 0x61), Buffer.from('"}\n\n')]);
      let n = 0;
      const write = () => {
        while (n < PIECES) {
          n++;
          if (!res.write(piece)) return res.once('drain', write);
        }
        res.end((oneEvent ? '"}\n\n' : '') + 'data: [DONE]\n\n');
      };
      write();
    });
  });
}

async function measure(oneEvent) {
  const up = upstream(oneEvent);
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const dir = mkdtempSync(join(tmpdir(), 'held-rss-'));
  const policies = join(dir, 'p.yaml');
  writeFileSync(
    policies,
    `backends:\n  up: { type: openai, base_url: "http://127.0.0.1:${up.address().port}/v1" }\nmodels:\n  m: { deployments: [{ backend: up }] }\n`,
  );
  const child = spawn(process.execPath, ['dist/main.js', '--policies', policies, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => {
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += c;
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
  });
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
  await new Promise((r) => setTimeout(r, 500));
  const before = rss();
  let peak = before;
  const t = setInterval(() => (peak = Math.max(peak, rss())), 20);
  const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  let bytes = 0;
  for await (const c of r.body) bytes += c.length;
  clearInterval(t);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  up.close();
  rmSync(dir, { recursive: true, force: true });
  return { bytes, before, peak };
}

for (const [name, oneEvent] of [
  ['one 40 MiB event, no blank line', true],
  ['40 MiB of 64 KiB events (baseline)', false],
]) {
  const m = await measure(oneEvent);
  console.log(
    `${name}: client got ${(m.bytes / MIB).toFixed(1)} MiB; gateway RSS ${m.before.toFixed(0)} -> peak ${m.peak.toFixed(0)} MiB (+${(m.peak - m.before).toFixed(0)})`,
  );
}
