"""The inputs to the ledger, not only the ledger: energy billed equals the joules the GPU used.

Random MIG layouts that change over time (instances created and destroyed, the GPU leaving and
re-entering MIG mode, the counter restarting), units appearing and vanishing: the energy money
of each tick is the physical GPU's joules since the last tick × PUE × $/kWh, whatever the units,
to the nano-dollar (each unit's carry holds < 1 nano-dollar). Issue 13, cases 2-4.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.meter.ledger import Meter
from exporter.pricing.prices import Energy, GpuPrice, PricingConfig
from exporter.records import GpuSample, Owner, Placement, TickInput

S = 10**9
T0 = 1_767_225_600 * S
PRICING = PricingConfig(
    gpu_prices={("H100", "owned"): GpuPrice("H100", "owned", Decimal("1.80"), "config", "test")},
    energy=Energy(usd_per_kwh=Decimal("0.36"), pue=Decimal("1.5")),
)
NANO_PER_JOULE = Fraction(15, 10) * Fraction(36, 100) * 10**9 / 3_600_000
A = Owner("ml", "a-0", "ml", "m")


def layout(slices: list[int]) -> list[GpuSample]:
    """The GPU as units: whole (no slices), or MIG instances plus the slices none uses."""
    if not slices:
        return [GpuSample("GPU-a", "H100", "owned")]
    units = [GpuSample(f"GPU-a/gi{i}-{n}", "H100", "owned", price_share=Fraction(n, 7), device="GPU-a")
             for i, n in enumerate(slices)]  # fmt: skip
    if (rest := 7 - sum(slices)) > 0:
        units.append(
            GpuSample("GPU-a/unused", "H100", "owned", price_share=Fraction(rest, 7), device="GPU-a")
        )
    return units


layouts = st.one_of(
    st.just([]), st.lists(st.integers(1, 7), min_size=1, max_size=7).filter(lambda x: sum(x) <= 7)
)
steps = st.tuples(
    layouts, st.integers(0, 5_000_000), st.booleans()
)  # layout, joules this tick, counter reset


@settings(max_examples=60, deadline=None)
@given(history=st.lists(steps, min_size=2, max_size=25))
def test_energy_billed_is_the_gpus_joules_whatever_its_layout(
    history: list[tuple[list[int], int, bool]],
) -> None:
    meter, counter, expected, ids = Meter("n"), 10**9, Fraction(0), set()
    for i, (slices, joules, reset) in enumerate(history):
        # A driver reload restarts the counter from 0 (one that does not fall is invisible to anyone).
        counter = joules if reset and joules < counter else counter + joules
        units = [u.__class__(**{**_fields(u), "energy_joules_total": float(counter)}) for u in layout(slices)]
        ids |= {u.gpu_id for u in units}
        held = [Placement(units[0].gpu_id, A)]
        snap = meter.tick(
            TickInput(T0 + i * 10 * S, T0 + (i + 1) * 10 * S, "n", tuple(units), tuple(held)), PRICING, 60
        )
        if i > 0:  # the first reading is a baseline (its tick falls back to power × time: none here)
            expected += joules * NANO_PER_JOULE
        billed = sum(v.totals.cost.get("energy", 0) for v in snap.lines) + snap.retired_nano
        assert 0 <= expected - billed < len(ids), (i, billed, float(expected))


def _fields(u: GpuSample) -> dict[str, object]:
    return {f: getattr(u, f) for f in u.__slots__}  # type: ignore[attr-defined]
