"""Exact counter increases per series and period, from raw samples: what the report sums.

Not PromQL's ``increase()``, which extrapolates to the range's edges (so periods would not add up
to the whole, nor rows to the bill). Here a period ``(start, end]`` owns the increase between the
last sample at or before ``start`` and the last at or before ``end``, so consecutive periods add
up exactly. A fall is a counter reset (an exporter restart without a state file): the value after
it counts from zero, as Prometheus's own rule. A series with no value before the report's start
was born within it and counts from zero. Samples come in chunks, in time order, series by series.

Gaps are found, never filled: a spacing longer than ``max_gap_s`` between two samples of a series
is listed (the money of the gap lands in the period of the sample after it), and so is a series
whose last sample is that far before the report's end (its money since is not in the report).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

Labels = tuple[tuple[str, str], ...]  # a series' labels, sorted
Point = tuple[float, Decimal]  # (UNIX seconds, value)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Gap:
    labels: Labels
    after: float  # the last sample before the gap (or the report's start)
    before: float | None  # the first sample after it; None: nothing until the report's end


@dataclass(slots=True)
class _Series:
    last: Point | None  # the last sample seen (the start value: at or before the report's start)
    per_period: list[Decimal]
    resets: int = 0


@dataclass(slots=True)
class Increases:
    """Fed in time order; ``bounds`` are the period edges t0 < t1 < … < tn (UNIX seconds)."""

    bounds: list[float]
    max_gap_s: float = 300.0
    series: dict[Labels, _Series] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)

    def start(self, labels: Labels, t: float, value: Decimal) -> None:
        """The series' last value at or before the report's start."""
        self.series[labels] = _Series((t, value), [ZERO] * (len(self.bounds) - 1))

    def add(self, labels: Labels, points: Iterable[Point]) -> None:
        s = self.series.get(labels)
        if s is None:  # born within the report: its counters started from zero
            s = self.series[labels] = _Series(None, [ZERO] * (len(self.bounds) - 1))
        first, last_edge = self.bounds[0], self.bounds[-1]
        for t, v in points:
            if t <= first or t > last_edge or (s.last is not None and t <= s.last[0]):
                continue  # before the report, after it, or a sample already seen
            if s.last is None:
                step = v
            elif v >= s.last[1]:
                step = v - s.last[1]
            else:  # a reset: the counter started again from zero
                step = v
                s.resets += 1
            gap_from = s.last[0] if s.last is not None else None
            if gap_from is not None and t - max(gap_from, first) > self.max_gap_s:
                self.gaps.append(Gap(labels, max(gap_from, first), t))
            s.per_period[bisect.bisect_left(self.bounds, t) - 1] += step
            s.last = (t, v)

    def finish(self) -> None:
        """List the series that went quiet before the report's end (or never spoke within it)."""
        end = self.bounds[-1]
        for labels, s in self.series.items():
            last = s.last[0] if s.last is not None else self.bounds[0]
            if end - max(last, self.bounds[0]) > self.max_gap_s:
                self.gaps.append(Gap(labels, max(last, self.bounds[0]), None))
