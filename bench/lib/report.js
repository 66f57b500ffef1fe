// Tables for the terminal (and, with markdown: true, for docs/performance.md) and the PASS/MISS
// verdict on each target.
import { MB } from './stats.js';

const KB = 1024;

function fmt(v, digits = 2) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  if (typeof v === 'string') return v;
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(digits);
}
/** ", median of N rounds" when targets were taken in turn more than once. */
const roundsNote = (st) => (st.rounds > 1 ? `, median of ${st.rounds} rounds taken in turn` : '');
/** Each round's req/s, in the order the rounds ran. */
const byRound = (r) => (Array.isArray(r.rounds_rps) ? r.rounds_rps.map((v) => fmt(v, 0)).join(' / ') : '-');
const signed = (v, d = 2) => (v === undefined || v === null || Number.isNaN(v) ? '-' : `${v >= 0 ? '+' : ''}${fmt(v, d)}`);
const mb = (b) => (Number.isFinite(b) ? (b / MB).toFixed(1) : '-');
const pct = (r) => (Number.isFinite(r) ? `${(r * 100).toFixed(0)}%` : '-');

/** align: one 'l' or 'r' per column (default: first column left, the rest right). */
/** The gateway's own overhead histogram next to what the bench measures as gateway - bare. */
function overheadLine(o, vsBare, what) {
  const bare = vsBare
    ? `gateway − bare ${what}: p50 ${signed(vsBare.p50, 3)} ms, p99 ${signed(vsBare.p99, 3)} ms`
    : 'no bare run to compare';
  return `gateway overhead as it measures itself (llm_gateway_overhead_seconds, ${o.n} requests): p50 ${fmt(o.p50, 3)} ms, p99 ${fmt(o.p99, 3)} ms; ${bare}`;
}

export function table(head, rows, { markdown = false, align } = {}) {
  const cells = [head, ...rows].map((r) => r.map((c) => String(c ?? '-')));
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const left = (i) => (align ? align[i] === 'l' : i === 0);
  const pad = (c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]));
  const line = (r) => (markdown ? `| ${r.map(pad).join(' | ')} |` : r.map(pad).join('  ').trimEnd());
  const out = [line(cells[0])];
  out.push(
    markdown
      ? `| ${widths.map((w, i) => (left(i) ? '-'.repeat(w) : `${'-'.repeat(Math.max(1, w - 1))}:`)).join(' | ')} |`
      : widths.map((w) => '-'.repeat(w)).join('  '),
  );
  for (const r of cells.slice(1)) out.push(line(r));
  return out.join('\n');
}

function errs(r) {
  const n = (r.non2xx ?? 0) + (r.errors ?? 0) + (r.timeouts ?? 0) + (r.failed ?? 0);
  return String(n);
}

/** Every scenario's table, as text. */
/** The max-rate table of throughput and features: req/s (each round too), ratios to bare and to `second`, latency, CPU. */
function maxRateTable(targets, second, markdown) {
  return table(
    ['target', 'req/s', 'by round', 'vs bare', `vs ${second}`, 'p50 ms', 'p99 ms', 'proxy CPU µs/req', 'Redis CPU µs/req', 'errors'],
    Object.entries(targets).map(([n, r]) => [
      n,
      fmt(r.rps, 0),
      byRound(r),
      pct(r.vs_bare),
      pct(r[`vs_${second}`]),
      fmt(r.latency_ms?.p50),
      fmt(r.latency_ms?.p99),
      fmt(r.proxy_cpu_us_per_request, 0),
      r.redis_cpu_us_per_request === undefined ? '-' : fmt(r.redis_cpu_us_per_request, 0),
      errs(r),
    ]),
    { markdown },
  );
}

/**
 * The gateway policy behind a table: shipped defaults (backend and model only), or each
 * setting beyond them with its reason. Nothing for a remote target or a run without one.
 */
export function knobLines(knobs) {
  const entries = Object.entries(knobs ?? {});
  if (!entries.length) return [];
  const plain = entries.filter(([, k]) => !k.length).map(([n]) => n);
  const out = [];
  if (plain.length) out.push(`policy of ${plain.join(', ')}: backend and model only (every other setting at its shipped default)`);
  for (const [n, list] of entries) for (const k of list) out.push(`policy of ${n} also sets ${k.knob}: ${k.reason}`);
  return out;
}

