"""A MIG GPU is paid whole: the slices no instance uses are a unit of their own (held by nobody).

One rule for every reader (NVML, dcgm-exporter): group the instances by their parent GPU; if
their shares exceed the GPU (a driver or exporter glitch), scale them down to it, so the GPU
is never billed twice; if they fall short, add an ``unused`` unit for the rest, with its share
of the parent's energy (owned hardware pays electricity for idle slices too). Power and energy
stay the parent's, whole, on every unit: the meter applies the shares, once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from fractions import Fraction

from exporter.sources.gpu.unit import GpuUnit

log = logging.getLogger(__name__)
_MIG_SUFFIX = re.compile(r"\s+MIG\s.*$")


def with_unused_slices(units: tuple[GpuUnit, ...]) -> tuple[GpuUnit, ...]:
    """``units`` with each MIG GPU's instances adding up to exactly the whole GPU."""
    by_parent: dict[str, list[GpuUnit]] = {}
    for u in units:
        if u.parent:
            by_parent.setdefault(u.parent, []).append(u)
    out = list(units)
    for parent, migs in by_parent.items():
        used = sum((u.price_share for u in migs), Fraction(0))
        if used > 1:
            log.warning("gpu=%s MIG instances claim %s of the GPU; scaling their shares to 1", parent, used)
            scaled = {id(u): _scaled(u, 1 / used) for u in migs}
            out = [scaled.get(id(u), u) for u in out]
        elif used < 1:
            out.append(_unused(parent, migs, 1 - used))
    return tuple(out)


def _scaled(u: GpuUnit, factor: Fraction) -> GpuUnit:
    return replace(u, price_share=u.price_share * factor)


def _unused(parent: str, migs: list[GpuUnit], share: Fraction) -> GpuUnit:
    """The idle rest of ``parent``. A fault every instance shares (the whole GPU is lost or hung)
    is the rest's fault too."""
    faults = {u.fault for u in migs}
    return GpuUnit(
        f"{parent}/unused",
        f"{migs[0].index.split('/')[0]}/unused",
        _MIG_SUFFIX.sub("", migs[0].name),  # "NVIDIA H100 80GB HBM3 MIG 3g.40gb": the GPU's name
        power_watts=_device_reading([u.power_watts for u in migs]),
        energy_joules_total=_device_reading([u.energy_joules_total for u in migs]),
        price_share=share,
        profile="unused",
        parent=parent,
        fault=faults.pop() if len(faults) == 1 else "",
    )


def _device_reading(readings: list[float | None]) -> float | None:
    """The parent's reading as its instances carry it (all alike; an instance that read 0
    while another read the GPU's value does not win)."""
    known = [r for r in readings if r is not None]
    return max(known) if known else None
