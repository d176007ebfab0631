"""dcgm-exporter as the node's GPU reader: its endpoint scraped each tick (for DaemonSets without
NVML access). Utilisation is engine activity where exported, else GPU_UTIL; holders are its
Kubernetes pod labels; a MIG instance pays its compute slices' share of the parent's price.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from fractions import Fraction

from exporter.config.schema import ExporterConfig
from exporter.engines.read import Fetch
from exporter.errors import SourceError
from exporter.http.fetch import FetchLimits, fetch_text
from exporter.records import SourceStatus
from exporter.sources.gpu.dcgm import DcgmUnit, read_dcgm
from exporter.sources.gpu.mig import with_unused_slices
from exporter.sources.gpu.unit import GpuUnit

log = logging.getLogger(__name__)

# Compute slices of a whole GPU: 7 on A100/H100/H200/B200, 4 on A30 (NVIDIA MIG user guide).
_SLICES = ((re.compile(r"A30"), 4),)
DEFAULT_SLICES = 7
_PROFILE_SLICES = re.compile(r"^(\d+)g\.")


class DcgmGpus:
    name = "dcgm"

    def __init__(self, url: str, fetch: Fetch = fetch_text) -> None:
        self._url = url
        self._fetch = fetch
        self._last: tuple[GpuUnit, ...] = ()
        self._status = SourceStatus(self.name, False, "not scraped yet")

    def units(self, cfg: ExporterConfig) -> tuple[GpuUnit, ...]:
        lim = cfg.limits
        limits = FetchLimits(lim.timeout_seconds, lim.max_body_bytes, lim.max_samples)
        try:
            text = self._fetch(self._url, limits, cfg.node_source.dcgm_client)
            reading = read_dcgm(text, max_samples=limits.max_samples)
        except SourceError as exc:
            if self._status.up or self._status.error != str(exc):
                log.warning("dcgm-exporter %s down: %s", self._url, exc)
            self._status = SourceStatus(self.name, False, str(exc))
            # The GPUs are still there and still held: bill them as before, busy time unknown.
            self._last = tuple(replace(u, utilization=None) for u in self._last)
            return self._last
        self._status = SourceStatus(self.name, True)
        self._last = with_unused_slices(tuple(_unit(u) for u in reading.units))
        return self._last

    def status(self) -> SourceStatus:
        return self._status

    def close(self) -> None:
        pass


def _unit(u: DcgmUnit) -> GpuUnit:
    share = Fraction(1)
    index = u.gpu_index
    if u.mig_profile is not None:
        share = mig_share(u.mig_profile, u.model_name)
        index = f"{u.gpu_index}/gi{u.gpu_instance_id}"
    # Device-level readings on an instance's series are the parent's, passed on whole: the
    # meter meters each physical GPU's energy once and splits it by the current shares.
    return GpuUnit(
        u.unit_id,
        index,
        u.model_name,
        utilization=u.utilization,
        power_watts=u.power_watts,
        energy_joules_total=u.energy_joules_total,
        price_share=share,
        profile=u.mig_profile or "",
        holders=tuple((h.namespace, h.pod) for h in u.holders),
        parent=u.uuid if u.mig_profile is not None else "",
    )


def mig_share(profile: str, model_name: str) -> Fraction:
    """ "3g.40gb" on a 7-slice GPU → 3/7; an unreadable profile pays the whole GPU (never less)."""
    m = _PROFILE_SLICES.match(profile)
    total = next((n for pattern, n in _SLICES if pattern.search(model_name)), DEFAULT_SLICES)
    if m is None or not 0 < int(m.group(1)) <= total:
        return Fraction(1)
    return Fraction(int(m.group(1)), total)
