"""The capacity of the persistent volume claims this node's pods mount, looked up by the pod watcher.

A claim is looked up when a pod mounting it first shows, and again at every resync; a failed
lookup is kept in the watch status (``claims_error``) and does not make the watch down.

``ClaimLookups`` is a part of ``pods.PodWatcher`` (a base class that owns no state): the
attributes declared below are the watcher's, set in its ``__init__``.
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
from exporter.sources.kube.watchstatus import CLAIMS_RBAC, WatchStatus, _replace, describe_api_error

log = logging.getLogger(__name__)


class ClaimLookups:
    """The pod watcher's PVC lookups: ``_lookup_claims`` as pods show, ``_resync_if_due`` on a timer."""

    _api: kubernetes.client.CoreV1Api
    _lock: threading.Lock
    _view: dict[str, PodInfo]
    _claims: dict[tuple[str, str], float | None]
    _status: WatchStatus
    _resync_seconds: float
    _request_timeout: float
    _next_resync: float

    def _resync_if_due(self) -> None:
        if time.monotonic() < self._next_resync:
            return
        self._next_resync = time.monotonic() + self._resync_seconds
        wanted = {(p.namespace, c) for p in self._view.values() for c in p.claims}
        with self._lock:
            self._claims = {k: v for k, v in self._claims.items() if k in wanted}
        self._lookup_claims(self._view.values(), refresh=True)

    def _lookup_claims(self, pods: Iterable[PodInfo], *, refresh: bool = False) -> None:
        for pod in pods:
            for claim in pod.claims:
                key = (pod.namespace, claim)
                if refresh or key not in self._claims:
                    capacity = self._fetch_claim(*key)
                    with self._lock:
                        self._claims[key] = capacity

    def _fetch_claim(self, namespace: str, claim: str) -> float | None:
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
            if error != self._status.claims_error:
                (log.warning if error else log.info)("pvc lookup: %s", error or "working again")
            self._status = _replace(self._status, claims_error=error)
        return capacity
