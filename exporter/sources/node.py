"""The node as discovered at run time: GPUs from NVML or dcgm-exporter, holders from the sources
that know them, the config's static placements as the last resort.

A GPU reader yields ``GpuUnit``s (source-agnostic); this module names their hardware, gives
them the node's capacity class, and decides who holds each one, saying which rule did.
Who holds what is decided in ``placement`` (its docstring has the precedence); the config's
static placements name units by UUID, by index, or by ``index/giN`` for a MIG instance.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter.config.schema import ExporterConfig, StaticWorkload
from exporter.engines.read import Fetch
from exporter.errors import SourceError
from exporter.http.fetch import FetchLimits, fetch_text
from exporter.records import GpuSample, Owner, Placement, PodUsage, SourceStatus, UnitInfo
from exporter.sources.gpu.inventory import StaticInventory
from exporter.sources.gpu.names import hardware_of
from exporter.sources.gpu.unit import GpuReader, GpuUnit
from exporter.sources.kube.cadvisor import pod_transmit_bytes
from exporter.sources.placement import DeviceClaim, UnitView, decide

if TYPE_CHECKING:  # only a type here: the demo and plain nodes never load the Kubernetes pieces
    from exporter.sources.kube.link import KubeLink
from exporter.sources.kube.podresources import DeviceHolding, DeviceRef, parse_device_id

log = logging.getLogger(__name__)


class DiscoveredNode:
    """A ``NodeSource`` over a GPU reader, with the kubelet, cAdvisor and this node's pods
    (``KubeLink``) where they are configured."""

    def __init__(
        self,
        reader: GpuReader,
        *,
        fetch: Fetch = fetch_text,
        holdings: Callable[[], tuple[DeviceHolding, ...]] | None = None,
        kube: KubeLink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._fetch = fetch
        self._holdings = holdings  # the kubelet's PodResources List, when it can be asked
        self._kubelet: SourceStatus | None = None
        self._holders: dict[tuple[str, str], Owner] = {}
        self._host_network: set[tuple[str, str]] = set()  # billed pods known to use hostNetwork
        self._overcommitted: frozenset[str] = frozenset()  # units whose fractions exceed the GPU
        self._network: SourceStatus | None = None
        self._static = StaticInventory()
        self._units: tuple[GpuUnit, ...] = ()
        self._info: tuple[UnitInfo, ...] = ()
        self._kube = kube
        self._clock = clock
        self._last_at: float | None = None  # when the last tick's placements were decided
        self._last: tuple[Placement, ...] = ()
        self._hardware: list[str] = []  # hardware type of each of _units

    def gpus(self, cfg: ExporterConfig) -> tuple[GpuSample, ...]:
        self._units = self._reader.units(cfg)
        names = cfg.node_source.hardware_names
        self._hardware = [hardware_of(u.name, names) for u in self._units]  # once per tick, reused below
        return tuple(
            GpuSample(
                u.unit_id,
                hardware,
                cfg.node_source.capacity,
                utilization=u.utilization,
                power_watts=u.power_watts,
                price_share=u.price_share,
                energy_joules_total=u.energy_joules_total,
                profile=u.profile,
                device=u.parent or u.unit_id,
            )
            for u, hardware in zip(self._units, self._hardware, strict=True)
        )

    def placements(self, cfg: ExporterConfig) -> tuple[Placement, ...]:
        declared = {(w.owner.namespace, w.owner.pod): w.owner for w in cfg.workloads}
        kube = self._kube
        if kube is not None:
            kube.refresh()
        views = [UnitView(u.unit_id, u.index, u.pids, u.process_sm, u.holders) for u in self._units]
        pids = kube.pods_of_pids(p for u in self._units for p in u.pids) if kube else {}
        decision = decide(
            views,
            claims=self._claims(),
            fractions=kube.fractions() if kube else (),
            pod_of_pid=pids,
            reader_rule=self._reader.name,
            static=_static_by_unit(self._units, self._static.placements(cfg)),
            owner_of=lambda pod: declared.get(pod) or (kube and kube.owner(pod)) or namespace_owner(pod),
        )
        self._info = tuple(
            UnitInfo(
                u.unit_id,
                u.index,
                u.name,
                hardware,
                u.profile,
                decision.placed_by.get(u.unit_id, ""),
                u.fault,
                decision.split.get(u.unit_id, ""),
                decision.used.get(u.unit_id, ()),
            )
            for u, hardware in zip(self._units, self._hardware, strict=True)
        )
        self._holders = {
            (p.holder.namespace, p.holder.pod): p.holder for p in decision.placements if not p.holder.is_idle
        }
        self._say_overcommitted(decision.split, decision.placements)
        now, placed = self._clock(), decision.placements
        if kube is not None:  # holders that came or went since the last tick pay their part only
            placed = kube.bound(placed, self._last, self._last_at)
        self._last, self._last_at = decision.placements, now
        return placed

    def pods(self, cfg: ExporterConfig) -> tuple[PodUsage, ...]:
        """Storage from the config; bytes sent from cAdvisor, for the pods that hold GPUs or that
        the config declares (the node's other pods are not AI workloads: not ours to bill)."""
        usage = {(u.holder.namespace, u.holder.pod): u for u in self._static.pods(cfg)}
        if self._kube is not None:  # the claims GPU pods mount (PVC capacity), shared ones split
            shares = self._kube.storage_bytes(pod for pod in self._holders if pod not in usage)
            for pod, size in shares.items():
                usage[pod] = PodUsage(self._holders[pod], storage_bytes=size)
        if not cfg.node_source.cadvisor_url:
            self._network = None
            return tuple(usage.values())
        owners = {**self._holders, **{(w.owner.namespace, w.owner.pod): w.owner for w in cfg.workloads}}
        sent = self._sent(cfg)
        for pod, owner in owners.items():  # listed even when unread: their byte baselines stay
            base = usage.get(pod) or PodUsage(owner)
            bytes_sent = None if self._on_host_network(pod) else sent.get(pod)
            usage[pod] = replace(base, transmit_bytes_total=bytes_sent)
        self._host_network &= owners.keys()
        return tuple(usage.values())

    def _say_overcommitted(self, split: Mapping[str, str], placements: tuple[Placement, ...]) -> None:
        """Once per episode: a sharing scheduler gave a GPU's pods more than the GPU. Each pays its
        part relative to the others (money kept); the scheduler is what to fix."""
        now = frozenset(unit for unit, how in split.items() if how == "overcommitted")
        for unit in sorted(now - self._overcommitted):
            given = ", ".join(
                f"{p.holder.namespace}/{p.holder.pod} {p.weight}%" for p in placements if p.gpu_id == unit
            )
            log.warning("gpu=%s is overcommitted by its sharing scheduler (%s): each pod pays its share of "
                        "the whole, relative to the others; cpm_gpu_info{split=\"overcommitted\"}", unit, given)  # fmt: skip
        self._overcommitted = now

    def _on_host_network(self, pod: tuple[str, str]) -> bool:
        """A hostNetwork pod's cAdvisor bytes are the whole node's: never billed as its egress.

        Sticky while the pod is billed: a watch gap that forgets the pod must not bill a tick
        of the node's bytes (spec.hostNetwork cannot change in a pod's life).
        """
        if self._kube is not None and pod not in self._host_network and self._kube.host_network(pod):
            self._host_network.add(pod)
            log.info("pod=%s/%s uses hostNetwork: its bytes sent are the node's, not billed as egress", *pod)
        return pod in self._host_network

    def _sent(self, cfg: ExporterConfig) -> dict[tuple[str, str], float]:
        url = cfg.node_source.cadvisor_url
        lim = cfg.limits
        try:
            limits = FetchLimits(lim.timeout_seconds, lim.max_body_bytes, lim.max_samples)
            text = self._fetch(url, limits, cfg.node_source.cadvisor_client)
            sent = pod_transmit_bytes(text, max_samples=lim.max_samples)
        except SourceError as exc:
            if self._network is None or self._network.up:
                log.warning("cadvisor %s down: %s", url, exc)
            self._network = SourceStatus("cadvisor", False, str(exc))
            return {}  # counters freeze; the next good reading bills the gap once
        self._network = SourceStatus("cadvisor", True)
        return sent

    def _claims(self) -> list[DeviceClaim]:
        """The kubelet's allocation as claims on units; [] (the next rule decides) if it fails."""
        if self._holdings is None:
            return []
        try:
            held = self._holdings()
        except SourceError as exc:
            if self._kubelet is None or self._kubelet.up:
                log.warning("kubelet PodResources unavailable, placing GPUs by the next rule: %s", exc)
            self._kubelet = SourceStatus("podresources", False, str(exc))
            return []
        self._kubelet = SourceStatus("podresources", True)
        return [
            DeviceClaim((h.namespace, h.pod), unit_key(parse_device_id(d)))
            for h in held
            for d in h.device_ids
        ]

    def status(self) -> tuple[SourceStatus, ...]:
        kube = self._kube.status() if self._kube is not None else None
        extra = tuple(s for s in (kube, self._kubelet, self._network) if s is not None)
        return (self._reader.status(), *extra)

    def unit_info(self) -> tuple[UnitInfo, ...]:
        return self._info

    def close(self) -> None:
        self._reader.close()
        if self._kube is not None:
            self._kube.close()

    def workloads(self, cfg: ExporterConfig) -> tuple[StaticWorkload, ...]:
        if self._kube is None:
            return ()
        return self._kube.workloads({(w.owner.namespace, w.owner.pod) for w in cfg.workloads})


_DRA_GPU = re.compile(r"^gpu-(\d+)$")


def unit_key(ref: DeviceRef) -> str:
    """How a kubelet device id names a unit: a UUID, an index, or ``index/giN``.

    ``nvidia3`` is GPU index 3; GKE's ``nvidia0/gi2`` is GPU instance 2 on GPU 0. A DRA device
    name ``gpu-N`` is read as index N (the NVIDIA DRA driver's naming) — an assumption until the
    ResourceSlice is read. Replicas and vGPU slots name their GPU: each is one share of it.
    """
    base = ref.base
    if base.startswith("nvidia") and base[6:].isdigit():
        base = base[6:]
    elif (m := _DRA_GPU.match(base)) is not None:
        base = m.group(1)
    return f"{base}/gi{ref.mig_gi}" if ref.mig_gi is not None else base


def namespace_owner(pod: tuple[str, str]) -> Owner:
    """A pod neither the config nor the Kubernetes watch describes: its namespace is its team."""
    namespace, name = pod
    return Owner(namespace=namespace, pod=name, team=namespace, model="")


def _static_by_unit(
    units: tuple[GpuUnit, ...], placements: tuple[Placement, ...]
) -> dict[str, list[tuple[Owner, int]]]:
    """The config's placements keyed by unit, its GPU ids read as UUID, index or ``index/giN``."""
    alias: dict[str, str] = {}
    for u in units:
        alias.setdefault(u.index, u.unit_id)
        alias[u.unit_id] = u.unit_id
    out: dict[str, list[tuple[Owner, int]]] = {}
    for p in placements:
        unit_id = alias.get(p.gpu_id)
        if unit_id is not None:  # else a GPU this node does not have (now): nothing to hold
            out.setdefault(unit_id, []).append((p.holder, p.weight))
    return out
