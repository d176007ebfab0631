"""The kubelet PodResources client against a real gRPC server on a unix socket.

Responses are built by Google's protobuf runtime from classes that grpcio-tools generates at test
time from ``exporter/sources/kube/podresources.proto``; the server registers the service and RPC names
it reads from that proto. So the hand-written decoder is checked against the official encoder and
the client's method paths against the proto, never against themselves.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sources.kube import podresources as pr
from exporter.sources.kube.podresources import (
    ClaimResource,
    ContainerDevices,
    ContainerResources,
    DeviceHolding,
    DeviceRef,
    DynamicResource,
    PodResources,
    PodResourcesError,
    allocatable,
    decode_allocatable_response,
    decode_list_response,
    list_holdings,
    parse_device_id,
)
from tests.fakes.kubelet import FakeKubelet, compile_proto

PROTO = Path(pr.__file__).with_name("podresources.proto")

# What a kubelet from the future might add: main's pod-level cpu_ids/memory, and unknown fields of
# every proto3 wire type at every level this client reads.
NEWER_FIELDS = {
    "message PodResources {": "repeated int64 cpu_ids = 4; repeated ContainerMemory memory = 5; fixed64 f64 = 90;",
    "message ContainerResources {": "sint64 s64 = 90; fixed32 f32 = 91; TopologyInfo extra = 92;",
    "message ContainerDevices {": "double weight = 90; repeated string aliases = 91;",
    "message ClaimResource {": "float f = 90; uint64 size = 91; bool shared = 92;",
    "message DynamicResource {": "sfixed64 sf64 = 90; CDIDevice cdi = 91;",
    "message ListPodResourcesResponse {": "string node = 90; sfixed32 sf32 = 91;",
}


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Classes generated from our .proto (package v1)."""
    return compile_proto(PROTO.read_text(), "podresources", tmp_path_factory.mktemp("proto"))


@pytest.fixture(scope="module")
def newer_pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """A test-only copy with extra fields, in its own package so both fit in protobuf's pool."""
    text = PROTO.read_text().replace("package v1;", "package newer;")
    for opening, extra in NEWER_FIELDS.items():
        assert opening in text
        text = text.replace(opening, f"{opening}\n    {extra}")
    return compile_proto(text, "podresources_newer", tmp_path_factory.mktemp("proto-newer"))


@pytest.fixture
def kubelet(pb: ModuleType, tmp_path: Path) -> Iterator[FakeKubelet]:
    # A unix socket path must fit in 108 bytes; pytest's tmp_path does.
    fake = FakeKubelet(pb, tmp_path / "kubelet.sock")
    yield fake
    fake.stop()


def _list(pb: ModuleType, *pods: Any) -> bytes:
    return bytes(pb.ListPodResourcesResponse(pod_resources=pods).SerializeToString())


def _pod(pb: ModuleType, namespace: str, name: str, *containers: Any) -> Any:
    return pb.PodResources(name=name, namespace=namespace, containers=containers)


def _container(pb: ModuleType, name: str, devices: dict[str, list[str]], **extra: Any) -> Any:
    return pb.ContainerResources(
        name=name,
        devices=[pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devices.items()],
        **extra,
    )


def _claim(pb: ModuleType, driver: str, device: str) -> Any:
    return pb.ClaimResource(
        driver_name=driver,
        pool_name="node-a",
        device_name=device,
        cdi_devices=[pb.CDIDevice(name=f"k8s.{driver}/claim=abc-{device}")],
    )


# --- List over a real socket ----------------------------------------------------------------


def test_list_keeps_nvidia_gpus_mig_and_replicas_and_drops_other_resources(
    pb: ModuleType, kubelet: FakeKubelet
) -> None:
    reply = _list(
        pb,
        _pod(
            pb,
            "ml",
            "llama-0",
            _container(
                pb,
                "server",
                {"nvidia.com/gpu": ["GPU-aaaa", "GPU-bbbb"], "example.com/fpga": ["fpga0"]},
                cpu_ids=[2, 3],
                memory=[pb.ContainerMemory(memory_type="memory", size=1 << 30)],
            ),
            _container(pb, "sidecar", {}),
        ),
        _pod(pb, "ml", "mixtral-0", _container(pb, "c", {"nvidia.com/mig-3g.40gb": ["MIG-cccc"]})),
        _pod(
            pb, "batch", "shared-1", _container(pb, "w", {"nvidia.com/gpu": ["GPU-aaaa::1", "GPU-aaaa::4"]})
        ),
        _pod(pb, "other", "amd", _container(pb, "w", {"amd.com/gpu": ["0"], "nvidia.com/gpu": []})),
    )
    kubelet.serve(List=reply)

    assert list_holdings(str(kubelet.path)) == (
        DeviceHolding("ml", "llama-0", "server", "nvidia.com/gpu", ("GPU-aaaa", "GPU-bbbb")),
        DeviceHolding("ml", "mixtral-0", "c", "nvidia.com/mig-3g.40gb", ("MIG-cccc",)),
        DeviceHolding("batch", "shared-1", "w", "nvidia.com/gpu", ("GPU-aaaa::1", "GPU-aaaa::4")),
    )
    assert list_holdings(str(kubelet.path), resources=["example.com/fpga"])[1] == DeviceHolding(
        "ml", "llama-0", "server", "example.com/fpga", ("fpga0",)
    )


