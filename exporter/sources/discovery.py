"""Build the node source the config asks for; ``auto`` tries NVML, then dcgm-exporter, then the inventory.

With ``kubernetes.enabled`` the node also watches its pods (holders, teams, models, targets)
and asks the kubelet's PodResources API who holds which GPU.
"""

from __future__ import annotations

import logging

from exporter.config.schema import ExporterConfig
from exporter.sources.gpu.inventory import NodeSource, StaticInventory
from exporter.sources.gpu.nvml import NvmlReader, NvmlUnavailable
from exporter.sources.gpu.nvml_poller import NvmlGpus, NvmlPoller
from exporter.sources.gpu.unit import GpuReader
from exporter.sources.node import DiscoveredNode

log = logging.getLogger(__name__)


def node_source_for(cfg: ExporterConfig) -> NodeSource:
    reader = _gpu_reader(cfg)
    if reader is None:
        if cfg.kubernetes.enabled:
            log.warning(
                "kubernetes.enabled needs node_source.gpus nvml, dcgm or auto; using the inventory only"
            )
        return StaticInventory()
    if not cfg.kubernetes.enabled:
        return DiscoveredNode(reader)
    from exporter.engines.targets import OwnerRules
    from exporter.sources.kube.apiclient import load_api, node_name_from_env
    from exporter.sources.kube.link import KubeLink  # the kubernetes client is heavy: only when used
    from exporter.sources.kube.podresources import list_holdings
    from exporter.sources.kube.pods import PodWatcher

    kube = cfg.kubernetes
    watcher = PodWatcher(kube.node_name or node_name_from_env(), load_api(kube.kubeconfig or None))
    watcher.start()  # one LIST now; errors go to cpm_source_up{source="kubernetes"} and are retried
    rules = OwnerRules(kube.team_label, kube.model_label, kube.namespace_teams)
    link = KubeLink(
        watcher,
        rules,
        proc_root=kube.proc_root,
        scrape=kube.scrape_annotated_pods,
        scrape_client=kube.scrape_client,
    )
    socket = kube.podresources_socket
    holdings = (lambda: list_holdings(socket)) if socket else None
    return DiscoveredNode(reader, holdings=holdings, kube=link)


def _gpu_reader(cfg: ExporterConfig) -> GpuReader | None:
    src = cfg.node_source
    if src.gpus == "inventory":
        return None
    if src.gpus in ("nvml", "auto"):
        gpus = NvmlGpus(
            NvmlPoller(NvmlReader(), poll_seconds=src.poll_seconds, call_timeout=src.call_timeout_seconds)
        )
        try:
            gpus.start()
            return gpus
        except NvmlUnavailable as exc:
            if src.gpus == "nvml":  # asked for: keep trying, with cpm_source_up{source="nvml"} 0
                log.error("%s; will retry", exc)
                return gpus
            log.warning("node_source.gpus=auto: %s; trying the next source", exc)
    if src.dcgm_url:
        from exporter.sources.gpu.dcgm_reader import DcgmGpus

        return DcgmGpus(src.dcgm_url)
    log.warning("node_source.gpus=auto: no NVML and no dcgm_url; using the config's inventory")
    return None
