"""Sliding windows of per-tick records, and the live gauges computed over them.

A gauge is a ratio of sums over the window (cost ÷ tokens, not a mean of per-tick
ratios), so a quiet tick weighs what it served. A ratio with a zero denominator has no
value (None): never Inf or NaN (cf. OpenCost's "nan shield").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.meter.money import NANO_PER_USD
from exporter.records import LEVELS, QUANTITIES, WINDOWED

NS_PER_S = 10**9
TOKEN_TIME = "token_time"  # the ledger names which token-time series it was


class TickRecord(NamedTuple):
    """One line's tick in the window. After the money and the GPU time: records.WINDOWED, then per
    records.LEVELS ``<name>_seconds`` (Σ gauge × tick seconds, the integral) and ``<name>_ns`` (the tick
    time it was read: its mean is over that time only), in the table's order (QUANTITY_FIELDS)."""

    end_ns: int
    dt_ns: int
    cost: int = 0  # nano-dollars, all components
    cost_input: int = 0
    cost_output: int = 0
    idle_cost: int = 0  # nano-dollars of ``cost`` that bought idle GPU time (cpm_idle_cost_usd_total)
    held_ns: int = 0
    busy_ns: int = 0
    measured_ns: int = 0
    # records.WINDOWED
    input_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    output_tokens: float = 0.0
    requests: float = 0.0
    itl_seconds: float = 0.0
    itl_count: float = 0.0
    # records.LEVELS
    running_seconds: float = 0.0  # Σ running requests × tick seconds (concurrency integral)
    running_ns: int = 0
    waiting_seconds: float = 0.0
    waiting_ns: int = 0


# The fields the quantity table drives, in order: the booking fills them positionally after the first nine.
QUANTITY_FIELDS = (*WINDOWED, *(f"{name}{unit}" for name in LEVELS for unit in ("_seconds", "_ns")))
FIRST_QUANTITY = len(TickRecord._fields) - len(QUANTITY_FIELDS)
if TickRecord._fields[FIRST_QUANTITY:] != QUANTITY_FIELDS:  # a table entry without its field here
    raise TypeError(
        f"TickRecord ends {TickRecord._fields[FIRST_QUANTITY:]}, records.QUANTITIES says {QUANTITY_FIELDS}"
    )


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
    idle_burn_usd_per_hour: float | None = None  # the idle money's rate: cpm_idle_cost_usd_total's, per hour
    utilization: float | None = None
    window_seconds: float = 0.0
    # Concurrency the CPM was reached at: mean requests in the batch and queued, over the window's
    # time the server's gauges were read (unknown, not 0, where never read).
    running_requests: float | None = None
    waiting_requests: float | None = None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _per_million(cost_nano: int, tokens: float) -> float | None:
    return _ratio(cost_nano / NANO_PER_USD * 1e6, tokens)


IDLE_FIELD = TickRecord._fields.index("idle_cost")
# Fields a catch-up after an outage spreads back over the ticks it accrued in.
SPREAD_FIELDS = tuple(TickRecord._fields.index(f) for f in WINDOWED)
# (LiveGauges field, index of the integral in TickRecord) per records.LEVELS: the mean over the time read.
LEVEL_GAUGES = tuple((q.gauge, TickRecord._fields.index(f"{q.name}_seconds")) for q in QUANTITIES if q.gauge)


