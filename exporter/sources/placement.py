"""Who holds each GPU unit, decided from every source that knows, best first. Pure: no I/O.

Per unit, the first rule with an answer wins, and the unit says which (``placed_by``):

0. ``fraction``     — a sharing scheduler's allocation of GPU fractions (HAMi's pod annotation
                      ``hami.io/vgpu-devices-allocated``): each pod pays its percent of the cores,
                      what no pod was given is idle;
1. ``podresources`` — the kubelet's own allocation (device ids matched to UUIDs / indexes).
2. ``process``      — NVML's running processes → their cgroup → pod UID → the pod.
3. the GPU reader's holders (``dcgm``: dcgm-exporter's pod labels).
4. ``static``       — the config's placements.

Several holders of one unit (time-slicing, sharing schedulers) split it, and the unit says how
(``split``): ``share`` (the config's shares), ``replicas`` (time-slicing replicas each pod got
from the device plugin), ``fraction`` (the scheduler's fractions; ``overcommitted`` when they add
up to more than the GPU, so the scheduler can be fixed), else ``equal``. ``whole`` when one pod
holds it. Who holds pays: a replica reserved and left unused costs its holder as much as a busy
one, as a whole GPU held idle does (the drivers' per-process SM samples say who was efficient,
not who reserved).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.records import IDLE, Owner, Placement

PodKey = tuple[str, str]  # (namespace, pod)


@dataclass(frozen=True, slots=True)
class UnitView:
    """What placement needs to know of a unit."""

    unit_id: str
    index: str  # "0", or "0/gi1" for a MIG instance
    pids: tuple[int, ...] = ()
    process_sm: tuple[tuple[int, float], ...] = ()  # (pid, SM use 0..1)
    reader_holders: tuple[PodKey, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceClaim:
    """A pod's claim on one device id, from the kubelet (already parsed)."""

    pod: PodKey
    unit_key: str  # a UUID (GPU-…, MIG-…) or an index ("0", "0/gi1")


@dataclass(frozen=True, slots=True)
class Decision:
    placements: tuple[Placement, ...]
    placed_by: Mapping[str, str]  # unit id → rule ("" for unallocated)
    split: Mapping[str, str]  # unit id → how several holders split it
    used: Mapping[str, tuple[tuple[str, str, float], ...]] = field(default_factory=dict)  # see used_by


def decide(
    units: Sequence[UnitView],
    *,
    claims: Sequence[DeviceClaim] = (),
    fractions: Sequence[tuple[PodKey, str, int]] = (),  # (pod, unit key, percent of the GPU)
    pod_of_pid: Mapping[int, PodKey] | None = None,
    reader_rule: str = "",
    static: Mapping[str, Sequence[tuple[Owner, int]]] | None = None,
    owner_of: Callable[[PodKey], Owner],
) -> Decision:
    by_claim = _claims_by_unit(units, claims)
    by_fraction = _fractions_by_unit(units, fractions)
    placements: list[Placement] = []
    placed_by: dict[str, str] = {}
    split: dict[str, str] = {}
    used: dict[str, tuple[tuple[str, str, float], ...]] = {}
    for u in units:
        if u.unit_id in by_fraction:
            given = by_fraction[u.unit_id]
            how = "overcommitted" if sum(given.values()) > 100 else "fraction"
            rule, holders = "fraction", _fraction_holders(given, owner_of)
        else:
            rule, holders, how = _holders(u, by_claim, pod_of_pid or {}, reader_rule, static or {}, owner_of)
        placed_by[u.unit_id] = rule
        if holders:
            split[u.unit_id] = "whole" if len(holders) == 1 else how
        placements += (Placement(u.unit_id, owner, weight) for owner, weight in holders)
        if holders and u.process_sm:
            used[u.unit_id] = used_by(u, [(o.namespace, o.pod) for o, _ in holders], pod_of_pid or {})
    return Decision(tuple(placements), placed_by, split, used)


def used_by(
    u: UnitView, holders: Sequence[PodKey], pod_of_pid: Mapping[int, PodKey]
) -> tuple[tuple[str, str, float], ...]:
    """Each holder's SM use of the unit from the driver's latest per-process samples: who used
    it, beside who pays (the holders). A sole holder owns every process no pod map names (a
    static inventory says the pod holds the whole GPU). Summed, capped at 1 (samples of several
    processes are taken apart and may overlap)."""
    use = dict.fromkeys(holders, 0.0)
    sole = holders[0] if len(holders) == 1 else None
    for pid, sm in u.process_sm:
        pod = pod_of_pid.get(pid, sole)
        if pod in use:
            use[pod] += sm
    return tuple((ns, pod, min(v, 1.0)) for (ns, pod), v in sorted(use.items()))


def _holders(
    u: UnitView,
    by_claim: Mapping[str, Counter[PodKey]],
    pod_of_pid: Mapping[int, PodKey],
    reader_rule: str,
    static: Mapping[str, Sequence[tuple[Owner, int]]],
    owner_of: Callable[[PodKey], Owner],
) -> tuple[str, list[tuple[Owner, int]], str]:
    if u.unit_id in by_claim:
        replicas = by_claim[u.unit_id]
        how = "replicas" if len(set(replicas.values())) > 1 else "equal"
        return "podresources", [(owner_of(p), n) for p, n in sorted(replicas.items())], how
    pods = sorted({pod_of_pid[pid] for pid in u.pids if pid in pod_of_pid})
    if pods:
        return "process", [(owner_of(p), 1) for p in pods], "equal"
    if u.reader_holders:
        return reader_rule, [(owner_of(p), 1) for p in sorted(set(u.reader_holders))], "equal"
    if u.unit_id in static:
        held = list(static[u.unit_id])
        return "static", held, "share" if len({w for _, w in held}) > 1 else "equal"
    return "", [], ""


def _fraction_holders(
    given: Mapping[PodKey, int], owner_of: Callable[[PodKey], Owner]
) -> list[tuple[Owner, int]]:
    """Each pod its percent; the percent nobody was given is idle (an overcommitted GPU is
    split by the percents, relative to each other)."""
    holders = [(owner_of(p), pct) for p, pct in sorted(given.items())]
    left = 100 - sum(given.values())
    return [*holders, (IDLE, left)] if left > 0 else holders


def _fractions_by_unit(
    units: Sequence[UnitView], fractions: Sequence[tuple[PodKey, str, int]]
) -> dict[str, dict[PodKey, int]]:
    key_to_unit = {u.unit_id: u.unit_id for u in units}
    out: dict[str, dict[PodKey, int]] = {}
    for pod, key, pct in fractions:
        unit = key_to_unit.get(key)
        if unit is not None and pct > 0:
            given = out.setdefault(unit, {})
            given[pod] = given.get(pod, 0) + pct
    return out


def _claims_by_unit(units: Sequence[UnitView], claims: Sequence[DeviceClaim]) -> dict[str, Counter[PodKey]]:
    """Each unit's claimants, counted (a pod holding two time-slicing replicas counts twice)."""
    key_to_unit: dict[str, str] = {}
    for u in units:
        key_to_unit[u.unit_id] = u.unit_id
        key_to_unit.setdefault(u.index, u.unit_id)
    out: dict[str, Counter[PodKey]] = {}
    for c in claims:
        unit = key_to_unit.get(c.unit_key)
        if unit is not None:
            out.setdefault(unit, Counter())[c.pod] += 1
    return out
