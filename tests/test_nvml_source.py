"""The NVML source through the real pynvml and a fake libnvidia-ml.so.1 (tests/fakes)."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest

from exporter.config.load import load_config_text
from exporter.sources.gpu.nvml import NvmlReader, NvmlUnavailable
from exporter.sources.gpu.nvml_poller import NvmlGpus, NvmlPoller
from exporter.sources.node import DiscoveredNode
from tests.fakes.nvml import FakeGpu, FakeMig, FakeNvml, FakeProcess, Scenario

U0 = "GPU-00000000-1111-2222-3333-000000000000"
U1 = "GPU-00000000-1111-2222-3333-000000000001"
GIB = 2**30


def two_gpus(util0: int = 80, util1: int = 10, **gpu1: object) -> Scenario:
    return Scenario(
        gpus=[
            FakeGpu(
                0,
                uuid=U0,
                name="NVIDIA H100 80GB HBM3",
                util=util0,
                power_mw=650_000,
                energy_mj=9_000_000,
                mem_used=40 * GIB,
            ),
            FakeGpu(1, uuid=U1, name="NVIDIA H100 PCIe", util=util1, power_mw=120_000, **gpu1),  # type: ignore[arg-type]
        ],
        processes=[FakeProcess(0, 4242, mem=GIB, sm=55), FakeProcess(0, 4343, sm=20)],
    )


@pytest.fixture
def reader(fake_nvml: FakeNvml):  # type: ignore[no-untyped-def]
    r = NvmlReader()
    yield r
    r.close()


def test_a_sweep_reads_what_the_driver_reports(fake_nvml: FakeNvml, reader: NvmlReader) -> None:
    fake_nvml.use(two_gpus())
    assert reader.open() == 2
    (g0,) = reader.read_gpu(0)
    assert (g0.unit_id, g0.index, g0.name) == (U0, "0", "NVIDIA H100 80GB HBM3")
    assert (g0.utilization, g0.power_watts, g0.energy_joules_total) == (0.8, 650.0, 9000.0)
    assert g0.pids == (4242, 4343) and dict(g0.process_sm) == {4242: 0.55, 4343: 0.2}
    assert g0.fault == "" and g0.price_share == 1
    (g1,) = reader.read_gpu(1)
    assert (g1.unit_id, g1.utilization, g1.pids, g1.process_sm) == (U1, 0.1, (), ())


def test_a_lost_gpu_keeps_its_identity_and_is_never_busy_while_the_other_reads_on(
    fake_nvml: FakeNvml, reader: NvmlReader
) -> None:
    fake_nvml.use(two_gpus())
    reader.open()
    reader.read_gpu(1)  # seen once while healthy
    fake_nvml.use(two_gpus(error=15))  # NVML_ERROR_GPU_IS_LOST (Xid 79)
    (lost,) = reader.read_gpu(1)
    assert (lost.unit_id, lost.fault, lost.utilization) == (U1, "gpu_is_lost", None)
    assert lost.name == "NVIDIA H100 PCIe"  # still priced as what it was
    (ok,) = reader.read_gpu(0)
    assert ok.fault == "" and ok.utilization == 0.8


def test_mig_instances_are_units_with_slice_shares_carrying_the_parents_power(
    fake_nvml: FakeNvml, reader: NvmlReader
) -> None:
    fake_nvml.use(
        Scenario(
            gpus=[
                FakeGpu(
                    0,
                    uuid=U0,
                    name="NVIDIA H100 80GB HBM3",
                    mig=True,
                    max_mig=7,
                    power_mw=700_000,
                    energy_mj=7_000_000,
                )
            ],
            migs=[
                FakeMig(0, 0, uuid="MIG-aaaa", gi=1, slices=3, profile="3g.40gb"),
                FakeMig(0, 1, uuid="MIG-bbbb", gi=2, slices=3, profile="3g.40gb"),
                FakeMig(0, 4, uuid="MIG-cccc", gi=9, slices=1, profile="1g.10gb"),  # slots 2, 3 empty
            ],
            processes=[FakeProcess(0, 777, gi=2, ci=0)],
        )
    )
    reader.open()
    units = reader.read_gpu(0)
    assert [(u.unit_id, u.index, u.profile, u.price_share) for u in units] == [
        ("MIG-aaaa", "0/gi1", "3g.40gb", Fraction(3, 7)),
        ("MIG-bbbb", "0/gi2", "3g.40gb", Fraction(3, 7)),
        ("MIG-cccc", "0/gi9", "1g.10gb", Fraction(1, 7)),
    ]
    assert [u.pids for u in units] == [(), (777,), ()]
    assert all(u.utilization is None for u in units)  # NVML has none per MIG instance
    # Each carries the GPU's readings whole (the meter applies the shares, once).
    assert [(u.power_watts, u.energy_joules_total) for u in units] == [(700.0, 7000.0)] * 3
    assert sum(float(u.price_share) * (u.power_watts or 0) for u in units) == pytest.approx(700.0)


def test_nvml_that_cannot_start_says_why(fake_nvml: FakeNvml) -> None:
    fake_nvml.use(Scenario(init_error=9))
    with pytest.raises(NvmlUnavailable, match="kernel driver is not loaded"):
        NvmlReader().open()


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_the_poller_integrates_utilisation_between_sweeps_and_a_tick_sees_the_average(
    fake_nvml: FakeNvml,
) -> None:
    fake_nvml.use(two_gpus(util0=100, util1=0))
    clock = Clock()
    poller = NvmlPoller(NvmlReader(), poll_seconds=3600, monotonic=clock)  # sweeps driven by the test
    gpus = NvmlGpus(poller)
    gpus.start()
    try:
        cfg = load_config_text("node: n\n")
        first = {u.unit_id: u.utilization for u in gpus.units(cfg)}
        assert first == {U0: 1.0, U1: 0.0}  # no sweep since the last tick: the latest sample
        for util0, util1 in ((100, 0), (0, 50), (0, 50), (100, 50)):  # one second each
            clock.ns += 10**9
            fake_nvml.use(two_gpus(util0=util0, util1=util1))
            poller.sweep()
        tick = {u.unit_id: u.utilization for u in gpus.units(cfg)}
        assert tick == {U0: pytest.approx(0.5), U1: pytest.approx(0.375)}
        assert gpus.status().up
    finally:
        gpus.close()


def test_a_hung_gpu_is_marked_after_the_call_timeout_and_the_others_go_on(fake_nvml: FakeNvml) -> None:
    fake_nvml.use(two_gpus(hang_ms=1500))
    poller = NvmlPoller(NvmlReader(), poll_seconds=3600, call_timeout=0.3)
    began = time.monotonic()
    poller.start()  # the first sweep already meets the hang
    try:
        assert time.monotonic() - began < 1.4  # did not wait for the hung call
        faults = {s.unit.index: s.unit.fault for s in poller.state().units}
        assert faults == {"0": "", "1": "hung"}
        threads = threading.active_count()
        for _ in range(5):  # the hung GPU gets no new reads while its call is stuck
            poller.sweep()
        assert threading.active_count() <= threads + 1
        fake_nvml.use(two_gpus())
        deadline = time.monotonic() + 5
        while poller.sweep().units and any(s.unit.fault for s in poller.state().units):
            assert time.monotonic() < deadline, "the GPU never recovered"
            time.sleep(0.1)
        assert {s.unit.unit_id for s in poller.state().units} == {U0, U1}
    finally:
        poller.stop()


def test_the_node_names_hardware_and_applies_static_placements_by_index(fake_nvml: FakeNvml) -> None:
    fake_nvml.use(two_gpus())
    cfg = load_config_text(
        "node: n\nnode_source: {gpus: nvml, capacity: reserved}\n"
        "inventory:\n  workloads:\n    - {pod: p, namespace: ns, model: m, gpus: ['1']}\n"
    )
    gpus = NvmlGpus(NvmlPoller(NvmlReader(), poll_seconds=3600))
    node = DiscoveredNode(gpus)
    try:
        samples = node.gpus(cfg)  # starts NVML on first use
        assert [(s.gpu_id, s.hardware, s.capacity) for s in samples] == [
            (U0, "H100", "reserved"),
            (U1, "H100", "reserved"),
        ]
        (placed,) = node.placements(cfg)
        assert (placed.gpu_id, placed.holder.pod) == (U1, "p")
        assert node.status()[0].up
    finally:
        node.close()


def test_a_driver_that_is_not_there_yet_is_retried_and_reported_down(fake_nvml: FakeNvml) -> None:
    fake_nvml.use(Scenario(init_error=9))
    now = [0.0]
    gpus = NvmlGpus(NvmlPoller(NvmlReader(), poll_seconds=3600), retry_seconds=30, monotonic=lambda: now[0])
    cfg = load_config_text("node: n\n")
    assert gpus.units(cfg) == ()
    status = gpus.status()
    assert not status.up and "not loaded" in status.error
    fake_nvml.use(two_gpus())
    now[0] = 10.0
    assert gpus.units(cfg) == ()  # not retried before retry_seconds
    now[0] = 31.0
    try:
        assert len(gpus.units(cfg)) == 2 and gpus.status().up
    finally:
        gpus.close()


def test_slices_no_instance_uses_are_a_unit_of_their_own_so_the_whole_gpu_is_paid(
    fake_nvml: FakeNvml,
) -> None:
    fake_nvml.use(
        Scenario(
            gpus=[FakeGpu(0, uuid=U0, mig=True, max_mig=7, power_mw=700_000)],
            migs=[
                FakeMig(0, 0, uuid="MIG-aaaa", gi=1, slices=3, profile="3g.40gb"),
                FakeMig(0, 1, uuid="MIG-bbbb", gi=2, slices=3, profile="3g.40gb"),
            ],
        )
    )
    gpus = NvmlGpus(NvmlPoller(NvmlReader(), poll_seconds=3600))
    try:
        units = gpus.units(load_config_text("node: n\n"))
    finally:
        gpus.close()
    assert [(u.unit_id, u.index, u.price_share, u.parent) for u in units] == [
        ("MIG-aaaa", "0/gi1", Fraction(3, 7), U0),
        ("MIG-bbbb", "0/gi2", Fraction(3, 7), U0),
        (f"{U0}/unused", "0/unused", Fraction(1, 7), U0),
    ]
    # The idle slices' share of the power is billed too: Σ share × the GPU's power = the GPU's power.
    assert sum(float(u.price_share) * (u.power_watts or 0) for u in units) == pytest.approx(700.0)


def test_compute_instances_pay_their_compute_slices(fake_nvml: FakeNvml, reader: NvmlReader) -> None:
    # One 7g GPU instance split into a 3c and a 4c compute instance: two MIG devices.
    fake_nvml.use(
        Scenario(
            gpus=[FakeGpu(0, uuid=U0, mig=True, max_mig=7)],
            migs=[
                FakeMig(0, 0, uuid="MIG-c3", gi=1, ci=0, slices=7, ci_slices=3, profile="7g.80gb"),
                FakeMig(0, 1, uuid="MIG-c4", gi=1, ci=1, slices=7, ci_slices=4, profile="7g.80gb"),
            ],
        )
    )
    reader.open()
    assert [u.price_share for u in reader.read_gpu(0)] == [Fraction(3, 7), Fraction(4, 7)]


def test_a_gpu_without_mig_support_is_read_whole(fake_nvml: FakeNvml, reader: NvmlReader) -> None:
    fake_nvml.use(Scenario(gpus=[FakeGpu(0, uuid=U0, util=40, max_mig=0)]))  # GetMigMode: NOT_SUPPORTED
    reader.open()
    (unit,) = reader.read_gpu(0)
    assert unit.fault == "" and unit.utilization == 0.4
