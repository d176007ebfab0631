"""NVML off the scrape path: a thread sweeps every GPU each ``poll_seconds`` and integrates
utilisation over time, so a tick reads averages without making a single NVML call.

Why integrate: NVML's utilisation is a percentage over the driver's last sample period
(1/6 s to 1 s). One sample per 5-second tick would bill a bursty server's whole tick by
a single glimpse; busy-time = Σ utilisation × time between sweeps does not.

Each GPU is read by its own worker. A call that hangs (a wedged driver) marks that GPU
``hung`` once its ``call_timeout`` passes; the GPU gets no new read until the old one
returns, so hung calls never pile up threads, and the other GPUs go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.config.schema import ExporterConfig
from exporter.records import SourceStatus
from exporter.sources.gpu.mig import with_unused_slices
from exporter.sources.gpu.nvml import NvmlReader, NvmlUnavailable, NvmlUnit
from exporter.sources.gpu.unit import GpuUnit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UnitState:
    """The latest reading of a unit and its running utilisation integral."""

    unit: NvmlUnit
    busy_ns: int = 0  # cumulative utilisation × time
    measured_ns: int = 0  # cumulative time whose utilisation was known


@dataclass(frozen=True, slots=True)
class PollerState:
    units: tuple[UnitState, ...] = ()
    up: bool = False  # NVML initialised and the last sweep finished
    sweeps: int = 0
    error: str = ""


class NvmlPoller:
    def __init__(
        self,
        reader: NvmlReader,
        *,
        poll_seconds: float = 1.0,
        call_timeout: float = 2.0,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._reader = reader
        self._poll = poll_seconds
        self._timeout = call_timeout
        self._monotonic = monotonic
        self._count = 0
        self._pending: dict[int, _Read] = {}
        self._started = False
        self._units: dict[str, UnitState] = {}
        self._last_ns: int | None = None
        self._state = PollerState()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open NVML (``NvmlUnavailable`` if it cannot be), take a first sweep, then keep sweeping."""
        self._count = self._reader.open()
        log.info("NVML driver=%s gpus=%d", self._reader.driver, self._count)
        self._started = True
        self.sweep()
        self._thread = threading.Thread(target=self._loop, name="nvml-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + self._poll)
        if any(not r.done.is_set() for r in self._pending.values()):
            log.warning("an NVML call is still hung at shutdown; leaving NVML open")
            return  # nvmlShutdown under a live call could crash the process on its way out
        self._reader.close()

    def state(self) -> PollerState:
        with self._lock:
            return self._state

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.sweep()
            except Exception:  # a bug in one sweep must not end polling; logged loudly
                log.exception("NVML sweep failed")

    def sweep(self) -> PollerState:
        """Read every GPU once (hung ones excepted) and fold the readings into the integrals."""
        assert self._started, "start() first"
        for index in range(self._count):
            if index not in self._pending:  # else still running from an earlier sweep: hung
                self._pending[index] = _Read(self._reader.read_gpu, index)
        deadline = time.monotonic() + self._timeout
        for read in self._pending.values():
            read.done.wait(max(0.0, deadline - time.monotonic()))
        now = self._monotonic()
        readings: list[NvmlUnit] = []
        for index in range(self._count):
            read = self._pending[index]
            if not read.done.is_set():
                readings += self._faulted(index, "hung")
                continue
            del self._pending[index]
            units = read.result
            if read.error is not None:  # not an NVML error (those are faults): a bug, logged
                log.error("reading GPU %d failed: %r", index, read.error)
                readings += self._faulted(index, "error")
            elif len(units) == 1 and units[0].fault:  # the GPU failed: keep the units it had (MIG)
                readings += self._faulted(index, units[0].fault, units[0])
            else:
                readings += units
        return self._fold(readings, now)

    def _faulted(self, index: int, fault: str, fresh: NvmlUnit | None = None) -> list[NvmlUnit]:
        """The GPU's last known units with the fault: billed as held (by the same holders, at the
        same shares), busy time unknown."""
        known = [s.unit for s in self._units.values() if s.unit.index.split("/")[0] == str(index)]
        if not known:
            known = [fresh or NvmlUnit(f"gpu{index}", str(index), "")]
        return [replace(u, utilization=None, process_sm=(), fault=fault) for u in known]

    def _fold(self, readings: list[NvmlUnit], now: int) -> PollerState:
        elapsed = 0 if self._last_ns is None else max(0, now - self._last_ns)
        self._last_ns = now
        units: dict[str, UnitState] = {}
        for unit in readings:
            prev = self._units.get(unit.unit_id, UnitState(unit))
            if unit.utilization is None or not elapsed:
                units[unit.unit_id] = replace(prev, unit=unit)
                continue
            units[unit.unit_id] = UnitState(
                unit,
                busy_ns=prev.busy_ns + round(unit.utilization * elapsed),
                measured_ns=prev.measured_ns + elapsed,
            )
        self._units = units
        state = PollerState(tuple(units.values()), up=True, sweeps=self._state.sweeps + 1)
        with self._lock:
            self._state = state
        return state


class _Read:
    """One GPU's read on its own daemon thread: a call wedged in the driver never holds up the
    other GPUs, a sweep, or the process's exit (pool workers would be joined at exit)."""

    def __init__(self, read: Callable[[int], tuple[NvmlUnit, ...]], index: int) -> None:
        self.done = threading.Event()
        self.result: tuple[NvmlUnit, ...] = ()
        self.error: BaseException | None = None
        self._read, self._index = read, index
        threading.Thread(target=self._run, name=f"nvml-gpu{index}", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._read(self._index)
        except BaseException as exc:  # reported by the sweep, never lost in a thread
            self.error = exc
        finally:
            self.done.set()


class NvmlGpus:
    """The poller as a ``GpuReader``: each tick, every unit's utilisation averaged since the last."""

    name = "nvml"

    def __init__(
        self,
        poller: NvmlPoller,
        *,
        retry_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poller = poller
        self._seen: dict[str, tuple[int, int]] = {}  # unit → (busy_ns, measured_ns) at the last tick
        self._started = False
        self._error = ""
        self._retry = retry_seconds
        self._monotonic = monotonic
        self._next_try = 0.0

    def start(self) -> None:
        """Open NVML now; ``NvmlUnavailable`` if it cannot (the caller may pick another source)."""
        self._poller.start()
        self._started, self._error = True, ""

    def units(self, cfg: ExporterConfig) -> tuple[GpuUnit, ...]:
        if not self._started and not self._try_start():
            return ()
        state = self._poller.state()
        seen: dict[str, tuple[int, int]] = {}
        out = []
        for s in state.units:
            u = s.unit
            busy0, measured0 = self._seen.get(u.unit_id, (s.busy_ns, s.measured_ns))
            seen[u.unit_id] = (s.busy_ns, s.measured_ns)
            measured = s.measured_ns - measured0
            # No sweep measured it since the last tick (first tick, or hung): the last sample.
            util = (s.busy_ns - busy0) / measured if measured > 0 else u.utilization
            if u.fault:
                util = None  # a lost or hung GPU is never counted busy
            out.append(
                GpuUnit(
                    u.unit_id,
                    u.index,
                    u.name,
                    utilization=None if util is None else min(max(util, 0.0), 1.0),
                    power_watts=u.power_watts,
                    energy_joules_total=u.energy_joules_total,
                    price_share=u.price_share,
                    profile=u.profile,
                    fault=u.fault,
                    pids=u.pids,
                    process_sm=u.process_sm,
                    parent=u.parent,
                )
            )
        self._seen = seen
        return with_unused_slices(tuple(out))

    def _try_start(self) -> bool:
        """The driver may come up after us (GPU operator): retry NVML every ``retry_seconds``."""
        now = self._monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self._retry
        try:
            self.start()
        except NvmlUnavailable as exc:
            if str(exc) != self._error:
                log.error("%s; retrying every %g s", exc, self._retry)
            self._error = str(exc)
            return False
        return True

    def status(self) -> SourceStatus:
        if not self._started:
            return SourceStatus(self.name, False, self._error)
        state = self._poller.state()
        return SourceStatus(self.name, state.up, state.error)

    def close(self) -> None:
        if self._started:
            self._poller.stop()
