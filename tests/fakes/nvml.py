"""A fake NVML for tests: build ``fake_nvml.c`` and describe what its GPUs report.

The real ``pynvml`` loads the built library as ``libnvidia-ml.so.1`` (preloaded in-process, or
through ``LD_LIBRARY_PATH`` in a child process). The library reads the scenario file named by
``$FAKE_NVML_SCENARIO`` and re-reads it whenever the file changes, so a test can change what a GPU
reports between two NVML calls. One line per item, ``key=value`` tokens, ``#`` comments::

    driver 550.54.15
    init_error 9        # nvmlInit* fails with this nvmlReturn_t
    gpu index=0 name="NVIDIA H100 80GB HBM3" util=80 mem_used=42949672960 mig=1 error=15 hang_ms=200
    mig gpu=0 slot=0 gi=1 ci=0 slices=3 profile=3g.40gb mem_mb=40192 mem_used=1073741824
    proc gpu=0 pid=4242 mem=1073741824 sm=40 gi=1 ci=0

A field left as ``None`` is not written, and the C side's default applies (see the dataclasses).
Bad lines are reported on stderr (prefix ``fake_nvml:``) and ignored.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_nvml.c")
SONAME = "libnvidia-ml.so.1"
ENV_VAR = "FAKE_NVML_SCENARIO"
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_DRIVER_NOT_LOADED = 9


def build_fake_nvml(out_dir: Path) -> Path:
    """Compile the fake into ``out_dir/libnvidia-ml.so.1`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SONAME
    command = [
        "gcc", "-std=c11", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
        f"-Wl,-soname,{SONAME}", "-o", str(target), str(SOURCE),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise RuntimeError("building the fake NVML needs gcc on PATH") from e
    if result.returncode != 0:
        raise RuntimeError(f"building the fake NVML failed:\n$ {' '.join(command)}\n{result.stderr}")
    return target


@dataclass
class FakeGpu:
    """A physical GPU. C defaults: name "NVIDIA H100 80GB HBM3", uuid from the index, util 0,
    mem_util 0, mem_total 80 GiB, mem_used 0, mem_reserved 0, power_mw 0, energy_mj 0, mig 0,
    max_mig 7 (0 = no MIG support), sms 132, error 0, hang_ms 0."""

    index: int
    uuid: str | None = None
    name: str | None = None
    util: int | None = None  # percent
    mem_util: int | None = None  # percent
    mem_total: int | None = None  # bytes
    mem_used: int | None = None  # bytes
    mem_reserved: int | None = None  # bytes; memory v1 reports it as used, like real drivers
    power_mw: int | None = None
    energy_mj: int | None = None  # total since "driver load"; rewrite it to advance time
    mig: bool | None = None  # MIG mode (current = pending)
    max_mig: int | None = None
    sms: int | None = None  # multiprocessorCount in the device attributes
    # Every call on this GPU and its MIG devices returns this nvmlReturn_t (15: NVMLError_GpuIsLost).
    error: int | None = None
    hang_ms: int | None = None  # every call on this GPU sleeps this long first (other GPUs unaffected)


@dataclass
class FakeMig:
    """A MIG device in ``slot`` of GPU ``gpu`` (which needs ``mig=True``). C defaults: uuid from
    gpu and slot, gi slot+1, ci 0, slices 1, ci_slices = slices, profile "1g.10gb", mem_mb 9856,
    mem_used 0, sms = parent sms * slices / parent max_mig. Its name is "<GPU name> MIG <profile>"."""

    gpu: int
    slot: int
    uuid: str | None = None
    gi: int | None = None
    ci: int | None = None
    slices: int | None = None
    ci_slices: int | None = None
    profile: str | None = None
    mem_mb: int | None = None  # total memory of the instance, MiB
    mem_used: int | None = None  # bytes
    sms: int | None = None


@dataclass
class FakeProcess:
    """A compute process on GPU ``gpu``; with gi/ci it also shows on the matching MIG device.
    C defaults: mem 0, sm 0, gi and ci 0xFFFFFFFF (NVML's "not on a MIG device")."""

    gpu: int
    pid: int
    mem: int | None = None  # usedGpuMemory, bytes
    sm: int | None = None  # smUtil of its process utilisation sample, percent
    gi: int | None = None
    ci: int | None = None


@dataclass
class Scenario:
    """What the fake NVML reports. C defaults: driver "550.54.15", no init error, no GPUs."""

    driver: str | None = None
    init_error: int | None = None
    gpus: list[FakeGpu] = field(default_factory=list)
    migs: list[FakeMig] = field(default_factory=list)
    processes: list[FakeProcess] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        if self.driver is not None:
            lines.append(f"driver {_value(self.driver)}")
        if self.init_error is not None:
            lines.append(f"init_error {self.init_error}")
        for kind, items in (("gpu", self.gpus), ("mig", self.migs), ("proc", self.processes)):
            for item in items:
                pairs = (
                    f"{f.name}={_value(v)}"
                    for f in dataclasses.fields(item)
                    if (v := getattr(item, f.name)) is not None
                )
                lines.append(" ".join([kind, *pairs]))
        return "".join(line + "\n" for line in lines)

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically (the C side never sees half a file), with an mtime later
        than the file it replaces. The fake reloads when (inode, size, mtime, ctime) differ from the
        version it last read, which may be several writes back: ext4 can give the new file that
        version's freed inode, and file times tick only every few ms (half of back-to-back writes
        here share an mtime). A strictly increasing mtime makes every write a visible change."""
        previous_mtime = path.stat().st_mtime_ns if path.exists() else 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.render())
            mtime = max(time.time_ns(), previous_mtime + 1_000_000)
            os.utime(tmp, ns=(mtime, mtime))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class FakeNvml:
    """The fake, loaded into this process so that the real ``pynvml`` uses it.

    ``ctypes.CDLL(path, RTLD_GLOBAL)`` before pynvml's first ``nvmlInit``: pynvml then opens
    ``libnvidia-ml.so.1`` by name, and the dynamic loader hands back the already loaded object with
    that soname. pynvml keeps that library for the life of the process, so load this once per
    session; each test writes its scenario with ``use`` and calls nvmlInit/nvmlShutdown itself.
    """

    def __init__(self, work_dir: Path) -> None:
        self.library_path = build_fake_nvml(work_dir)
        self.scenario_path = work_dir / "scenario.txt"
        self._previous_env = os.environ.get(ENV_VAR)
        self._lib = ctypes.CDLL(str(self.library_path), mode=ctypes.RTLD_GLOBAL)
        self._lib.fakeNvmlLoadCount.restype = ctypes.c_ulonglong
        self._check_pynvml_uses_it()

    def use(self, scenario: Scenario) -> Path:
        """Make ``scenario`` what the fake reports from its next call on; returns the file."""
        scenario.write(self.scenario_path)
        os.environ[ENV_VAR] = str(self.scenario_path)  # os.environ calls putenv: C getenv sees it
        return self.scenario_path

    def load_count(self) -> int:
        """How many times the fake has (re)read a scenario: test hook, not NVML."""
        return int(self._lib.fakeNvmlLoadCount())

    def close(self) -> None:
        """Restore the environment (the library stays loaded: a process cannot unload it safely)."""
        if self._previous_env is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = self._previous_env

    def _check_pynvml_uses_it(self) -> None:
        import pynvml  # the "node" extra; imported here so that merely importing this module is free

        self.use(Scenario())
        pynvml.nvmlInit()
        try:
            if not hasattr(pynvml.nvmlLib, "fakeNvmlLoadCount"):
                raise RuntimeError(
                    f"pynvml had already loaded another NVML ({pynvml.nvmlLib}) before the fake was preloaded"
                )
        finally:
            pynvml.nvmlShutdown()


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    text = str(value)
    if '"' in text or "\n" in text:
        raise ValueError(f"scenario values cannot hold quotes or newlines: {text!r}")
    return f'"{text}"' if not text or any(c in text for c in " \t#=") else text
