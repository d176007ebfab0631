"""The fake NVML (tests/fakes) seen through the real pynvml: it reports what the scenario says.

pynvml runs in this process against the preloaded fake (the ``fake_nvml`` fixture); one test runs
a child Python that finds the fake through ``LD_LIBRARY_PATH``, as the exporter's integration tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pynvml
import pytest

from tests.fakes.nvml import FakeGpu, FakeMig, FakeNvml, FakeProcess, Scenario

GiB = 1024**3
MiB = 1024**2
H100 = "NVIDIA H100 80GB HBM3"
UUID0 = "GPU-8f3c0000-1111-2222-3333-444455556666"
UUID1 = "GPU-9a4d0000-1111-2222-3333-444455556666"
MIG_UUID = "MIG-1a2b0000-1111-2222-3333-444455556666"


@contextmanager
def nvml(fake: FakeNvml, scenario: Scenario) -> Iterator[None]:
    """NVML initialised on ``scenario``, and shut down again: pynvml and the fake both count."""
    fake.use(scenario)
    pynvml.nvmlInit()
    try:
        yield
    finally:
        pynvml.nvmlShutdown()


def two_gpus(**gpu1: Any) -> Scenario:
    return Scenario(
        driver="550.54.15",
        gpus=[
            FakeGpu(0, uuid=UUID0, name=H100, util=80, mem_util=30, power_mw=350_000, energy_mj=123_456_789),
            FakeGpu(1, uuid=UUID1, name="NVIDIA A100-SXM4-40GB", util=5, **gpu1),
        ],
    )


def test_devices_are_listed_with_names_and_uuids(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, two_gpus()):
        assert pynvml.nvmlSystemGetDriverVersion() == "550.54.15"
        assert pynvml.nvmlDeviceGetCount() == 2
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2)]
        assert [pynvml.nvmlDeviceGetName(h) for h in handles] == [H100, "NVIDIA A100-SXM4-40GB"]
        assert [pynvml.nvmlDeviceGetUUID(h) for h in handles] == [UUID0, UUID1]
        assert [pynvml.nvmlDeviceGetIndex(h) for h in handles] == [0, 1]
        by_uuid = pynvml.nvmlDeviceGetHandleByUUID(UUID1)
        assert pynvml.nvmlDeviceGetIndex(by_uuid) == 1
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetHandleByUUID("GPU-no-such-device")
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetHandleByIndex(2)


def test_defaults_fill_what_the_scenario_leaves_out(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, Scenario(gpus=[FakeGpu(0)])):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        assert pynvml.nvmlDeviceGetName(handle) == H100
        assert pynvml.nvmlDeviceGetUUID(handle).startswith("GPU-")
        assert pynvml.nvmlDeviceGetMemoryInfo(handle).total == 80 * GiB
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(handle) == 7


def test_utilisation_power_and_energy(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, two_gpus()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        utilisation = pynvml.nvmlDeviceGetUtilizationRates(handle)
        assert (utilisation.gpu, utilisation.memory) == (80, 30)
        assert pynvml.nvmlDeviceGetPowerUsage(handle) == 350_000  # mW
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 123_456_789  # mJ
        assert pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(1)).gpu == 5


def test_memory_v1_counts_reserved_as_used_and_v2_splits_it(fake_nvml: FakeNvml) -> None:
    gpu = FakeGpu(0, mem_total=80 * GiB, mem_used=40 * GiB, mem_reserved=GiB // 2)
    with nvml(fake_nvml, Scenario(gpus=[gpu])):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        v1 = pynvml.nvmlDeviceGetMemoryInfo(handle)
        assert (v1.total, v1.used, v1.free) == (80 * GiB, 40 * GiB + GiB // 2, 40 * GiB - GiB // 2)
        v2 = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        assert (v2.total, v2.reserved, v2.used, v2.free) == (
            80 * GiB,
            GiB // 2,
            40 * GiB,
            40 * GiB - GiB // 2,
        )
        with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
            pynvml.nvmlDeviceGetMemoryInfo(handle, version=0x01000028)


def test_compute_processes_per_gpu(fake_nvml: FakeNvml) -> None:
    scenario = two_gpus()
    scenario.processes = [
        FakeProcess(0, pid=4242, mem=GiB, sm=40),
        FakeProcess(0, pid=4343, mem=2 * GiB, sm=15),
        FakeProcess(1, pid=99, mem=3 * GiB),
    ]
    with nvml(fake_nvml, scenario):
        gpu0, gpu1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(gpu0)
        assert [(p.pid, p.usedGpuMemory) for p in procs] == [(4242, GiB), (4343, 2 * GiB)]
        assert {(p.gpuInstanceId, p.computeInstanceId) for p in procs} == {(0xFFFFFFFF, 0xFFFFFFFF)}
        v2 = pynvml.nvmlDeviceGetComputeRunningProcesses_v2(gpu1)
        assert [(p.pid, p.usedGpuMemory) for p in v2] == [(99, 3 * GiB)]

    with nvml(fake_nvml, two_gpus()):
        assert pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0)) == []


def test_process_utilisation_samples(fake_nvml: FakeNvml) -> None:
    scenario = two_gpus()
    scenario.processes = [FakeProcess(0, pid=4242, sm=40), FakeProcess(0, pid=4343, sm=15)]
    with nvml(fake_nvml, scenario):
        gpu0, gpu1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
        first = pynvml.nvmlDeviceGetProcessUtilization(gpu0, 0)
        assert {s.pid: s.smUtil for s in first} == {4242: 40, 4343: 15}
        last_seen = max(s.timeStamp for s in first)
        time.sleep(0.001)
        later = pynvml.nvmlDeviceGetProcessUtilization(gpu0, last_seen)
        assert all(s.timeStamp > last_seen for s in later)
        with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer than a future timestamp
            pynvml.nvmlDeviceGetProcessUtilization(gpu0, last_seen + 3_600_000_000)
        with pytest.raises(pynvml.NVMLError_NotFound):  # no processes
            pynvml.nvmlDeviceGetProcessUtilization(gpu1, 0)


def mig_scenario() -> Scenario:
    return Scenario(
        gpus=[FakeGpu(0, uuid=UUID0, name=H100, mig=True, max_mig=7, sms=132), FakeGpu(1, uuid=UUID1)],
        migs=[
            FakeMig(
                0, slot=0, uuid=MIG_UUID, gi=1, ci=0, slices=3, profile="3g.40gb", mem_mb=40192, mem_used=GiB
            ),
            FakeMig(0, slot=2, gi=5, ci=0, slices=1, profile="1g.10gb", mem_mb=9856),
        ],
        processes=[
            FakeProcess(0, pid=4242, mem=GiB, sm=40, gi=1, ci=0),
            FakeProcess(0, pid=5151, mem=512 * MiB, sm=10, gi=5, ci=0),
        ],
    )


def test_mig_devices(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, mig_scenario()):
        parent, plain = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
        assert pynvml.nvmlDeviceGetMigMode(parent) == [1, 1]
        assert pynvml.nvmlDeviceGetMigMode(plain) == [0, 0]
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
        assert pynvml.nvmlDeviceGetCount() == 2  # MIG devices are not counted

        mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
        for empty in (1, 3, 6):
            with pytest.raises(pynvml.NVMLError_NotFound):
                pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, empty)
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetMigDeviceHandleByIndex(plain, 0)

        assert pynvml.nvmlDeviceGetUUID(mig) == MIG_UUID
        assert pynvml.nvmlDeviceGetName(mig) == f"{H100} MIG 3g.40gb"
        attributes = pynvml.nvmlDeviceGetAttributes(mig)
        assert (attributes.gpuInstanceSliceCount, attributes.computeInstanceSliceCount) == (3, 3)
        assert attributes.memorySizeMB == 40192
        assert attributes.multiprocessorCount == 132 * 3 // 7  # default: the parent's SMs pro rata
        assert pynvml.nvmlDeviceGetGpuInstanceId(mig) == 1
        assert pynvml.nvmlDeviceGetComputeInstanceId(mig) == 0
        assert pynvml.nvmlDeviceIsMigDeviceHandle(mig).value == 1  # pynvml returns the c_uint
        assert pynvml.nvmlDeviceIsMigDeviceHandle(parent).value == 0
        back = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        assert pynvml.nvmlDeviceGetUUID(back) == UUID0
        memory = pynvml.nvmlDeviceGetMemoryInfo(mig, version=pynvml.nvmlMemory_v2)
        assert (memory.total, memory.used) == (40192 * MiB, GiB)

        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetUtilizationRates(mig)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetGpuInstanceId(parent)

        # Processes: all on the parent, each MIG device only its own instance's.
        assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(parent)] == [4242, 5151]
        on_mig = pynvml.nvmlDeviceGetComputeRunningProcesses(mig)
        assert [(p.pid, p.gpuInstanceId, p.computeInstanceId) for p in on_mig] == [(4242, 1, 0)]
        other = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 2)
        assert pynvml.nvmlDeviceGetGpuInstanceId(other) == 5
        assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(other)] == [5151]

        by_uuid = pynvml.nvmlDeviceGetHandleByUUID(MIG_UUID)
        assert pynvml.nvmlDeviceGetGpuInstanceId(by_uuid) == 1


def test_gpu_without_mig_support(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, Scenario(gpus=[FakeGpu(0, max_mig=0)])):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetMigMode(handle)
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(handle) == 0


def test_scenario_changes_are_seen_without_reinit(fake_nvml: FakeNvml) -> None:
    scenario = two_gpus()
    with nvml(fake_nvml, scenario):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        loads = fake_nvml.load_count()
        pynvml.nvmlDeviceGetUtilizationRates(handle)
        pynvml.nvmlDeviceGetPowerUsage(handle)
        assert fake_nvml.load_count() == loads  # an unchanged file is not re-read
        # Same-size rewrites in quick succession: each one must still be seen.
        for step, util in enumerate([10, 55, 90, 11, 56, 91, 12]):
            scenario.gpus[0].util = util
            scenario.gpus[0].energy_mj = 1_000_000 + step * 350_000
            fake_nvml.use(scenario)
            assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == util
            assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 1_000_000 + step * 350_000
        assert fake_nvml.load_count() == loads + 7
        assert pynvml.nvmlDeviceGetUUID(handle) == UUID0  # the handle survived every re-read


def test_mig_handles_survive_rereads_and_go_stale_when_removed(fake_nvml: FakeNvml) -> None:
    scenario = mig_scenario()
    with nvml(fake_nvml, scenario):
        parent = pynvml.nvmlDeviceGetHandleByIndex(0)
        mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
        scenario.migs[0].mem_used = 2 * GiB
        fake_nvml.use(scenario)
        assert pynvml.nvmlDeviceGetMemoryInfo(mig).used == 2 * GiB
        scenario.migs = scenario.migs[1:]  # instance destroyed
        fake_nvml.use(scenario)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetUUID(mig)
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)


LOST_GPU_CALLS: list[Callable[[Any], object]] = [
    pynvml.nvmlDeviceGetName,
    pynvml.nvmlDeviceGetUUID,
    pynvml.nvmlDeviceGetIndex,
    pynvml.nvmlDeviceGetUtilizationRates,
    pynvml.nvmlDeviceGetMemoryInfo,
    lambda h: pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2),
    pynvml.nvmlDeviceGetPowerUsage,
    pynvml.nvmlDeviceGetTotalEnergyConsumption,
    pynvml.nvmlDeviceGetComputeRunningProcesses,
    lambda h: pynvml.nvmlDeviceGetProcessUtilization(h, 0),
    pynvml.nvmlDeviceGetMigMode,
    pynvml.nvmlDeviceGetMaxMigDeviceCount,
    lambda h: pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0),
    pynvml.nvmlDeviceGetAttributes,
]


def test_lost_gpu_fails_every_call_and_the_other_gpu_works(fake_nvml: FakeNvml) -> None:
    scenario = mig_scenario()
    with nvml(fake_nvml, scenario):
        lost, healthy = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
        mig_of_lost = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(lost, 0)
        scenario.gpus[0].error = 15  # GPU 0 falls off the bus after its handles were taken
        fake_nvml.use(scenario)
        for call in LOST_GPU_CALLS:
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                call(lost)
        for call in (pynvml.nvmlDeviceGetUUID, pynvml.nvmlDeviceGetGpuInstanceId):
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                call(mig_of_lost)
        with pytest.raises(pynvml.NVMLError_GpuIsLost) as raised:
            pynvml.nvmlDeviceGetHandleByIndex(0)
        assert str(raised.value) == "GPU is lost"

        assert pynvml.nvmlDeviceGetCount() == 2
        assert pynvml.nvmlDeviceGetUUID(healthy) == UUID1
        assert pynvml.nvmlDeviceGetUtilizationRates(healthy).gpu == 0


def test_init_error(fake_nvml: FakeNvml) -> None:
    fake_nvml.use(Scenario(init_error=9, gpus=[FakeGpu(0)]))
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_Uninitialized):  # the failed init left nothing initialised
        pynvml.nvmlDeviceGetCount()
    with nvml(fake_nvml, Scenario(gpus=[FakeGpu(0)])):  # the driver "comes back"
        assert pynvml.nvmlDeviceGetCount() == 1


def test_calls_after_shutdown_are_uninitialised(fake_nvml: FakeNvml) -> None:
    with nvml(fake_nvml, two_gpus()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlInit()  # nested init: NVML counts them
        pynvml.nvmlShutdown()
        assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == 80
    for call in (
        pynvml.nvmlDeviceGetCount,
        pynvml.nvmlSystemGetDriverVersion,
        lambda: pynvml.nvmlDeviceGetName(handle),
    ):
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            call()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()


def test_hanging_gpu_is_slow_without_blocking_the_other(fake_nvml: FakeNvml) -> None:
    hang_s = 0.6
    with nvml(fake_nvml, two_gpus(hang_ms=int(hang_s * 1000))):
        fast = pynvml.nvmlDeviceGetHandleByIndex(0)
        start = time.monotonic()
        slow = pynvml.nvmlDeviceGetHandleByIndex(1)  # the lookup touches the GPU, so it hangs too
        assert time.monotonic() - start >= hang_s

        took: list[float] = []

        def hang() -> None:
            start = time.monotonic()
            pynvml.nvmlDeviceGetUtilizationRates(slow)
            took.append(time.monotonic() - start)

        worker = threading.Thread(target=hang)
        worker.start()
        time.sleep(0.1)  # the worker is now asleep inside the fake
        start = time.monotonic()
        assert pynvml.nvmlDeviceGetUtilizationRates(fast).gpu == 80
        assert time.monotonic() - start < 0.3  # did not wait for the hanging GPU's call
        assert worker.is_alive()
        worker.join()
        assert took[0] >= hang_s


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "Success"),
        (1, "Uninitialized"),
        (2, "Invalid Argument"),
        (3, "Not Supported"),
        (6, "Not Found"),
        (7, "Insufficient Size"),
        (9, "Driver Not Loaded"),
        (15, "GPU is lost"),
        (999, "Unknown Error"),
        (12345, "Unknown Error"),
    ],
)
def test_error_strings(fake_nvml: FakeNvml, code: int, text: str) -> None:
    assert pynvml.nvmlErrorString(code) == text


def test_bad_lines_are_reported_once_and_skipped(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hand-written.txt"
    path.write_text(
        "# a comment line, then a blank one\n"
        "\n"
        'gpu index=0 name="NVIDIA H100 80GB HBM3"   util=70   # trailing comment\n'
        "gpu index=1 utilisation=70\n"  # line 4: unknown key, so the whole line is dropped
        "gpu index=2 util=-5\n"
        "gpu util=3\n"
        'gpu index=3 name="unterminated\n'
        "banana index=0\n"
        "mig gpu=0 slot=0\n"  # line 9: GPU 0 is not in MIG mode
        "proc gpu=7 pid=1\n"
        "proc gpu=0 pid=31 sm=20\n"
    )
    monkeypatch.setenv("FAKE_NVML_SCENARIO", str(path))
    capfd.readouterr()
    pynvml.nvmlInit()
    try:
        assert pynvml.nvmlDeviceGetCount() == 1
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        assert pynvml.nvmlDeviceGetName(handle) == H100
        assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == 70
        assert [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)] == [31]
    finally:
        pynvml.nvmlShutdown()
    errors = capfd.readouterr().err
    expected = [
        ':4: unknown key "utilisation"',
        ":5: util=-5 is not a number in 0..100",
        ":6: missing required key index",
        ":7: unterminated quote",
        ':8: unknown line kind "banana"',
        ":9: a mig line needs a gpu line with mig=1",
        ":10: proc line names gpu=7",
    ]
    # Each problem once, in file order, although five calls each checked the file.
    reported = [line.split("hand-written.txt", 1)[1] for line in errors.splitlines()]
    assert len(reported) == len(expected), errors
    for got, want in zip(reported, expected, strict=True):
        assert got.startswith(want), errors
        assert got.endswith("(line ignored)")


def test_child_process_finds_the_fake_through_ld_library_path(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    scenario_path = tmp_path / "child-scenario.txt"
    Scenario(driver="535.104.05", gpus=[FakeGpu(0, uuid=UUID0, util=42), FakeGpu(1, uuid=UUID1)]).write(
        scenario_path
    )
    child = """
import json, pynvml
pynvml.nvmlInit()
handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
print(json.dumps({
    "fake": hasattr(pynvml.nvmlLib, "fakeNvmlLoadCount"),
    "driver": pynvml.nvmlSystemGetDriverVersion(),
    "uuids": [pynvml.nvmlDeviceGetUUID(h) for h in handles],
    "util": pynvml.nvmlDeviceGetUtilizationRates(handles[0]).gpu,
}))
pynvml.nvmlShutdown()
"""
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(fake_nvml.library_path.parent),
        "FAKE_NVML_SCENARIO": str(scenario_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "fake": True,
        "driver": "535.104.05",
        "uuids": [UUID0, UUID1],
        "util": 42,
    }
