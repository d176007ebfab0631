"""NVIDIA dcgm-exporter ``/metrics`` text → one reading per billable GPU unit.

A unit is a whole GPU, or one MIG GPU instance: on a MIG GPU dcgm-exporter prints only
GPU-instance series, each naming the *parent* GPU (``gpu``, ``UUID``, ``modelName``) plus
``GPU_I_PROFILE`` and ``GPU_I_ID``, so a MIG unit is keyed by (UUID, GPU_I_ID), never by
``gpu``. Facts: ``../shared/reference/dcgm-exporter.md`` (tag 4.5.3-4.8.2).

What a unit's series say is read through the FIELDS table; adding a field is one entry
there and one attribute on DcgmUnit. Rules:

* Label spellings: ``UUID`` or ``uuid`` (``--use-old-namespace``), ``Hostname`` or
  ``hostname`` (main after the tag), ``pod/namespace/container`` or
  ``pod_name/pod_namespace/container_name`` (old namespace).
* Kubernetes time-slicing prints one series per sharing pod: they merge into one unit with
  every pod as a holder. See ``_combine`` for how their values merge.
* A NaN, infinite or negative value, or a ratio above 1, is a bad reading: that field is
  unknown (None, never 0) and its DCGM field name is listed in ``DcgmUnit.rejected``.
* A series without a UUID cannot be tied to a unit: it is skipped and counted in
  ``DcgmReading.skipped`` (series, not units).
* A malformed payload raises textformat's ``ParseError``; the caller marks the target down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from exporter.http.textformat import parse_wanted

__all__ = ["FIELDS", "DcgmHolder", "DcgmReading", "DcgmUnit", "read_dcgm"]


@dataclass(frozen=True, slots=True)
class DcgmHolder:
    """A pod that holds a GPU unit (dcgm-exporter's kubelet PodResources mapping)."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class DcgmUnit:
    """One billable GPU unit as dcgm-exporter sees it: a whole GPU, or one MIG GPU instance."""

    uuid: str  # parent GPU UUID (label UUID, or `uuid` with --use-old-namespace)
    gpu_index: str  # label `gpu` (the parent's index for MIG)
    model_name: str  # label modelName, as given ('-' for blanks with --replace-blanks-in-model-name)
    mig_profile: str | None  # GPU_I_PROFILE, e.g. "3g.40gb"; None for a whole GPU
    gpu_instance_id: str | None  # GPU_I_ID; None for a whole GPU
    utilization: float | None  # 0..1; None when unknown
    utilization_field: str | None  # the DCGM field that gave it, e.g. "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    power_watts: float | None
    energy_joules_total: float | None  # since boot
    memory_used_bytes: float | None
    holders: tuple[DcgmHolder, ...]  # sorted; () when unallocated or without Kubernetes mapping
    hostname: str  # label Hostname/hostname; "" with --no-hostname
    rejected: tuple[str, ...]  # DCGM fields present but with a bad reading (NaN, Inf, < 0, ratio > 1)

    @property
    def unit_id(self) -> str:
        return self.uuid if self.gpu_instance_id is None else f"{self.uuid}/gi{self.gpu_instance_id}"


@dataclass(frozen=True, slots=True)
class DcgmReading:
    units: tuple[DcgmUnit, ...]  # sorted by (gpu index, GPU instance id)
    skipped: int  # wanted series without a UUID label, not tied to any unit


@dataclass(frozen=True, slots=True)
class Field:
    """A DCGM field read into the DcgmUnit attribute ``attr``, times ``scale`` to base units."""

    metric: str
    attr: str
    scale: Fraction  # exact, so 93 % becomes the float nearest 0.93, as 93 / 100 does
    # Under time-slicing dcgm-exporter ≥ #594 (2026-03) prints per-process values per pod
    # for GPU_UTIL and FB_USED; other fields repeat the device's value on every pod series.
    per_pod: bool = False
    ceiling: float = math.inf  # a scaled value above it is a bad reading


# Fields of one attr are alternatives, best first: the first with a good reading wins.
FIELDS: Final[tuple[Field, ...]] = (
    # Engine-active ratio is the busy measure DCGM also gives per MIG instance; GPU_UTIL
    # (percent, whole GPUs only) is the fallback on GPUs without profiling metrics.
    Field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "utilization", Fraction(1), ceiling=1.0),
    Field("DCGM_FI_DEV_GPU_UTIL", "utilization", Fraction(1, 100), per_pod=True, ceiling=1.0),
    Field("DCGM_FI_DEV_POWER_USAGE", "power_watts", Fraction(1)),  # W
    Field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "energy_joules_total", Fraction(1, 1000)),  # mJ
    Field("DCGM_FI_DEV_FB_USED", "memory_used_bytes", Fraction(2**20), per_pod=True),  # MiB
)
_WANTED: Final = frozenset(f.metric for f in FIELDS)
# First spelling wins: UUID and pod labels as default, then as --use-old-namespace; Hostname
# as in every tag, hostname as on main after 4.5.3-4.8.2 (#655).
_UUID = ("UUID", "uuid")
_HOSTNAME = ("Hostname", "hostname")
_POD = (("namespace", "pod", "container"), ("pod_namespace", "pod_name", "container_name"))


