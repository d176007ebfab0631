"""The landing page: what this node's AI workloads cost, live, with charts of the last minutes.

Server-rendered and self-contained: inline CSS, inline SVG charts (exposition/charts.py) and one
small inline script, allowed by hash in a strict Content-Security-Policy (no external request,
no inline script but ours). The script fetches ``/-/live`` (the page's body, rendered each
tick) and swaps it in place: no reload, the reader's sort order kept. Without JavaScript the
page reloads itself (a ``<noscript>`` meta refresh).

Every figure is a /metrics gauge or total with the same definition; every column says what it
means (tooltip and legend). Every label value is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from datetime import datetime, timezone

from exporter.exposition.charts import page_charts
from exporter.exposition.history import PageHistory, chart_window, delta, ratio
from exporter.exposition.pagetables import (
    IDLE,
    INFERENCE,
    TENANTS,
    TRAINING,
    idle_table,
    inference_table,
    legend,
    tenant_table,
    training_table,
)
from exporter.exposition.status import ExportView
from exporter.meter.money import NANO_PER_USD

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 1.5em;color:#1d2330;max-width:1880px}
h1{font-size:1.35em;margin:.2em 0}h2{margin:1.2em 0 .3em;font-size:1.1em}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:.3em .45em;border-bottom:1px solid #dde;vertical-align:top}
th{text-align:left;background:#f2f4f8;cursor:pointer;user-select:none;vertical-align:bottom}
th[aria-sort=descending]::after{content:" ▾"}th[aria-sort=ascending]::after{content:" ▴"}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.5em 1em;font-weight:600}
.warn{color:#a4400b;margin:.3em 0}.idle td{color:#7a4a00;background:#fffaf0}small{color:#667}
.waiting td{color:#667;font-style:italic}
.totals{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.totals div{border:1px solid #dde;border-radius:6px;padding:.4em .8em;min-width:8.5em}
.totals b{display:block;font-size:1.3em;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em}
.chart{margin:0;border:1px solid #dde;border-radius:6px;padding:.5em}.chart svg{width:100%;height:auto}
.chart text{font-size:11px;fill:#556}.ytick{text-anchor:end}.xtick{text-anchor:middle}.xtick.first{text-anchor:start}.xtick.last{text-anchor:end}
.grid{stroke:#e4e7ee}.axis{stroke:#99a}.empty{color:#667;font-style:italic}
.legend{list-style:none;padding:0;margin:.3em 0 0;font-size:12px;columns:2}
.legend li{break-inside:avoid}.chart .legend svg{width:10px;height:10px;margin-right:.3em}
#legend h3{font-size:1em;margin:.6em 0 .2em}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;font-size:13px}dt{font-weight:600}dd{margin:0}
"""

