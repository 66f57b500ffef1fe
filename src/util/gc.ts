// V8's concurrent marking is turned off for the gateway's isolate (unless its node command line
// names the flag either way). Imported first by main.ts, so it is set before any other module
// runs (they are parsed before, not run); V8 reads the flag each time a marking cycle starts.
//
// Why: with concurrent marking on, what the isolate has loaded decides whether the gateway runs
// in a state where each scavenge finds ~2 MB of finished requests' objects still reachable and
// promotes them (95% promotion rate against ~10%, a mark-compact every few seconds). Loading
// ioredis, the OpenTelemetry SDK and exporters (OTLP export on), or even 4,000 `new Function`s
// puts it there: 1.24-1.32x the CPU per request, paired against the same build. Off, the
// gateway's own loads of them cost nothing measurable (the leased-quota Redis store 1.08x the
// memory store, was 1.27-1.34x), and a gateway that loads none of them is unchanged (1.01;
// streams 1.00). Marking then runs on the main thread in small incremental steps; under a
// one-core limit it shared that core anyway.
// docs/performance.md, "What the isolate loads, and V8's concurrent marking".
import { setFlagsFromString } from 'node:v8';

/** The V8 flags the gateway sets for itself: none that its node command line already names. */
export function gcFlags(execArgv: readonly string[]): string[] {
  const names = (flag: string) =>
    execArgv.some((a) => {
      const n = a.replace(/_/g, '-').split('=')[0];
      return n === `--${flag}` || n === `--no-${flag}`;
    });
  return names('concurrent-marking') ? [] : ['--no-concurrent-marking'];
}

for (const flag of gcFlags(process.execArgv)) setFlagsFromString(flag);
