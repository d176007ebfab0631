"""Sliding windows of per-tick records, and the live gauges computed over them.

A gauge is a ratio of sums over the window (cost ÷ tokens, not a mean of per-tick
ratios), so a quiet tick weighs what it served. A ratio with a zero denominator has no
value (None): never Inf or NaN (cf. OpenCost's "nan shield").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from exporter.meter.money import NANO_PER_USD

NS_PER_S = 10**9
TOKEN_TIME = "token_time"  # the ledger names which token-time series it was


class TickRecord(NamedTuple):
    end_ns: int
    dt_ns: int
    cost: int = 0  # nano-dollars, all components
    cost_input: int = 0
    cost_output: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    requests: float = 0.0
    itl_seconds: float = 0.0
    itl_count: float = 0.0
    running_seconds: float = 0.0  # Σ running requests × tick seconds (concurrency integral)
    held_ns: int = 0
    busy_ns: int = 0
    measured_ns: int = 0
    cached_input_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class LiveGauges:
    """Window figures for one line. None means 'no value' (nothing to divide by)."""

    usd_per_million_input: float | None = None
    usd_per_million_output: float | None = None
    usd_per_million_total: float | None = None
    usd_per_request: float | None = None
    usd_per_request_quantiles: tuple[tuple[float, float], ...] = ()  # (quantile, USD): request_cost
    tokens_per_second_per_user: float | None = None
    interactivity_method: str = ""  # TOKEN_TIME | "output_rate_per_running_request"
    burn_usd_per_hour: float | None = None
    utilization: float | None = None
    window_seconds: float = 0.0


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _per_million(cost_nano: int, tokens: float) -> float | None:
    return _ratio(cost_nano / NANO_PER_USD * 1e6, tokens)


class Window:
    """The records of the last ``length_ns`` of wall-clock time, with running sums.

    Sums are updated as records enter and leave (O(1) per tick, whatever the window), and
    reset from the record itself whenever the window holds one, so float error cannot build up.
    """

    def __init__(self) -> None:
        self._records: deque[TickRecord] = deque()
        self._sum: list[float] = [0] * len(TickRecord._fields)

    def add(self, record: TickRecord, length_ns: int) -> None:
        self._records.append(record)
        self._sum = [a + b for a, b in zip(self._sum, record, strict=True)]
        while self._records and self._records[0].end_ns <= record.end_ns - length_ns:
            old = self._records.popleft()
            self._sum = [a - b for a, b in zip(self._sum, old, strict=True)]
        if len(self._records) == 1:
            self._sum = list(record)

    def sums(self) -> TickRecord:
        """The window's totals, as one record spanning it (``end_ns`` is meaningless)."""
        return TickRecord._make(self._sum)

    def gauges(self) -> LiveGauges:
        r = self.sums()
        if r.dt_ns <= 0:
            return LiveGauges()
        span_s = r.dt_ns / NS_PER_S
        tps, method = _interactivity(r, span_s)
        return LiveGauges(
            # Prefix-cache hits cost next to nothing: they must not dilute the input price.
            usd_per_million_input=_per_million(r.cost_input, r.input_tokens - r.cached_input_tokens),
            usd_per_million_output=_per_million(r.cost_output, r.output_tokens),
            usd_per_million_total=_per_million(r.cost, r.input_tokens + r.output_tokens),
            usd_per_request=_ratio(r.cost / NANO_PER_USD, r.requests),
            tokens_per_second_per_user=tps,
            interactivity_method=method,
            burn_usd_per_hour=r.cost / NANO_PER_USD / span_s * 3600,
            utilization=_ratio(r.busy_ns, r.measured_ns),
            window_seconds=span_s,
        )


def _interactivity(r: TickRecord, span_s: float) -> tuple[float | None, str]:
    """Tokens/s per user: 1 ÷ mean inter-token latency; else output rate ÷ mean concurrency."""
    if r.itl_seconds > 0 and r.itl_count > 0:
        return r.itl_count / r.itl_seconds, TOKEN_TIME
    mean_running = r.running_seconds / span_s
    if r.output_tokens > 0 and mean_running > 0:
        return r.output_tokens / span_s / mean_running, "output_rate_per_running_request"
    return None, ""


def held_and_busy(window: Window) -> tuple[int, int]:
    """Σ held and Σ busy nanoseconds in a window (the coverage window reuses busy as 'read')."""
    r = window.sums()
    return int(r.held_ns), int(r.busy_ns)
