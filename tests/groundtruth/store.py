"""The cumulative state of one engine life: counters and histograms, keyed by series."""

from __future__ import annotations

import copy
from bisect import bisect_left
from dataclasses import dataclass, field

from tests.groundtruth.ir import INF, Labels

SeriesId = tuple[str, Labels]  # (family name, labels)


@dataclass
class Hist:
    bounds: tuple[float, ...]  # finite upper bounds, ascending; +Inf is implicit
    counts: list[int] = field(default_factory=list)  # per bucket, the +Inf one last
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def cumulative(self) -> tuple[tuple[float, float], ...]:
        out, running = [], 0
        for le, n in zip((*self.bounds, INF), self.counts, strict=True):
            running += n
            out.append((le, float(running)))
        return tuple(out)


@dataclass
class Store:
    start: float  # when this life began, on the simulator's clock
    counters: dict[SeriesId, float] = field(default_factory=dict)
    hists: dict[SeriesId, Hist] = field(default_factory=dict)

    def add(self, family: str, lbl: Labels, amount: float = 0.0) -> None:
        """Adds to a series, creating it (at 0) on first use, as client libraries do."""
        self.counters[(family, lbl)] = self.counters.get((family, lbl), 0.0) + amount

    def observe(self, family: str, lbl: Labels, bounds: tuple[float, ...], value: float | None) -> None:
        hist = self.hists.setdefault((family, lbl), Hist(bounds))
        if value is not None:
            hist.observe(value)

    def series(self, family: str) -> list[tuple[Labels, float]]:
        return [(lbl, v) for (name, lbl), v in self.counters.items() if name == family]

    def hist_series(self, family: str) -> list[tuple[Labels, Hist]]:
        return [(lbl, h) for (name, lbl), h in self.hists.items() if name == family]

    def value(self, family: str) -> float:
        return sum(v for _, v in self.series(family))

    def copy(self, start: float) -> Store:
        return Store(start, dict(self.counters), copy.deepcopy(self.hists))

    def zero(self, families: frozenset[str]) -> None:
        """Starts the named families over (their series stay, at 0): a restart's input side."""
        for sid in self.counters:
            if sid[0] in families:
                self.counters[sid] = 0.0
        for sid, hist in self.hists.items():
            if sid[0] in families:
                self.hists[sid] = Hist(hist.bounds)
