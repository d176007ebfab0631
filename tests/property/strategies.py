"""Hypothesis strategies: random fleets, prices, tick lengths and upstream counter histories."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import strategies as st

from exporter.pricing.prices import GpuPrice, Overhead, PricingConfig
from exporter.records import GpuSample, Owner, Placement

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: where the property tests' clocks start
HARDWARE = ("H100", "B200")
CAPACITIES = ("on_demand", "spot")


def decimals(max_value: str, places: int = 9) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(0), max_value=Decimal(max_value), places=places, allow_nan=False)


@st.composite
def pricing(draw: st.DrawFn) -> PricingConfig:
    gpu_prices = {
        (hw, cap): GpuPrice(hw, cap, draw(decimals("50")), "config", "test")
        for hw in HARDWARE
        for cap in CAPACITIES
    }
    return PricingConfig(
        gpu_prices=gpu_prices,
        storage_usd_per_gb_month=draw(decimals("1")),
        month=draw(st.sampled_from(["calendar", "730h"])),
        support_uplift_percent=draw(decimals("40", 3)),
        overhead=Overhead(usd_per_node_hour=draw(decimals("5")), percent=draw(decimals("30", 3))),
        output_input_weight=draw(decimals("10", 2)),
    )


owners = st.builds(
    Owner,
    namespace=st.sampled_from(["a", "b"]),
    pod=st.sampled_from(["p0", "p1", "p2", "p3"]),
    team=st.just("t"),
    model=st.sampled_from(["", "m0"]),
)


@st.composite
def fleet(draw: st.DrawFn) -> tuple[tuple[GpuSample, ...], tuple[Placement, ...]]:
    n = draw(st.integers(min_value=0, max_value=6))
    gpus = tuple(
        GpuSample(
            str(i),
            draw(st.sampled_from(HARDWARE)),
            draw(st.sampled_from(CAPACITIES)),
            utilization=draw(st.none() | st.floats(min_value=0, max_value=1)),
            # MIG instances pay a share of the parent's price; whole GPUs 1.
            price_share=draw(st.sampled_from((Fraction(1), Fraction(1, 7), Fraction(3, 7), Fraction(1, 4)))),
            energy_joules_total=draw(st.none() | st.floats(min_value=0, max_value=1e12)),
        )
        for i in range(n)
    )
    placements: list[Placement] = []
    for g in gpus:
        for holder in draw(st.lists(owners, max_size=3, unique_by=lambda o: (o.namespace, o.pod))):
            # Some holders come or go mid-run (pods deleted, rescheduled): bounded holding times.
            since, until = (draw(st.none() | st.integers(min_value=-60, max_value=900)) for _ in range(2))
            placements.append(
                Placement(
                    g.gpu_id,
                    holder,
                    draw(st.integers(min_value=1, max_value=5)),
                    since_ns=None if since is None else T0 + since * 10**9,
                    until_ns=None if until is None else T0 + until * 10**9,
                )
            )
    return gpus, tuple(placements)


# Tick lengths in nanoseconds: sub-second to a few minutes, deliberately irregular.
tick_ns = st.integers(min_value=1, max_value=300 * 10**9)
