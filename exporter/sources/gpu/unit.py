"""A GPU unit as every reader reports it (NVML, dcgm-exporter), before pricing, and the reader protocol."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

from exporter.records import SourceStatus

if TYPE_CHECKING:
    from exporter.config.schema import ExporterConfig


@dataclass(frozen=True, slots=True)
class GpuUnit:
    """One billable GPU unit from any reader, before pricing."""

    unit_id: str
    index: str
    name: str
    utilization: float | None = None
    # The physical GPU's power and cumulative energy, whole, also on a MIG instance (the meter
    # applies price_share once).
    power_watts: float | None = None
    energy_joules_total: float | None = None
    price_share: Fraction = Fraction(1)
    profile: str = ""
    holders: tuple[tuple[str, str], ...] = ()  # (namespace, pod) the reader saw holding it
    fault: str = ""
    pids: tuple[int, ...] = ()  # host PIDs of its compute processes (NVML)
    process_sm: tuple[tuple[int, float], ...] = ()  # (pid, SM use 0..1) where the driver samples it
    parent: str = ""  # a MIG instance's GPU (its unit id): the instances and unused slices pay it whole


class GpuReader(Protocol):
    name: str

    def units(self, cfg: ExporterConfig) -> tuple[GpuUnit, ...]: ...

    def status(self) -> SourceStatus: ...

    def close(self) -> None: ...
