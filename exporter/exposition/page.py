"""The landing page: a live table of what each model costs, server-rendered, no assets.

Refreshes itself every window/12 seconds, at least every second (a meta refresh: no
JavaScript, no external requests). "Idle $/h" per row is the part of the row's spend that
bought no work: all of it when the window served no tokens, else $/h × (1 − utilisation).
A second table splits each shared server's money among the teams that called it through a
gateway (cpm_tenant_*): the same numbers as /metrics, the same definitions.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from exporter.exposition.status import ExportView, OperatingPoint
from exporter.meter.snapshot import LineView

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1d2330}
table{border-collapse:collapse;margin-top:1em}th,td{padding:.35em .8em;border-bottom:1px solid #dde}
th{text-align:left;background:#f2f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.6em 1em;font-weight:600}
.warn{color:#a4400b}.idle td{color:#7a4a00;background:#fffaf0}small{color:#667}
.waiting td{color:#667;font-style:italic}h2{margin-top:1.5em;font-size:1.15em}
"""


def _money(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"${x:,.{digits}f}"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _engine(p: OperatingPoint | None) -> str:
    """Engine, version and precision in one cell ("vllm 0.8.5 · fp8"); what nothing says is left out."""
    if p is None:
        return "–"
    version = f" {p.version}" if p.version else ""
    extra = " · ".join(x for x in (p.precision, f"kv {p.kv_cache_dtype}" if p.kv_cache_dtype else "") if x)
    return f"{p.engine}{version}" + (f" · {extra}" if extra else "")


def _row(v: LineView, point: OperatingPoint | None) -> str:
    g, o = v.gauges, v.line.owner
    cells = [
        html.escape(o.model),
        html.escape(o.team),
        html.escape(f"{o.namespace}/{o.pod}"),
        html.escape(f"{v.line.hardware} ({v.line.capacity})"),
        html.escape(_engine(point)),
    ]
    nums = [
        _money(g.usd_per_million_input),
        _money(g.usd_per_million_output),
        _money(g.usd_per_million_total),
        _num(g.tokens_per_second_per_user, ".1f"),
        _money(g.usd_per_request, 5),
        _money(dict(g.usd_per_request_quantiles).get(0.99), 5),
        _num(None if g.utilization is None else g.utilization * 100, ".0f")
        + ("" if g.utilization is None else " %"),
        _money(g.burn_usd_per_hour, 2),
        _money(g.idle_burn_usd_per_hour, 2),
    ]
    tds = "".join(f"<td>{c}</td>" for c in cells) + "".join(f'<td class="n">{n}</td>' for n in nums)
    return f"<tr>{tds}</tr>"


def _tenant_rows(lines: list[LineView]) -> str:
    """One row per (served line, calling team), most money first; the line's waiting money after."""
    rows = sorted(
        ((v, t, x) for v in lines for t, x in v.tenants.totals.items()),
        key=lambda r: (-r[2].cost, r[0].line.owner.model, r[1]),
    )
    out = []
    for v, tenant, x in rows:
        o = v.line.owner
        cells = [html.escape(tenant), html.escape(o.model), html.escape(f"{o.namespace}/{o.pod}")]
        nums = [
            _money(x.cost / 1e9, 4),
            _num(x.input_tokens, ",.0f"),
            _num(x.output_tokens, ",.0f"),
            _money(v.tenants.usd_per_million.get(tenant)),
            _num(v.gauges.tokens_per_second_per_user, ".1f"),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells) + "".join(f'<td class="n">{n}</td>' for n in nums)
        out.append(f"<tr>{tds}</tr>")
    for v in lines:
        if v.tenants.totals:
            o = v.line.owner
            out.append(
                f'<tr class="waiting"><td colspan="3">waiting for the gateway\'s count — '
                f"{html.escape(o.model)} on {html.escape(f'{o.namespace}/{o.pod}')}</td>"
                f'<td class="n">{_money(v.tenants.waiting_nano / 1e9, 4)}</td><td colspan="4"></td></tr>'
            )
    return "".join(out)


def _tenant_table(lines: list[LineView]) -> str:
    rows = _tenant_rows(lines)
    if not rows:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("calling team", "model", "pod", "cost", "input tokens", "output tokens", "$/M tokens",
                  "tokens/s per user")
    )  # fmt: skip
    return f"""<h2>Shared servers by calling team (gateways)</h2>
<p><small>Cost since the exporter started, claimed by the gateway's counts of each team's tokens;
__direct__: tokens no gateway counted (the pod's own team keeps them). $/M tokens over the window,
at the server's tokens/s per user.</small></p>
<table id="tenants"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"""


