"""A fake kubelet PodResources server: real gRPC on a unix socket, replies encoded by Google's
protobuf runtime from classes compiled at test time from ``exporter/sources/kube/podresources.proto``."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from grpc_tools import protoc

from exporter.sources.kube import podresources as pr

PROTO = Path(pr.__file__).with_name("podresources.proto")


def compile_proto(proto_text: str, name: str, out: Path) -> ModuleType:
    (out / f"{name}.proto").write_text(proto_text)
    args = [
        "protoc",
        f"-I{out}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(out / f"{name}.proto"),
    ]
    assert protoc.main(args) == 0, f"protoc failed on {name}.proto"
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module(f"{name}_pb2")
    finally:
        sys.path.remove(str(out))


def podresources_pb(out: Path) -> ModuleType:
    """Classes generated from our .proto (package v1)."""
    return compile_proto(PROTO.read_text(), "podresources", out)


def list_reply(
    pb: ModuleType, pods: Mapping[tuple[str, str], Mapping[str, Mapping[str, list[str]]]]
) -> bytes:
    """A ``ListPodResourcesResponse``: {(namespace, pod): {container: {resource: [device ids]}}}."""
    return bytes(
        pb.ListPodResourcesResponse(
            pod_resources=[
                pb.PodResources(
                    namespace=ns,
                    name=name,
                    containers=[
                        pb.ContainerResources(
                            name=container,
                            devices=[
                                pb.ContainerDevices(resource_name=r, device_ids=ids)
                                for r, ids in devs.items()
                            ],
                        )
                        for container, devs in containers.items()
                    ],
                )
                for (ns, name), containers in pods.items()
            ]
        ).SerializeToString()
    )


class FakeKubelet:
    """A gRPC server on a unix socket serving the PodResourcesLister named in our .proto.

    ``replies`` maps an RPC name to the raw response bytes; an RPC without a reply is not
    registered (grpc then answers UNIMPLEMENTED). ``delay`` makes every RPC hang that long."""

    def __init__(self, pb: ModuleType, path: Path) -> None:
        self.path = path
        self.replies: dict[str, bytes] = {}
        self.delay = 0.0
        self._pb = pb
        self._release = threading.Event()
        self._server: Any = None

    def serve(self, **replies: bytes) -> FakeKubelet:
        self.replies = replies
        service = self._pb.DESCRIPTOR.services_by_name["PodResourcesLister"]
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(self._handler(m.name))
            for m in service.methods
            if m.name in replies
        }
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        assert self._server.add_insecure_port(f"unix://{self.path}") != 0
        self._server.start()
        return self

    def _handler(self, name: str) -> Callable[[bytes, Any], bytes]:
        def handle(request: bytes, context: Any) -> bytes:
            assert request == b"", "the requests of List and GetAllocatableResources are empty"
            if self.delay:
                self._release.wait(self.delay)
            return self.replies[name]

        return handle

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.stop(None)
