// Fault injection: the shapes, validation (faults arrive as JSON over HTTP), and the
// per-request decision of which fault, if any, applies.

export type Fault =
  | { kind: 'status'; status: number; body?: unknown; retryAfterS?: number; rate?: number }
  | { kind: 'hang'; rate?: number }
  | { kind: 'reset'; rate?: number }
  | { kind: 'die_mid_stream'; afterChunks: number; rate?: number }
  | { kind: 'error_mid_stream'; afterChunks: number; rate?: number }
  | { kind: 'slow_first_token'; ttftMs: number; rate?: number }
  | { kind: 'fail_times'; times: number; status: number; retryAfterS?: number }
  | { kind: 'context_length'; rate?: number };

/** What a request actually does once the dice are rolled. */
export type Action =
  | { kind: 'status'; status: number; body?: unknown; retryAfterS?: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'die_mid_stream'; afterChunks: number }
  | { kind: 'error_mid_stream'; afterChunks: number }
  | { kind: 'slow_first_token'; ttftMs: number }
  | { kind: 'context_length' };

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const optNum = (v: unknown) => v === undefined || isNum(v);

/** Validate untrusted JSON as a Fault; throws an Error whose message names the problem. */
export function parseFault(v: unknown): Fault {
  if (!v || typeof v !== 'object') throw new Error('fault must be an object');
  const f = v as Record<string, unknown>;
  const ok = (cond: boolean, what: string) => {
    if (!cond) throw new Error(`fault ${String(f.kind)}: ${what}`);
  };
  ok(optNum(f.rate) && (f.rate === undefined || (f.rate >= 0 && f.rate <= 1)), 'rate must be 0..1');
  switch (f.kind) {
    case 'status':
      ok(isNum(f.status) && f.status >= 100 && f.status <= 599, 'status must be 100..599');
      ok(optNum(f.retryAfterS), 'retryAfterS must be a number');
      break;
    case 'fail_times':
      ok(isNum(f.times) && f.times >= 0, 'times must be >= 0');
      ok(isNum(f.status) && f.status >= 100 && f.status <= 599, 'status must be 100..599');
      ok(optNum(f.retryAfterS), 'retryAfterS must be a number');
      break;
    case 'die_mid_stream':
    case 'error_mid_stream':
      ok(isNum(f.afterChunks) && f.afterChunks >= 0, 'afterChunks must be >= 0');
      break;
    case 'slow_first_token':
      ok(isNum(f.ttftMs) && f.ttftMs >= 0, 'ttftMs must be >= 0');
      break;
    case 'hang':
    case 'reset':
    case 'context_length':
      break;
    default:
      throw new Error(`unknown fault kind ${JSON.stringify(f.kind)}`);
  }
  return f as unknown as Fault;
}

const hit = (rate: number | undefined) => rate === undefined || rate >= 1 || Math.random() < rate;

/** Roll a stateless fault's dice. fail_times is stateful and handled by the caller. */
export function roll(f: Exclude<Fault, { kind: 'fail_times' }>): Action | null {
  if (!hit(f.rate)) return null;
  const { rate: _rate, ...action } = f;
  return action;
}

/** Status fault from a fail_times fault whose count has not run out. */
export function failTimesAction(f: Extract<Fault, { kind: 'fail_times' }>): Action {
  return { kind: 'status', status: f.status, retryAfterS: f.retryAfterS };
}
