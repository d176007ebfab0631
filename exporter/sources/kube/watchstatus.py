"""What the pod watch tells people: its status, and each API failure in words (a 403 names the
missing RBAC verb)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kubernetes.client.exceptions import ApiException

PODS_RBAC = "list and watch on pods (core) cluster-wide"
CLAIMS_RBAC = "get on persistentvolumeclaims (core) cluster-wide"


@dataclass(frozen=True, slots=True)
class WatchStatus:
    up: bool  # the last LIST or WATCH request succeeded
    error: str = ""  # why not, for people: names the missing permission on a 403
    relists: int = 0  # re-LISTs after the first (410 Gone)
    events: int = 0  # watch events applied
    malformed: int = 0  # objects and lines skipped
    resource_version: str = ""
    claims_error: str = ""  # last PVC lookup failure (does not make the watch down)


def describe_api_error(exc: ApiException, rbac: str = PODS_RBAC) -> str:
    """One line for people: what failed and what to do, with the server's own message."""
    message = exc.reason or ""
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
    except ValueError:
        pass
    code = int(exc.status or 0)
    try:
        phrase = f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        phrase = str(code)
    if code == 403:
        return f"RBAC: the service account needs {rbac}; got {phrase}: {message}"
    if code == 401:
        return f"authentication: the API server rejected the service account token ({phrase}): {message}"
    if code >= 500:
        return f"API server error {phrase}: {message}"
    if code == 0:
        return f"API request failed: {message}"
    return f"API request failed with {phrase}: {message}"


def _replace(status: WatchStatus, **changes: Any) -> WatchStatus:
    fields = {name: getattr(status, name) for name in WatchStatus.__slots__}
    return WatchStatus(**{**fields, **changes})