def test_list_keeps_dra_claims_of_the_nvidia_driver_once_per_device(
    pb: ModuleType, kubelet: FakeKubelet
) -> None:
    container = _container(
        pb,
        "trainer",
        {"nvidia.com/gpu": ["GPU-aaaa"]},
        dynamic_resources=[
            pb.DynamicResource(
                claim_name="gpus",
                claim_namespace="ml",
                claim_resources=[
                    _claim(pb, "gpu.nvidia.com", "gpu-0"),
                    _claim(pb, "gpu.nvidia.com", "gpu-1"),
                    _claim(pb, "dra.example.com", "nic-0"),
                    _claim(pb, "gpu.nvidia.com", ""),  # a non-device resource: nothing to hold
                ],
            ),
            pb.DynamicResource(
                claim_name="shared",
                claim_namespace="ml",
                claim_resources=[
                    pb.ClaimResource(driver_name="gpu.nvidia.com", device_name="gpu-1", share_id="s1")
                ],
            ),
        ],
    )
    kubelet.serve(List=_list(pb, _pod(pb, "ml", "train-0", container)))

    assert list_holdings(str(kubelet.path)) == (
        DeviceHolding("ml", "train-0", "trainer", "nvidia.com/gpu", ("GPU-aaaa",)),
        DeviceHolding("ml", "train-0", "trainer", "dra:gpu.nvidia.com", ("gpu-0", "gpu-1")),
    )


def test_empty_responses_hold_nothing(pb: ModuleType, kubelet: FakeKubelet) -> None:
    kubelet.serve(List=b"", GetAllocatableResources=b"")
    assert list_holdings(str(kubelet.path)) == ()
    assert allocatable(str(kubelet.path)) == ()


def test_allocatable_lists_every_gpu_device(pb: ModuleType, kubelet: FakeKubelet) -> None:
    reply = pb.AllocatableResourcesResponse(
        devices=[
            pb.ContainerDevices(
                resource_name="nvidia.com/gpu",
                device_ids=["GPU-aaaa", "GPU-bbbb"],
                topology=pb.TopologyInfo(nodes=[pb.NUMANode(ID=1)]),
            ),
            pb.ContainerDevices(resource_name="example.com/fpga", device_ids=["fpga0"]),
            pb.ContainerDevices(resource_name="nvidia.com/mig-1g.10gb", device_ids=["MIG-dddd"]),
        ],
        cpu_ids=[0, 1, 2],
        memory=[pb.ContainerMemory(memory_type="hugepages-1Gi", size=4 << 30)],
    ).SerializeToString()
    kubelet.serve(GetAllocatableResources=reply)

    assert allocatable(str(kubelet.path)) == (
        ("nvidia.com/gpu", "GPU-aaaa"),
        ("nvidia.com/gpu", "GPU-bbbb"),
        ("nvidia.com/mig-1g.10gb", "MIG-dddd"),
    )


def test_fields_a_newer_kubelet_adds_are_skipped(newer_pb: ModuleType, kubelet: FakeKubelet) -> None:
    n = newer_pb
    container = n.ContainerResources(
        name="server",
        devices=[
            n.ContainerDevices(
                resource_name="nvidia.com/gpu", device_ids=["GPU-aaaa"], weight=0.5, aliases=["a"]
            )
        ],
        dynamic_resources=[
            n.DynamicResource(
                claim_name="c",
                sf64=-7,
                cdi=n.CDIDevice(name="x"),
                claim_resources=[
                    n.ClaimResource(
                        driver_name="gpu.nvidia.com", device_name="gpu-3", f=1.5, size=1 << 40, shared=True
                    )
                ],
            )
        ],
        s64=-(1 << 40),
        f32=7,
        extra=n.TopologyInfo(nodes=[n.NUMANode(ID=3)]),
    )
    pod = n.PodResources(name="p", namespace="ns", containers=[container], cpu_ids=[4, 5], f64=1 << 63)
    reply = n.ListPodResourcesResponse(pod_resources=[pod], node="gpu-node-7", sf32=-1).SerializeToString()
    # proto3 cannot declare groups; append one (holding a nested group and a varint) by hand.
    group = bytes([0xA3, 0x06, 0xA3, 0x06, 0xA8, 0x06, 0x05, 0xA4, 0x06, 0xA4, 0x06])  # field 100
    kubelet.serve(List=reply + group)

    assert list_holdings(str(kubelet.path)) == (
        DeviceHolding("ns", "p", "server", "nvidia.com/gpu", ("GPU-aaaa",)),
        DeviceHolding("ns", "p", "server", "dra:gpu.nvidia.com", ("gpu-3",)),
    )


