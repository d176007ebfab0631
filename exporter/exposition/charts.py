"""The landing page's charts: server-rendered SVG over the page history, no script, no assets.

Four charts, each with the definition of a gauge or recording rule (exposition/history.py):
CPM per model (its legend gives the tokens/s per user the price was reached at), spend per
team, idle money by reason, and utilisation per hardware. An unknown value is a gap in the
line. Every label value is escaped; colours are the Okabe–Ito palette (tells apart under
the common colour-vision deficiencies).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from exporter.exposition.history import PageHistory, Totals, chart_window, delta, per_hour_usd, ratio
from exporter.meter.money import NANO_PER_USD

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#000000")
MAX_SERIES = len(PALETTE)  # the rest are counted under the legend, never drawn in a reused colour
W, H = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 64, 10, 10, 24


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[tuple[float, float | None], ...]  # (Unix seconds, value or unknown)
    note: str = ""  # after the latest value in the legend ("at 37 tokens/s per user")

    @property
    def latest(self) -> float | None:
        """The value at the last point: unknown there is shown as unknown, never an older value."""
        return self.values[-1][1] if self.values else None


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def _segments(values: tuple[tuple[float, float | None], ...]) -> list[list[tuple[float, float]]]:
    """Runs of known values: an unknown value breaks the line (never drawn as 0)."""
    out: list[list[tuple[float, float]]] = [[]]
    for t, v in values:
        if v is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append((t, v))
    return [s for s in out if s]


def _svg(series: list[Series], fmt: Callable[[float], str], top: float | None) -> str:
    known = [v for s in series for _, v in s.values if v is not None]
    times = [t for s in series for t, _ in s.values]
    t0, t1 = min(times), max(times)
    ymax = top if top is not None else max(max(known) * 1.1, 1e-12)
    px = W - LEFT - RIGHT
    py = H - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (px * (t - t0) / (t1 - t0) if t1 > t0 else px)

    def y(v: float) -> float:
        return TOP + py * (1 - min(v, ymax) / ymax)

    grid = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y(f * ymax):.1f}" y2="{y(f * ymax):.1f}"/>'
        f'<text class="ytick" x="{LEFT - 4}" y="{y(f * ymax) + 4:.1f}">{html.escape(fmt(f * ymax))}</text>'
        for f in (0.0, 0.5, 1.0)
    )
    marks = (
        ((t0, "xtick first"), ((t0 + t1) / 2, "xtick"), (t1, "xtick last"))
        if t1 > t0
        else ((t1, "xtick last"),)
    )
    ticks = "".join(f'<text class="{c}" x="{x(t):.1f}" y="{H - 6}">{_clock(t)}</text>' for t, c in marks)
    lines = []
    for colour, s in zip(PALETTE, series, strict=False):
        tip = html.escape(f"{s.name}: {fmt(s.latest) if s.latest is not None else '–'} {s.note}".strip())
        for seg in _segments(s.values):
            pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in seg)
            lines.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"><title>{tip}</title></polyline>'
            )
        last = _segments(s.values)
        if last:
            t, v = last[-1][-1]
            lines.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}"><title>{tip} at {_clock(t)}</title></circle>'
            )
    return (
        f'<svg viewBox="0 0 {W} {H}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}"/>{grid}{ticks}{"".join(lines)}</svg>'
    )


def _legend(series: list[Series], fmt: Callable[[float], str], hidden: int) -> str:
    items = "".join(
        f'<li><svg class="swatch" viewBox="0 0 10 10"><rect width="10" height="10" fill="{c}"/></svg>'
        f"{html.escape(s.name)} <b>{html.escape(fmt(s.latest) if s.latest is not None else '–')}</b>"
        f"{' ' + html.escape(s.note) if s.note else ''}</li>"
        for c, s in zip(PALETTE, series, strict=False)
    )
    more = f"<li>… and {hidden} more (smaller), in the tables below</li>" if hidden else ""
    return f'<ul class="legend">{items}{more}</ul>'


def chart(chart_id: str, title: str, caption: str, drawn: Drawn, fmt: Callable[[float], str],
          top: float | None = None, empty: str = "") -> str:  # fmt: skip
    """One figure: the series drawn, a legend with each one's value at the last point."""
    shown, hidden = drawn
    shown = [s for s in shown if any(v is not None for _, v in s.values)]
    body = (
        _svg(shown, fmt, top) + _legend(shown, fmt, hidden)
        if shown
        else f'<p class="empty">{html.escape(empty or "no values yet: the first come one window after start")}</p>'
    )
    return (
        f'<figure class="chart" id="{chart_id}"><figcaption><b>{html.escape(title)}</b> '
        f"<small>{html.escape(caption)}</small></figcaption>{body}</figure>"
    )


