"""What one tick hands the exposition: each line's cumulative totals and live gauges, and the node's books.

The exposition reads a snapshot while the next tick runs: totals are copies (``copy_totals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from exporter.meter.attribution import Line
from exporter.meter.projection import Projection
from exporter.meter.tenants import NO_TENANTS, TenantView
from exporter.meter.windows import LiveGauges


@dataclass(slots=True)
class LineTotals:
    """Cumulative since the exporter started; only ever grows."""

    cost: dict[str, int] = field(default_factory=dict)  # component → nano-dollars
    cost_input: int = 0
    cost_output: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    requests: float = 0.0
    cached_input_tokens: float = 0.0
    requests_by_reason: dict[str, float] = field(default_factory=dict)
    held_ns: int = 0
    busy_ns: int = 0
    measured_ns: int = 0  # held time whose utilisation was known
    idle_cost: dict[str, int] = field(default_factory=dict)  # reason → nano-dollars (a subset of cost)
    last_ns: int = 0  # last tick that touched this line
    # Counters (ModelDelta.known) a server ever exported for this line: the others are unknown,
    # and their series are absent, not 0.
    known: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LineView:
    line: Line
    totals: LineTotals  # a copy: exposition may read it while the next tick runs
    gauges: LiveGauges
    split: str  # how this line's money was split into input/output lately
    projection: Projection | None = None  # training lines with a target token count
    # Tenants of a gateway that called this line's model (meter/tenants.py): their cumulative money
    # and tokens, the money waiting for a gateway's count; empty where no gateway claimed its tokens.
    tenants: TenantView = NO_TENANTS


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    node: str
    end_ns: int
    lines: tuple[LineView, ...] = ()
    resets: Mapping[str, int] = field(default_factory=dict)  # cumulative per target
    rejected: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (source, reason)
    coverage: float | None = None  # share of held GPU-seconds whose tokens we read (window)
    overflowed_owners: int = 0
    unpriced_gpu_seconds: float = 0.0
    bill_nano: int = 0  # everything ever charged: Σ line costs + retired_nano, exactly
    retired_nano: int = 0  # cost of lines dropped after the retention period
    # (model, direction) → tokens gateways counted that no token served here matched (settlement)
    gateway_unmatched: Mapping[tuple[str, str], float] = field(default_factory=dict)


def copy_totals(t: LineTotals) -> LineTotals:
    """A copy the next tick cannot change: its dicts copied, its numbers shared."""
    return replace(
        t, cost=dict(t.cost), requests_by_reason=dict(t.requests_by_reason), idle_cost=dict(t.idle_cost)
    )
