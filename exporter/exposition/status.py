"""What the runtime knows besides the meter's snapshot: targets, config, build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import SourceStatus, UnitInfo


@dataclass(frozen=True, slots=True)
class TargetStatus:
    name: str
    server: str
    up: bool
    duration_seconds: float
    errors: Mapping[str, int] = field(default_factory=dict)  # reason → cumulative count
    last_error: str = ""
    namespace: str = ""  # the workload the target serves ("" for a target declared without one)
    pod: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    mode: str  # "demo" | "run"
    version: str
    pricing: PricingConfig
    prices_in_use: tuple[GpuPrice, ...] = ()
    targets: tuple[TargetStatus, ...] = ()
    config_ok: bool = True
    config_success_timestamp: float = 0.0
    config_sha256: str = ""
    config_error: str = ""
    tick_seconds: float = 0.0  # duration of the last tick
    ticks: int = 0
    window_seconds: float = 0.0
    sources: tuple[SourceStatus, ...] = ()
    units: tuple[UnitInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportView:
    meter: MeterSnapshot
    status: RuntimeStatus