# --- failures: each names what to do --------------------------------------------------------


def test_missing_socket_says_to_mount_the_directory(tmp_path: Path) -> None:
    with pytest.raises(PodResourcesError) as err:
        list_holdings(str(tmp_path / "kubelet.sock"))
    assert err.value.reason == "socket_missing"
    assert "does not exist" in str(
        err.value
    ) and "mount the host directory /var/lib/kubelet/pod-resources" in str(err.value)


def test_a_regular_file_is_not_the_socket(tmp_path: Path) -> None:
    (tmp_path / "kubelet.sock").write_text("")
    with pytest.raises(PodResourcesError, match="is not a unix socket"):
        list_holdings(str(tmp_path / "kubelet.sock"))


def test_socket_without_permission_says_to_run_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kubelet.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    # Tests run as root, for whom every access check passes: pretend to be a plain user.
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    with pytest.raises(PodResourcesError) as err:
        list_holdings(str(path))
    assert err.value.reason == "permission"
    assert "permission denied" in str(err.value) and "root" in str(err.value)


def test_stale_socket_without_kubelet_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "kubelet.sock"
    with socket.socket(socket.AF_UNIX) as s:  # bound, never listening: what a dead kubelet leaves
        s.bind(str(path))
    with pytest.raises(PodResourcesError) as err:
        list_holdings(str(path), timeout=5)
    assert err.value.reason == "unavailable"
    assert "is the kubelet running?" in str(err.value)


def test_a_hung_kubelet_fails_at_the_deadline(pb: ModuleType, kubelet: FakeKubelet) -> None:
    kubelet.delay = 10.0
    kubelet.serve(List=_list(pb))
    with pytest.raises(PodResourcesError) as err:
        list_holdings(str(kubelet.path), timeout=0.2)
    assert err.value.reason == "deadline"
    assert "exceeded its 0.2 s deadline" in str(err.value)


def test_a_kubelet_before_1_21_has_no_allocatable(pb: ModuleType, kubelet: FakeKubelet) -> None:
    kubelet.serve(List=_list(pb))
    assert list_holdings(str(kubelet.path)) == ()
    with pytest.raises(PodResourcesError) as err:
        allocatable(str(kubelet.path))
    assert err.value.reason == "unimplemented"
    assert "does not implement GetAllocatableResources" in str(err.value) and "1.21" in str(err.value)


def test_a_truncated_response_is_an_error_not_a_crash(pb: ModuleType, kubelet: FakeKubelet) -> None:
    reply = _list(pb, _pod(pb, "ml", "llama-0", _container(pb, "server", {"nvidia.com/gpu": ["GPU-aaaa"]})))
    kubelet.serve(List=reply[:-3])
    with pytest.raises(PodResourcesError) as err:
        list_holdings(str(kubelet.path))
    assert err.value.reason == "malformed"
    assert "malformed ListPodResourcesResponse" in str(err.value) and "truncated" in str(err.value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x0a\x05\x0a\x03ab", "truncated: 5 bytes"),  # pod announces 5 bytes, 4 follow
        (b"\x0a\x80", "varint at byte 1 truncated"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x08" + b"\xff" * 9 + b"\x7f", "exceeds 64 bits"),
        (b"\x0f", "invalid wire type 7"),
        (b"\x02\x00", "field number 0"),
        (b"\x09\x01\x02", "truncated: 8-byte value"),
        (b"\x0c", "end of group 1 that never started"),
        (b"\x0b\x08\x01", "group 1 not closed"),
        (b"\x0b\x14", "not the one that started it"),
        (b"\x08\x01", "field 1 has wire type 0"),  # pod_resources must be a message
        (b"\x0a\x04\x0a\x02\xc3\x28", "PodResources.name is not UTF-8"),
        (b"\x0a\x04\x1a\x02\x10\x01", "ContainerResources.devices has wire type 0"),
    ],
)
def test_malformed_bytes_are_rejected_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(PodResourcesError, match="malformed ListPodResourcesResponse") as err:
        decode_list_response(data)
    assert problem in str(err.value)
    assert err.value.reason == "malformed"