export function renderTables(results, { markdown = false } = {}) {
  const s = results.scenarios;
  const parts = [];
  let pendingKnobs;
  const flushKnobs = () => {
    for (const l of knobLines(pendingKnobs)) parts.push(markdown ? `\n_${l}_` : `  ${l}`);
    pendingKnobs = undefined;
  };
  const h = (title, sc) => {
    flushKnobs();
    pendingKnobs = sc?.gateway_knobs;
    parts.push(markdown ? `\n**${title}**\n` : `\n== ${title}`);
  };
  if (s.throughput?.targets) {
    const st = s.throughput.settings;
    h(`throughput: non-streamed, ${st.connections} connections, max rate, ${st.duration_s} s per target${roundsNote(st)}`, s.throughput);
    parts.push(maxRateTable(s.throughput.targets, 'direct', markdown));
  }
  if (s.latency?.targets) {
    const st = s.latency.settings;
    h(
      `latency: ${st.rate} req/s (${st.client}), ${st.duration_s} s per target; added = this target's percentile minus the reference's`,
      s.latency,
    );
    parts.push(
      table(
        ['target', 'p50 ms', 'p99 ms', 'p99.9 ms', '+p50 vs direct', '+p99 vs direct', '+p99 vs bare', 'proxy CPU µs/req', 'errors'],
        Object.entries(s.latency.targets).map(([n, r]) => [
          n,
          fmt(r.latency_ms?.p50, 3),
          fmt(r.latency_ms?.p99, 3),
          fmt(r.latency_ms?.p99_9, 3),
          signed(r.added_vs_direct_ms?.p50, 3),
          signed(r.added_vs_direct_ms?.p99, 3),
          n === 'bare' || n === 'direct' ? '-' : signed(r.added_vs_bare_ms?.p99, 3),
          fmt(r.proxy_cpu_us_per_request, 0),
          errs(r),
        ]),
        { markdown },
      ),
    );
    const g = s.latency.targets.gateway;
    if (g?.gateway_overhead_ms?.n) parts.push(overheadLine(g.gateway_overhead_ms, g.added_vs_bare_ms, 'latency'));
  }
  for (const [key, sc] of Object.entries(s)) {
    if (!(key.startsWith('streams') || key.startsWith('responses_') || key.startsWith('messages_')) || !sc?.targets) continue;
    const st = sc.settings;
    const timing = st.sim
      ? `TTFT ${st.sim.ttft_ms} ms, TPOT ${st.sim.tpot_ms} ms, ${st.sim.output_tokens} tokens`
      : `timing set by the target, max_tokens ${st.max_tokens}`;
    const ideal = st.ideal_chunks_per_s ? ` (ideal ${fmt(st.ideal_chunks_per_s, 0)} chunks/s)` : '';
    const title =
      st.api === 'responses' ? 'responses (POST /v1/responses)' : st.api === 'messages' ? 'messages (POST /v1/messages)' : 'streams';
    h(`${title}: ${st.streams} concurrent, ${timing}, ${st.duration_s} s per target${ideal}; chunk delay = client arrival − sim_ts`, sc);
    parts.push(
      table(
        [
          'target',
          'TTFT p50',
          'TTFT p99',
          '+TTFT p50',
          '+TTFT p99',
          'delay p50',
          'delay p99',
          '+p99 vs direct',
          '+p99 vs bare',
          'chunks/s',
          'of ideal',
          'proxy CPU µs/chunk',
          'errors',
        ],
        Object.entries(sc.targets).map(([n, r]) => [
          n,
          fmt(r.ttft_ms?.p50, 2),
          fmt(r.ttft_ms?.p99, 2),
          n === 'direct' ? '-' : signed(r.added_ttft_vs_direct_ms?.p50, 2),
          n === 'direct' ? '-' : signed(r.added_ttft_vs_direct_ms?.p99, 2),
          fmt(r.chunk_delay_ms?.p50, 3),
          fmt(r.chunk_delay_ms?.p99, 3),
          n === 'direct' ? '-' : signed(r.added_chunk_delay_vs_direct_ms?.p99, 3),
          n === 'direct' || n === 'bare' ? '-' : signed(r.added_chunk_delay_vs_bare_ms?.p99, 3),
          fmt(r.chunks_per_s, 0),
          st.ideal_chunks_per_s ? pct(r.chunks_per_s / st.ideal_chunks_per_s) : '-',
          r.rounds_cpu_us_per_chunk
            ? `${fmt(r.proxy_cpu_us_per_chunk, 1)} (${r.rounds_cpu_us_per_chunk.map((v) => fmt(v, 1)).join(' / ')})`
            : fmt(r.proxy_cpu_us_per_chunk, 1),
          errs(r),
        ]),
        { markdown },
      ),
    );
    const g = sc.targets.gateway;
    if (g?.gateway_overhead_ms?.n) parts.push(overheadLine(g.gateway_overhead_ms, g.added_ttft_vs_bare_ms, 'TTFT'));
    const pc = sc.paired_cpu;
    if (pc)
      parts.push(
        `side by side (both at once on the proxy core, ${pc.warmup_s} s warm-up, ${pc.rounds.length} rounds of ${pc.round_s} s): ` +
          `proxy CPU µs/chunk bare ${fmt(pc.bare_us_per_chunk, 1)}, gateway ${fmt(pc.gateway_us_per_chunk, 1)}; ` +
          `gateway/bare by round ${pc.rounds.map((r) => fmt(r.ratio, 3)).join(' / ')}, median ${fmt(pc.median_ratio, 3)}`,
      );
    const m = Object.entries(sc.measurement ?? {});
    if (m.length) {
      parts.push(
        (markdown ? '\n' : '') +
          table(
            [
              'gateway measurement',
              'compared',
              'TPOT abs err p50',
              'TPOT abs err p99',
              'TTFT abs err p50',
              'TTFT abs err p99',
              'TTFT bracket viol. p99',
              'queue_ms p50',
              'queue_ms p99',
              'missing logs',
            ],
            m.map(([n, e]) => [
              n,
              e.compared,
              fmt(e.tpot_abs_error_ms?.p50, 4),
              fmt(e.tpot_abs_error_ms?.p99, 4),
              fmt(e.ttft_abs_error_ms?.p50, 3),
              fmt(e.ttft_abs_error_ms?.p99, 3),
              fmt(e.ttft_bracket_violation_ms?.p99, 3),
              fmt(e.queue_ms?.p50, 3),
              fmt(e.queue_ms?.p99, 3),
              e.missing_log_lines,
            ]),
            { markdown },
          ),
      );
    }
  }
  if (s.features?.targets) {
    const st = s.features.settings;
    h(
      `features: throughput as above (${st.connections} connections), gateway with keys, limits, budgets, breaker${roundsNote(st)}`,
      s.features,
    );
    parts.push(maxRateTable(s.features.targets, 'gateway', markdown));
    for (const [name, pc] of Object.entries(s.features.paired_cpu ?? {}))
      parts.push(
        `side by side with bare (both at once on the proxy core, ${pc.warmup_s} s warm-up, ${pc.rounds.length} rounds of ${pc.round_s} s): ` +
          `proxy CPU µs/request bare ${fmt(pc.bare_us_per_request, 1)}, ${name} ${fmt(pc.gateway_us_per_request, 1)}` +
          (pc.redis_us_per_request === undefined ? '' : ` (+ Redis ${fmt(pc.redis_us_per_request, 1)})`) +
          `; gateway/bare by round ${pc.rounds.map((r) => fmt(r.ratio, 3)).join(' / ')}, median ${fmt(pc.median_ratio, 3)}: ` +
          `${pct(pc.capacity_vs_bare)} of bare's capacity`,
      );
    for (const note of s.features.notes ?? []) parts.push(`note: ${note}`);
  } else if (s.features?.skipped) parts.push(`\nfeatures: skipped (${s.features.skipped})`);
  if (s.memory?.targets) {
    const st = s.memory.settings;
    const levels = st.streams.map(String);
    h(
      `memory (RSS MiB; ${st.rss_source}): idle, with N open streams, per-stream cost, and across a soak of ${st.soak_requests.toLocaleString('en-US')} requests`,
      s.memory,
    );
    parts.push(
      table(
        [
          'target',
          st.remote ? 'at start' : 'idle',
          ...levels.map((l) => `${l} streams`),
          'KiB/stream',
          `after ${st.soak_first / 1000}k req`,
          'after soak',
          'growth',
          'live heap: idle',
          'after soak',
          'drained',
        ],
        Object.entries(s.memory.targets).map(([n, r]) => {
          const per = perStream(r);
          return [
            n,
            r.rss_bytes?.idle_after_gc !== undefined
              ? `${mb(r.rss_bytes.idle)} (GC: ${mb(r.rss_bytes.idle_after_gc)})`
              : mb(r.rss_bytes?.idle ?? r.rss_bytes?.start),
            ...levels.map((l) => mb(r.rss_bytes?.[l])),
            Number.isFinite(per) ? (per / KB).toFixed(1) : '-',
            mb(r.soak?.rss_after_first_bytes),
            mb(r.soak?.rss_end_bytes),
            r.soak
              ? `${signed(r.soak.growth_bytes / MB, 1)}${Number.isFinite(r.soak.growth_after_gc_bytes) ? ` (GC: ${signed(r.soak.growth_after_gc_bytes / MB, 1)})` : ''}`
              : '-',
            mb(r.soak?.live_heap_idle_bytes),
            mb(r.soak?.live_heap_last_bytes),
            mb(r.soak?.live_heap_drained_bytes),
          ];
        }),
        { markdown },
      ),
    );
  }
  flushKnobs();
  return parts.join('\n');
}

