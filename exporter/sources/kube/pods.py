"""The pods of this node, from the Kubernetes API: one LIST, then a WATCH (a one-node informer).

Rule: this module reads pods and their claims, nothing else; who pays is ``engines.targets``.

One daemon thread owns the watch. It LISTs ``spec.nodeName=<node>``, WATCHes from the list's
resourceVersion, and publishes an immutable snapshot; ``pods()``, ``status()`` and
``claim_capacity()`` only read snapshots (the claims from ``Claims``, under its own lock), so
the meter never waits on the network.
The claims the pods mount are looked up by the watcher's own ``claims.Claims``, fed the pods
the thread sees.

* A 410 Gone (``ERROR`` event or HTTP status) means the version was compacted away: re-LIST
  and swap the new view in whole, so no reader ever sees it empty.
* A stream that ends (server timeout, reset) is re-watched from the last resourceVersion;
  a round that made no progress waits a capped, jittered backoff first.
* 401/403/5xx/unreachable: ``status()`` says why (403 names the missing RBAC verb), the
  last view is kept, and the thread retries with backoff.
* Objects of another node and malformed objects are skipped (the latter counted).

The client's own ``Watch.stream`` is used with a wrapper that has no return type, so
events arrive as plain dicts: the client's model deserializer raises on wrong types
(which would kill the stream), and its ``deserialize=False`` mode crashes with
``KeyError('raw_object')`` on ``ERROR`` events (kubernetes 37.0.2).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from typing import Any, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from exporter.records import PodInfo
from exporter.sources.kube.apiclient import _NETWORK_ERRORS
from exporter.sources.kube.backoff import Backoff
from exporter.sources.kube.claims import Claims
from exporter.sources.kube.objects import _dict, _list, _resource_version, _str, parse_pod
from exporter.sources.kube.watchstatus import WatchStatus, _replace, describe_api_error

log = logging.getLogger(__name__)

REMOVED_KEPT_SECONDS = 900.0  # how long a removed pod is remembered (longer than any tick)


# ---- the watcher ------------------------------------------------------------------------
class PodWatcher:
    """The node's pods, kept current by one LIST and a WATCH on a thread; the claims they mount too."""

    def __init__(
        self,
        node_name: str,
        api: kubernetes.client.CoreV1Api,
        *,
        resync_seconds: float = 300,
        watch_timeout_seconds: int = 60,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.node_name = node_name
        self._api = api
        self._selector = f"spec.nodeName={node_name}"
        self._watch_timeout = int(watch_timeout_seconds)
        self._request_timeout = request_timeout_seconds
        self._backoff = Backoff(backoff_initial_seconds, backoff_max_seconds)
        self._lock = threading.Lock()  # guards everything below that readers see
        self._view: dict[str, PodInfo] = {}  # by uid; only the watcher thread writes
        self._snapshot: tuple[PodInfo, ...] = ()
        self._removed: dict[str, tuple[PodInfo, float]] = {}  # uid → (pod, when it left)
        self._claims = Claims(
            api, resync_seconds=resync_seconds, request_timeout_seconds=request_timeout_seconds
        )
        self._status = WatchStatus(up=False, error="not started")
        self._rv = ""  # "" → LIST before watching
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None  # the open watch response, whose socket stop() shuts
        self._connected = False
        self._listed = False  # a LIST succeeded once: the next ones are re-LISTs

    # ---- readers (any thread, never block on the network) --------------------------------
    def pods(self) -> tuple[PodInfo, ...]:
        with self._lock:
            return self._snapshot

    def status(self) -> WatchStatus:
        with self._lock:
            status = self._status
        return _replace(status, claims_error=self._claims.error)

    def removed_since(self, since: float) -> tuple[tuple[PodInfo, float], ...]:
        """Pods that left this node after ``since`` (UNIX seconds), with when they left."""
        with self._lock:
            return tuple(r for r in self._removed.values() if r[1] > since)

    def claim_capacity(self, namespace: str, claim: str) -> float | None:
        """Bytes of the claim's ``status.capacity.storage``, looked up before its pod showed."""
        return self._claims.capacity(namespace, claim)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """LIST now (errors go to ``status()``), then watch on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("PodWatcher.start() called twice")
        try:
            self._relist()
        except ApiException as exc:
            self._fail(describe_api_error(exc))
        except (*_NETWORK_ERRORS, ValueError) as exc:
            self._fail(self._network_error(exc))
        self._thread = threading.Thread(target=self._run, name=f"pod-watch-{self.node_name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shut_down(response)
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            started, progressed = time.monotonic(), False
            self._connected = False
            try:
                if not self._rv:
                    self._relist()
                self._claims.resync_if_due(self._view.values())
                progressed = self._watch_once()
            except ApiException as exc:
                if exc.status == HTTPStatus.GONE:
                    log.info("pod watch expired (410 Gone) at resourceVersion=%s; listing again", self._rv)
                    self._rv = ""
                else:
                    self._fail(describe_api_error(exc))
            except (KeyError, TypeError) as exc:  # the client's own ERROR handling: obj["code"]
                log.debug("pod watch: malformed ERROR event: %r", exc)
                self._count(malformed=1)
            except (*_NETWORK_ERRORS, ValueError) as exc:
                if self._connected:  # the stream broke after it opened: just watch again
                    log.debug("pod watch stream ended: %s", exc)
                else:
                    self._fail(self._network_error(exc))
            except Exception as exc:  # the thread must outlive any surprise; logged with its trace
                log.exception("pod watcher: unexpected error")
                self._fail(f"unexpected error: {exc!r}")
            finally:
                with self._lock:
                    self._response = None
            if progressed or time.monotonic() - started >= self._watch_timeout / 2:
                self._backoff.reset()  # a healthy stream: watch again at once
            else:
                self._stopping.wait(self._backoff.next())

    def _watch_once(self) -> bool:
        """One WATCH request; True if it moved the resourceVersion on."""
        w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]  # the watch module is untyped
        progressed = False
        stream = w.stream(  # type: ignore[no-untyped-call]
            self._open_watch,
            field_selector=self._selector,
            resource_version=self._rv,
            timeout_seconds=self._watch_timeout,  # also stops the client's own silent 410 retry
            allow_watch_bookmarks=True,
            _request_timeout=(self._request_timeout, self._watch_timeout + self._request_timeout),
        )
        for event in stream:
            if self._stopping.is_set():
                break
            progressed = self._apply(event) or progressed
            self._claims.resync_if_due(self._view.values())
        return progressed

    def _open_watch(self, **kwargs: Any) -> Any:
        # No return annotation the client can resolve: Watch.stream then yields raw dicts.
        response = self._api.list_pod_for_all_namespaces(**kwargs)
        with self._lock:
            self._response = response
        if self._stopping.is_set():  # stop() came before the response existed: do its part
            _shut_down(response)
        self._connected = True
        self._set_up()
        return response

    def _apply(self, event: object) -> bool:
        """Apply one watch event to the view; True if it moved the resourceVersion on."""
        if not isinstance(event, dict):  # a line that is not JSON
            self._count(malformed=1)
            return False
        kind, obj = event.get("type"), event.get("raw_object")
        rv = _resource_version(obj)
        try:
            if kind in ("ADDED", "MODIFIED"):
                pod, node = parse_pod(obj)
                if node == self.node_name:
                    self._claims.lookup([pod])
                    self._view[pod.uid] = pod
                else:  # the field selector should have kept it out
                    self._view.pop(pod.uid, None)
            elif kind == "DELETED":
                uid = _str(
                    _dict(_dict(obj, "pod", optional=False).get("metadata"), "metadata").get("uid"), "uid"
                )
                self._view.pop(uid, None)
            elif kind != "BOOKMARK" or not rv:
                raise ValueError(f"unexpected watch event type {kind!r}")
        except ValueError as exc:
            log.debug("skipping a malformed pod watch event: %s", exc)
            self._count(malformed=1)
        else:
            self._count(events=1)
            self._publish()
        if rv and rv != self._rv:
            self._rv = rv
            self._publish()
            return True
        return False

    def _relist(self) -> None:
        response = cast(
            urllib3.BaseHTTPResponse,
            self._api.list_pod_for_all_namespaces(
                field_selector=self._selector,
                _preload_content=False,
                _request_timeout=self._request_timeout,
            ),
        )
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        listing = _dict(body, "PodList", optional=False)
        rv = _resource_version(listing)
        if not rv:
            raise ValueError("the PodList has no metadata.resourceVersion")
        view: dict[str, PodInfo] = {}
        malformed = 0
        for item in _list(listing.get("items"), "items"):
            try:
                pod, node = parse_pod(item)
            except ValueError as exc:
                log.debug("skipping a malformed pod in the list: %s", exc)
                malformed += 1
                continue
            if node == self.node_name:
                view[pod.uid] = pod
        self._claims.listed(view.values())
        self._view = view  # swapped whole: readers see the old view or the new one
        self._rv = rv
        self._publish()
        self._count(relists=1 if self._listed else 0, malformed=malformed)
        self._listed = True
        self._set_up()

    # ---- status bookkeeping ---------------------------------------------------------------
    def _publish(self) -> None:
        snapshot = tuple(sorted(self._view.values(), key=lambda p: (p.namespace, p.name, p.uid)))
        now = time.time()
        with self._lock:
            # A pod that left the view left the node now: it held its GPUs until then.
            self._removed.update((p.uid, (p, now)) for p in self._snapshot if p.uid not in self._view)
            self._removed = {u: r for u, r in self._removed.items() if now - r[1] < REMOVED_KEPT_SECONDS}
            self._snapshot = snapshot
            self._status = _replace(self._status, resource_version=self._rv)

    def _count(self, *, events: int = 0, relists: int = 0, malformed: int = 0) -> None:
        with self._lock:
            s = self._status
            self._status = _replace(
                s, events=s.events + events, relists=s.relists + relists, malformed=s.malformed + malformed
            )

    def _set_up(self) -> None:
        with self._lock:
            if not self._status.up:
                log.info("pod watch node=%s: working", self.node_name)
            self._status = _replace(self._status, up=True, error="", resource_version=self._rv)

    def _fail(self, error: str) -> None:
        with self._lock:
            if error != self._status.error:
                log.warning("pod watch node=%s: %s", self.node_name, error)
            self._status = _replace(self._status, up=False, error=error)

    def _network_error(self, exc: BaseException) -> str:
        if isinstance(exc, ValueError):
            return f"the API server sent something that is not a PodList: {exc}"
        host = self._api.api_client.configuration.host
        return f"API server unreachable at {host}: {type(exc).__name__}: {exc}"


def _shut_down(response: Any) -> None:
    """Unblock a thread reading ``response`` (what ``Watch.stop`` does, minus its races)."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
