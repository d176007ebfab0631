"""A loopback fake of the Kubernetes API server, speaking its real JSON wire format.

There is no kube-apiserver on this machine (see the tooling notes), so the pod watcher is
tested through the REAL ``kubernetes`` client against this: a ``ThreadingHTTPServer`` on
127.0.0.1 with a free port that serves

    GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>          a ``PodList``
    GET /api/v1/pods?...&watch=true&resourceVersion=N&timeoutSeconds=T
        newline-delimited watch events, chunked, one event per chunk, ended after T s
    GET /api/v1/namespaces/<ns>/persistentvolumeclaims/<name>       a ``PersistentVolumeClaim``

Like the real server it keeps an event log: a watch from resourceVersion N replays the
events after N, a watch from a version older than the last compaction gets one
``ERROR`` event with a 410 ``Status``, and a watch without a version (or "0") starts with
synthetic ``ADDED`` events for every current pod. Errors are real ``Status`` bodies.

Driving it from a test::

    api = FakeKubeApi(); api.start()
    api.add_pod("vllm-0", namespace="ml", node="node-a", claims=("cache",))
    api.update_pod("ml", "vllm-0", phase="Failed")   # MODIFIED
    api.mark_deleting("ml", "vllm-0")                # MODIFIED with deletionTimestamp
    api.delete_pod("ml", "vllm-0")                   # DELETED
    api.add_pvc("ml", "cache", "10Gi")
    api.bookmark()                                   # BOOKMARK at the current version
    api.expire_watches()                             # compaction: open watches get ERROR 410
    api.drop_watches(abrupt=True)                    # reset the open watch connections
    api.fail_with(403)                               # every request answers 403 until recover()
    api.inject_event("ADDED", {...}) / api.inject_line("{not json")
    api.go_offline() / api.go_online()               # the port refuses connections, then listens again
    api.close()
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import kubernetes

JSON = dict[str, Any]
CREATED = "2024-05-01T12:00:00Z"

STATUS_BODIES: Mapping[int, tuple[str, str]] = {
    401: ("Unauthorized", "Unauthorized"),
    403: (
        "Forbidden",
        'pods is forbidden: User "system:serviceaccount:monitoring:cpm-exporter" cannot list '
        'resource "pods" in API group "" at the cluster scope',
    ),
    404: ("NotFound", "the server could not find the requested resource"),
    410: ("Expired", "too old resource version"),
    429: ("TooManyRequests", "too many requests, please try again later"),
    500: ("InternalError", "Internal error occurred: etcdserver: request timed out"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
}


def status_body(code: int, message: str | None = None, reason: str | None = None) -> JSON:
    """A ``v1.Status`` as the API server sends it with an error."""
    default_reason, default_message = STATUS_BODIES.get(code, (HTTPStatus(code).phrase.replace(" ", ""), ""))
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": default_message if message is None else message,
        "reason": default_reason if reason is None else reason,
        "code": code,
    }


@dataclass
class _Watcher:
    """One open watch connection: control signals for it arrive here."""

    signals: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # sent once, never replayed (ERROR events)


@dataclass(frozen=True)
class Seen:
    """A request the fake received."""

    path: str
    query: Mapping[str, str]

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch", "").lower() in ("true", "1")


class FakeKubeApi:
    def __init__(self, *, honour_field_selector: bool = True) -> None:
        self.honour_field_selector = honour_field_selector
        self.requests: list[Seen] = []
        self._cond = threading.Condition()
        self._rv = 1000
        self._compacted = 0  # watches from a version older than this get 410
        self._pods: dict[tuple[str, str], JSON] = {}
        self._pvcs: dict[tuple[str, str], JSON] = {}
        self._log: list[tuple[int, str]] = []  # (resourceVersion, event line)
        self._watchers: list[_Watcher] = []
        self._failure: tuple[int, JSON, int | None, str] | None = None  # code, body, times left, path part
        self.end_watches_immediately = False  # every watch ends right after its headers
        self.default_watch_seconds = 10.0  # without timeoutSeconds (the real server: 30-60 min)
        self._closed = False
        self._connections: set[socket.socket] = set()  # accepted, for go_offline()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeKubeApi:
        self._listen(0)
        return self

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig (JSON is YAML) pointing at this fake with a bearer token, as the exporter reads one."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.host}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
        }))  # fmt: skip
        return path

    def client(self, *, retries: int | None = None) -> kubernetes.client.CoreV1Api:
        """A real ``CoreV1Api`` pointed at this fake (urllib3's default retries, as in production)."""
        config = kubernetes.client.Configuration(host=self.host)
        if retries is not None:
            config.retries = retries
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for w in self._watchers:
                w.signals.append("abort")
            self._cond.notify_all()
        self._stop_listening()

    def go_offline(self) -> None:
        """Close the listening socket and reset every open connection: connections are refused."""
        self.drop_watches(abrupt=True)
        self._stop_listening()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def go_online(self) -> None:
        """Listen again on the same port."""
        self._listen(self.port)

    def _listen(self, port: int) -> None:
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients resetting keep-alive connections are expected here

        class Handler(_Handler):
            api = fake

        self._server = Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- objects ----------------------------------------------------------------------
    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        node: str = "node-a",
        uid: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        phase: str = "Running",
        pod_ip: str | None = "10.0.0.5",
        claims: Iterable[str] = (),
        container_ids: Iterable[str] | None = None,
        quiet: bool = False,
        created: str = CREATED,
        host_network: bool = False,
        args: Iterable[str] = (),
    ) -> JSON:
        """Create a pod (an ``ADDED`` event; ``quiet``: an event lost to compaction); returns its JSON."""
        uid = uid or str(uuid.uuid4())
        containers = (
            list(container_ids) if container_ids is not None else [f"containerd://{uid.replace('-', '')}"]
        )
        pod: JSON = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "creationTimestamp": created,
                "labels": dict(labels or {}),
                "annotations": dict(annotations or {}),
            },
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": f"c{i}",
                        "image": "vllm/vllm-openai:v0.6.0",
                        "args": list(args),
                        "ports": [{"containerPort": 8000, "protocol": "TCP"}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }
                    for i in range(max(1, len(containers)))
                ],
                "volumes": [
                    *({"name": f"vol-{c}", "persistentVolumeClaim": {"claimName": c}} for c in claims),
                    {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": []}},
                ],
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                **({"hostNetwork": True} if host_network else {}),
            },
            "status": _pod_status(phase, pod_ip, containers),
        }
        if not pod["metadata"]["labels"]:
            del pod["metadata"]["labels"]
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        with self._cond:
            self._pods[(namespace, name)] = pod
            self._emit("ADDED", pod, quiet=quiet)
            return copy.deepcopy(pod)

    def add_raw_pod(self, namespace: str, name: str, obj: object) -> None:
        """Store any JSON as a pod: the LIST returns it and an ``ADDED`` event carries it."""
        with self._cond:
            self._pods[(namespace, name)] = obj  # type: ignore[assignment]
            self._rv += 1
            self._append(json.dumps({"type": "ADDED", "object": obj}))

    def update_pod(
        self,
        namespace: str,
        name: str,
        *,
        phase: str | None = None,
        pod_ip: str | None = None,
        **metadata: Any,
    ) -> JSON:
        """Change a pod (a ``MODIFIED`` event): phase, pod IP, or metadata keys (labels=...)."""
        with self._cond:
            pod = self._pods[(namespace, name)]
            if phase is not None or pod_ip is not None:
                old = pod["status"]
                ids = [c.get("containerID", "") for c in old.get("containerStatuses", [])]
                pod["status"] = _pod_status(phase or old["phase"], pod_ip or old.get("podIP"), ids)
            pod["metadata"].update(metadata)
            self._emit("MODIFIED", pod)
            return copy.deepcopy(pod)

    def mark_deleting(self, namespace: str, name: str, when: str = "2024-05-01T12:30:00Z") -> JSON:
        """``kubectl delete`` with a grace period: deletionTimestamp set, a ``MODIFIED`` event."""
        return self.update_pod(namespace, name, deletionTimestamp=when, deletionGracePeriodSeconds=30)

    def delete_pod(self, namespace: str, name: str, *, quiet: bool = False) -> None:
        with self._cond:
            pod = self._pods.pop((namespace, name))
            self._emit("DELETED", pod, quiet=quiet)

    def add_pvc(self, namespace: str, name: str, storage: str = "10Gi", *, bound: bool = True) -> None:
        pvc: JSON = {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": CREATED,
                "finalizers": ["kubernetes.io/pvc-protection"],
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage}},
                "storageClassName": "standard-rwo",
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Pending"},
        }
        if bound:
            pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
            pvc["status"] = {
                "phase": "Bound",
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": storage},
            }
        with self._cond:
            self._rv += 1
            pvc["metadata"]["resourceVersion"] = str(self._rv)
            self._pvcs[(namespace, name)] = pvc

    # ---- stream control ---------------------------------------------------------------
    def bookmark(self) -> int:
        """A ``BOOKMARK`` event at a new resourceVersion (nothing else changes); returns it."""
        with self._cond:
            self._rv += 1
            obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)}}
            self._append(json.dumps({"type": "BOOKMARK", "object": obj}))
            return self._rv

    def inject_event(self, kind: str, obj: object) -> None:
        """Send an arbitrary event to the open watches (and to later replays, except an ERROR,
        which like the real server's goes only to the watches open now)."""
        line = json.dumps({"type": kind, "object": obj})
        with self._cond:
            if kind == "ERROR":
                for w in self._watchers:
                    w.lines.append(line)
                self._cond.notify_all()
                return
            self._rv += 1
            self._append(line)

    def inject_line(self, line: str) -> None:
        """Send one raw line (e.g. broken JSON) to the open watches."""
        with self._cond:
            self._rv += 1
            self._append(line)

    def expire_watches(self) -> None:
        """Compaction: open watches get ERROR 410 and end; older versions now get 410 too."""
        with self._cond:
            self._compacted = self._rv
            for w in self._watchers:
                w.signals.append("expire")
            self._cond.notify_all()

    def drop_watches(self, *, abrupt: bool = False) -> None:
        """End the open watch streams: cleanly (last chunk sent) or by resetting the socket."""
        with self._cond:
            for w in self._watchers:
                w.signals.append("abort" if abrupt else "end")
            self._cond.notify_all()

    def fail_with(
        self, code: int, message: str | None = None, *, times: int | None = None, only: str = ""
    ) -> None:
        """Answer requests (whose path contains ``only``) with ``code`` and a Status body,
        ``times`` times or until recover()."""
        with self._cond:
            self._failure = (code, status_body(code, message), times, only)

    def recover(self) -> None:
        with self._cond:
            self._failure = None

    # ---- for assertions ---------------------------------------------------------------
    @property
    def resource_version(self) -> str:
        with self._cond:
            return str(self._rv)

    def open_watches(self) -> int:
        with self._cond:
            return len(self._watchers)

    def watch_requests(self) -> list[Seen]:
        return [r for r in list(self.requests) if r.is_watch]

    def list_requests(self) -> list[Seen]:
        return [r for r in list(self.requests) if not r.is_watch and r.path == "/api/v1/pods"]

    def wait_until(self, check: Any, timeout: float = 5.0) -> None:
        """Poll ``check()`` until true (a helper for tests); AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            time.sleep(0.01)

    # ---- internals (called with the condition held) -----------------------------------
    def _emit(self, kind: str, pod: JSON, *, quiet: bool = False) -> None:
        self._rv += 1
        pod["metadata"]["resourceVersion"] = str(self._rv)
        if not quiet:
            self._append(json.dumps({"type": kind, "object": pod}))

    def _append(self, line: str) -> None:
        self._log.append((self._rv, line))
        self._cond.notify_all()

    def _take_failure(self, path: str) -> tuple[int, JSON] | None:
        with self._cond:
            if self._failure is None or self._failure[3] not in path:
                return None
            code, body, times, only = self._failure
            if times is not None:
                self._failure = (code, body, times - 1, only) if times > 1 else None
            return code, body

    def _selected(self, pod: JSON, node: str | None) -> bool:
        if node is None or not self.honour_field_selector:
            return True
        return bool(pod.get("spec", {}).get("nodeName") == node)


def _pod_status(phase: str, pod_ip: str | None, container_ids: list[str]) -> JSON:
    status: JSON = {"phase": phase, "qosClass": "Burstable", "startTime": CREATED}
    if phase == "Pending":
        status["containerStatuses"] = [
            {
                "name": f"c{i}",
                "image": "vllm/vllm-openai:v0.6.0",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for i in range(len(container_ids))
        ]
        return status
    status["hostIP"] = "192.168.1.10"
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    state: JSON = (
        {"running": {"startedAt": CREATED}}
        if phase == "Running"
        else {
            "terminated": {
                "exitCode": 0 if phase == "Succeeded" else 1,
                "reason": "Completed",
                "startedAt": CREATED,
                # the kubelet writes when the container stopped: now, as this update makes it stop
                "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        }
    )
    status["containerStatuses"] = [
        {
            "name": f"c{i}",
            "containerID": cid,
            "image": "docker.io/vllm/vllm-openai:v0.6.0",
            "imageID": "docker.io/vllm/vllm-openai@sha256:" + "0" * 64,
            "ready": phase == "Running",
            "restartCount": 0,
            "started": phase == "Running",
            "state": state,
        }
        for i, cid in enumerate(container_ids)
    ]
    return status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked transfer needs 1.1
    api: FakeKubeApi

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.api._cond:
            self.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.api._cond:
            self.api._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        self.api.requests.append(Seen(path, query))
        failure = self.api._take_failure(path)
        if failure is not None:
            self._send_json(failure[0], failure[1])
            return
        segments = path.strip("/").split("/")
        if path == "/api/v1/pods":
            node = None
            selector = query.get("fieldSelector", "")
            if selector.startswith("spec.nodeName="):
                node = selector.split("=", 1)[1]
            if query.get("watch", "").lower() in ("true", "1"):
                self._watch(node, query)
            else:
                self._list(node)
        elif (
            len(segments) == 6
            and segments[:3] == ["api", "v1", "namespaces"]
            and segments[4] == ("persistentvolumeclaims")
        ):
            with self.api._cond:
                pvc = self.api._pvcs.get((segments[3], segments[5]))
            if pvc is None:
                msg = f'persistentvolumeclaims "{segments[5]}" not found'
                self._send_json(404, status_body(404, msg))
            else:
                self._send_json(200, pvc)
        else:
            self._send_json(404, status_body(404))

    def _send_json(self, code: int, body: JSON) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _list(self, node: str | None) -> None:
        api = self.api
        with api._cond:
            items = []
            for pod in api._pods.values():
                if api._selected(pod, node):
                    item = copy.deepcopy(pod)
                    item.pop("kind", None)  # list items carry neither kind nor apiVersion
                    item.pop("apiVersion", None)
                    items.append(item)
            body = {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(api._rv)},
                "items": items,
            }
        self._send_json(200, body)

    def _watch(self, node: str | None, query: Mapping[str, str]) -> None:
        api = self.api
        timeout = float(query.get("timeoutSeconds", api.default_watch_seconds))
        deadline = time.monotonic() + timeout
        since = query.get("resourceVersion", "")
        me = _Watcher()
        with api._cond:
            if since in ("", "0"):
                start = api._rv
                backlog = [
                    json.dumps({"type": "ADDED", "object": p})
                    for p in api._pods.values()
                    if api._selected(p, node)
                ]
            else:
                start = int(since)
                backlog = []
                if start < api._compacted:
                    backlog = [
                        json.dumps(
                            {
                                "type": "ERROR",
                                "object": status_body(
                                    410, f"too old resource version: {start} ({api._compacted})"
                                ),
                            }
                        )
                    ]
                    me.signals.append("end")
            if api.end_watches_immediately:
                me.signals.append("end")
            api._watchers.append(me)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in backlog:
                self._chunk(line)
            position = start
            while True:
                with api._cond:
                    pending = [(rv, line) for rv, line in api._log if rv > position]
                    signals, me.signals = me.signals, []
                    lines, me.lines = me.lines, []
                    if not pending and not signals and not lines:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        api._cond.wait(min(remaining, 0.1))
                        continue
                for rv, line in pending:
                    position = rv
                    if _wanted(line, node, api):
                        self._chunk(line)
                for line in lines:
                    self._chunk(line)
                if "abort" in signals:
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if "expire" in signals:
                    self._chunk(json.dumps({"type": "ERROR", "object": status_body(410)}))
                    break
                if "end" in signals:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            with api._cond:
                api._watchers.remove(me)

    def _chunk(self, line: str) -> None:
        data = line.encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _wanted(line: str, node: str | None, api: FakeKubeApi) -> bool:
    """Whether a log line goes to a watch on ``node`` (injected and bookmark lines always do)."""
    try:
        event = json.loads(line)
        obj = event["object"]
        if event["type"] in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict) and "spec" in obj:
            return api._selected(obj, node)
    except (ValueError, KeyError, TypeError):
        pass
    return True
