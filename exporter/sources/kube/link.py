"""What the node needs from this node's Kubernetes pods, read from the watcher's snapshot only
(no network on the tick): owners, GPU processes → pods, when holders came and went, discovered
workloads and their scrape targets, and the storage their claims provision.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

from exporter.config.schema import StaticWorkload
from exporter.engines.targets import OwnerRules, owner_of, roles_of, targets_of, token_targets_of
from exporter.records import (
    NO_CLIENT_CONFIG,
    HttpClientConfig,
    Owner,
    Placement,
    PodInfo,
    SourceStatus,
    Target,
)
from exporter.sources.kube.cgroup import pod_of_pid

if TYPE_CHECKING:  # kube_pods imports the kubernetes client (~20 MiB): only where it is used
    from exporter.sources.kube.watchstatus import WatchStatus

log = logging.getLogger(__name__)

PodKey = tuple[str, str]
NS_PER_S = 10**9
HAMI_ALLOCATED = "hami.io/vgpu-devices-allocated"


class PodView(Protocol):
    """The watcher, as the node sees it (``kube_pods.PodWatcher``)."""

    def pods(self) -> tuple[PodInfo, ...]: ...

    def status(self) -> WatchStatus: ...

    def removed_since(self, since: float) -> tuple[tuple[PodInfo, float], ...]: ...

    def claim_capacity(self, namespace: str, claim: str) -> float | None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class KubeLink:
    def __init__(
        self,
        view: PodView,
        rules: OwnerRules,
        *,
        proc_root: str = "/proc",
        scrape: bool = True,
        scrape_client: HttpClientConfig = NO_CLIENT_CONFIG,
    ) -> None:
        self._view = view
        self._scrape_client = scrape_client
        self._rules = rules
        self._proc_root = proc_root
        self._scrape = scrape
        self._pods: dict[PodKey, PodInfo] = {}
        self._by_uid: dict[str, PodInfo] = {}
        self._reported: set[tuple[str, str]] = set()

    def refresh(self) -> None:
        """Take the watcher's current snapshot for this tick."""
        pods = self._view.pods()
        self._pods = {(p.namespace, p.name): p for p in pods}
        self._by_uid = {p.uid: p for p in pods}

    def owner(self, pod: PodKey) -> Owner | None:
        found = self._pods.get(pod)
        return None if found is None else owner_of(found, self._rules)

    def pods_of_pids(self, pids: Iterable[int]) -> dict[int, PodKey]:
        """Host PIDs (NVML's GPU processes) → the pods whose cgroups they run in."""
        out: dict[int, PodKey] = {}
        for pid in set(pids):
            ref = pod_of_pid(pid, self._proc_root)
            pod = self._by_uid.get(ref.pod_uid) if ref is not None else None
            if pod is not None:
                out[pid] = (pod.namespace, pod.name)
        return out

    def bound(
        self, now: tuple[Placement, ...], before: tuple[Placement, ...], since: float | None
    ) -> tuple[Placement, ...]:
        """This tick's placements with holding times: a holder created during the tick holds
        from its creation; one gone from ``now`` holds until it left the node, or, if the API still
        lists it, until its last container finished (the kubelet frees GPUs before the deletion).
        A pod recreated under the same name within the tick (a StatefulSet's) is two incarnations:
        the old one holds until it left, the new one from its creation."""
        if since is None:
            return now
        out = []
        for p in now:
            created = getattr(self._pods.get((p.holder.namespace, p.holder.pod)), "created_at", None)
            out.append(replace(p, since_ns=int(created * NS_PER_S)) if created and created > since else p)
        removed = self._view.removed_since(since)
        left = {(pod.namespace, pod.name): at for pod, at in removed}
        recreated = {
            (pod.namespace, pod.name)
            for pod, _ in removed
            if (now_pod := self._pods.get((pod.namespace, pod.name))) is not None and now_pod.uid != pod.uid
        }
        for key, pod in self._pods.items():
            if pod.finished_at is not None and pod.finished_at > since:
                left.setdefault(key, pod.finished_at)
        still = {(p.gpu_id, p.holder.namespace, p.holder.pod) for p in now}
        for p in before:
            key = (p.holder.namespace, p.holder.pod)
            if key in left and ((p.gpu_id, *key) not in still or key in recreated):
                out.append(replace(p, since_ns=None, until_ns=int(left[key] * NS_PER_S)))
        return tuple(out)

    def fractions(self) -> list[tuple[PodKey, str, int]]:
        """GPU fractions a sharing scheduler gave this node's pods: (pod, GPU UUID, percent)."""
        out = []
        for key, pod in self._pods.items():
            text = pod.annotations.get(HAMI_ALLOCATED)
            if text:
                out += [(key, uuid, pct) for uuid, pct in hami_fractions(text)]
        return out

    def storage_bytes(self, pods: Iterable[PodKey]) -> dict[PodKey, Fraction]:
        """Each of ``pods``' part of the claims it mounts. A claim several of them mount (a
        shared ReadWriteMany model cache) is split evenly among them, so this node bills each
        claim once per second; exact fractions, so the parts sum to the claim."""
        mounting = {pod: found for pod in pods if (found := self._pods.get(pod)) is not None}
        users = Counter((f.namespace, c) for f in mounting.values() for c in set(f.claims))
        out: dict[PodKey, Fraction] = {}
        for pod, found in mounting.items():
            parts = [
                Fraction(size) / users[(found.namespace, c)]
                for c in set(found.claims)
                if (size := self._view.claim_capacity(found.namespace, c))
            ]
            if parts:
                out[pod] = sum(parts, Fraction(0))
        return out

    def host_network(self, pod: PodKey) -> bool:
        """True for a hostNetwork pod: the bytes cAdvisor shows for it are the node's."""
        found = self._pods.get(pod)
        return found is not None and found.host_network

    def workloads(self, declared: set[PodKey]) -> tuple[StaticWorkload, ...]:
        """Pods the config does not declare, with their scrape targets (annotated pods)."""
        pods = [p for key, p in self._pods.items() if key not in declared]
        targets: Mapping[PodKey, list[Target]] = {}
        if self._scrape:
            found, problems = targets_of(pods, self._rules, self._scrape_client)
            targets = _by_pod(found)
            self._report(problems)
        tokens, problems = token_targets_of(pods)
        self._report(problems)
        roles, problems = roles_of(pods)
        self._report(problems)
        out = []
        for key in sorted({*targets, *tokens, *roles}):
            pod = self._pods[key]
            target_tokens = tokens.get(key)
            out.append(
                StaticWorkload(
                    owner_of(pod, self._rules),
                    targets=tuple(targets.get(key, ())),
                    target_tokens=None if target_tokens is None else _decimal(target_tokens),
                    role=roles.get(key, "unified"),
                )
            )
        return tuple(out)

    def status(self) -> SourceStatus:
        s = self._view.status()
        return SourceStatus("kubernetes", s.up, s.error)

    def close(self) -> None:
        self._view.stop()

    def _report(self, problems: Iterable[tuple[str, str]]) -> None:
        for problem in problems:
            if problem not in self._reported:  # once per pod and message, not every tick
                self._reported.add(problem)
                log.warning("pod=%s: %s", *problem)


def hami_fractions(text: str) -> list[tuple[str, int]]:
    """HAMi's ``hami.io/vgpu-devices-allocated``: containers separated by ";", each device
    "UUID,vendor,memory MiB,cores %:" → (UUID, percent). Cores 0 means "no limit": the whole GPU.
    Unreadable entries are skipped (the pod then falls to the next placement rule)."""
    out = []
    for container in text.split(";"):
        for device in container.split(":"):
            fields = [f.strip() for f in device.split(",")]
            if len(fields) < 4 or not fields[0] or not fields[3].isdigit():
                continue
            cores = int(fields[3])
            out.append((fields[0], cores if 0 < cores <= 100 else 100))
    return out


def _by_pod(targets: Iterable[Target]) -> dict[PodKey, list[Target]]:
    out: dict[PodKey, list[Target]] = {}
    for t in targets:
        out.setdefault((t.owner.namespace, t.owner.pod), []).append(t)
    return out


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))
