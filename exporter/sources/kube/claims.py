"""The capacity of the persistent volume claims this node's pods mount, looked up for the pod watcher.

A claim is looked up when a pod mounting it first shows, and again at every resync; a failed
lookup is kept in ``error`` (the watch status's ``claims_error``) and does not make the watch down.

``Claims`` owns what it looks up: the capacities, the last failure and the resync timer. The pod
watcher's thread hands it the pods it sees; any thread reads ``capacity()`` and ``error``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from exporter.quantity import parse_quantity
from exporter.records import PodInfo
from exporter.sources.kube.apiclient import _NETWORK_ERRORS
from exporter.sources.kube.objects import _dict, _str
from exporter.sources.kube.watchstatus import CLAIMS_RBAC, describe_api_error

log = logging.getLogger(__name__)


class Claims:
    """The capacity of each claim the pods mount: looked up as pods show, refreshed every resync."""

    def __init__(
        self, api: kubernetes.client.CoreV1Api, *, resync_seconds: float, request_timeout_seconds: float
    ) -> None:
        self._api = api
        self._resync_seconds = resync_seconds
        self._request_timeout = request_timeout_seconds
        self._lock = threading.Lock()  # guards the capacities and the error, which readers see
        self._capacity: dict[tuple[str, str], float | None] = {}
        self._error = ""  # the last lookup's failure, "" when it worked
        self._next_resync = 0.0  # only the watcher thread reads and sets it

    # ---- readers (any thread, never block on the network) --------------------------------
    def capacity(self, namespace: str, claim: str) -> float | None:
        with self._lock:
            return self._capacity.get((namespace, claim))

    @property
    def error(self) -> str:
        with self._lock:
            return self._error

    # ---- the watcher thread -------------------------------------------------------------
    def listed(self, pods: Iterable[PodInfo]) -> None:
        """A fresh LIST of the node's pods: look up the claims not known yet; the next refresh of
        them all is one resync period from now."""
        self.lookup(pods)
        self._next_resync = time.monotonic() + self._resync_seconds

    def resync_if_due(self, pods: Iterable[PodInfo]) -> None:
        """Once per resync period: forget the claims no pod mounts any more, look the others up again."""
        if time.monotonic() < self._next_resync:
            return
        self._next_resync = time.monotonic() + self._resync_seconds
        pods = list(pods)
        wanted = {(p.namespace, c) for p in pods for c in p.claims}
        with self._lock:
            self._capacity = {k: v for k, v in self._capacity.items() if k in wanted}
        self.lookup(pods, refresh=True)

    def lookup(self, pods: Iterable[PodInfo], *, refresh: bool = False) -> None:
        """Look up the claims of ``pods`` not known yet (all of them with ``refresh``)."""
        for pod in pods:
            for claim in pod.claims:
                key = (pod.namespace, claim)
                if refresh or key not in self._capacity:
                    capacity = self._fetch(*key)
                    with self._lock:
                        self._capacity[key] = capacity

    def _fetch(self, namespace: str, claim: str) -> float | None:
        error = ""
        capacity: float | None = None
        try:
            response = cast(
                urllib3.BaseHTTPResponse,
                self._api.read_namespaced_persistent_volume_claim(
                    claim, namespace, _preload_content=False, _request_timeout=self._request_timeout
                ),
            )
            try:
                pvc = _dict(json.loads(response.data), "PersistentVolumeClaim", optional=False)
            finally:
                response.release_conn()
            storage = _dict(_dict(pvc.get("status"), "status").get("capacity"), "capacity").get("storage")
            capacity = None if storage is None else parse_quantity(_str(storage, "capacity.storage"))
        except ApiException as exc:
            if exc.status != HTTPStatus.NOT_FOUND:
                error = describe_api_error(exc, CLAIMS_RBAC)
        except (*_NETWORK_ERRORS, ValueError) as exc:
            error = f"PVC {namespace}/{claim}: {exc}"
        with self._lock:
            if error != self._error:
                (log.warning if error else log.info)("pvc lookup: %s", error or "working again")
            self._error = error
        return capacity