def test_deeply_nested_groups_are_rejected() -> None:
    # Field 2 of ListPodResourcesResponse is unknown, so its groups are skipped.
    with pytest.raises(PodResourcesError, match="nested deeper than 100"):
        decode_list_response(b"\x13" * 101 + b"\x14" * 101)
    assert decode_list_response(b"\x13" * 100 + b"\x14" * 100) == ()


def test_the_proto_keeps_upstream_names_and_field_numbers(pb: ModuleType) -> None:
    """Field numbers as in kubernetes/kubelet api.proto at kubernetes-1.36.3 (see kubelet.md)."""
    upstream = {
        "ListPodResourcesResponse": {"pod_resources": 1},
        "AllocatableResourcesResponse": {"devices": 1, "cpu_ids": 2, "memory": 3},
        "PodResources": {"name": 1, "namespace": 2, "containers": 3},
        "ContainerResources": {"name": 1, "devices": 2, "cpu_ids": 3, "memory": 4, "dynamic_resources": 5},
        "ContainerDevices": {"resource_name": 1, "device_ids": 2, "topology": 3},
        "ContainerMemory": {"memory_type": 1, "size": 2, "topology": 3},
        "TopologyInfo": {"nodes": 1},
        "NUMANode": {"ID": 1},
        "DynamicResource": {"claim_name": 2, "claim_namespace": 3, "claim_resources": 4},
        "ClaimResource": {
            "cdi_devices": 1,
            "driver_name": 2,
            "pool_name": 3,
            "device_name": 4,
            "share_id": 5,
        },
        "CDIDevice": {"name": 1},
        "GetPodResourcesRequest": {"pod_name": 1, "pod_namespace": 2},
        "GetPodResourcesResponse": {"pod_resources": 1},
    }
    assert pb.DESCRIPTOR.package == "v1"
    for message, fields in upstream.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == fields, message
    service = pb.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        "List": ("ListPodResourcesRequest", "ListPodResourcesResponse"),
        "GetAllocatableResources": ("AllocatableResourcesRequest", "AllocatableResourcesResponse"),
        "Get": ("GetPodResourcesRequest", "GetPodResourcesResponse"),
    }
    assert f"/{service.full_name}/List" == pr._LIST
    assert f"/{service.full_name}/GetAllocatableResources" == pr._ALLOCATABLE


# --- decode(official encode(m)) == m ---------------------------------------------------------

_text = st.text(max_size=12)
_ids = st.lists(_text, max_size=3)
_claims = st.lists(st.tuples(_text, _text, _text, st.none() | _text, st.lists(_text, max_size=2)), max_size=3)
_dynamic = st.lists(st.tuples(_text, _text, _claims), max_size=2)
_int64s = st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=3)
_containers = st.lists(
    st.tuples(_text, st.lists(st.tuples(_text, _ids, _int64s), max_size=3), _dynamic, _int64s), max_size=3
)
_pods = st.lists(st.tuples(_text, _text, _containers), max_size=4)


def _official(pb: ModuleType, pods: list[Any]) -> bytes:
    def devices(resource: str, ids: list[str], numa: list[int]) -> Any:
        return pb.ContainerDevices(
            resource_name=resource,
            device_ids=ids,
            topology=pb.TopologyInfo(nodes=[pb.NUMANode(ID=n) for n in numa]),
        )

    def claim(driver: str, pool: str, device: str, share: str | None, cdi: list[str]) -> Any:
        extra = {} if share is None else {"share_id": share}
        return pb.ClaimResource(
            driver_name=driver,
            pool_name=pool,
            device_name=device,
            cdi_devices=[pb.CDIDevice(name=c) for c in cdi],
            **extra,
        )

    message = pb.ListPodResourcesResponse(
        pod_resources=[
            pb.PodResources(
                name=name,
                namespace=namespace,
                containers=[
                    pb.ContainerResources(
                        name=c_name,
                        devices=[devices(*d) for d in devs],
                        dynamic_resources=[
                            pb.DynamicResource(
                                claim_name=cn, claim_namespace=cns, claim_resources=[claim(*r) for r in rs]
                            )
                            for cn, cns, rs in dyn
                        ],
                        cpu_ids=cpus,
                    )
                    for c_name, devs, dyn, cpus in containers
                ],
            )
            for name, namespace, containers in pods
        ]
    )
    return bytes(message.SerializeToString())


