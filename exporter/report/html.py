"""The report as one self-contained page: charts drawn as inline SVG on the server, no script, no assets.

Spend per team (or the first --by label) per period as stacked bars, spend per model, $/M tokens per
model with the tokens it served, idle money by reason, and the reconciliation with its gaps. Every
label value is escaped; the numbers are the rows' own, so the page and the CSV agree.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from exporter.report.increase import ZERO
from exporter.report.rows import Report
from exporter.report.tables import MILLION, cpm_parts, iso, number

PALETTE = ("#3b6fb6", "#e07b39", "#5aa469", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")  # fmt: skip
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1180px;color:#1d2330;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}
th,td{padding:.3em .7em;border-bottom:1px solid #dde;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f4f8}.ok{color:#1d7a33;font-weight:600}.bad{color:#b00020;font-weight:600}
.legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
svg text{font-size:11px;fill:#445}small{color:#667}
"""


def _usd(x: Decimal | None, digits: int | None = None) -> str:
    """Dollars with cents, or with four decimals under a dollar (a short range of a small fleet)."""
    if x is None:
        return "–"
    return f"${x:,.{digits if digits is not None else (2 if abs(x) >= 1 else 4)}f}"


def _tick(t: float, span: float) -> str:
    """An axis label as precise as the periods: a date, an hour, a second."""
    text = iso(t)
    return text[5:10] if span >= 86400 else text[11:16] if span >= 60 else text[11:19]


def page(report: Report, meta: Mapping[str, Any]) -> str:
    by = report.dims[report.dims.index("team")] if "team" in report.dims else report.dims[0]
    k = report.dims.index(by)
    spend: dict[tuple[int, str], Decimal] = {}
    for r in report.rows:
        spend[(r.period, r.key[k])] = spend.get((r.period, r.key[k]), ZERO) + r.total
    parts = [
        f"<h1>AI cost report · {html.escape(meta['from'])} → {html.escape(meta['to'])}</h1>",
        f"<p>From {html.escape(str(meta['source']))} · by {html.escape(', '.join(report.dims))} · "
        f"{len(report.periods)} periods · total <b>{_usd(sum((r.total for r in report.rows), ZERO))}</b> · "
        + _verdict(report)
        + "</p>",
        f"<h2>Spend per {html.escape(by)} and period</h2>",
        _stacked(report, spend),
        "<h2>Spend per model</h2>" if "model" in report.dims else "",
        _bars(_per(report, "model"), "model") if "model" in report.dims else "",
        "<h2>Cost per million tokens per model</h2>" if "model" in report.dims else "",
        _cpm_table(report, meta.get("tokens_per_second_per_user", {})) if "model" in report.dims else "",
        "<h2>Idle money by reason</h2>",
        _bars(_idle(report), "reason"),
        "<h2>Reconciliation</h2>",
        _checks(report, meta),
        f"<p><small>{html.escape(str(meta['generator']))}: rows are exact increases of the exporter's counters "
        "between the last samples at the periods' edges; money is in USD to the nano-dollar.</small></p>",
    ]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>AI cost report</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")  # fmt: skip


def _verdict(report: Report) -> str:
    if report.reconciled:
        return '<span class="ok" id="verdict">reconciled to the bill</span>'
    return '<span class="bad" id="verdict">does not reconcile: see below</span>'


