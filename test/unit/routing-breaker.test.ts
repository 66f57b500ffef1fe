// The breaker state machine on a fake clock: every transition, the growing and capped
// cooldown, probes, and the rolling window's buckets.
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, RollingWindow, type Permit, type Transition } from '../../src/routing/breaker.js';
import { BreakerRegistry } from '../../src/routing/registry.js';
import { backoffMs } from '../../src/routing/retry.js';
import type { CircuitBreakerConfig } from '../../src/config/schema.js';

const CFG: CircuitBreakerConfig = {
  window_s: 10,
  min_requests: 4,
  error_rate: 0.5,
  cooldown_s: 5,
  max_cooldown_s: 12,
  half_open_probes: 2,
};

function setup(cfg: Partial<CircuitBreakerConfig> = {}) {
  let now = 1_000_000;
  const transitions: Transition[] = [];
  const b = new CircuitBreaker({ ...CFG, ...cfg }, now, (t) => transitions.push(t));
  const clock = {
    get now() {
      return now;
    },
    advance(ms: number) {
      now += ms;
    },
  };
  /** One request through the breaker with the given outcome; false if refused. */
  const send = (outcome: 'success' | 'local_error' | 'status_error' | 'neutral'): boolean => {
    const p = b.acquire(now);
    if (!p) return false;
    b.record(p, outcome, now);
    return true;
  };
  return { b, clock, transitions, send };
}

/** Opens a fresh breaker: min_requests errors. */
function trip(s: ReturnType<typeof setup>) {
  for (let i = 0; i < CFG.min_requests; i++) s.send('status_error');
}

describe('CircuitBreaker', () => {
  it('stays closed below min_requests, whatever the error rate', () => {
    const s = setup();
    for (let i = 0; i < CFG.min_requests - 1; i++) expect(s.send('status_error')).toBe(true);
    expect(s.b.state).toBe('closed');
  });

  it('opens when the window has min_requests and the error rate reaches error_rate', () => {
    const s = setup();
    s.send('success');
    s.send('success');
    s.send('local_error');
    expect(s.b.state).toBe('closed'); // 1/3, and only 3 requests
    s.send('status_error'); // 2/4 = 0.5 ≥ 0.5
    expect(s.b.state).toBe('open');
    expect(s.transitions).toHaveLength(1);
    expect(s.transitions[0]).toMatchObject({
      from: 'closed',
      to: 'open',
      reason: 'error_rate',
      errorRate: 0.5,
      requests: 4,
      localErrors: 1,
      statusErrors: 1,
      cooldownMs: 5000,
      openings: 1,
    });
    expect(s.send('success')).toBe(false); // refuses traffic while open
  });

  it('neutral outcomes (client 4xx, client abort) are not counted at all', () => {
    const s = setup();
    for (let i = 0; i < 50; i++) s.send('neutral');
    expect(s.b.window.requests).toBe(0);
    expect(s.b.state).toBe('closed');
  });

  it('old outcomes slide out of the window (buckets, not a growing list)', () => {
    const s = setup();
    for (let i = 0; i < 3; i++) s.send('status_error');
    expect(s.b.window.requests).toBe(3);
    s.clock.advance(CFG.window_s * 1000 + 1);
    s.send('status_error'); // the other three expired: 1 request, below min_requests
    expect(s.b.window.requests).toBe(1);
    expect(s.b.state).toBe('closed');
  });

  it('goes half-open after the cooldown; all probes succeeding close it with a fresh window', () => {
    const s = setup();
    trip(s);
    s.clock.advance(4999);
    expect(s.b.admits(s.clock.now)).toBe(false);
    expect(s.b.nextProbeInMs(s.clock.now)).toBe(1);
    s.clock.advance(1);
    // Exactly half_open_probes requests are let through while the probes are out.
    const p1 = s.b.acquire(s.clock.now)!;
    const p2 = s.b.acquire(s.clock.now)!;
    expect(s.b.state).toBe('half_open');
    expect(p1.probe && p2.probe).toBe(true);
    expect(s.b.acquire(s.clock.now)).toBeUndefined();
    s.b.record(p1, 'success', s.clock.now);
    expect(s.b.state).toBe('half_open');
    s.b.record(p2, 'success', s.clock.now);
    expect(s.b.state).toBe('closed');
    expect(s.b.window.requests).toBe(0);
    expect(s.transitions.map((t) => `${t.from}>${t.to}:${t.reason}`)).toEqual([
      'closed>open:error_rate',
      'open>half_open:cooldown_elapsed',
      'half_open>closed:probes_succeeded',
    ]);
  });

  it('a failed probe reopens it with a longer cooldown, growing per consecutive opening up to max_cooldown_s', () => {
    const s = setup();
    trip(s);
    const cooldowns = [s.b.cooldownMs];
    for (let i = 0; i < 4; i++) {
      s.clock.advance(s.b.cooldownMs);
      expect(s.send('local_error')).toBe(true); // the probe fails
      expect(s.b.state).toBe('open');
      cooldowns.push(s.b.cooldownMs);
    }
    // cooldown_s × openings (as Envoy's ejection time), capped at max_cooldown_s = 12.
    expect(cooldowns).toEqual([5000, 10000, 12000, 12000, 12000]);
    expect(s.b.openings).toBe(5);
  });

  it('reopening soon after closing keeps growing; a quiet max_cooldown_s resets the growth', () => {
    const s = setup();
    trip(s);
    s.clock.advance(5000);
    s.send('success');
    s.send('success');
    expect(s.b.state).toBe('closed');
    trip(s); // right away: second consecutive opening
    expect(s.b.cooldownMs).toBe(10000);
    s.clock.advance(10000);
    s.send('success');
    s.send('success');
    s.clock.advance(12000); // closed for max_cooldown_s
    trip(s);
    expect(s.b.openings).toBe(1);
    expect(s.b.cooldownMs).toBe(5000);
  });

  it('a probe that ends neutral (client left) frees its slot without deciding anything', () => {
    const s = setup();
    trip(s);
    s.clock.advance(5000);
    const p1 = s.b.acquire(s.clock.now)!;
    const p2 = s.b.acquire(s.clock.now)!;
    expect(s.b.admits(s.clock.now)).toBe(false);
    s.b.record(p1, 'neutral', s.clock.now);
    expect(s.b.state).toBe('half_open');
    expect(s.b.admits(s.clock.now)).toBe(true);
    s.b.record(p2, 'success', s.clock.now);
    s.send('success');
    expect(s.b.state).toBe('closed');
  });

  it('outcomes of requests let through before it opened do not decide a half-open period', () => {
    const s = setup();
    const early: Permit = s.b.acquire(s.clock.now)!;
    trip(s);
    s.clock.advance(5000);
    expect(s.b.refresh(s.clock.now)).toBe('half_open');
    s.b.record(early, 'status_error', s.clock.now); // a long stream started while closed, failing now
    expect(s.b.state).toBe('half_open');
  });

  it('records each permit once', () => {
    const s = setup();
    const p = s.b.acquire(s.clock.now)!;
    s.b.record(p, 'status_error', s.clock.now);
    s.b.record(p, 'status_error', s.clock.now);
    expect(s.b.window.requests).toBe(1);
  });

  it('forced open holds (no probes) until forced closed, which starts afresh', () => {
    const s = setup();
    s.b.force('open', s.clock.now);
    expect(s.b.state).toBe('open');
    s.clock.advance(3_600_000);
    expect(s.b.admits(s.clock.now)).toBe(false);
    expect(s.b.nextProbeInMs(s.clock.now)).toBeUndefined();
    s.b.force('closed', s.clock.now);
    expect(s.b.state).toBe('closed');
    expect(s.b.openings).toBe(0);
    expect(s.send('success')).toBe(true);
    expect(s.transitions.map((t) => t.reason)).toEqual(['forced', 'forced']);
  });
});

