"""How far each live CPM is from the published frontier at its operating point (issue 20).

A line matches a row of the dated published table (``pricing/published.py``, or the user's own) when
the row is a cost per million tokens on the same hardware, for the same model class (the pod's
``cpm-exporter.io/model-class`` or the config's ``model_class``: model names never say it) and the
same precision; of several, the one published nearest the line's tokens/s per user. The ratio is the
live total CPM ÷ the row's figure: 1.0 is on the published frontier, 3 is three times dearer. What it
cannot say: a published figure carries its publisher's prices and conditions (the row's
``conditions``), so the ratio compares operating points, not bills. No match, no series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exporter.exposition.status import ExportView, OperatingPoint, RuntimeStatus
from exporter.meter.snapshot import LineView, MeterSnapshot
from exporter.pricing.published import PublishedRow


def with_frontier(snapshot: MeterSnapshot, status: RuntimeStatus) -> ExportView:
    """The view to render, its lines matched with the published rows once for every family."""
    points = {(p.namespace, p.pod, p.model): p for p in status.operating_points}
    return ExportView(snapshot, status, tuple(frontier(snapshot.lines, points, status.published)))


def frontier(
    lines: Iterable[LineView],
    points: Mapping[tuple[str, str, str], OperatingPoint],
    rows: Iterable[PublishedRow],
) -> list[tuple[LineView, PublishedRow, float]]:
    """(line, the row it is compared with, live CPM ÷ the row's) for every line that matches a row."""
    priced = [r for r in rows if r.metric == "usd_per_million_tokens" and r.usable and r.value > 0]
    out = []
    for v in lines:
        o, cpm = v.line.owner, v.gauges.usd_per_million_total
        point = points.get((o.namespace, o.pod, o.model))
        if cpm is None or point is None or not point.model_class or not point.precision:
            continue
        found = [r for r in priced if r.hardware.lower() == v.line.hardware.lower()
                 and r.matches(point.model_class, point.precision)]  # fmt: skip
        if not found:
            continue
        speed = v.gauges.tokens_per_second_per_user
        row = min(found, key=lambda r: _distance(r, speed))
        out.append((v, row, cpm / float(row.value)))
    return out


def _distance(row: PublishedRow, speed: float | None) -> tuple[int, float, str]:
    """Rows published at a tokens/s per user nearest the line's first; rows without one after."""
    if row.tokens_per_second_per_user is None or speed is None:
        return (1, 0.0, row.id)
    return (0, abs(float(row.tokens_per_second_per_user) - speed), row.id)