Value = Callable[[Totals, Totals, float, str], float | None]  # (start, end, seconds, key) → value
Drawn = tuple[list[Series], int]  # the series drawn, how many more there are


def _keyed(history: PageHistory, window: float, value: Value, keys: Callable[[Totals], Iterable[str]],
           note: Callable[[str], str] = lambda _: "") -> Drawn:  # fmt: skip
    """The MAX_SERIES keys largest at the last point (known before unknown), each with its value over
    the window ending at every point; only those are computed (a node may have 2 000 models)."""
    spans = history.spans(window)
    if not spans:
        return [], 0
    a, b = spans[-1]
    last = {k: value(a.totals, b.totals, b.t - a.t, k) for k in {k for _, e in spans for k in keys(e.totals)}}
    ranked = sorted(last, key=lambda k: (last[k] is None, -(last[k] or 0.0), k))
    top = ranked[:MAX_SERIES]
    series = [
        Series(k, tuple((e.t, value(s.totals, e.totals, e.t - s.t, k)) for s, e in spans), note(k))
        for k in top
    ]
    return series, len(ranked) - len(top)


def _cpm(a: Totals, b: Totals, _: float, model: str) -> float | None:
    cost = delta(a.model_cost, b.model_cost, model)
    return ratio(
        None if cost is None else cost / NANO_PER_USD, delta(a.model_tokens, b.model_tokens, model), 1e6
    )


def _spend(a: Totals, b: Totals, seconds: float, team: str) -> float | None:
    return per_hour_usd(delta(a.team_cost, b.team_cost, team), seconds)


def _idle(a: Totals, b: Totals, seconds: float, reason: str) -> float | None:
    return per_hour_usd(delta(a.idle_cost, b.idle_cost, reason), seconds)


def _util(a: Totals, b: Totals, _: float, hardware: str) -> float | None:
    return ratio(delta(a.busy_ns, b.busy_ns, hardware), delta(a.measured_ns, b.measured_ns, hardware))


def _usd(v: float) -> str:
    return f"${v:,.2f}" if v >= 1 else f"${v:,.4f}"


def _pct(v: float) -> str:
    return f"{v * 100:.0f} %"


def page_charts(history: PageHistory, window_seconds: float) -> str:
    """The four charts over the history, each value over the chart's window ending at its point."""
    speed = history.speed
    cpm = _keyed(history, window_seconds, _cpm, lambda t: t.model_tokens,
                 lambda m: f"at {speed[m]:.1f} tokens/s per user" if m in speed else "")  # fmt: skip
    w = f"over the last {chart_window(window_seconds):.0f} s at each point"
    return "".join(
        (
            chart("chart-cpm", "$ per million tokens, per model", f"input + output cost ÷ tokens computed, {w}",
                  cpm, lambda v: f"${v:,.3f}", empty="no tokens served in the last minutes"),
            chart("chart-spend", "Spend per team ($/h)", f"every cost component, {w}",
                  _keyed(history, window_seconds, _spend, lambda t: t.team_cost), lambda v: _usd(v) + "/h"),
            chart("chart-idle", "Idle money by reason ($/h)", f"GPU money that bought no work, {w}",
                  _keyed(history, window_seconds, _idle, lambda t: t.idle_cost), lambda v: _usd(v) + "/h",
                  empty="no idle GPU money in the last minutes"),
            chart("chart-util", "GPU utilisation per hardware", f"busy ÷ measured GPU time, {w}",
                  _keyed(history, window_seconds, _util, lambda t: t.measured_ns), _pct, top=1.0,
                  empty="no GPU whose utilisation is measured"),
        )
    )  # fmt: skip