SCRIPT = """(() => {
  const live = document.getElementById('live'), conn = document.getElementById('conn');
  const every = Number(live.dataset.refresh) * 1000, order = {};
  const key = (tr, col) => {
    const v = tr.cells[col] && tr.cells[col].dataset.v;
    return v === undefined ? null : (v !== '' && !isNaN(v) ? Number(v) : v);
  };
  function sortTable(table) {
    const o = order[table.id], body = table.tBodies[0];
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a, o.col), y = key(b, o.col);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return o.desc ? -c : c;
    });
    rows.forEach(r => body.appendChild(r));
    Array.from(table.tHead.rows[0].cells).forEach((th, i) =>
      th.setAttribute('aria-sort', i === o.col ? (o.desc ? 'descending' : 'ascending') : 'none'));
  }
  function sortAll() {
    live.querySelectorAll('table.sortable').forEach(t => {
      if (!order[t.id]) { const d = t.dataset.sort.split(','); order[t.id] = {col: Number(d[0]), desc: d[1] === 'desc'}; }
      sortTable(t);
    });
  }
  live.addEventListener('click', e => {
    const th = e.target.closest('th'), table = th && th.closest('table.sortable');
    if (!table) return;
    const o = order[table.id], col = th.cellIndex;
    order[table.id] = {col: col, desc: o && o.col === col ? !o.desc : th.dataset.numeric === '1'};
    sortTable(table);
  });
  async function refresh() {
    try {
      const abort = new AbortController(), timer = setTimeout(() => abort.abort(), Math.max(every, 2000));
      const r = await fetch('/-/live', {cache: 'no-store', signal: abort.signal}).finally(() => clearTimeout(timer));
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const body = await r.text();
      const open = live.querySelector('#legend') && live.querySelector('#legend').open;
      live.innerHTML = body;
      if (open) live.querySelector('#legend').open = true;
      sortAll();
      conn.textContent = '';
    } catch (err) {
      const why = err.name === 'AbortError' ? 'no answer in time' : err.message;
      conn.textContent = 'Exporter unreachable (' + why + '): the figures below are from the last update.';
    }
    setTimeout(refresh, every);
  }
  sortAll();
  setTimeout(refresh, every);
})();"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# Only our own script and style run; the page fetches only /-/live from its own origin.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src '{_sha256(SCRIPT)}'; style-src '{_sha256(STYLE)}'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _money(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"${x:,.{digits}f}"


def _sum_per_second(start: Mapping[str, float], end: Mapping[str, float], seconds: float) -> float | None:
    """Σ over the keys of the increase, per second; unknown if any key's total shrank or none moved."""
    parts = [delta(start, end, k) for k in end]
    if not parts or None in parts or seconds <= 0:
        return None
    return sum(x for x in parts if x is not None) / seconds


def _totals(view: ExportView, history: PageHistory) -> str:
    """The node's figures: spend and idle rates, the bill so far, tokens/s, utilisation, GPUs."""
    s, m = view.status, view.meter
    spend = sum(v.gauges.burn_usd_per_hour or 0.0 for v in m.lines)
    # Every line's idle money over the window (cpm_idle_cost_usd_total's rate, unallocated GPUs
    # included): one definition with the rules.
    idle = sum(v.gauges.idle_burn_usd_per_hour or 0.0 for v in m.lines)
    spans = history.spans(s.window_seconds)
    tokens = util = gpus = None
    if spans:
        first, last = spans[-1]
        seconds, start, end = last.t - first.t, first.totals, last.totals
        tokens = _sum_per_second(start.model_tokens, end.model_tokens, seconds)
        util = ratio(
            _sum_per_second(start.busy_ns, end.busy_ns, 1.0),
            _sum_per_second(start.measured_ns, end.measured_ns, 1.0),
        )
        gpus = _sum_per_second(start.held_ns, end.held_ns, seconds * 1e9)
    w = f"over the last {chart_window(s.window_seconds):.0f} s"
    cards = (
        ("spend", f"{_money(spend)}/h", "Every line's spend rate over the window."),
        ("idle", f"{_money(idle)}/h", "GPU money that bought no work, over the window (idle burn)."),
        ("billed", _money(m.bill_nano / NANO_PER_USD), "Everything charged since the exporter started."),
        ("tokens/s", "–" if tokens is None else f"{tokens:,.0f}", f"Tokens the GPUs computed per second (inference), {w}."),
        ("utilisation", "–" if util is None else f"{util * 100:.0f} %", f"Busy ÷ measured GPU time, {w}."),
        ("GPUs", "–" if gpus is None else f"{gpus:,.1f}", f"GPUs priced (held GPU-seconds ÷ seconds), {w}."),
        ("token coverage", "–" if m.coverage is None else f"{m.coverage * 100:.0f} %",
         "Share of held GPU time whose tokens a server reported."),
    )  # fmt: skip
    return (
        '<div class="totals" id="totals">'
        + "".join(
            f'<div title="{html.escape(tip)}"><small>{html.escape(name)}</small>'
            f'<b id="{"idle-burn" if name == "idle" else "total-" + name.replace(" ", "-").replace("/", "-per-")}">'
            f"{html.escape(value)}</b></div>"
            for name, value, tip in cards
        )
        + "</div>"
    )