def _idle_row(v: LineView) -> str:
    label = f"idle — {html.escape(v.line.hardware)} ({html.escape(v.line.capacity)})"
    burn = _money(v.gauges.burn_usd_per_hour, 2)
    return (
        f'<tr class="idle"><td colspan="13">{label}: GPUs held by no pod</td><td class="n">{burn}</td></tr>'
    )


def render_page(view: ExportView) -> bytes:
    s, m = view.status, view.meter
    served = sorted(
        (v for v in m.lines if not v.line.owner.is_idle), key=lambda v: (v.line.owner.model, v.line.owner.pod)
    )
    idle = [v for v in m.lines if v.line.owner.is_idle]
    # Every line's idle money over the window (cpm_idle_cost_usd_total's rate: unallocated,
    # exporter_down, no_traffic, starved), unallocated GPUs included: one definition with the rules.
    idle_burn = sum(v.gauges.idle_burn_usd_per_hour or 0.0 for v in m.lines)
    when = datetime.fromtimestamp(m.end_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    refresh = max(1, round(s.window_seconds / 12)) if s.window_seconds else 5
    banner = (
        '<p class="banner">SIMULATION — cpm-exporter demo: made-up GPUs and simulated vLLM servers.</p>'
        if s.mode == "demo"
        else ""
    )
    warnings = "".join(
        f'<p class="warn">Price for {html.escape(p.hardware)}/{html.escape(p.capacity)} is a catalogue default '
        f"(${p.usd_per_hour}/GPU-h, {html.escape(p.reference)}), not your price.</p>"
        for p in s.prices_in_use
        if p.source == "catalogue"
    )
    warnings += "".join(
        f'<p class="warn">Target {html.escape(t.name)} is down: {html.escape(t.last_error)}</p>'
        for t in s.targets
        if not t.up
    )
    if not s.config_ok:
        warnings += (
            f'<p class="warn">Config reload failed; last good config kept: {html.escape(s.config_error)}</p>'
        )
    coverage = "–" if m.coverage is None else f"{m.coverage * 100:.0f} %"
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "model",
            "team",
            "pod",
            "hardware",
            "engine",
            "$/M input",
            "$/M output",
            "$/M total",
            "tokens/s per user",
            "$/request",
            "p99 request",
            "utilisation",
            "$/h",
            "idle $/h",
        )
    )
    points = {(p.namespace, p.pod, p.model): p for p in s.operating_points}
    rows = "".join(
        _row(v, points.get((v.line.owner.namespace, v.line.owner.pod, v.line.owner.model))) for v in served
    )
    rows += "".join(_idle_row(v) for v in idle)
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}"><title>cpm-exporter — {html.escape(m.node)}</title>
<style>{_STYLE}</style></head><body>{banner}
<h1>Cost per million tokens — node {html.escape(m.node)}</h1>
<p>Window {s.window_seconds:.0f} s · updated {when} · idle burn <b id="idle-burn">{_money(idle_burn, 2)}/h</b>
· token coverage {coverage} · <a href="/metrics">/metrics</a></p>{warnings}
<table id="cpm"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
{_tenant_table(served)}
<p><small>cpm-exporter {html.escape(s.version)} · catalogue {html.escape(s.pricing.catalogue_date)}
· CPM is always shown with the tokens/s per user at which it was reached.</small></p>
</body></html>
"""  # fmt: skip
    return body.encode()
