"""One rule for every reader: a MIG GPU's units add up to exactly the whole GPU."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from exporter.sources.gpu.mig import with_unused_slices
from exporter.sources.gpu.unit import GpuUnit


def instance(gi: int, slices: int, *, watts: float | None = 700.0, joules: float | None = 7e6) -> GpuUnit:
    # Readers pass the parent's device readings on whole: the meter applies the share, once.
    return GpuUnit(f"GPU-a/gi{gi}", f"0/gi{gi}", "NVIDIA H100 80GB HBM3", power_watts=watts,
                   energy_joules_total=joules, price_share=Fraction(slices, 7),
                   profile=f"{slices}g.40gb", parent="GPU-a")  # fmt: skip


def billed_watts(units: tuple[GpuUnit, ...]) -> float:
    return sum(float(u.price_share) * (u.power_watts or 0) for u in units)


def test_the_slices_no_instance_uses_are_an_idle_unit_carrying_the_gpus_power_and_energy() -> None:
    whole = GpuUnit("GPU-b", "1", "NVIDIA H100 80GB HBM3", power_watts=500.0)
    units = with_unused_slices((instance(1, 3), instance(2, 1), whole))
    unused = units[-1]
    assert (unused.unit_id, unused.index, unused.profile, unused.parent) == (
        "GPU-a/unused",
        "0/unused",
        "unused",
        "GPU-a",
    )
    assert unused.price_share == Fraction(3, 7)
    assert (unused.power_watts, unused.energy_joules_total) == (700.0, 7e6)  # the GPU's, whole
    mig = tuple(u for u in units if u.parent == "GPU-a")
    assert sum(u.price_share for u in mig) == 1
    assert billed_watts(mig) == pytest.approx(700.0)  # the GPU's power, once
    assert units[2] == whole  # a whole GPU is left as it is


def test_instances_claiming_more_than_the_gpu_are_scaled_to_it() -> None:
    units = with_unused_slices((instance(1, 4), instance(2, 4)))  # 8/7: a glitch
    assert [u.price_share for u in units] == [Fraction(1, 2), Fraction(1, 2)]
    assert billed_watts(units) == pytest.approx(700.0)
    assert [u.energy_joules_total for u in units] == [7e6, 7e6]  # the GPU's counter, whole


def test_a_full_gpu_gets_no_unused_unit_and_unknown_readings_stay_unknown() -> None:
    assert len(with_unused_slices((instance(1, 7),))) == 1
    (_, unused) = with_unused_slices((instance(1, 3, watts=None, joules=None),))
    assert unused.power_watts is None and unused.energy_joules_total is None


def test_the_rest_reads_from_an_instance_with_a_share_and_takes_a_fault_all_instances_share() -> None:
    empty = GpuUnit("GPU-a/gi9", "0/gi9", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", price_share=Fraction(0),
                    profile="1g.10gb", parent="GPU-a", power_watts=0.0)  # fmt: skip
    (_, _, unused) = with_unused_slices((empty, instance(1, 3)))
    assert unused.power_watts == pytest.approx(700.0)  # the GPU's 700 W, not 0 from the empty one
    assert unused.name == "NVIDIA H100 80GB HBM3"
    lost = tuple(replace(u, fault="gpu_is_lost") for u in (instance(1, 3), instance(2, 3)))
    assert with_unused_slices(lost)[-1].fault == "gpu_is_lost"
    assert with_unused_slices((lost[0], instance(2, 3)))[-1].fault == ""
