"""The last minutes of a node's books, for the landing page's charts.

Each point keeps cumulative totals, the retired lines' included (a line dropped after the
retention period leaves its last totals behind, as the bill keeps its money), so every total
only grows. A chart's value at a point is the change over the chart's window ending there
(the exporter's window, at most CHART_WINDOW_MAX_SECONDS), with the definition, for this node,
of the gauge or recording rule it stands for:

    CPM of a model      = 1e6 × Δ(input + output cost) ÷ Δ(input − cached + output tokens)
                          (model:cpm_usd_per_million_tokens:rate5m, direction total)
    tokens/s per user   = the model's lines' live figure, weighted by the output tokens each
                          served over the window
                          (model:cpm_tokens_per_second_per_user:output_weighted_mean5m)
    spend of a team     = 3600 × Δcost ÷ Δt   ($/h: rate(cpm_cost_usd_total))
    idle $/h by reason  = 3600 × Δidle cost ÷ Δt   (rate(cpm_idle_cost_usd_total))
    utilisation         = Δbusy ÷ Δmeasured GPU time   (node_hardware:cpm_gpu_utilization:ratio_rate5m)

The rules' scope too: utilisation counts held GPUs only, and a model's cost only lines whose tokens
were read. A value whose denominator did not move is unknown (None), drawn as a gap, never 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.meter.attribution import Line
from exporter.meter.money import NANO_PER_USD
from exporter.meter.snapshot import LineView, MeterSnapshot

NS_PER_S = 1e9
HORIZON_SECONDS = 15 * 60  # what the charts span
CHART_WINDOW_MAX_SECONDS = 300  # a longer exporter window is charted over this (history is bounded)
MAX_POINTS = 300  # points drawn over the horizon (a point every 3 s at least)
IDLE_TEAM = "idle (no pod)"
TOKEN_DIRECTIONS = frozenset({"input_tokens", "output_tokens"})


@dataclass(slots=True)
class Totals:
    """Cumulative totals (nano-dollars, tokens, nanoseconds) by what the charts group them by."""

    model_cost: dict[str, int] = field(default_factory=dict)  # inference input + output cost
    model_tokens: dict[str, float] = field(default_factory=dict)  # computed: input − cached + output
    team_cost: dict[str, int] = field(default_factory=dict)  # every component, idle GPUs under IDLE_TEAM
    idle_cost: dict[str, int] = field(default_factory=dict)  # reason → idle money
    busy_ns: dict[str, int] = field(default_factory=dict)  # hardware → busy GPU time
    measured_ns: dict[str, int] = field(default_factory=dict)  # hardware → held time of known utilisation
    held_ns: dict[str, int] = field(default_factory=dict)  # "" → every line's held GPU time

    def add(self, v: LineView) -> None:
        t, o = v.totals, v.line.owner
        _add(self.team_cost, IDLE_TEAM if o.is_idle else o.team, sum(t.cost.values()))
        for reason, nano in t.idle_cost.items():
            _add(self.idle_cost, reason, nano)
        _add(self.held_ns, "", t.held_ns)
        if not o.is_idle:  # utilisation of held GPUs, as the rules' (GPUs no pod holds export no busy time)
            _add(self.busy_ns, v.line.hardware, t.busy_ns)
            _add(self.measured_ns, v.line.hardware, t.measured_ns)
        if _is_inference(v) and t.known & TOKEN_DIRECTIONS:
            # Money of lines whose tokens were read, as cpm_cost_by_direction_usd_total (the rules'
            # numerator): a line never read has no input/output split to count.
            _add(self.model_cost, o.model, t.cost_input + t.cost_output)
            _add(self.model_tokens, o.model, t.input_tokens - t.cached_input_tokens + t.output_tokens)

    def plus(self, other: Totals) -> Totals:
        out = Totals()
        for name in Totals.__slots__:
            merged: dict[str, float] = dict(getattr(self, name))
            for k, x in getattr(other, name).items():
                _add(merged, k, x)
            setattr(out, name, merged)
        return out


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    t: float  # Unix seconds
    totals: Totals


def _add(into: dict[Any, Any], key: object, amount: float) -> None:
    into[key] = into.get(key, 0) + amount


def _is_inference(v: LineView) -> bool:
    return v.line.owner.workload == "inference"


def chart_window(window_seconds: float) -> float:
    return min(window_seconds, CHART_WINDOW_MAX_SECONDS)


class PageHistory:
    """Points of the last HORIZON_SECONDS (and one chart window before, so the first drawn point
    has a whole window), one at most every ``step`` seconds."""

    def __init__(self) -> None:
        self.points: deque[HistoryPoint] = deque()
        self.speed: dict[str, float] = {}  # model → output-weighted tokens/s per user, latest point
        self._retired = Totals()  # last totals of lines no longer in the snapshot
        self._retired_at: dict[tuple[str, str], float] = {}  # (Totals field, key) → when it last grew
        self._last: dict[Line, LineView] = {}  # the previous tick's lines (to see which retired)
        # Output tokens per inference line at each point of the last chart window (the speed weights).
        self._outputs: deque[tuple[float, dict[Line, float]]] = deque()

    def add(self, snapshot: MeterSnapshot, window_seconds: float, tick_seconds: float) -> bool:
        """Keep this tick as a point when a step has passed since the last; True when kept."""
        lines = {v.line: v for v in snapshot.lines}
        t = snapshot.end_ns / NS_PER_S
        for line, v in self._last.items():
            if line not in lines:
                self._retire(v, t)
        self._last = lines
        step = max(tick_seconds, HORIZON_SECONDS / MAX_POINTS)
        if self.points and t - self.points[-1].t < step * 0.9:
            return False
        window = chart_window(window_seconds)
        sums = Totals()
        for v in snapshot.lines:
            sums.add(v)
        self._forget_retired(sums)
        self.points.append(HistoryPoint(t, sums.plus(self._retired)))
        while len(self.points) > 1 and self.points[1].t <= t - HORIZON_SECONDS - window:
            self.points.popleft()  # the first one left starts the first drawn point's whole window
        outputs = {v.line: v.totals.output_tokens for v in snapshot.lines if _is_inference(v)}
        while len(self._outputs) > 1 and self._outputs[1][0] <= t - window:
            self._outputs.popleft()  # the first one left is the window's start (or the earliest)
        self.speed = _speeds(snapshot.lines, outputs, self._outputs[0][1] if self._outputs else {})
        self._outputs.append((t, outputs))
        return True

    def _retire(self, v: LineView, t: float) -> None:
        """A line gone from the snapshot (retired after the retention period): its totals stay in."""
        before = {name: dict(getattr(self._retired, name)) for name in Totals.__slots__}
        self._retired.add(v)
        for name in Totals.__slots__:
            for key, total in getattr(self._retired, name).items():
                if before[name].get(key) != total:
                    self._retired_at[(name, key)] = t

    def _forget_retired(self, live: Totals) -> None:
        """A retired key no live line has, older than every point kept, is dropped: it would otherwise
        be charted (at 0) and kept forever. Its last points show it as unknown (absent at the end)."""
        oldest = self.points[0].t if self.points else None
        for (name, key), at in list(self._retired_at.items()):
            if oldest is not None and at < oldest and key not in getattr(live, name):
                del getattr(self._retired, name)[key]
                del self._retired_at[(name, key)]

    def at_or_before(self, t: float) -> HistoryPoint | None:
        """The latest point no later than ``t``, else the earliest (a shorter span while the page is young)."""
        found = None
        for p in self.points:
            if p.t > t:
                break
            found = p
        return found if found is not None else (self.points[0] if self.points else None)

    def spans(self, window_seconds: float) -> list[tuple[HistoryPoint, HistoryPoint]]:
        """(start, end) of the window ending at each point of the horizon; a point with no earlier
        point is left out."""
        window = chart_window(window_seconds)
        pts = list(self.points)
        if not pts:
            return []
        first_drawn = pts[-1].t - HORIZON_SECONDS
        out = []
        begin = 0
        for end in pts[1:]:
            while begin + 1 < len(pts) and pts[begin + 1].t <= end.t - window:
                begin += 1
            if pts[begin].t < end.t and end.t >= first_drawn:
                out.append((pts[begin], end))
        return out


def _speeds(
    lines: Iterable[LineView], now: Mapping[Line, float], then: Mapping[Line, float]
) -> dict[str, float]:
    """Per model: the lines' tokens/s per user weighted by the output tokens each served over the window."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for v in lines:
        speed = v.gauges.tokens_per_second_per_user
        if not _is_inference(v) or speed is None:
            continue
        weight = now.get(v.line, 0.0) - then.get(v.line, 0.0)
        if weight > 0:
            _add(num, v.line.owner.model, speed * weight)
            _add(den, v.line.owner.model, weight)
    return {m: num[m] / den[m] for m in den}


def delta(a: Mapping[Any, float], b: Mapping[Any, float], key: object) -> float | None:
    """b − a for one key; None where the key is absent at the end or its total shrank."""
    if key not in b:
        return None
    d = b[key] - a.get(key, 0)
    return d if d >= 0 else None


def per_hour_usd(nano: float | None, seconds: float) -> float | None:
    return None if nano is None or seconds <= 0 else nano / NANO_PER_USD / seconds * 3600


def ratio(num: float | None, den: float | None, scale: float = 1.0) -> float | None:
    return None if num is None or den is None or den <= 0 else scale * num / den
