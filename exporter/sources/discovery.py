"""Pick the node source the config asks for; ``auto`` tries NVML, then dcgm-exporter, then the inventory."""

from __future__ import annotations

import logging

from exporter.settings import ExporterConfig
from exporter.sources.inventory import NodeSource, StaticInventory
from exporter.sources.node import DiscoveredNode
from exporter.sources.nvml import NvmlReader, NvmlUnavailable
from exporter.sources.nvml_poller import NvmlGpus, NvmlPoller

log = logging.getLogger(__name__)


def node_source_for(cfg: ExporterConfig) -> NodeSource:
    src = cfg.node_source
    if src.gpus == "inventory":
        return StaticInventory()
    if src.gpus in ("nvml", "auto"):
        gpus = NvmlGpus(
            NvmlPoller(NvmlReader(), poll_seconds=src.poll_seconds, call_timeout=src.call_timeout_seconds)
        )
        try:
            gpus.start()
            return DiscoveredNode(gpus)
        except NvmlUnavailable as exc:
            if src.gpus == "nvml":  # asked for: keep trying, with cpm_source_up{source="nvml"} 0
                log.error("%s; will retry", exc)
                return DiscoveredNode(gpus)
            log.warning("node_source.gpus=auto: %s; trying the next source", exc)
    if src.dcgm_url:
        from exporter.sources.dcgm_reader import DcgmGpus

        return DiscoveredNode(DcgmGpus(src.dcgm_url))
    log.warning("node_source.gpus=auto: no NVML and no dcgm_url; using the config's inventory")
    return StaticInventory()
