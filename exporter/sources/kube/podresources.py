"""Which pod holds which NVIDIA GPU, asked of the kubelet's PodResources v1 API.

The kubelet serves ``v1.PodResourcesLister`` (``podresources.proto`` next to this file) over gRPC
on a unix socket. ``list_holdings`` calls ``List`` and keeps the devices that are NVIDIA GPUs;
``allocatable`` calls ``GetAllocatableResources`` (every GPU the node offers, held or idle).

Decoding: a small hand-written protobuf wire decoder, not generated classes. We read five short
messages and a dozen fields; generated code would need either codegen in the build (grpcio-tools
at build time, generated files in the package, tied to one protobuf runtime major version) or the
``protobuf`` runtime on every node for a few strings. The decoder below is strict: it rejects
truncated or over-long varints and lengths, invalid wire types, bad UTF-8 and known fields of the
wrong wire type, and it skips unknown fields of every wire type (groups included) so a newer
kubelet's additions pass through. The tests check it against Google's own encoder.

Device ids as the NVIDIA (and GKE) device plugins register them, read the way dcgm-exporter reads
them (``parse_device_id``):

=====================  ============================================  ================================
form                   example                                       DeviceRef
=====================  ============================================  ================================
full GPU, by UUID      ``GPU-8f6ad5ec-3c9e-1f9b-9c8e-3bb7c1b1a2d4``  base=id
MIG instance, by UUID  ``MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55``  base=id
GPU by device name     ``nvidia3``                                   base=id
time-sliced replica    ``GPU-8f6a…a2d4::5``, ``MIG-2ce7…9b55::7``    base=id before ``::``, replica=5
GKE MIG instance       ``nvidia0/gi2``                               base=nvidia0, mig_gi=2
GKE shared GPU         ``nvidia0/vgpu3``, ``nvidia0/gi2/vgpu1``      base=nvidia0, vgpu=3 (mig_gi=2)
anything else          ``0``, ``weird::x``                           base=id, the rest None
=====================  ============================================  ================================

DRA devices (``dynamic_resources``, kubelet 1.27+ behind its feature gate) come as driver, pool
and device name; the device name (e.g. ``gpu-0``) is a DRA name, not a GPU UUID: mapping it to a
GPU needs the node's ResourceSlice, which this module does not read.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from exporter.errors import SourceError
from exporter.sources.kube.protowire import Malformed, fields, message, repeated, text

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
DRA_GPU_DRIVER = "gpu.nvidia.com"
DRA_RESOURCE_PREFIX = "dra:"

_LIST = "/v1.PodResourcesLister/List"
_ALLOCATABLE = "/v1.PodResourcesLister/GetAllocatableResources"
# grpc's default 4 MiB cap could cut off List on a node packed with pods; the kubelet's own
# podresources clients allow 16 MiB.
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 16 * 1024 * 1024),)


class PodResourcesError(SourceError):
    """The kubelet's PodResources API could not be read; the message says what to change."""

    reason = "podresources"


@dataclass(frozen=True, slots=True)
class DeviceHolding:
    """One container's devices of one resource (``dra:<driver>`` for DRA claims)."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device id taken apart: the GPU or MIG id plus the sharing suffixes, if any."""

    base: str
    replica: int | None
    mig_gi: int | None
    vgpu: int | None


# The decoded messages: only the fields this exporter reads, named as in podresources.proto.
@dataclass(frozen=True, slots=True)
class ContainerDevices:
    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClaimResource:
    driver_name: str
    pool_name: str
    device_name: str


@dataclass(frozen=True, slots=True)
class DynamicResource:
    claim_name: str
    claim_namespace: str
    claim_resources: tuple[ClaimResource, ...]


@dataclass(frozen=True, slots=True)
class ContainerResources:
    name: str
    devices: tuple[ContainerDevices, ...]
    dynamic_resources: tuple[DynamicResource, ...]


@dataclass(frozen=True, slots=True)
class PodResources:
    name: str
    namespace: str
    containers: tuple[ContainerResources, ...]


def list_holdings(
    socket_path: str = DEFAULT_SOCKET, timeout: float = 2.0, resources: Collection[str] | None = None
) -> tuple[DeviceHolding, ...]:
    """Every GPU-holding container on this node, in the kubelet's order."""
    return select_gpu_holdings(decode_list_response(_call(socket_path, _LIST, timeout)), resources)


def allocatable(
    socket_path: str = DEFAULT_SOCKET, timeout: float = 2.0, resources: Collection[str] | None = None
) -> tuple[tuple[str, str], ...]:
    """(resource, device_id) of every device-plugin GPU the node offers; DRA devices are not listed."""
    devices = decode_allocatable_response(_call(socket_path, _ALLOCATABLE, timeout))
    wanted = _gpu_resource_filter(resources)
    return tuple((d.resource_name, i) for d in devices if wanted(d.resource_name) for i in d.device_ids)


