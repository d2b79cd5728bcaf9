"""The HTML of ``/status``: the figures, and the last hour drawn as an SVG chart by a few
lines of inline JavaScript (no CDN, no network: the page must work on an isolated host).
The figures travel in the page as JSON (``#figures``), so the chart and a test read the
same data."""

STATUS_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<title>CPAN Testers pipeline status</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
 h1 { font-size: 1.4em; margin: 0 0 .2em; }
 .muted { color: #666; }
 .cards { display: flex; flex-wrap: wrap; gap: .8em; margin: 1em 0; }
 .card { border: 1px solid #ccc; border-radius: 6px; padding: .5em .9em; min-width: 9em; }
 .card .value { font-size: 1.6em; font-weight: 600; }
 .bad { color: #b00020; }
 .ok { color: #1b7f2a; }
 table { border-collapse: collapse; margin: .5em 0 1.2em; }
 th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
 th { background: #f4f4f4; }
 #chart { border: 1px solid #ccc; background: #fcfcfc; }
 .legend span { display: inline-block; margin-right: 1.2em; }
 .swatch { display: inline-block; width: 1.2em; height: .3em; vertical-align: middle; margin-right: .3em; }
</style>
</head>
<body>
<h1>CPAN Testers pipeline: <span id="verdict" class="{{ 'ok' if f.verdict.state == 'OK' else 'bad' }}">{{ f.verdict.state }}</span></h1>
<div id="problems">{% for p in f.verdict.problems %}<div class="bad">{{ p }}</div>{% else %}<div class="ok">reports flow</div>{% endfor %}</div>
<div class="muted">figures read at <span id="collected-at">{{ f.collected_at }}</span>; this page reloads every 30 s;
 JSON: <a href="?format=json">?format=json</a>, Prometheus: <a href="metrics">/metrics</a></div>
{% if f.errors %}<p id="errors" class="bad">
{% for source, error in f.errors.items() %}<strong>{{ source }}</strong> unreachable: {{ error }}<br>{% endfor %}
</p>{% endif %}
<div class="cards">
 <div class="card"><div>waiting reports</div><div class="value" id="waiting">{{ f.waiting if f.waiting is not none else "?" }}</div></div>
 <div class="card"><div>oldest waiting</div><div class="value" id="oldest-waiting">{{ "%.0f s"|format(f.oldest_waiting_seconds) if f.oldest_waiting_seconds is not none else "none" }}</div></div>
 <div class="card"><div>jobs queued</div><div class="value" id="queued">{{ f.queued if f.queued is not none else "?" }}</div></div>
 <div class="card"><div>failed jobs</div><div class="value{{ ' bad' if f.failed_jobs }}" id="failed-jobs">{{ f.failed_jobs if f.failed_jobs is not none else "?" }}</div></div>
 <div class="card"><div>workers alive</div><div class="value{{ ' bad' if not f.workers_alive }}" id="workers-alive">{{ f.workers_alive if f.workers_alive is not none else "?" }}</div></div>
 <div class="card"><div>reports stored (est.)</div><div class="value" id="stored">{{ f.stored if f.stored is not none else "?" }}</div></div>
 <div class="card"><div>reports processed</div><div class="value" id="processed">{{ f.processed_total if f.processed_total is not none else "?" }}</div></div>
 <div class="card"><div>spooled, not drained</div><div class="value{{ ' bad' if f.spooled }}" id="spooled">{{ f.spooled if f.spooled is not none else "?" }}</div></div>
</div>

<h2>Last hour, per minute</h2>
<div class="legend">
 <span><i class="swatch" style="background:#1f77b4"></i>queue depth</span>
 <span><i class="swatch" style="background:#2ca02c"></i>submitted / min</span>
 <span><i class="swatch" style="background:#d62728"></i>processed / min</span>
</div>
<svg id="chart" width="760" height="260" viewBox="0 0 760 260" role="img" aria-label="queue depth and rates over the last hour"></svg>
<p class="muted" id="chart-note"></p>

<h2>Queues</h2>
<table id="queues"><tr><th>queue</th><th>queued</th><th>started</th><th>failed</th><th>scheduled</th></tr>
{% for q in f.queues or [] %}<tr><td>{{ q.name }}</td><td>{{ q.queued }}</td><td>{{ q.started }}</td><td>{{ q.failed }}</td><td>{{ q.scheduled }}</td></tr>
{% endfor %}</table>

<h2>Workers</h2>
<table id="workers"><tr><th>name</th><th>state</th><th>current job</th><th>queues</th><th>last heartbeat</th></tr>
{% for w in f.workers or [] %}<tr><td>{{ w.name }}</td><td>{{ w.state }}</td><td>{{ w.current_job or "" }}</td><td>{{ w.queues|join(", ") }}</td><td>{{ w.last_heartbeat or "" }}</td></tr>
{% else %}<tr><td colspan="5" class="bad">no worker alive</td></tr>
{% endfor %}</table>

<script type="application/json" id="figures">{{ f|tojson }}</script>
<script>
(function () {
  var f = JSON.parse(document.getElementById("figures").textContent);
  var svg = document.getElementById("chart");
  var NS = "http://www.w3.org/2000/svg";
  var h = f.history;
  if (!h) { document.getElementById("chart-note").textContent = "no history: Redis did not answer"; return; }
  var W = 760, H = 260, L = 50, R = 50, T = 12, B = 28, n = h.minute_starts.length;
  var maxDepth = Math.max(1, Math.max.apply(null, h.queue_depth));
  var maxRate = Math.max(1, Math.max.apply(null, h.submitted.concat(h.processed)));
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e); return e;
  }
  function x(i) { return L + (W - L - R) * (n > 1 ? i / (n - 1) : 0); }
  function y(v, max) { return T + (H - T - B) * (1 - v / max); }
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"});
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#1f77b4"});
  el("line", {x1: W - R, y1: T, x2: W - R, y2: H - B, stroke: "#888"});
  el("text", {x: L - 4, y: T + 10, "text-anchor": "end", "font-size": 11, fill: "#1f77b4", id: "axis-depth-max"}, String(maxDepth));
  el("text", {x: W - R + 4, y: T + 10, "font-size": 11, fill: "#555", id: "axis-rate-max"}, maxRate + "/min");
  el("text", {x: L, y: H - 8, "font-size": 11, fill: "#555"}, h.minute_starts[0].slice(11, 16));
  el("text", {x: W - R, y: H - 8, "font-size": 11, fill: "#555", "text-anchor": "end"}, h.minute_starts[n - 1].slice(11, 16) + " UTC");
  [["queue_depth", "#1f77b4", maxDepth], ["submitted", "#2ca02c", maxRate], ["processed", "#d62728", maxRate]].forEach(function (s) {
    var values = h[s[0]];
    var points = values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v, s[2]).toFixed(1); }).join(" ");
    el("polyline", {id: "line-" + s[0], points: points, fill: "none", stroke: s[1], "stroke-width": 2,
                    "stroke-dasharray": s[0] === "processed" ? "6 3" : "none", "data-values": values.join(",")});
  });
  svg.setAttribute("data-drawn", "yes");
})();
</script>
</body>
</html>
"""