def _expected(pods: list[Any]) -> tuple[PodResources, ...]:
    return tuple(
        PodResources(
            name,
            namespace,
            tuple(
                ContainerResources(
                    c_name,
                    tuple(ContainerDevices(r, tuple(ids)) for r, ids, _ in devs),
                    tuple(
                        DynamicResource(cn, cns, tuple(ClaimResource(d, p, dev) for d, p, dev, _, _ in rs))
                        for cn, cns, rs in dyn
                    ),
                )
                for c_name, devs, dyn, _ in containers
            ),
        )
        for name, namespace, containers in pods
    )


@settings(max_examples=150, deadline=None)
@given(pods=_pods)
def test_decoding_what_protobuf_encodes_gives_the_message_back(pb: ModuleType, pods: list[Any]) -> None:
    assert decode_list_response(_official(pb, pods)) == _expected(pods)


@settings(max_examples=100, deadline=None)
@given(devices=st.lists(st.tuples(_text, _ids, _int64s), max_size=4), cpus=_int64s)
def test_decoding_allocatable_gives_its_devices_back(
    pb: ModuleType, devices: list[tuple[str, list[str], list[int]]], cpus: list[int]
) -> None:
    message = pb.AllocatableResourcesResponse(
        devices=[
            pb.ContainerDevices(
                resource_name=r,
                device_ids=ids,
                topology=pb.TopologyInfo(nodes=[pb.NUMANode(ID=n) for n in numa]),
            )
            for r, ids, numa in devices
        ],
        cpu_ids=cpus,
    )
    expected = tuple(ContainerDevices(r, tuple(ids)) for r, ids, _ in devices)
    assert decode_allocatable_response(message.SerializeToString()) == expected


@settings(max_examples=150, deadline=None)
@given(pods=_pods, data=st.data())
def test_any_damage_gives_a_result_or_a_podresources_error(
    pb: ModuleType, pods: list[Any], data: st.DataObject
) -> None:
    encoded = bytearray(_official(pb, pods))
    if encoded:
        cut = data.draw(st.integers(0, len(encoded)))
        flip = data.draw(st.integers(0, len(encoded) - 1))
        encoded[flip] ^= data.draw(st.integers(1, 255))
        encoded = encoded[:cut]
    try:
        decode_list_response(bytes(encoded))
    except PodResourcesError as exc:
        assert exc.reason == "malformed"


# --- device ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_id", "ref"),
    [
        (
            "GPU-8f6ad5ec-3c9e-1f9b-9c8e-3bb7c1b1a2d4",
            DeviceRef("GPU-8f6ad5ec-3c9e-1f9b-9c8e-3bb7c1b1a2d4", None, None, None),
        ),
        (
            "MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55",
            DeviceRef("MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55", None, None, None),
        ),
        ("nvidia3", DeviceRef("nvidia3", None, None, None)),
        (
            "GPU-8f6ad5ec-3c9e-1f9b-9c8e-3bb7c1b1a2d4::5",
            DeviceRef("GPU-8f6ad5ec-3c9e-1f9b-9c8e-3bb7c1b1a2d4", 5, None, None),
        ),
        (
            "MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55::7",
            DeviceRef("MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55", 7, None, None),
        ),
        ("nvidia0::12", DeviceRef("nvidia0", 12, None, None)),
        ("nvidia0/gi2", DeviceRef("nvidia0", None, 2, None)),
        ("nvidia1/vgpu3", DeviceRef("nvidia1", None, None, 3)),
        ("nvidia1/gi2/vgpu0", DeviceRef("nvidia1", None, 2, 0)),
        # Forms we do not know stay whole (opaque ids), never half-parsed.
        ("0", DeviceRef("0", None, None, None)),
        ("GPU-aaaa::x", DeviceRef("GPU-aaaa::x", None, None, None)),
        ("::3", DeviceRef("::3", None, None, None)),
        ("a::1::2", DeviceRef("a::1::2", None, None, None)),
        ("GPU-aaaa::٣", DeviceRef("GPU-aaaa::٣", None, None, None)),  # non-ASCII digit
        ("nvidia0/vgpu1/gi2", DeviceRef("nvidia0/vgpu1/gi2", None, None, None)),
        ("nvidia/gi1", DeviceRef("nvidia/gi1", None, None, None)),
        ("", DeviceRef("", None, None, None)),
    ],
)
def test_parse_device_id(device_id: str, ref: DeviceRef) -> None:
    assert parse_device_id(device_id) == ref
