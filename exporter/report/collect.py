"""Read our counters' raw samples from a Prometheus API, chunk by chunk, into exact increases.

First each series' last value at or before the report's start (one ``last_over_time`` per metric
over ``lookback``), then the raw samples of every chunk (``metric[chunk]`` at the chunk's end), in
time order. Chunks bound the answer's size on a month of a big fleet; ``progress`` is told after
each, so a long range shows where it is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from exporter.report.increase import Increases, Labels, Point
from exporter.report.promapi import PrometheusClient, PrometheusError
from exporter.report.rows import METRICS, Period, identity

RENAMED = "series carry exported_* labels (scraped without honor_labels): read as the exporter's own"

Progress = Callable[[int, int, float], None]  # (chunks done, chunks in all, time reached)


def periods_between(start: float, end: float, step: float) -> list[Period]:
    """Consecutive periods of ``step`` seconds from ``start``; the last one ends at ``end``."""
    out, t = [], start
    while t < end:
        out.append(Period(t, min(t + step, end)))
        t += step
    return out


@dataclass(slots=True)
class Collected:
    increases: dict[str, Increases]
    warnings: dict[str, None] = field(default_factory=dict)  # an ordered set: each said once


def collect(
    client: PrometheusClient,
    periods: Sequence[Period],
    *,
    chunk_s: float = 3600.0,
    lookback_s: float = 86400.0,
    max_gap_s: float = 300.0,
    progress: Progress | None = None,
) -> Collected:
    """Every metric's exact increases per period, its series keyed by ``identity()``."""
    bounds = [periods[0].start, *(p.end for p in periods)]
    start, end = bounds[0], bounds[-1]
    out = Collected({m: Increases(bounds, max_gap_s) for m in METRICS})
    for metric in METRICS:
        for labels, value in _at_start(client, metric, start, lookback_s, out.warnings).items():
            out.increases[metric].start(labels, start, value)
    if not any(inc.series for inc in out.increases.values()) and not _any_after(client, start, end):
        raise PrometheusError(
            f"{client.url} has no cpm_* series between the report's start and end: is this the Prometheus "
            "that scrapes cpm-exporter, and did it run then?"
        )
    chunks = [(p.start, p.end) for p in periods_between(start, end, chunk_s)]
    every = "|".join(METRICS)
    for n, (a, b) in enumerate(chunks, 1):  # one query a chunk for every metric: the series say which
        raw = client.samples(f'{{__name__=~"{every}"}}[{_dur(b - a)}]', b)
        for labels, points in _merged(raw, out.warnings).items():
            out.increases[dict(labels)["__name__"]].add(labels, points)
        if progress is not None:
            progress(n, len(chunks), b)
    for inc in out.increases.values():
        inc.finish()
    return out


def _at_start(
    client: PrometheusClient, metric: str, start: float, lookback_s: float, warnings: dict[str, None]
) -> dict[Labels, Decimal]:
    """Each series' last value at or before ``start``; of several raw series that are one (an exporter
    restarted on a new address), the one seen last."""
    window = _dur(lookback_s)
    values = client.samples(f"last_over_time({metric}[{window}])", start)
    seen = client.samples(f"max_over_time(timestamp({metric})[{window}:1m])", start)
    best: dict[Labels, tuple[Decimal, Decimal]] = {}  # identity → (last seen, value)
    for labels, points in values.items():
        if not points:
            continue
        own, renamed = identity(_with_name(labels, metric))
        if renamed:
            warnings[RENAMED] = None
        stamp = seen.get(labels, [(0.0, Decimal(0))])[-1][1]
        if own not in best or stamp > best[own][0]:
            best[own] = (stamp, points[-1][1])
    return {k: v for k, (_, v) in best.items()}


def _merged(raw: dict[Labels, list[Point]], warnings: dict[str, None]) -> dict[Labels, list[Point]]:
    """Raw series by identity, their samples merged in time order. Two raw series of one identity
    whose samples interleave are one exporter scraped twice (two jobs, an HA pair): the same counter
    read twice, still a counter once merged; said in a warning."""
    groups: dict[Labels, list[list[Point]]] = {}
    for labels, points in raw.items():
        own, renamed = identity(labels)
        if renamed:
            warnings[RENAMED] = None
        groups.setdefault(own, []).append(sorted(points))
    out: dict[Labels, list[Point]] = {}
    for own, parts in groups.items():
        if len(parts) > 1:
            parts.sort(key=lambda p: p[0][0] if p else 0.0)
            if any(a and b and a[-1][0] > b[0][0] for a, b in itertools.pairwise(parts)):
                warnings[f"{dict(own)} is scraped more than once (two jobs or an HA pair): counted once"] = (
                    None
                )
        out[own] = sorted((p for part in parts for p in part), key=lambda p: p[0])
    return out


def interactivity(client: PrometheusClient, start: float, end: float) -> dict[str, float]:
    """Per model, the tokens/s per user its CPM was reached at over the range: each line's mean live
    gauge weighted by the output tokens it served (the fleet's recording rule's weighting)."""
    r = _dur(end - start)
    gauge = f"avg_over_time(cpm_tokens_per_second_per_user[{r}])"
    served = f'increase(cpm_tokens_total{{direction="output"}}[{r}])'
    expr = (f"sum by (model) ({gauge} * ignoring(method, direction) {served})"
            f" / sum by (model) ({served} and ignoring(method, direction) {gauge})")  # fmt: skip
    out = {}
    for row in client.query(expr, end):
        value = float(row["value"][1])
        if value == value and value not in (float("inf"), float("-inf")):  # no tokens: no figure
            out[row["metric"].get("model", "")] = value
    return out


def _any_after(client: PrometheusClient, start: float, end: float) -> bool:
    """Some cpm_bill_usd_total sample within the range (a store that only now has our series)."""
    return bool(client.query(f"count(count_over_time(cpm_bill_usd_total[{_dur(end - start)}]))", end))


def _dur(seconds: float) -> str:
    """A PromQL duration in whole milliseconds (Prometheus and VictoriaMetrics read "ms")."""
    return f"{max(1, round(seconds * 1000))}ms"


def _with_name(labels: Labels, metric: str) -> Labels:
    return tuple(sorted((*((k, v) for k, v in labels if k != "__name__"), ("__name__", metric))))