function perStream(r) {
  const p = r.per_stream_bytes ?? {};
  const marginal = Object.entries(p).find(([k]) => !k.endsWith('_vs_idle'));
  return marginal ? marginal[1] : Object.values(p)[0];
}

function streamsAt(s, want, pick, prefix = 'streams_') {
  const levels = Object.keys(s)
    .filter((k) => k.startsWith(prefix) && s[k]?.targets)
    .map((k) => s[k].settings.streams);
  if (!levels.length) return undefined;
  const n = levels.includes(want) ? want : pick(levels);
  return { n, sc: s[`${prefix}${n}`], exact: n === want };
}

/** PASS/MISS for each target of issue [4], from one run's figures (pass null: not judgeable in this run, said why). */
export function evaluate(results) {
  const s = results.scenarios;
  const out = [];
  const add = (id, what, value, limit, pass, unit, note) => out.push({ id, what, value, limit, unit, pass, note });

  const f = s.features?.targets;
  if (f?.['gateway+features'] && f.bare) {
    // Issue [11]: all features on the memory store >= 85% of bare, on Redis >= 70%.
    const cpuNote = (g, limit) => {
      const a = f.bare.proxy_cpu_us_per_request;
      const b = g.proxy_cpu_us_per_request;
      const redis = g.redis_cpu_us_per_request === undefined ? '' : `; Redis CPU ${fmt(g.redis_cpu_us_per_request, 0)} µs/req`;
      return a && b ? `≥ ${pct(limit)} (by CPU per request: ${pct(a / b)}${redis})` : `≥ ${pct(limit)}`;
    };
    // Judged on the side-by-side run where there is one: its CPU ratio is what each proxy can
    // serve at its own capacity. The rounds' req/s are capped by the load generator's core for
    // both, and read anywhere from 67% to 99% on the same build.
    const judge = (target, id, what, limit) => {
      const r = f[target];
      if (!r) return;
      const pc = s.features.paired_cpu?.[target];
      if (pc) {
        const redis = pc.redis_us_per_request === undefined ? '' : `, Redis ${fmt(pc.redis_us_per_request, 1)}`;
        add(
          id,
          `throughput: gateway with all features (${what}) / bare proxy, req/s at each one's capacity (side by side, bare/gateway CPU per request, median of ${pc.rounds.length} rounds)`,
          pc.capacity_vs_bare,
          limit,
          pc.capacity_vs_bare >= limit,
          'ratio',
          `≥ ${pct(limit)} (CPU µs/request bare ${fmt(pc.bare_us_per_request, 1)}, gateway ${fmt(pc.gateway_us_per_request, 1)}${redis}; req/s of the rounds in turn ${pct(r.vs_bare)})`,
        );
      } else
        add(
          id,
          `throughput: gateway with all features (${what}) / bare proxy req/s`,
          r.vs_bare,
          limit,
          r.vs_bare >= limit,
          'ratio',
          cpuNote(r, limit),
        );
    };
    judge('gateway+features', 'throughput', 'memory store', 0.85);
    judge('gateway+features(redis)', 'throughput_redis', 'redis store', 0.7);
    judge('gateway+features(redis,leased)', 'throughput_redis_leased', 'redis store, leased quota', 0.7);
  } else if (s.throughput?.targets?.gateway && s.throughput.targets.bare) {
    const r = s.throughput.targets.gateway.vs_bare;
    add(
      'throughput',
      'throughput: gateway (features scenario not run: no features) / bare proxy req/s',
      r,
      0.8,
      r >= 0.8,
      'ratio',
      '≥ 80%',
    );
  }

  const l = s.latency?.targets?.gateway?.added_vs_bare_ms;
  if (l)
    add(
      'latency',
      `latency: p99 the gateway adds over the bare proxy at ${s.latency.settings.rate} req/s`,
      l.p99,
      1,
      l.p99 <= 1,
      'ms',
      '≤ 1 ms',
    );

  const hi = streamsAt(s, 1000, (ls) => Math.max(...ls));
  const d = hi?.sc.targets.gateway?.added_chunk_delay_vs_bare_ms;
  if (d) {
    // When the machine cannot carry the offered chunks even through the bare proxy, every
    // target's delay is queueing on a saturated box, and their difference is noise either way.
    const ideal = hi.sc.settings.ideal_chunks_per_s;
    const bareRate = hi.sc.targets.bare?.chunks_per_s;
    const saturated = ideal && bareRate && bareRate < 0.95 * ideal;
    const what = `streams: p99 chunk delay the gateway adds over the bare proxy at ${hi.n} streams${hi.exact ? '' : ' (target is at 1000)'}`;
    if (saturated) {
      add(
        'streams',
        what,
        d.p99,
        1,
        null,
        'ms',
        `≤ 1 ms; not judged: the machine is saturated (bare proxy at ${pct(bareRate / ideal)} of the offered chunks/s)`,
      );
      // The same comparison at the highest level this machine does carry, for information.
      const carried = Object.keys(s)
        .filter((k) => k.startsWith('streams_') && s[k]?.targets?.gateway?.added_chunk_delay_vs_bare_ms)
        .map((k) => s[k])
        .filter((sc) => sc.settings.streams < hi.n && sc.targets.bare?.chunks_per_s >= 0.95 * sc.settings.ideal_chunks_per_s)
        .sort((a, b) => b.settings.streams - a.settings.streams)[0];
      if (carried) {
        const dc = carried.targets.gateway.added_chunk_delay_vs_bare_ms;
        add(
          'streams_carried',
          `streams: p99 chunk delay the gateway adds over the bare proxy at ${carried.settings.streams} streams (the highest level run that this machine carries)`,
          dc.p99,
          1,
          dc.p99 <= 1,
          'ms',
          '≤ 1 ms',
        );
      }
    } else add('streams', what, d.p99, 1, d.p99 <= 1, 'ms', '≤ 1 ms');
  }

  // Shipped defaults under many streams (issue [13]): the gateway, run with a policy naming
  // only its backend and model, must not queue streams the bare proxy carries.
  for (const [key, sc] of Object.entries(s)) {
    if (!key.startsWith('streams_') || !sc?.targets?.gateway || !sc.targets.bare) continue;
    const g = sc.targets.gateway;
    const b = sc.targets.bare;
    const n = sc.settings.streams;
    const plain = (sc.gateway_knobs?.gateway ?? []).length === 0;
    const policy = plain ? 'default policy' : 'policy beyond defaults';
    // A level the bare proxy cannot carry (below 90% of the offered chunks/s) compares two
    // processes starved of CPU: which one gets the cores decides it, in either direction
    // (seen: 75% and 166% on the same build). Those levels are shown, not judged.
    const offered = sc.settings.ideal_chunks_per_s;
    const starved = offered > 0 && b.chunks_per_s < 0.9 * offered;
    const why = starved
      ? `; not judged: the machine is saturated (bare proxy at ${pct(b.chunks_per_s / offered)} of the offered chunks/s)`
      : '';
    const dTtft = g.ttft_ms?.p50 - b.ttft_ms?.p50;
    if (Number.isFinite(dTtft))
      add(
        `streams_ttft_${n}`,
        `streams: client TTFT p50, gateway (${policy}) minus bare proxy, at ${n} streams`,
        dTtft,
        25,
        starved ? null : dTtft <= 25,
        'ms',
        `≤ 25 ms${why}`,
      );
    // CPU per chunk at 100 streams (issue [11]): within 1.15x of the bare proxy's. Judged on
    // the side-by-side run when there is one: rounds taken in turn drift more than the gap.
    const pc = sc.paired_cpu;
    const cpuRatio = pc ? pc.median_ratio : g.proxy_cpu_us_per_chunk / b.proxy_cpu_us_per_chunk;
    if (n === 100 && sc.settings.api === 'chat' && Number.isFinite(cpuRatio)) {
      const by = pc
        ? `, side by side, median of ${pc.rounds.length} rounds`
        : sc.settings.rounds > 1
          ? `, median of ${sc.settings.rounds} rounds in turn`
          : ', one round';
      add(
        'streams_cpu_100',
        `streams: proxy CPU per chunk, gateway / bare proxy, at 100 streams${by}`,
        cpuRatio,
        1.15,
        cpuRatio <= 1.15,
        'ratio',
        '≤ 1.15×',
      );
    }
    const ratio = b.chunks_per_s > 0 ? g.chunks_per_s / b.chunks_per_s : NaN;
    if (Number.isFinite(ratio))
      add(
        `streams_rate_${n}`,
        `streams: chunks/s, gateway (${policy}) / bare proxy, at ${n} streams`,
        ratio,
        0.9,
        starved ? null : ratio >= 0.9,
        'ratio',
        `≥ 90%${why}`,
      );
  }

  // The gateway's own TTFT/TPOT against the stream stamps, for chat and for the Responses API.
  for (const [prefix, id, label] of [
    ['streams_', '', 'measurement'],
    ['responses_', 'responses_', 'measurement (responses)'],
    ['messages_', 'messages_', 'measurement (messages)'],
  ]) {
    const lo = streamsAt(s, 100, (ls) => Math.min(...ls), prefix);
    const m = lo?.sc.measurement?.gateway;
    if (!m) continue;
    const sfx = lo.exact ? '' : ' (target is at 100)';
    if (m.tpot_abs_error_ms?.n)
      add(
        `${id}tpot_error`,
        `${label}: gateway TPOT absolute error p99 at ${lo.n} streams${sfx}`,
        m.tpot_abs_error_ms.p99,
        1,
        m.tpot_abs_error_ms.p99 <= 1,
        'ms',
        '≤ 1 ms',
      );
    const o = lo.sc.direct_overhead_ms;
    const noise = o ? `; estimator noise, direct overhead p99 − p50: ${fmt(o.p99 - o.p50, 3)} ms` : '';
    if (m.ttft_abs_error_ms?.n)
      add(
        `${id}ttft_error`,
        `${label}: gateway TTFT absolute error p99 at ${lo.n} streams (estimate)${sfx}`,
        m.ttft_abs_error_ms.p99,
        1,
        m.ttft_abs_error_ms.p99 <= 1,
        'ms',
        `≤ 1 ms${noise}`,
      );
    if (m.ttft_bracket_violation_ms?.n)
      add(
        `${id}ttft_bracket`,
        `${label}: gateway TTFT outside [sim TTFT, client TTFT], p99 at ${lo.n} streams${sfx}`,
        m.ttft_bracket_violation_ms.p99,
        1,
        m.ttft_bracket_violation_ms.p99 <= 1,
        'ms',
        '≤ 1 ms (noise-free lower bound of the error)',
      );
  }

  const g = s.memory?.targets?.gateway ?? s.memory?.targets?.target;
  if (g) {
    const gcIdle = g.rss_bytes?.idle_after_gc;
    const idle = gcIdle ?? g.rss_bytes?.idle;
    if (Number.isFinite(idle)) {
      const what =
        gcIdle !== undefined
          ? `memory: gateway idle RSS (after a forced GC; ${mb(g.rss_bytes.idle)} MiB before)`
          : 'memory: gateway idle RSS';
      // Plain policy: no optional module (tokenizer, Redis client, OTLP, insights) is loaded, and
      // the idle process must fit 64 MiB; the features policy loads the tokenizer's ranks.
      const plain = s.memory.settings?.gateway_policy === 'no keys, limits or budgets';
      const cap = plain ? 64 : 80;
      add(
        'memory_idle',
        `${what}${plain ? ', plain policy' : ', features policy'}`,
        idle / MB,
        cap,
        idle <= cap * MB,
        'MiB',
        `≤ ${cap} MiB`,
      );
    }
    const per = perStream(g);
    if (Number.isFinite(per))
      add('memory_per_stream', 'memory: gateway RSS per open stream', per / KB, 60, per <= 60 * KB, 'KiB', '≤ 60 KiB');
    if (g.soak) {
      const afterGc = Number.isFinite(g.soak.growth_after_gc_bytes);
      const first = afterGc ? g.soak.series[0].rss_after_gc_bytes : g.soak.rss_after_first_bytes;
      const growth = afterGc ? g.soak.growth_after_gc_bytes : g.soak.growth_bytes;
      const allowed = Math.max(8 * MB, 0.1 * first);
      const half = Number.isFinite(g.soak.second_half_growth_after_gc_bytes)
        ? `; from ${g.soak.second_half_from_requests.toLocaleString('en-US')}: ${signed(g.soak.second_half_growth_after_gc_bytes / MB, 1)} MiB`
        : '';
      add(
        'memory_soak',
        `memory: RSS growth from ${g.soak.series[0].requests.toLocaleString('en-US')} to ${g.soak.requests.toLocaleString('en-US')} requests${afterGc ? ` (after a forced GC; raw RSS ${signed(g.soak.growth_bytes / MB, 1)} MiB${half})` : ''}`,
        growth / MB,
        allowed / MB,
        growth <= allowed,
        'MiB',
        `≤ max(8 MiB, 10% of RSS after the first segment) = ${(allowed / MB).toFixed(1)} MiB`,
      );
      const idleHeap = g.soak.live_heap_idle_bytes;
      const left = g.soak.live_heap_drained_bytes;
      if (Number.isFinite(idleHeap) && Number.isFinite(left)) {
        const allowedHeap = Math.max(4 * MB, 0.1 * idleHeap);
        add(
          'memory_leak',
          `memory: live heap (forced GC) left by the soak once rate-limit windows expired, vs idle`,
          (left - idleHeap) / MB,
          allowedHeap / MB,
          left - idleHeap <= allowedHeap,
          'MiB',
          `≤ max(4 MiB, 10% of idle) = ${(allowedHeap / MB).toFixed(1)} MiB`,
        );
      }
    }
  }
  return out;
}

export function renderVerdicts(list, { markdown = false } = {}) {
  if (!list.length) return '';
  const rows = list.map((t) => [
    t.pass === null ? 'N/A' : t.pass ? 'PASS' : 'MISS',
    t.what,
    t.unit === 'ratio' ? pct(t.value) : `${fmt(t.value, 3)} ${t.unit}`,
    t.note,
  ]);
  return (
    (markdown ? '\n**targets**\n\n' : '\n== targets\n') +
    table(['', 'target', 'measured', 'limit'], rows, { markdown, align: ['l', 'l', 'r', 'l'] })
  );
}
