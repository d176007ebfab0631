"""The node's GPUs from the real pynvml (fake libnvidia-ml.so.1), held by the pods the kubelet's
PodResources API names (a real gRPC server on a unix socket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from exporter.config.load import load_config_text
from exporter.sources.gpu.nvml import NvmlReader
from exporter.sources.gpu.nvml_poller import NvmlGpus, NvmlPoller
from exporter.sources.kube.podresources import list_holdings, parse_device_id
from exporter.sources.node import DiscoveredNode, unit_key
from tests.fakes.kubelet import FakeKubelet, list_reply, podresources_pb
from tests.fakes.nvml import FakeGpu, FakeMig, FakeNvml, Scenario

U = [f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
CFG = load_config_text(
    "node: n\nnode_source: {gpus: nvml, capacity: on_demand}\n"
    "inventory:\n  workloads:\n    - {pod: static-0, namespace: ns, model: m, gpus: ['2']}\n"
)


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return podresources_pb(tmp_path_factory.mktemp("proto"))


@pytest.fixture
def kubelet(pb: ModuleType, tmp_path: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(pb, tmp_path / "kubelet.sock")
    yield fake
    fake.stop()


@pytest.fixture
def node(fake_nvml: FakeNvml, kubelet: FakeKubelet) -> Iterator[DiscoveredNode]:
    fake_nvml.use(
        Scenario(
            gpus=[FakeGpu(0, uuid=U[0], mig=True, max_mig=7), FakeGpu(1, uuid=U[1]), FakeGpu(2, uuid=U[2])],
            migs=[
                FakeMig(0, 0, uuid="MIG-aaaa", gi=1, slices=4, profile="4g.40gb"),
                FakeMig(0, 1, uuid="MIG-bbbb", gi=2, slices=3, profile="3g.40gb"),
            ],
        )
    )
    holdings = lambda: list_holdings(str(kubelet.path), timeout=2.0)  # noqa: E731
    n = DiscoveredNode(NvmlGpus(NvmlPoller(NvmlReader(), poll_seconds=3600)), holdings=holdings)
    yield n
    n.close()


def test_the_kubelet_places_mig_instances_and_time_sliced_replicas(
    pb: ModuleType, kubelet: FakeKubelet, node: DiscoveredNode
) -> None:
    kubelet.serve(
        List=list_reply(
            pb,
            {
                ("serve", "big-0"): {"vllm": {"nvidia.com/mig-4g.40gb": ["MIG-aaaa"]}},
                ("serve", "small-0"): {"vllm": {"nvidia.com/mig-3g.40gb": ["MIG-bbbb"]}},
                ("edge", "a-0"): {"app": {"nvidia.com/gpu": [f"{U[1]}::0", f"{U[1]}::1"]}},
                ("edge", "b-0"): {"app": {"nvidia.com/gpu": [f"{U[1]}::2"], "cpu": ["1"]}},
            },
        )
    )
    node.gpus(CFG)
    held = {(p.gpu_id, p.holder.pod): p.weight for p in node.placements(CFG)}
    assert held == {
        ("MIG-aaaa", "big-0"): 1,
        ("MIG-bbbb", "small-0"): 1,
        (U[1], "a-0"): 2,  # two of three replicas
        (U[1], "b-0"): 1,
        (U[2], "static-0"): 1,  # the kubelet does not name it: the config's placement
    }
    info = {u.gpu_id: (u.placed_by, u.split, u.profile) for u in node.unit_info()}
    assert info == {
        "MIG-aaaa": ("podresources", "whole", "4g.40gb"),
        "MIG-bbbb": ("podresources", "whole", "3g.40gb"),
        U[1]: ("podresources", "replicas", ""),
        U[2]: ("static", "whole", ""),
    }
    assert [s.source for s in node.status()] == ["nvml", "podresources"] and all(s.up for s in node.status())


def test_without_the_kubelet_the_next_rule_places_and_the_source_is_down(node: DiscoveredNode) -> None:
    node.gpus(CFG)  # the kubelet fixture never started serving: no socket
    held = {(p.gpu_id, p.holder.pod) for p in node.placements(CFG)}
    assert held == {(U[2], "static-0")}
    kubelet_status = node.status()[1]
    assert kubelet_status.source == "podresources" and not kubelet_status.up
    assert "mount" in kubelet_status.error


@pytest.mark.parametrize(
    ("device_id", "key"),
    [
        ("GPU-1234", "GPU-1234"),
        ("MIG-5678::3", "MIG-5678"),
        ("nvidia3", "3"),
        ("nvidia0/gi2", "0/gi2"),
        ("nvidia1/vgpu4", "1"),
        ("gpu-5", "5"),  # a DRA device name of the NVIDIA driver
    ],
)
def test_device_ids_name_units(device_id: str, key: str) -> None:
    assert unit_key(parse_device_id(device_id)) == key
