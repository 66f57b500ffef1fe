// A forced full GC in another Node process, through its inspector (started with
// --inspect=127.0.0.1:0), then its process.memoryUsage(): the live heap, without the
// garbage that happens to be waiting for the next major GC. The memory soak uses it to tell
// a leak (the live heap keeps growing) from V8 sizing its heap (RSS grows, then plateaus).
import { WebSocket } from 'undici';

/** The inspector's WebSocket URL from a process's stderr text ("Debugger listening on ws://..."). */
export function inspectorUrl(stderrText) {
  return /Debugger listening on (ws:\/\/\S+)/.exec(stderrText)?.[1];
}

export async function gcAndMemory(wsUrl, timeoutMs = 10_000) {
  const ws = new WebSocket(wsUrl);
  const timer = setTimeout(() => ws.close(), timeoutMs);
  try {
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`inspector ${wsUrl} unreachable`));
    });
    let id = 0;
    const pending = new Map();
    ws.onmessage = (e) => {
      const m = JSON.parse(String(e.data));
      if (m.id && pending.has(m.id)) {
        pending.get(m.id)(m);
        pending.delete(m.id);
      }
    };
    ws.onclose = () => {
      for (const r of pending.values()) r({ error: { message: 'inspector closed' } });
    };
    const call = (method, params = {}) =>
      new Promise((resolve) => {
        const i = ++id;
        pending.set(i, resolve);
        ws.send(JSON.stringify({ id: i, method, params }));
      });
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    if (r.error || !r.result?.result?.value) throw new Error(`inspector: ${r.error?.message ?? 'no value'}`);
    return JSON.parse(r.result.result.value);
  } finally {
    clearTimeout(timer);
    ws.close();
  }
}
