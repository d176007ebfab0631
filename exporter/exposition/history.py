"""The last minutes of a node's books, for the landing page's charts.

Each point keeps cumulative totals (the meter's, which only grow); a chart's value at a point is
the change over the exporter's window ending there, so every curve has the definition of the
gauge or recording rule it stands for:

    CPM of a model      = 1e6 × Δ(input + output cost) ÷ Δ(input − cached + output tokens)
                          (model:cpm_usd_per_million_tokens, direction total)
    tokens/s per user   = the model's lines' live figure, weighted by their output tokens
                          (model:cpm_tokens_per_second_per_user:output_weighted_mean5m)
    spend of a team     = 3600 × Δcost ÷ Δt   ($/h: rate(cpm_cost_usd_total))
    idle $/h by reason  = 3600 × Δidle cost ÷ Δt   (rate(cpm_idle_cost_usd_total))
    utilisation         = Δbusy ÷ Δmeasured GPU time   (node_hardware:cpm_gpu_utilization)

A value whose denominator did not move is unknown (None), drawn as a gap, never 0. A total that
shrank (a line retired after the retention period) is unknown for the window it spans.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.meter.money import NANO_PER_USD
from exporter.meter.snapshot import LineView, MeterSnapshot

NS_PER_S = 1e9
HORIZON_SECONDS = 15 * 60  # what the charts span
MAX_POINTS = 300  # points kept over the horizon (a point every 3 s at least)
IDLE_TEAM = "idle (no pod)"

LineKey = tuple[str, str, str]  # namespace, pod, model


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """Cumulative totals at one tick (nano-dollars, tokens, nanoseconds)."""

    t: float  # Unix seconds
    model_cost: Mapping[str, int]  # inference input + output cost
    model_tokens: Mapping[str, float]  # tokens the GPUs computed: input − cached + output
    team_cost: Mapping[str, int]  # every component, idle GPUs under IDLE_TEAM
    idle_cost: Mapping[str, int]  # reason → idle money
    busy_ns: Mapping[str, int]  # hardware → busy GPU time
    measured_ns: Mapping[str, int]  # hardware → held GPU time whose utilisation was known
    held_ns: int  # every line's held GPU time (idle GPUs included)
    speed: Mapping[str, float]  # model → output-weighted tokens/s per user at this tick


def _add(into: dict[Any, Any], key: object, amount: float) -> None:
    into[key] = into.get(key, 0) + amount


def _is_inference(v: LineView) -> bool:
    return v.line.owner.workload == "inference"


def _key(v: LineView) -> LineKey:
    o = v.line.owner
    return o.namespace, o.pod, o.model


def _totals(lines: Iterable[LineView]) -> dict[str, dict[Any, Any]]:
    out: dict[str, dict[Any, Any]] = {
        k: {} for k in ("model_cost", "model_tokens", "team", "idle", "busy", "measured")
    }
    for v in lines:
        t, o = v.totals, v.line.owner
        _add(out["team"], IDLE_TEAM if o.is_idle else o.team, sum(t.cost.values()))
        for reason, nano in t.idle_cost.items():
            _add(out["idle"], reason, nano)
        _add(out["busy"], v.line.hardware, t.busy_ns)
        _add(out["measured"], v.line.hardware, t.measured_ns)
        if _is_inference(v):
            _add(out["model_cost"], o.model, t.cost_input + t.cost_output)
            _add(out["model_tokens"], o.model, t.input_tokens - t.cached_input_tokens + t.output_tokens)
    return out


class PageHistory:
    """Points of the last HORIZON_SECONDS, one at most every ``step`` seconds."""

    def __init__(self) -> None:
        self.points: deque[HistoryPoint] = deque()
        # Output tokens per inference line at each point of the last window only (the speed
        # weights): per line, so kept no longer than needed (a 2 000-owner node × 300 points).
        self._outputs: deque[tuple[float, Mapping[LineKey, float]]] = deque()

    def add(self, snapshot: MeterSnapshot, window_seconds: float, tick_seconds: float) -> bool:
        """Keep this tick as a point when a step has passed since the last; True when kept."""
        t = snapshot.end_ns / NS_PER_S
        step = max(tick_seconds, HORIZON_SECONDS / MAX_POINTS)
        if self.points and t - self.points[-1].t < step * 0.9:
            return False
        sums = _totals(snapshot.lines)
        line_output = {_key(v): v.totals.output_tokens for v in snapshot.lines if _is_inference(v)}
        while len(self._outputs) > 1 and self._outputs[1][0] <= t - window_seconds:
            self._outputs.popleft()  # the first one left is the window's start (or the earliest)
        then = self._outputs[0][1] if self._outputs else {}
        point = HistoryPoint(
            t=t,
            model_cost=sums["model_cost"],
            model_tokens=sums["model_tokens"],
            team_cost=sums["team"],
            idle_cost=sums["idle"],
            busy_ns=sums["busy"],
            measured_ns=sums["measured"],
            held_ns=sum(v.totals.held_ns for v in snapshot.lines),
            speed=_speeds(snapshot.lines, line_output, then),
        )
        self.points.append(point)
        self._outputs.append((t, line_output))
        while self.points and self.points[0].t < t - HORIZON_SECONDS:
            self.points.popleft()
        return True

    def at_or_before(self, t: float) -> HistoryPoint | None:
        """The latest point no later than ``t``, else the earliest (a shorter span while the page is young)."""
        found = None
        for p in self.points:
            if p.t > t:
                break
            found = p
        return found if found is not None else (self.points[0] if self.points else None)

    def spans(self, window_seconds: float) -> list[tuple[HistoryPoint, HistoryPoint]]:
        """(start, end) of the window ending at each point; points with no earlier point are left out."""
        out = []
        begin = 0
        pts = list(self.points)
        for end in pts[1:]:
            while begin + 1 < len(pts) and pts[begin + 1].t <= end.t - window_seconds:
                begin += 1
            if pts[begin].t < end.t:
                out.append((pts[begin], end))
        return out


def _speeds(
    lines: Iterable[LineView], now: Mapping[LineKey, float], then: Mapping[LineKey, float]
) -> dict[str, float]:
    """Per model: the lines' tokens/s per user weighted by the output tokens each served over the window."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for v in lines:
        speed = v.gauges.tokens_per_second_per_user
        if not _is_inference(v) or speed is None:
            continue
        weight = now.get(_key(v), 0.0) - then.get(_key(v), 0.0)
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