def _stacked(report: Report, spend: Mapping[tuple[int, str], Decimal]) -> str:
    groups = sorted({g for _, g in spend}, key=lambda g: -sum(v for (_, x), v in spend.items() if x == g))
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    n = len(report.periods)
    width, height, left, bottom = 1100, 260, 70, 30
    top = max((sum(spend.get((p, g), ZERO) for g in groups) for p in range(n)), default=ZERO) or Decimal(1)
    bar = (width - left - 10) / max(n, 1)
    shapes = []
    for p in range(n):
        y = float(height - bottom)
        for g in groups:
            v = spend.get((p, g), ZERO)
            h = float(v / top) * (height - bottom - 10)
            if h > 0:
                title = html.escape(f"{g or '(none)'} · {iso(report.periods[p].start)} · ${v:,.2f}")
                shapes.append(f'<rect x="{left + p * bar + 1:.1f}" y="{y - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                              f'height="{h:.1f}" fill="{colour[g]}"><title>{title}</title></rect>')  # fmt: skip
                y -= h
        if n <= 40 or p % max(1, n // 20) == 0:
            shapes.append(
                f'<text x="{left + p * bar:.1f}" y="{height - 12}">{_tick(report.periods[p].start, report.periods[p].end - report.periods[p].start)}</text>'
            )
    shapes.append(f'<text x="0" y="14">{_usd(top)}</text><text x="0" y="{height - bottom}">$0</text>')
    legend = "".join(f'<span><i style="background:{colour[g]}"></i>{html.escape(g or "(none)")}</span>'
                     for g in groups[:30])  # fmt: skip
    return (f'<svg id="spend" width="{width}" height="{height}" role="img" aria-label="spend per period">'
            f'{"".join(shapes)}</svg><div class="legend">{legend}</div>')  # fmt: skip


def _per(report: Report, dim: str) -> dict[str, Decimal]:
    k = report.dims.index(dim)
    out: dict[str, Decimal] = {}
    for r in report.rows:
        out[r.key[k]] = out.get(r.key[k], ZERO) + r.total
    return out


def _idle(report: Report) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in report.rows:
        for reason, v in r.idle.items():
            out[reason] = out.get(reason, ZERO) + v
    return out


def _bars(values: Mapping[str, Decimal], what: str) -> str:
    items = sorted(((k, v) for k, v in values.items() if v), key=lambda kv: -kv[1])[:25]
    if not items:
        return f"<p>No money by {html.escape(what)} in this range.</p>"
    top = items[0][1]
    width, row = 1100, 22
    shapes = []
    for i, (name, v) in enumerate(items):
        w = float(v / top) * 700
        y = i * row
        shapes.append(f'<text x="0" y="{y + 15}">{html.escape(name or "(none)")[:48]}</text>'
                      f'<rect x="330" y="{y + 4}" width="{max(w, 1):.1f}" height="{row - 8}" fill="{PALETTE[0]}">'
                      f"<title>{html.escape(name)} · ${v:,.4f}</title></rect>"
                      f'<text x="{336 + w:.1f}" y="{y + 15}">{_usd(v)}</text>')  # fmt: skip
    return f'<svg class="bars" width="{width}" height="{len(items) * row + 4}">{"".join(shapes)}</svg>'


def _cpm_table(report: Report, speed: Mapping[str, float]) -> str:
    k = report.dims.index("model")
    acc: dict[str, list[Decimal]] = {}
    read: set[str] = set()  # models whose tokens some server counted: the others' tokens are unknown
    for r in report.rows:
        a = acc.setdefault(r.key[k], [ZERO, ZERO, ZERO])
        spent, tokens = cpm_parts(r)
        a[0] += spent
        a[1] += tokens
        a[2] += r.total
        if r.tokens:
            read.add(r.key[k])
    rows = "".join(
        f"<tr><td>{html.escape(model or '(none)')}</td><td class='n'>{_usd(total)}</td>"
        f"<td class='n'>{number(tokens) if model in read else '–'}</td>"
        f"<td class='n'>{_usd(spent / tokens * MILLION, 4) if tokens > 0 else '–'}</td>"
        f"<td class='n'>{f'{speed[model]:.1f}' if model in speed else '–'}</td></tr>"
        for model, (spent, tokens, total) in sorted(acc.items(), key=lambda kv: -kv[1][2])
    )
    return ("<table id='cpm'><thead><tr><th>model</th><th>cost</th><th>tokens computed</th><th>$/M tokens</th>"
            "<th>tokens/s per user</th></tr></thead>"
            f"<tbody>{rows}</tbody></table><p><small>$/M tokens: the money of the lines whose tokens were read, "
            "over the tokens their GPUs computed (prefix-cache hits left out, as the exporter's gauge and the "
            "rules count them). Tokens/s per user: the interactivity that CPM was reached at, each server's "
            "live gauge over the range weighted by the output tokens it served.</small></p>")  # fmt: skip


def _checks(report: Report, meta: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{iso(report.periods[c.period].start)}</td><td>{html.escape(c.cluster)}</td>"
        f"<td>{html.escape(c.node)}</td><td class='n'>{_usd(c.rows_usd, 9)}</td>"
        f"<td class='n'>{_usd(c.bill_usd, 9)}</td><td class='{'ok' if c.ok else 'bad'}'>"
        f"{'✓' if c.ok else 'differs'}</td></tr>"
        for c in report.checks
    )
    gaps = "".join(f"<li>{html.escape(g['node'])}: no samples from {html.escape(g['after'])} to "
                   f"{html.escape(g['before'] or 'the end')}</li>" for g in meta["gaps"])  # fmt: skip
    notes: Sequence[str] = meta["warnings"]
    return (
        "<table id='checks'><thead><tr><th>period</th><th>cluster</th><th>node</th><th>rows</th>"
        f"<th>cpm_bill_usd_total</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        + (f"<p>Gaps (listed, never filled):</p><ul id='gaps'>{gaps}</ul>" if gaps else "<p>No gaps.</p>")
        + "".join(f"<p class='bad'>{html.escape(w)}</p>" for w in notes)
    )
