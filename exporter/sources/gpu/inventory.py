"""The static inventory: GPUs, who holds them and pods' storage, straight from the config.

For laptops, CI and the demo, and for nodes where neither NVML nor dcgm-exporter exists.
"""

from __future__ import annotations

from typing import Protocol

from exporter.config.schema import ExporterConfig, StaticWorkload
from exporter.pricing.prices import BYTES_PER_GB
from exporter.records import GpuSample, Placement, PodUsage, SourceStatus, UnitInfo


class NodeSource(Protocol):
    """What the tick loop asks of the node each tick."""

    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]: ...

    def placements(self, cfg: ExporterConfig) -> tuple[Placement, ...]: ...

    def pods(self, cfg: ExporterConfig) -> tuple[PodUsage, ...]: ...

    def status(self) -> tuple[SourceStatus, ...]: ...

    def unit_info(self) -> tuple[UnitInfo, ...]: ...

    def close(self) -> None: ...

    def workloads(self, cfg: ExporterConfig) -> tuple[StaticWorkload, ...]:
        """Workloads found on the node (pods and their scrape targets), besides the config's."""
        ...


class StaticInventory:
    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]:
        return tuple(
            GpuSample(g.gpu_id, g.hardware, g.capacity, utilization=g.utilization, power_watts=g.power_watts)
            for g in cfg.gpus
        )

    def placements(self, cfg: ExporterConfig) -> tuple[Placement, ...]:
        return tuple(Placement(gpu_id, w.owner, share) for w in cfg.workloads for gpu_id, share in w.gpus)

    def pods(self, cfg: ExporterConfig) -> tuple[PodUsage, ...]:
        return tuple(
            PodUsage(w.owner, storage_bytes=float(w.storage_gb * BYTES_PER_GB))
            for w in cfg.workloads
            if w.storage_gb
        )

    def status(self) -> tuple[SourceStatus, ...]:
        return (SourceStatus("inventory", up=True),)

    def unit_info(self) -> tuple[UnitInfo, ...]:
        return ()  # the config names these GPUs already

    def close(self) -> None:
        pass

    def workloads(self, cfg: ExporterConfig) -> tuple[StaticWorkload, ...]:
        return ()  # the config declares them all