describe('RollingWindow', () => {
  it('uses 1 s buckets for a 30 s window and 10 buckets for short ones', () => {
    expect(new RollingWindow(30_000, 0)).toMatchObject({ buckets: 30, bucketMs: 1000 });
    expect(new RollingWindow(2_000, 0)).toMatchObject({ buckets: 10, bucketMs: 200 });
    expect(new RollingWindow(600_000, 0)).toMatchObject({ buckets: 60, bucketMs: 10_000 });
  });

  it('expires bucket by bucket', () => {
    const w = new RollingWindow(10_000, 0);
    w.add(0, 'status_error');
    w.add(3_000, 'local_error');
    w.add(6_000, 'success');
    expect([w.requests, w.statusErrors, w.localErrors]).toEqual([3, 1, 1]);
    w.advance(10_000); // the bucket of t=0 slid out
    expect([w.requests, w.statusErrors, w.localErrors]).toEqual([2, 0, 1]);
    w.advance(13_000);
    expect([w.requests, w.localErrors]).toEqual([1, 0]);
    expect(w.errorRate(1_000_000)).toBe(0);
    expect(w.requests).toBe(0);
  });
});

describe('BreakerRegistry', () => {
  it('keeps breakers of deployments that survive a sync (policy reload) and drops the others', () => {
    let now = 0;
    const reg = new BreakerRegistry(() => now);
    const a = { id: { model: 'm', backend: 'A', upstreamModel: 'x' }, config: CFG };
    const b = { id: { model: 'm', backend: 'B', upstreamModel: 'x' }, config: CFG };
    const [ba] = reg.sync([a, b]);
    ba!.force('open', now);
    now += 1000;
    const [again] = reg.sync([a]);
    expect(again).toBe(ba);
    expect(again!.state).toBe('open');
    expect(reg.size).toBe(1);
    expect(reg.view()[0]).toMatchObject({ model: 'm', backend: 'A', state: 'open', forced: true });
  });
});

describe('backoffMs', () => {
  it('is full jitter under an exponential cap', () => {
    const cfg = { backoff_ms: 100, max_backoff_ms: 1000 };
    expect(backoffMs(0, cfg, () => 0.999)).toBeCloseTo(99.9);
    expect(backoffMs(3, cfg, () => 0.5)).toBe(400);
    expect(backoffMs(10, cfg, () => 0.5)).toBe(500);
    expect(backoffMs(2, cfg, () => 0)).toBe(0);
  });
});