class Window:
    """The records of the last ``length_ns`` of wall-clock time, with running sums.

    The window holds exactly its length: the oldest record, when it straddles the window's
    start, counts by the part of it inside (a 30 s window of ~1 s ticks is 30 s, never 31).
    Sums are updated as records enter and leave (O(1) per tick, whatever the window), and
    reset from the record itself whenever the window holds one, so float error cannot build up.
    """

    def __init__(self) -> None:
        self._records: deque[TickRecord] = deque()
        self._sum: list[float] = [0] * len(TickRecord._fields)
        self._length_ns = 0

    def add(self, record: TickRecord, length_ns: int, *, accrued_ns: int = 0) -> None:
        """Add a tick. ``accrued_ns`` > the tick: its tokens accrued over that much time (a
        target's catch-up after an outage) and are spread back over the ticks of that span,
        so no window shows an outage's tokens on its last tick's money."""
        self._length_ns = length_ns
        if accrued_ns > record.dt_ns > 0:
            record = self._spread_back(record, accrued_ns)
        self._records.append(record)
        self._sum = [a + b for a, b in zip(self._sum, record, strict=True)]
        while self._records and self._records[0].end_ns <= record.end_ns - length_ns:
            old = self._records.popleft()
            self._sum = [a - b for a, b in zip(self._sum, old, strict=True)]
        if len(self._records) == 1:
            self._sum = list(record)

    def add_idle(self, nano: int) -> None:
        """The idle money of the tick just added (known once the tick's tokens are in the window)."""
        if self._records and nano:
            last = self._records[-1]
            self._records[-1] = last._replace(idle_cost=last.idle_cost + nano)
            self._sum[IDLE_FIELD] += nano

    def sums(self) -> TickRecord:
        """The window's totals over exactly its length (``end_ns`` is meaningless)."""
        if not self._records:
            return TickRecord._make(self._sum)
        first = self._records[0]
        outside = self._records[-1].end_ns - self._length_ns - (first.end_ns - first.dt_ns)
        if outside <= 0 or first.dt_ns <= 0:
            return TickRecord._make(self._sum)
        share = min(outside / first.dt_ns, 1.0)
        return TickRecord._make(s - share * x for s, x in zip(self._sum, first, strict=True))

    def _spread_back(self, record: TickRecord, accrued_ns: int) -> TickRecord:
        """This tick keeps its share of the catch-up; older ticks of the span get theirs."""
        begin = record.end_ns - accrued_ns
        fields = list(record)
        for i in SPREAD_FIELDS:
            fields[i] = record[i] * record.dt_ns / accrued_ns
        for k, old in enumerate(self._records):
            overlap = min(old.end_ns, record.end_ns - record.dt_ns) - max(old.end_ns - old.dt_ns, begin)
            if overlap > 0:
                grown = list(old)
                for i in SPREAD_FIELDS:
                    part = record[i] * overlap / accrued_ns
                    grown[i] += part
                    self._sum[i] += part
                self._records[k] = TickRecord._make(grown)
        return TickRecord._make(fields)

    def gauges(self) -> LiveGauges:
        r = self.sums()
        if r.dt_ns <= 0:
            return LiveGauges()
        span_s = r.dt_ns / NS_PER_S
        tps, method = _interactivity(r, span_s)
        # records.LEVELS: each gauge's mean over the window's time it was read (unknown where never read)
        levels: dict[str, Any] = {gauge: _ratio(r[i], r[i + 1] / NS_PER_S) for gauge, i in LEVEL_GAUGES}
        return LiveGauges(
            # Prefix-cache hits cost next to nothing: they must not dilute the input price.
            usd_per_million_input=_per_million(r.cost_input, r.input_tokens - r.cached_input_tokens),
            usd_per_million_output=_per_million(r.cost_output, r.output_tokens),
            # One definition for all three: the tokens the GPUs computed (cache hits excluded).
            usd_per_million_total=_per_million(
                r.cost, r.input_tokens - r.cached_input_tokens + r.output_tokens
            ),
            usd_per_request=_ratio(r.cost / NANO_PER_USD, r.requests),
            tokens_per_second_per_user=tps,
            interactivity_method=method,
            burn_usd_per_hour=r.cost / NANO_PER_USD / span_s * 3600,
            idle_burn_usd_per_hour=r.idle_cost / NANO_PER_USD / span_s * 3600,
            utilization=_ratio(r.busy_ns, r.measured_ns),
            window_seconds=span_s,
            **levels,
        )


def _interactivity(r: TickRecord, span_s: float) -> tuple[float | None, str]:
    """Tokens/s per user: 1 ÷ mean inter-token latency; else output rate ÷ mean concurrency."""
    if r.itl_seconds > 0 and r.itl_count > 0:
        return r.itl_count / r.itl_seconds, TOKEN_TIME
    mean_running = (
        _ratio(r.running_seconds, r.running_ns / NS_PER_S) or 0.0
    )  # the cpm_running_requests figure
    if r.output_tokens > 0 and mean_running > 0:
        return r.output_tokens / span_s / mean_running, "output_rate_per_running_request"
    return None, ""


def held_and_busy(window: Window) -> tuple[int, int]:
    """Σ held and Σ busy nanoseconds in a window (the coverage window reuses busy as 'read')."""
    r = window.sums()
    return int(r.held_ns), int(r.busy_ns)
