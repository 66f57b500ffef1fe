// The live dashboard: one self-contained page (inline CSS and JS, no build step, no external
// asset). It polls GET /admin/stats (every 2 s, or ?interval_ms=N) with the session cookie and
// draws, per model, requests/s, error rate, TTFT and TPOT p50/p95 as inline SVG sparklines,
// plus spend against budgets and circuit-breaker badges. The HTML is a constant: no data is
// ever interpolated into it on the server, and the script inserts data with textContent and
// setAttribute only (never innerHTML), so a label value cannot become markup.
import { createHash } from 'node:crypto';

const STYLE = String.raw`
:root{--bg:#f5f6f8;--card:#fff;--ink:#1b2130;--muted:#6b7385;--line:#e2e5eb;--ok:#1f9d55;--warn:#c98a06;--bad:#d64545;--p50:#3166d4;--p95:#e08a2e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{display:flex;align-items:center;gap:14px;padding:12px 24px;background:var(--card);border-bottom:1px solid var(--line)}
header h1{margin:0;font-size:17px;font-weight:650;letter-spacing:-.01em}
header h1 span{color:var(--muted);font-weight:400}
.status{display:inline-flex;align-items:center;gap:6px;color:var(--muted);font-size:13px}
.status::before{content:"";width:8px;height:8px;border-radius:50%;background:var(--muted)}
.status.ok::before{background:var(--ok)}.status.bad{color:var(--bad)}.status.bad::before{background:var(--bad)}
.grow{flex:1}
main{padding:20px 24px;max-width:1280px;margin:0 auto}
h2{font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:22px 0 10px}
.tiles{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:12px}
.tile,.card{background:var(--card);border:1px solid var(--line);border-radius:10px}
.tile{padding:12px 14px;min-height:92px}
.lbl{font-size:12px;color:var(--muted)}
.val{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums;margin-top:2px;white-space:nowrap}
.sub{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
svg.spark{display:block;width:100%;height:34px;margin-top:6px;overflow:visible}
svg.spark path{fill:none;stroke-width:1.6;stroke-linejoin:round;stroke-linecap:round;vector-effect:non-scaling-stroke}
svg.spark .l0{stroke:var(--p50)}svg.spark .l1{stroke:var(--p95)}
svg.spark line{stroke:var(--line);stroke-width:1;vector-effect:non-scaling-stroke}
.models{display:grid;gap:14px}
.card{padding:14px 16px}
.card-head{display:flex;align-items:center;gap:10px;flex-wrap:wrap}
.card-head h3{margin:0;font-size:16px;font-weight:650;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;margin:8px 0 12px;color:var(--muted);font-size:13px;font-variant-numeric:tabular-nums}
.meta b{color:var(--ink);font-weight:600}
.charts{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px}
.charts .tile{background:#fafbfc;min-height:0}
.charts .val{font-size:18px}
.badge{display:inline-flex;align-items:center;gap:5px;padding:2px 9px;border-radius:999px;font-size:12px;font-weight:600;border:1px solid}
.badge.closed{color:#17703e;background:#e8f6ee;border-color:#b7e2c8}
.badge.half_open{color:#8a5c00;background:#fdf4e0;border-color:#f0d69a}
.badge.open{color:#a12f2f;background:#fdeaea;border-color:#f2bcbc}
.badge.unknown{color:var(--muted);background:#f0f1f4;border-color:var(--line)}
.legend{display:inline-flex;gap:8px;margin-left:6px}
.legend i{display:inline-block;width:10px;height:2px;vertical-align:middle;margin-right:3px}
.budgets{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.tile.budget{padding:12px 14px;min-height:0}
.budget .row{display:flex;justify-content:space-between;gap:8px;font-variant-numeric:tabular-nums}
.bar{height:8px;border-radius:4px;background:#edf0f4;margin-top:8px;overflow:hidden}
.bar div{height:100%;border-radius:4px;background:var(--ok);transition:width .4s}
.bar .warn{background:var(--warn)}.bar .bad{background:var(--bad)}
.empty{color:var(--muted);font-size:13px;padding:4px 0}
table.insights{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums;background:var(--card);border:1px solid var(--line);border-radius:10px}
table.insights th,table.insights td{padding:6px 10px;text-align:left;border-bottom:1px solid var(--line)}
footer{max-width:1280px;margin:8px auto 24px;padding:0 24px;color:var(--muted);font-size:12px}
@media (max-width:900px){.tiles{grid-template-columns:repeat(2,minmax(0,1fr))}.charts{grid-template-columns:repeat(2,minmax(0,1fr))}}
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var INTERVAL = Math.min(60000, Math.max(250, Number(params.get('interval_ms')) || 2000));
  var POINTS = 60;          // samples per sparkline
  var WINDOW_MS = 30000;    // TTFT/TPOT quantiles cover the last 30 s of samples
  var SVGNS = 'http://www.w3.org/2000/svg';
  var STATES = { closed: 'closed', half_open: 'half-open', open: 'open' };

  var samples = [];         // raw /admin/stats snapshots, oldest first, pruned to the window
  var series = new Map();   // key -> last POINTS values (null = no data)
  var cards = new Map();    // model -> DOM refs
  var totals = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function spark(lines) {
    var svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('viewBox', '0 0 120 32');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'spark');
    var base = document.createElementNS(SVGNS, 'line');
    base.setAttribute('x1', '0'); base.setAttribute('x2', '120'); base.setAttribute('y1', '31.5'); base.setAttribute('y2', '31.5');
    svg.appendChild(base);
    var paths = [];
    for (var i = 0; i < lines; i++) {
      var p = document.createElementNS(SVGNS, 'path');
      p.setAttribute('class', 'l' + i);
      svg.appendChild(p);
      paths.push(p);
    }
    return { svg: svg, paths: paths };
  }
  function push(key, v) {
    var s = series.get(key);
    if (!s) { s = []; series.set(key, s); }
    s.push(v == null || !isFinite(v) ? null : v);
    if (s.length > POINTS) s.shift();
    return s;
  }
  function draw(sp, list) {
    var max = 0;
    list.forEach(function (s) { s.forEach(function (v) { if (v != null && v > max) max = v; }); });
    var top = max > 0 ? max * 1.15 : 1;
    list.forEach(function (s, k) {
      var d = '', pen = false;
      for (var i = 0; i < s.length; i++) {
        var v = s[i];
        if (v == null) { pen = false; continue; }
        var x = ((POINTS - s.length + i) / (POINTS - 1)) * 120;
        var y = 30 - (v / top) * 28;
        d += (pen ? 'L' : 'M') + x.toFixed(2) + ' ' + y.toFixed(2) + (pen ? '' : 'l0.01 0');
        pen = true;
      }
      sp.paths[k].setAttribute('d', d);
    });
  }

  // Prometheus' histogram_quantile over cumulative buckets (same as src/dashboard/stats.ts).
  function quantile(q, le, cum) {
    var total = cum[cum.length - 1] || 0;
    if (!(total > 0) || !le.length) return null;
    var rank = q * total, i = 0;
    while (i < le.length && cum[i] < rank) i++;
    if (i === le.length) return le[le.length - 1];
    var start = i === 0 ? 0 : le[i - 1], below = i === 0 ? 0 : cum[i - 1], inBucket = cum[i] - below;
    if (!(inBucket > 0)) return le[i];
    return start + (le[i] - start) * (rank - below) / inBucket;
  }
  // p50/p95 of the observations made between two snapshots of one histogram.
  function windowed(cur, old) {
    if (!old || old.cumulative.length !== cur.cumulative.length) return { p50: null, p95: null, n: 0 };
    var c = cur.cumulative.map(function (v, i) { return v - old.cumulative[i]; });
    if (c[c.length - 1] < 0) return { p50: null, p95: null, n: 0 };
    return { p50: quantile(0.5, cur.le, c), p95: quantile(0.95, cur.le, c), n: c[c.length - 1] };
  }
  function rate(cur, old, dt) { return old == null || !(dt > 0) || cur < old ? null : (cur - old) / dt; }
  function ratio(errCur, errOld, reqCur, reqOld) {
    if (reqOld == null || reqCur - reqOld <= 0) return null;
    return Math.max(0, errCur - errOld) / (reqCur - reqOld);
  }

  function fmtCount(n) { return n >= 1e6 ? (n / 1e6).toFixed(2) + 'M' : n >= 1e4 ? (n / 1e3).toFixed(1) + 'k' : String(Math.round(n)); }
  function fmtRate(v) { return v == null ? '\u2014' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }
  function fmtPct(v) { return v == null ? '\u2014' : (v * 100).toFixed(v === 0 || v >= 0.1 ? 0 : 1) + ' %'; }
  function fmtSec(s) { return s == null ? '\u2014' : s >= 1 ? s.toFixed(2) + ' s' : (s * 1000).toFixed(s >= 0.01 ? 0 : 1) + ' ms'; }
  function fmtUsd(v) { return v == null ? '\u2014' : v === 0 ? '$0' : '$' + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4)); }

  function chartTile(label, lines, legend) {
    var t = el('div', 'tile');
    var l = el('div', 'lbl', label);
    if (legend) {
      var lg = el('span', 'legend');
      ['p50', 'p95'].forEach(function (name, k) {
        var s = el('span'); var i = el('i'); i.style.background = k ? 'var(--p95)' : 'var(--p50)';
        s.appendChild(i); s.appendChild(document.createTextNode(name)); lg.appendChild(s);
      });
      l.appendChild(lg);
    }
    var v = el('div', 'val', '\u2014');
    var sub = el('div', 'sub', '\u00a0');
    var sp = spark(lines);
    t.appendChild(l); t.appendChild(v); t.appendChild(sub); t.appendChild(sp.svg);
    return { root: t, val: v, sub: sub, sp: sp };
  }

  function buildTotals() {
    var box = $('totals');
    var t = {
      rps: chartTile('Requests / s', 1),
      err: chartTile('Error rate (5xx)', 1),
      active: chartTile('Active requests', 1),
      requests: chartTile('Requests (total)', 1),
      cost: chartTile('Spend (USD, total)', 1),
      overhead: chartTile('Gateway overhead p99, last 30 s', 1),
    };
    Object.keys(t).forEach(function (k) { t[k].root.setAttribute('data-field', 'total-' + k); box.appendChild(t[k].root); });
    return t;
  }

  function buildCard(model) {
    var root = el('section', 'card');
    root.setAttribute('data-model', model);
    var head = el('div', 'card-head');
    head.appendChild(el('h3', '', model));
    var badges = el('div', 'card-head');
    head.appendChild(badges);
    root.appendChild(head);
    var meta = el('div', 'meta');
    var fields = {};
    [['requests', 'requests'], ['errors', '5xx'], ['limited', '429'], ['client_closed', '499'], ['active', 'active'],
     ['tokens_in', 'tokens in'], ['tokens_out', 'tokens out'], ['cost', 'cost']].forEach(function (f) {
      var span = el('span');
      var b = el('b', '', '0');
      b.setAttribute('data-field', f[0]);
      span.appendChild(b);
      span.appendChild(document.createTextNode(' ' + f[1]));
      meta.appendChild(span);
      fields[f[0]] = b;
    });
    root.appendChild(meta);
    var charts = el('div', 'charts');
    var c = {
      rps: chartTile('Requests / s', 1),
      err: chartTile('Error rate (5xx)', 1),
      ttft: chartTile('TTFT, last 30 s', 2, true),
      tpot: chartTile('TPOT, last 30 s', 2, true),
    };
    Object.keys(c).forEach(function (k) { c[k].root.setAttribute('data-chart', k); charts.appendChild(c[k].root); });
    root.appendChild(charts);
    $('models').appendChild(root);
    return { root: root, badges: badges, fields: fields, charts: c };
  }

  function badge(c, withModel) {
    var state = Object.prototype.hasOwnProperty.call(STATES, c.state) ? c.state : 'unknown';
    var b = el('span', 'badge ' + state, (withModel ? c.model + ' / ' : '') + c.backend + ': ' + (STATES[state] || String(c.state)));
    b.setAttribute('title', 'circuit breaker of ' + c.model + ' on backend ' + c.backend);
    return b;
  }

  function renderBudgets(list) {
    var box = $('budgets');
    box.replaceChildren();
    if (!list.length) { box.appendChild(el('div', 'empty', 'No budget reported yet (llm_gateway_budget_* gauges).')); return; }
    list.forEach(function (b) {
      var card = el('div', 'tile budget');
      card.setAttribute('data-budget', b.scope + ':' + b.name);
      var row = el('div', 'row');
      row.appendChild(el('span', 'lbl', b.scope + ' \u00b7 ' + b.name));
      var used = b.used == null ? null : b.used;
      row.appendChild(el('span', 'sub', fmtUsd(b.spend_usd) + ' / ' + fmtUsd(b.limit_usd) + (used == null ? '' : '  (' + fmtPct(used) + ')')));
      card.appendChild(row);
      var bar = el('div', 'bar');
      var fill = el('div', used == null ? '' : used >= 0.95 ? 'bad' : used >= 0.7 ? 'warn' : '');
      fill.style.width = (used == null ? 0 : Math.min(100, Math.max(0, used * 100))).toFixed(1) + '%';
      bar.appendChild(fill);
      card.appendChild(bar);
      box.appendChild(card);
    });
  }

  function index(s) {
    var m = new Map();
    if (s) s.models.forEach(function (x) { m.set(x.model, x); });
    return m;
  }

  function setChart(ch, key, value, text, sub) {
    ch.val.textContent = text;
    if (sub !== undefined) ch.sub.textContent = sub;
    draw(ch.sp, [push(key, value)]);
  }

  function render(s, prev, base) {
    var dt = prev ? (s.ts - prev.ts) / 1000 : 0;
    var prevM = index(prev), baseM = index(base);
    if (!totals) totals = buildTotals();
    var T = s.totals, P = prev && prev.totals;
    var rps = rate(T.requests, P && P.requests, dt);
    var err = ratio(T.errors, P && P.errors, T.requests, P && P.requests);
    setChart(totals.rps, 'total:rps', rps, fmtRate(rps), rate(T.limited, P && P.limited, dt) ? fmtRate(rate(T.limited, P && P.limited, dt)) + ' 429/s' : '\u00a0');
    setChart(totals.err, 'total:err', err, fmtPct(err), fmtCount(T.errors) + ' errors in total');
    setChart(totals.active, 'total:active', T.active, fmtCount(T.active), '\u00a0');
    setChart(totals.requests, 'total:requests', T.requests, fmtCount(T.requests), fmtCount(T.limited) + ' limited \u00b7 ' + fmtCount(T.client_closed) + ' client closed');
    setChart(totals.cost, 'total:cost', T.cost_usd, fmtUsd(T.cost_usd), '\u00a0');
    // The time the gateway itself adds (llm_gateway_overhead_seconds), p99 of the window.
    var O = s.overhead, OB = base && base.overhead;
    if (O) {
      var oc = OB && OB.cumulative.length === O.cumulative.length ? O.cumulative.map(function (v, i) { return v - OB.cumulative[i]; }) : O.cumulative;
      var o99 = quantile(0.99, O.le, oc), on = oc[oc.length - 1] || 0;
      setChart(totals.overhead, 'total:overhead', o99, fmtSec(o99), on ? fmtCount(on) + ' requests \u00b7 p50 ' + fmtSec(quantile(0.5, O.le, oc)) : 'since start: ' + (O.count ? fmtSec(O.p99) : 'no data'));
    }

    var live = new Set();
    s.models.forEach(function (m) {
      live.add(m.model);
      var card = cards.get(m.model);
      if (!card) { card = buildCard(m.model); cards.set(m.model, card); }
      var p = prevM.get(m.model), b = baseM.get(m.model);
      var f = card.fields;
      f.requests.textContent = fmtCount(m.requests);
      f.errors.textContent = fmtCount(m.errors);
      f.limited.textContent = fmtCount(m.limited);
      f.client_closed.textContent = fmtCount(m.client_closed);
      f.active.textContent = fmtCount(m.active);
      f.tokens_in.textContent = fmtCount(m.tokens.input); // cached_input is part of input
      f.tokens_out.textContent = fmtCount(m.tokens.output);
      f.cost.textContent = fmtUsd(m.cost_usd);
      var c = card.charts;
      var mr = rate(m.requests, p ? p.requests : (prev ? 0 : null), dt);
      var me = ratio(m.errors, p ? p.errors : (prev ? 0 : null), m.requests, p ? p.requests : (prev ? 0 : null));
      setChart(c.rps, m.model + ':rps', mr, fmtRate(mr), fmtCount(m.requests) + ' in total');
      setChart(c.err, m.model + ':err', me, fmtPct(me), me == null ? 'no requests in the last sample' : fmtCount(m.errors) + ' in total');
      [['ttft', m.ttft, b && b.ttft], ['tpot', m.tpot, b && b.tpot]].forEach(function (h) {
        var w = base ? windowed(h[1], h[2] || { cumulative: h[1].cumulative.map(function () { return 0; }) }) : { p50: null, p95: null, n: 0 };
        var ch = c[h[0]];
        ch.val.textContent = w.p50 == null ? '\u2014' : fmtSec(w.p50) + ' \u00b7 ' + fmtSec(w.p95);
        ch.sub.textContent = w.n ? fmtCount(w.n) + ' streamed requests' : 'since start: ' + (h[1].count ? fmtSec(h[1].p50) + ' \u00b7 ' + fmtSec(h[1].p95) : 'no data');
        draw(ch.sp, [push(m.model + ':' + h[0] + ':50', w.p50), push(m.model + ':' + h[0] + ':95', w.p95)]);
      });
      card.badges.replaceChildren();
      m.circuits.forEach(function (x) { card.badges.appendChild(badge(x, false)); });
    });
    cards.forEach(function (card, model) { if (!live.has(model)) { card.root.remove(); cards.delete(model); } });
    $('models-empty').hidden = s.models.length > 0;
    renderBudgets(s.budgets);
    $('updated').textContent = 'updated ' + new Date(s.ts).toLocaleTimeString() + ' \u00b7 every ' + (INTERVAL / 1000) + ' s';
  }

  // Insights (GET /admin/insights): quality rates, worst drift level and open incidents per
  // model, refreshed every 5th tick (the report costs more than /admin/stats).
  var insightsTick = 0;
  var DRIFT_RANK = { stable: 0, slight: 1, severe: 2 };
  function renderInsights(r) {
    var box = $('insights');
    box.replaceChildren();
    if (!r.enabled) { box.appendChild(el('div', 'empty', 'Insights are off: add an insights: section to policies.yaml.')); return; }
    var models = Object.keys(r.quality);
    if (!models.length) { box.appendChild(el('div', 'empty', 'No traffic scored yet.')); return; }
    var t = el('table', 'insights');
    var head = el('tr');
    ['model', 'refusal', 'repetition', 'truncated', 'invalid JSON', 'PII', 'drift (worst PSI)', 'open incidents'].forEach(function (h) { head.appendChild(el('th', '', h)); });
    t.appendChild(head);
    models.forEach(function (m) {
      var q = r.quality[m], d = r.drift[m] || {}, worst = null, feature = '';
      Object.keys(d).forEach(function (f) {
        var x = d[f];
        if (x && typeof x === 'object' && x.level && (worst == null || DRIFT_RANK[x.level] > DRIFT_RANK[worst.level] || (x.level === worst.level && x.psi > worst.psi))) { worst = x; feature = f; }
      });
      var open = r.incidents.filter(function (i) { return i.model === m && i.resolved_at == null; });
      var row = el('tr');
      row.setAttribute('data-model', m);
      row.appendChild(el('td', '', m));
      ['refusal', 'repetition', 'truncated', 'invalid_json', 'pii'].forEach(function (k) { row.appendChild(el('td', '', fmtPct(q.rates[k]))); });
      row.appendChild(el('td', worst && worst.level === 'severe' ? 'bad' : '', worst ? worst.level + ' (' + feature + ' ' + worst.psi.toFixed(3) + ')' : '\u2014'));
      var inc = el('td', open.length ? 'bad' : '', open.length ? open.map(function (i) { return i.kind + ' (' + i.severity + ')'; }).join(', ') : 'none');
      if (open.length) inc.setAttribute('title', open.map(function (i) { return i.hint; }).join('\n'));
      row.appendChild(inc);
      t.appendChild(row);
    });
    box.appendChild(t);
  }
  async function tickInsights() {
    try {
      var r = await fetch('/admin/insights', { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } });
      if (r.ok) renderInsights(await r.json());
    } catch (e) { /* the stats poll reports connectivity */ }
  }

  function status(text, cls) {
    var e = $('status');
    e.textContent = text;
    e.className = 'status ' + cls;
  }

  async function tick() {
    try {
      var r = await fetch('/admin/stats', { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } });
      if (r.status === 401 || r.status === 403) status('not authorised: open /dashboard?token=\u2026 again', 'bad');
      else if (!r.ok) status('error: HTTP ' + r.status, 'bad');
      else {
        var s = await r.json();
        var prev = samples[samples.length - 1];
        samples.push(s);
        while (samples.length > 2 && samples[1].ts <= s.ts - WINDOW_MS) samples.shift();
        render(s, prev, samples[0] === s ? undefined : samples[0]);
        status('live', 'ok');
        if (insightsTick++ % 5 === 0) tickInsights();
      }
    } catch (e) {
      status('disconnected (' + (e && e.message ? e.message : 'network error') + ')', 'bad');
    }
    setTimeout(tick, INTERVAL);
  }
  tick();
})();
`;

const BODY = String.raw`<header>
  <h1>llm-gateway <span>dashboard</span></h1>
  <span id="status" class="status">connecting&#8230;</span>
  <span class="grow"></span>
  <span id="updated" class="sub"></span>
</header>
<main>
  <section id="totals" class="tiles" aria-label="totals"></section>
  <h2>Models</h2>
  <div id="models" class="models"></div>
  <div id="models-empty" class="empty" hidden>No model configured.</div>
  <h2>Budgets</h2>
  <div id="budgets" class="budgets"></div>
  <h2>Insights</h2>
  <div id="insights"></div>
</main>
<footer>Requests/s and error rate are the difference of two consecutive samples of
<code>/admin/stats</code>; an error is a 5xx answer (429 counts as limited, 499 as client
closed). TTFT and TPOT (streamed requests) are p50 &#183; p95 over the last 30 s, estimated from the
histogram buckets with linear interpolation, as Prometheus' <code>histogram_quantile</code> does.
Gateway overhead is the time the gateway itself adds to a request served at the first attempt
(received &#8594; sent upstream, plus upstream first byte &#8594; client first byte).
Badges are circuit-breaker states per backend.</footer>`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>llm-gateway · live</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** Only this page's own inline script and style may run; it may only fetch its own origin. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