def _warnings(view: ExportView) -> str:
    s = view.status
    out = "".join(
        f'<p class="warn">Price for {html.escape(p.hardware)}/{html.escape(p.capacity)} is a catalogue default '
        f"(${p.usd_per_hour}/GPU-h, {html.escape(p.reference)}), not your price.</p>"
        for p in s.prices_in_use
        if p.source == "catalogue"
    )
    out += "".join(
        f'<p class="warn">Target {html.escape(t.name)} is down: {html.escape(t.last_error)}</p>'
        for t in s.targets
        if not t.up
    )
    if not s.config_ok:
        out += (
            f'<p class="warn">Config reload failed; last good config kept: {html.escape(s.config_error)}</p>'
        )
    return out


def render_live(view: ExportView, history: PageHistory, charts: str) -> bytes:
    """The page's body, swapped in place by the page's script every refresh."""
    s, m = view.status, view.meter
    by_owner = sorted(m.lines, key=lambda v: (v.line.owner.model, v.line.owner.pod))
    inference = [v for v in by_owner if v.line.owner.workload == "inference"]
    training = [v for v in by_owner if v.line.owner.workload == "training"]
    idle = [v for v in by_owner if v.line.owner.is_idle]
    when = datetime.fromtimestamp(m.end_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    points = {(p.namespace, p.pod, p.model): p for p in s.operating_points}
    tenants = tenant_table(inference)
    training_html = f"<h2>Training runs</h2>{training_table(training)}" if training else ""
    body = f"""<p>Window {s.window_seconds:.0f} s · updated <span id="updated">{when}</span>
· <a href="/metrics">/metrics</a></p>{_warnings(view)}{_totals(view, history)}
<section class="charts">{charts}</section>
<h2>Inference</h2>{inference_table(inference, points)}
{training_html}
<h2>GPUs held by no pod</h2>{idle_table(idle)}
{"<h2>Shared servers by calling team (gateways)</h2><p><small>Cost since the exporter started, claimed by the gateway's counts of each team's tokens; __direct__: tokens no gateway counted (the pod's own team keeps them).</small></p>" + tenants if tenants else ""}
{legend(("Inference", INFERENCE), ("Training runs", TRAINING if training else ()), ("GPUs held by no pod", IDLE),
        ("Shared servers by calling team", TENANTS if tenants else ()))}
<p><small>cpm-exporter {html.escape(s.version)} · catalogue {html.escape(s.pricing.catalogue_date)}
· CPM is always shown with the tokens/s per user at which it was reached.</small></p>"""  # fmt: skip
    return body.encode()


def _banner(view: ExportView) -> str:
    if view.status.mode != "demo":
        return ""
    engines = sorted({p.engine for p in view.status.operating_points if p.engine and p.engine != "training"})
    training = any(v.line.owner.workload == "training" for v in view.meter.lines)
    what = f"simulated {', '.join(engines) or 'inference'} servers" + (
        " and a training job" if training else ""
    )
    return f'<p class="banner">SIMULATION — cpm-exporter demo: made-up GPUs, {html.escape(what)}.</p>'


def render_page(view: ExportView, live: bytes) -> bytes:
    """The whole page around the live body."""
    s, m = view.status, view.meter
    refresh = max(1, round(s.window_seconds / 12)) if s.window_seconds else 5
    head = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>
<title>cpm-exporter — {html.escape(m.node)}</title><style>{STYLE}</style></head><body>{_banner(view)}
<h1>Cost per million tokens — node {html.escape(m.node)}</h1>
<p id="conn" class="warn" role="status"></p>
<main id="live" data-refresh="{refresh}">"""  # fmt: skip
    return head.encode() + live + f"</main><script>{SCRIPT}</script></body></html>\n".encode()


class LandingPage:
    """The page's history and charts, kept across ticks (charts are redrawn only when a point is added)."""

    def __init__(self) -> None:
        self.history = PageHistory()
        self._charts = ""

    def render(self, view: ExportView, tick_seconds: float) -> tuple[bytes, bytes]:
        """(the whole page, its live body) for this tick."""
        window = view.status.window_seconds
        if self.history.add(view.meter, window, tick_seconds) or not self._charts:
            self._charts = page_charts(self.history, window)
        live = render_live(view, self.history, self._charts)
        return render_page(view, live), live