def select_gpu_holdings(
    pods: Collection[PodResources], resources: Collection[str] | None = None
) -> tuple[DeviceHolding, ...]:
    """The GPU devices of decoded ``List`` pods: NVIDIA device-plugin resources, the caller's
    extra resource names, and DRA claims served by the NVIDIA DRA driver."""
    wanted = _gpu_resource_filter(resources)
    out: list[DeviceHolding] = []
    for pod in pods:
        for c in pod.containers:
            for d in c.devices:
                if wanted(d.resource_name) and d.device_ids:
                    out.append(DeviceHolding(pod.namespace, pod.name, c.name, d.resource_name, d.device_ids))
            # A container may list the same device under two claims; it holds it once.
            dra = dict.fromkeys(
                r.device_name
                for dr in c.dynamic_resources
                for r in dr.claim_resources
                if r.driver_name == DRA_GPU_DRIVER and r.device_name
            )
            if dra:
                resource = DRA_RESOURCE_PREFIX + DRA_GPU_DRIVER
                out.append(DeviceHolding(pod.namespace, pod.name, c.name, resource, tuple(dra)))
    return tuple(out)


def _gpu_resource_filter(extra: Collection[str] | None) -> Callable[[str], bool]:
    names = frozenset(extra or ()) | {GPU_RESOURCE}
    return lambda name: name in names or name.startswith(MIG_RESOURCE_PREFIX)


_GKE_ID = re.compile(r"(nvidia[0-9]+)(?:/gi([0-9]+))?(?:/vgpu([0-9]+))?")
_REPLICA_ID = re.compile(r"(.+?)::([0-9]+)")


def parse_device_id(device_id: str) -> DeviceRef:
    """Split a device-plugin id into base id and sharing suffixes (table in the module docstring)."""
    if m := _GKE_ID.fullmatch(device_id):
        return DeviceRef(m[1], None, _optional_int(m[2]), _optional_int(m[3]))
    m = _REPLICA_ID.fullmatch(device_id)
    # "a::1::2" is no form we know; keep it whole rather than guess which part is the GPU.
    if m and "::" not in m[1]:
        return DeviceRef(m[1], int(m[2]), None, None)
    return DeviceRef(device_id, None, None, None)


def _optional_int(text: str | None) -> int | None:
    return None if text is None else int(text)


# --- transport -----------------------------------------------------------------------------


def _call(socket_path: str, method: str, timeout: float) -> bytes:
    """One unary call with an empty request; the raw response bytes."""
    _check_socket(socket_path)
    grpc = _load_grpc()
    # grpc wants unix:///abs/path; a relative path would be read as an authority.
    target = "unix://" + os.path.abspath(socket_path)
    try:
        with grpc.insecure_channel(target, options=_CHANNEL_OPTIONS) as channel:
            # No (de)serializers: grpc then sends and returns bytes, and a malformed reply reaches
            # our decoder instead of becoming grpc's opaque "Exception deserializing response".
            reply = channel.unary_unary(method)(b"", timeout=timeout)
    except grpc.RpcError as exc:
        raise _rpc_error(grpc, exc, socket_path, method, timeout) from None
    return bytes(reply)


