"""GPU readings from NVML (``pynvml``, NVIDIA's ``nvidia-ml-py``): one sweep of calls per GPU.

What a sweep reads per billable unit — a whole GPU, or each MIG instance of a GPU in MIG mode:
UUID, name, utilisation, memory, power, total energy, running compute processes and, where
the driver keeps them, per-process SM utilisation samples.

Faults are per GPU: a lost GPU (``GPU_IS_LOST``, Xid 79) or any failing call marks that unit
with a ``fault`` and no utilisation (unknown, never "idle"), the others read on. NVML that is
missing or cannot initialise (no driver, wrong version) raises ``NvmlUnavailable`` once, with
the reason, so the caller can fall back to the next source.

MIG: NVML gives no utilisation for MIG instances (DCGM's GR_ENGINE_ACTIVE does, see the dcgm
source), so their utilisation is unknown here; power and energy are the parent's, passed on
whole: the meter bills the parent's energy once, split by the instances' shares.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_NOT_FOUND = "NVMLError_NotFound"


class NvmlUnavailable(Exception):
    """NVML cannot be used on this machine; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class NvmlUnit:
    """One billable GPU unit as NVML sees it at one instant."""

    unit_id: str  # GPU-… UUID, MIG-… UUID for a MIG instance
    index: str  # the GPU's index ("0"); "0/gi1" for GPU instance 1 on GPU 0
    name: str
    utilization: float | None = None  # 0..1, the driver's last sample period
    power_watts: float | None = None
    energy_joules_total: float | None = None
    memory_used_bytes: float | None = None
    price_share: Fraction = Fraction(1)  # MIG: slices / the parent's slices
    profile: str = ""  # MIG profile, e.g. "3g.40gb"
    pids: tuple[int, ...] = ()  # host PIDs of running compute processes
    process_sm: tuple[tuple[int, float], ...] = ()  # (pid, SM utilisation 0..1) samples
    fault: str = ""  # "" when every call answered; else the first failing call's error
    parent: str = ""  # a MIG instance's GPU UUID


def load_pynvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:  # the optional "node" extra is not installed
        raise NvmlUnavailable(
            "the nvidia-ml-py package is not installed (pip install 'cpm-exporter[node]')"
        ) from exc


