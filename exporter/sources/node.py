"""The node as discovered at run time: GPUs from NVML or dcgm-exporter, holders from the sources
that know them, the config's static placements as the last resort.

A GPU reader yields ``GpuUnit``s (source-agnostic); this module names their hardware, gives
them the node's capacity class, and decides who holds each one, saying which rule did.
Placement precedence per unit: the reader's own holders (dcgm-exporter's pod labels), then
the config's static placements (by UUID, by index, or by ``index/giN`` for a MIG instance).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from exporter.model import GpuSample, Owner, Placement, PodUsage, SourceStatus, UnitInfo
from exporter.settings import ExporterConfig
from exporter.sources.gpu_names import hardware_of
from exporter.sources.inventory import StaticInventory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuUnit:
    """One billable GPU unit from any reader, before pricing."""

    unit_id: str
    index: str
    name: str
    utilization: float | None = None
    power_watts: float | None = None
    energy_joules_total: float | None = None
    price_share: Fraction = Fraction(1)
    profile: str = ""
    holders: tuple[tuple[str, str], ...] = ()  # (namespace, pod) the reader saw holding it
    fault: str = ""


class GpuReader(Protocol):
    name: str

    def units(self, cfg: ExporterConfig) -> tuple[GpuUnit, ...]: ...

    def status(self) -> SourceStatus: ...

    def close(self) -> None: ...


class DiscoveredNode:
    """A ``NodeSource`` over a GPU reader; pods' storage still comes from the config."""

    def __init__(self, reader: GpuReader) -> None:
        self._reader = reader
        self._static = StaticInventory()
        self._units: tuple[GpuUnit, ...] = ()
        self._info: tuple[UnitInfo, ...] = ()

    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]:
        self._units = self._reader.units(cfg)
        names = cfg.node_source.hardware_names
        return tuple(
            GpuSample(
                u.unit_id,
                hardware_of(u.name, names),
                cfg.node_source.capacity,
                utilization=u.utilization,
                power_watts=u.power_watts,
                price_share=u.price_share,
                energy_joules_total=u.energy_joules_total,
                profile=u.profile,
            )
            for u in self._units
        )

    def placements(self, cfg: ExporterConfig) -> tuple[Placement, ...]:
        owners = {(w.owner.namespace, w.owner.pod): w.owner for w in cfg.workloads}
        static = _static_by_unit(self._units, self._static.placements(cfg))
        out: list[Placement] = []
        info: list[UnitInfo] = []
        names = cfg.node_source.hardware_names
        for u in self._units:
            if u.holders:
                placed = [Placement(u.unit_id, _owner(pod, owners)) for pod in u.holders]
                rule = self._reader.name
            else:
                placed, rule = static.get(u.unit_id, []), "static" if u.unit_id in static else ""
            out += placed
            info.append(
                UnitInfo(u.unit_id, u.index, u.name, hardware_of(u.name, names), u.profile, rule, u.fault)
            )
        self._info = tuple(info)
        return tuple(out)

    def pods(self, cfg: ExporterConfig) -> tuple[PodUsage, ...]:
        return self._static.pods(cfg)

    def status(self) -> tuple[SourceStatus, ...]:
        return (self._reader.status(),)

    def unit_info(self) -> tuple[UnitInfo, ...]:
        return self._info

    def close(self) -> None:
        self._reader.close()


def _owner(pod: tuple[str, str], declared: Mapping[tuple[str, str], Owner]) -> Owner:
    """A pod the config declares keeps its team and model; any other is its namespace's."""
    namespace, name = pod
    return declared.get(pod) or Owner(namespace=namespace, pod=name, team=namespace, model="")


def _static_by_unit(
    units: tuple[GpuUnit, ...], placements: tuple[Placement, ...]
) -> dict[str, list[Placement]]:
    """The config's placements keyed by unit, its GPU ids read as UUID, index or ``index/giN``."""
    alias: dict[str, str] = {}
    for u in units:
        alias.setdefault(u.index, u.unit_id)
        alias[u.unit_id] = u.unit_id
    out: dict[str, list[Placement]] = {}
    for p in placements:
        unit_id = alias.get(p.gpu_id)
        if unit_id is None:
            continue  # a GPU this node does not have (now): nothing to hold
        out.setdefault(unit_id, []).append(Placement(unit_id, p.holder, p.weight))
    return out