@dataclass(slots=True)
class _Draft:
    """The series of one unit seen so far."""

    labels: Mapping[str, str]  # of its first series: identity labels are the same on all
    values: dict[str, list[float]] = field(default_factory=dict)  # metric → one value per series
    holders: set[DcgmHolder] = field(default_factory=set)


def read_dcgm(text: str, *, max_samples: int = 500_000) -> DcgmReading:
    """The GPU units of a dcgm-exporter payload; raises ParseError if the payload is malformed."""
    drafts: dict[tuple[str, str | None], _Draft] = {}
    skipped = 0
    for sample in parse_wanted(text, _WANTED, max_samples=max_samples):
        uuid = _label(sample.labels, _UUID)
        if not uuid:
            skipped += 1
            continue
        key = (uuid, sample.labels.get("GPU_I_ID") or None)
        draft = drafts.get(key)
        if draft is None:
            draft = drafts[key] = _Draft(sample.labels)
        draft.values.setdefault(sample.name, []).append(sample.value)
        if (holder := _holder(sample.labels)) is not None:
            draft.holders.add(holder)
    units = sorted((_unit(uuid, gi, d) for (uuid, gi), d in drafts.items()), key=_order)
    return DcgmReading(tuple(units), skipped)


def _unit(uuid: str, gi: str | None, draft: _Draft) -> DcgmUnit:
    found: dict[str, tuple[float, str]] = {}  # attr → (value, field that gave it)
    rejected: list[str] = []
    for f in FIELDS:
        values = draft.values.get(f.metric)
        if f.attr in found or values is None:
            continue
        value = _combine(f, values)
        if value is None:
            rejected.append(f.metric)  # and the next alternative for the attr, if any, is tried
        else:
            found[f.attr] = (value, f.metric)

    def get(attr: str) -> float | None:
        return found[attr][0] if attr in found else None

    labels = draft.labels
    return DcgmUnit(
        uuid=uuid,
        gpu_index=labels.get("gpu", ""),
        model_name=labels.get("modelName", ""),
        mig_profile=labels.get("GPU_I_PROFILE") if gi is not None else None,
        gpu_instance_id=gi,
        utilization=get("utilization"),
        utilization_field=found["utilization"][1] if "utilization" in found else None,
        power_watts=get("power_watts"),
        energy_joules_total=get("energy_joules_total"),
        memory_used_bytes=get("memory_used_bytes"),
        holders=tuple(sorted(draft.holders, key=lambda h: (h.namespace, h.pod, h.container))),
        hostname=_label(labels, _HOSTNAME),
        rejected=tuple(rejected),
    )


def _combine(f: Field, values: list[float]) -> float | None:
    """One value from a unit's series of field ``f`` (one per sharing pod), or None if bad.

    One bad series makes the whole field unknown: part of a reading is not a reading.
    Equal values are the device's value repeated on each pod series (every field before
    #594, device-level fields always): taken once, never summed. Different values of a
    ``per_pod`` field are per-process shares (#594): the unit's use is their sum, and for a
    ratio the processes time-share one engine, so the sum is capped at 1 (sampling skew
    can push it over). Different values of a device-level field cannot be shares, so the
    max is taken rather than counting the device twice.
    """
    scaled = [float(Fraction(v) * f.scale) if math.isfinite(v) and v >= 0 else math.nan for v in values]
    if any(not v <= f.ceiling for v in scaled):  # NaN compares false: bad readings too
        return None
    if f.per_pod and len(set(values)) > 1:
        return min(float(Fraction(math.fsum(values)) * f.scale), f.ceiling)
    return max(scaled)


def _label(labels: Mapping[str, str], spellings: tuple[str, ...]) -> str:
    return next((labels[k] for k in spellings if labels.get(k)), "")


def _holder(labels: Mapping[str, str]) -> DcgmHolder | None:
    for namespace, pod, container in _POD:
        if labels.get(pod):
            return DcgmHolder(labels.get(namespace, ""), labels[pod], labels.get(container, ""))
    return None


def _order(unit: DcgmUnit) -> tuple[tuple[int, int, str], tuple[int, int, str], str]:
    return _number_first(unit.gpu_index), _number_first(unit.gpu_instance_id), unit.uuid


def _number_first(text: str | None) -> tuple[int, int, str]:
    """Sort key: None (a whole GPU), then numbers by value, then any other text."""
    if text is None:
        return (0, 0, "")
    if text.isascii() and text.isdigit():
        return (1, int(text), "")
    return (2, 0, text)