class NvmlReader:
    """Synchronous NVML calls; the poller runs them off the scrape path."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._module = nvml  # loaded by open(): a missing package is NvmlUnavailable, not a crash
        # index → (UUID, name): a GPU lost later keeps its identity and its price.
        self._known: dict[int, tuple[str, str]] = {}
        self.driver = ""

    def open(self) -> int:
        """Initialise NVML; return the GPU count. ``NvmlUnavailable`` says why it cannot."""
        if self._module is None:
            self._module = load_pynvml()
        nv = self._nvml
        try:
            nv.nvmlInit()
            self.driver = _text(nv.nvmlSystemGetDriverVersion())
            return int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as exc:
            raise NvmlUnavailable(_why_unavailable(exc)) from exc

    @property
    def _nvml(self) -> ModuleType:
        assert self._module is not None, "open() first"
        return self._module

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):  # shutting down: nothing to save
            self._nvml.nvmlShutdown()

    def read_gpu(self, index: int) -> tuple[NvmlUnit, ...]:
        """The units of GPU ``index``: the GPU itself, or its MIG instances."""
        nv = self._nvml
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nv.nvmlDeviceGetUUID(handle))
            name = _text(nv.nvmlDeviceGetName(handle))
            self._known[index] = (uuid, name)
        except nv.NVMLError as exc:
            uuid, name = self._known.get(index, (f"gpu{index}", ""))
            return (NvmlUnit(uuid, str(index), name, fault=_fault(exc)),)
        whole = self._read_whole(handle, uuid, str(index), name)
        if whole.fault or not _mig_enabled(nv, handle):
            return (whole,)
        return self._read_migs(handle, whole)

    def _read_whole(self, handle: Any, uuid: str, index: str, name: str) -> NvmlUnit:
        nv = self._nvml
        unit = NvmlUnit(uuid, index, name)
        try:
            unit = replace(
                unit,
                power_watts=_optional(nv, nv.nvmlDeviceGetPowerUsage, handle, 1000),
                energy_joules_total=_optional(nv, nv.nvmlDeviceGetTotalEnergyConsumption, handle, 1000),
                memory_used_bytes=_optional(nv, lambda h: nv.nvmlDeviceGetMemoryInfo(h).used, handle, 1),
                pids=_pids(nv, handle),
            )
            util = _optional(nv, lambda h: nv.nvmlDeviceGetUtilizationRates(h).gpu, handle, 100)
            return replace(unit, utilization=util, process_sm=_process_sm(nv, handle))
        except nv.NVMLError as exc:
            return replace(unit, fault=_fault(exc), utilization=None)

    def _read_migs(self, handle: Any, parent: NvmlUnit) -> tuple[NvmlUnit, ...]:
        """One unit per MIG device (``sources.gpu.mig`` adds the slices no instance uses). A failed
        instance faults the whole GPU: its last known units stay."""
        nv = self._nvml
        units = []
        try:
            total = int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))
            for slot in range(total):
                try:
                    mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                except nv.NVMLError as exc:
                    if type(exc).__name__ == _NOT_FOUND:
                        continue  # an empty slot
                    raise
                units.append(self._read_mig(mig, parent, total))
        except nv.NVMLError as exc:
            return (replace(parent, fault=_fault(exc), utilization=None),)
        if not units:  # MIG mode on, no instance created: the GPU is billable but unusable
            return (replace(parent, profile="mig-no-instances"),)
        return tuple(_with_device_readings(units, parent))  # the unused slices: sources.gpu.mig

    def _read_mig(self, mig: Any, parent: NvmlUnit, total_slices: int) -> NvmlUnit:
        nv = self._nvml
        uuid = _text(nv.nvmlDeviceGetUUID(mig))
        name = _text(nv.nvmlDeviceGetName(mig))
        gi = int(nv.nvmlDeviceGetGpuInstanceId(mig))
        attrs = nv.nvmlDeviceGetAttributes(mig)
        # A MIG device is a compute instance: several can share one GPU instance, each paying
        # its compute slices (a 7g instance split into seven 1c instances: 1/7 each).
        slices = int(attrs.computeInstanceSliceCount) or int(attrs.gpuInstanceSliceCount)
        memory = _optional(nv, lambda h: nv.nvmlDeviceGetMemoryInfo(h).used, mig, 1)
        return NvmlUnit(
            uuid,
            f"{parent.index}/gi{gi}",
            name,
            memory_used_bytes=memory,
            price_share=Fraction(slices, max(total_slices, slices)),
            profile=_profile(name),
            pids=_pids(nv, mig),
            parent=parent.unit_id,
        )


def _with_device_readings(units: list[NvmlUnit], parent: NvmlUnit) -> list[NvmlUnit]:
    """Each MIG instance carries the parent's power and energy whole: the meter meters the
    physical GPU's counter once and splits each tick's joules by the current shares."""
    return [
        replace(u, power_watts=parent.power_watts, energy_joules_total=parent.energy_joules_total)
        for u in units
    ]


def _mig_enabled(nv: ModuleType, handle: Any) -> bool:
    try:
        current, _pending = nv.nvmlDeviceGetMigMode(handle)
    except nv.NVMLError:
        return False  # NOT_SUPPORTED: a GPU without MIG
    return bool(current)


def _optional(nv: ModuleType, call: Any, handle: Any, divisor: float) -> float | None:
    """A reading some GPUs do not support (NOT_SUPPORTED → None); other errors propagate."""
    try:
        return float(call(handle)) / divisor
    except nv.NVMLError as exc:
        if type(exc).__name__ == "NVMLError_NotSupported":
            return None
        raise


def _pids(nv: ModuleType, handle: Any) -> tuple[int, ...]:
    return tuple(sorted({int(p.pid) for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)}))


def _process_sm(nv: ModuleType, handle: Any) -> tuple[tuple[int, float], ...]:
    """Each process's latest SM utilisation sample; () where the driver keeps none."""
    try:
        samples = nv.nvmlDeviceGetProcessUtilization(handle, 0)
    except nv.NVMLError:
        return ()  # NOT_FOUND (no samples yet) or NOT_SUPPORTED: per-process use is unknown
    latest: dict[int, tuple[int, float]] = {}
    for s in samples:
        pid, stamp = int(s.pid), int(s.timeStamp)
        if pid not in latest or stamp >= latest[pid][0]:
            latest[pid] = (stamp, min(max(float(s.smUtil), 0.0), 100.0) / 100)
    return tuple(sorted((pid, util) for pid, (_, util) in latest.items()))


def _profile(name: str) -> str:
    """ "NVIDIA H100 80GB HBM3 MIG 3g.40gb" → "3g.40gb" (the driver puts the profile last)."""
    head, sep, tail = name.rpartition(" MIG ")
    return tail.strip() if sep and head else ""


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _fault(exc: Exception) -> str:
    """A short, label-safe name for an NVML error: NVMLError_GPUIsLost → "gpu_is_lost"."""
    name = type(exc).__name__.removeprefix("NVMLError_")
    snake = "".join("_" + c.lower() if c.isupper() and i and not name[i - 1].isupper() else c.lower()
                    for i, c in enumerate(name))  # fmt: skip
    return snake or "error"


def _why_unavailable(exc: Exception) -> str:
    kind = type(exc).__name__
    hints = {
        "NVMLError_LibraryNotFound": "libnvidia-ml.so.1 not found: no NVIDIA driver here, "
        "or the container lacks the driver mount (NVIDIA container toolkit)",
        "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded",
        "NVMLError_NoPermission": "no permission to open the GPU device files",
        "NVMLError_LibRmVersionMismatch": "the NVML library and the kernel driver versions differ "
        "(driver upgraded without a reboot?)",
        "NVMLError_FunctionNotFound": "the driver is too old for this exporter's NVML calls",
    }
    return f"NVML unavailable: {hints.get(kind, str(exc) or kind)} ({kind})"