def _check_socket(path: str) -> None:
    """Fail with advice before grpc does with 'failed to connect to all addresses'."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise PodResourcesError(
            f"kubelet pod-resources socket {path} does not exist: mount the host directory "
            "/var/lib/kubelet/pod-resources into the DaemonSet (hostPath, the directory, not the socket file)",
            reason="socket_missing",
        ) from None
    except PermissionError:
        raise _permission_error(path) from None
    if not stat.S_ISSOCK(mode):
        raise PodResourcesError(
            f"{path} is not a unix socket: point the pod-resources socket setting at the kubelet's kubelet.sock",
            reason="socket_missing",
        )
    # Connecting to a unix socket needs write permission on it.
    if not os.access(path, os.R_OK | os.W_OK):
        raise _permission_error(path)


def _permission_error(path: str) -> PodResourcesError:
    return PodResourcesError(
        f"permission denied on kubelet pod-resources socket {path}: the kubelet creates it for root; "
        "run the exporter container as root (runAsUser: 0) or with a group allowed to write the socket",
        reason="permission",
    )


def _load_grpc() -> ModuleType:
    try:
        return importlib.import_module("grpc")
    except ImportError:
        raise PodResourcesError(
            "grpcio is not installed: install the node extra (pip install 'cpm-exporter[node]')",
            reason="missing_dependency",
        ) from None


def _rpc_error(grpc: ModuleType, exc: Any, path: str, method: str, timeout: float) -> PodResourcesError:
    code, details = exc.code(), exc.details() or ""
    rpc = method.rsplit("/", 1)[-1]
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PodResourcesError(
            f"kubelet {rpc} on {path} exceeded its {timeout:g} s deadline: the kubelet is slow or hung; "
            "raise the timeout if this node runs many pods",
            reason="deadline",
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        need = (
            "GetAllocatableResources needs Kubernetes 1.21+ (before 1.23 with feature gate "
            "KubeletPodResourcesGetAllocatable=true)"
            if method == _ALLOCATABLE
            else "the PodResources v1 API needs Kubernetes 1.20+"
        )
        return PodResourcesError(
            f"kubelet on {path} does not implement {rpc}: {need}", reason="unimplemented"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED or "Permission denied" in details:
        return _permission_error(path)
    if code == grpc.StatusCode.UNAVAILABLE:
        return PodResourcesError(
            f"kubelet pod-resources socket {path} is unavailable ({details}): is the kubelet running? "
            "A socket file mounted on its own goes stale when the kubelet restarts; mount the directory",
            reason="unavailable",
        )
    return PodResourcesError(f"kubelet {rpc} on {path} failed: {code.name}: {details}", reason="rpc")


# --- the PodResources messages (wire primitives in protowire) ------------------------------


_T = TypeVar("_T")


def decode_list_response(data: bytes) -> tuple[PodResources, ...]:
    """``ListPodResourcesResponse`` bytes → pods; PodResourcesError if they are not one."""
    return _decode("ListPodResourcesResponse", data, lambda buf: tuple(repeated(buf, 1, _pod)))


def decode_allocatable_response(data: bytes) -> tuple[ContainerDevices, ...]:
    """``AllocatableResourcesResponse`` bytes → its devices (CPU and memory fields skipped)."""
    return _decode("AllocatableResourcesResponse", data, lambda buf: tuple(repeated(buf, 1, _devices)))


def _decode(name: str, data: bytes, decoder: Callable[[memoryview], _T]) -> _T:
    try:
        return decoder(memoryview(data))
    except Malformed as exc:
        raise PodResourcesError(
            f"malformed {name} from the kubelet ({len(data)} bytes): {exc}; "
            "is the socket the kubelet's pod-resources socket?",
            reason="malformed",
        ) from None


def _pod(buf: memoryview) -> PodResources:
    name = namespace = ""
    containers: list[ContainerResources] = []
    for number, wire, value in fields(buf):
        if number == 1:
            name = text(wire, value, "PodResources.name")
        elif number == 2:
            namespace = text(wire, value, "PodResources.namespace")
        elif number == 3:
            containers.append(_container(message(wire, value, "PodResources.containers")))
    return PodResources(name, namespace, tuple(containers))


def _container(buf: memoryview) -> ContainerResources:
    name = ""
    devices: list[ContainerDevices] = []
    dynamic: list[DynamicResource] = []
    for number, wire, value in fields(buf):
        if number == 1:
            name = text(wire, value, "ContainerResources.name")
        elif number == 2:
            devices.append(_devices(message(wire, value, "ContainerResources.devices")))
        elif number == 5:
            dynamic.append(_dynamic(message(wire, value, "ContainerResources.dynamic_resources")))
    return ContainerResources(name, tuple(devices), tuple(dynamic))


def _devices(buf: memoryview) -> ContainerDevices:
    resource = ""
    ids: list[str] = []
    for number, wire, value in fields(buf):
        if number == 1:
            resource = text(wire, value, "ContainerDevices.resource_name")
        elif number == 2:
            ids.append(text(wire, value, "ContainerDevices.device_ids"))
    return ContainerDevices(resource, tuple(ids))


def _dynamic(buf: memoryview) -> DynamicResource:
    claim = namespace = ""
    claim_resources: list[ClaimResource] = []
    for number, wire, value in fields(buf):
        if number == 2:
            claim = text(wire, value, "DynamicResource.claim_name")
        elif number == 3:
            namespace = text(wire, value, "DynamicResource.claim_namespace")
        elif number == 4:
            claim_resources.append(_claim(message(wire, value, "DynamicResource.claim_resources")))
    return DynamicResource(claim, namespace, tuple(claim_resources))


def _claim(buf: memoryview) -> ClaimResource:
    driver = pool = device = ""
    for number, wire, value in fields(buf):
        if number == 2:
            driver = text(wire, value, "ClaimResource.driver_name")
        elif number == 3:
            pool = text(wire, value, "ClaimResource.pool_name")
        elif number == 4:
            device = text(wire, value, "ClaimResource.device_name")
    return ClaimResource(driver, pool, device)
