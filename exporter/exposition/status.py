"""What the runtime knows besides the meter's snapshot: targets, config, build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.meter.snapshot import LineView, MeterSnapshot
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.pricing.published import PublishedRow
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


@dataclass(frozen=True, slots=True, order=True)
class OperatingPoint:
    """What one pod's server ran a model with (runtime/operating.py); "" = unknown."""

    namespace: str
    pod: str
    model: str
    engine: str  # the detected server profile: vllm, sglang, tgi, triton, llamacpp, training
    version: str
    precision: str
    kv_cache_dtype: str
    source: str  # annotation | container | config | "" (nothing said)
    model_class: str = ""  # the published table's class of the model, where said (frontier ratio)


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
    operating_points: tuple[OperatingPoint, ...] = ()
    # (namespace, pod) → changes
    operating_changes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    published: tuple[PublishedRow, ...] = ()  # the dated table of published CPMs (the frontier ratio)


@dataclass(frozen=True, slots=True)
class ExportView:
    meter: MeterSnapshot
    status: RuntimeStatus
    # (line, published row, live CPM ÷ the row's): matched once a tick (exposition/frontier.py)
    frontier: tuple[tuple[LineView, PublishedRow, float], ...] = ()
