"""Kubernetes objects as JSON → our records: pods, quantities, timestamps. Strict and pure:
a value of the wrong type is a ``ValueError`` naming the field, never a crash downstream."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from exporter.records import ContainerRun, PodInfo

# ---- parsing: JSON of the API → records --------------------------------------------------
_TIMESTAMP = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def parse_timestamp(text: str) -> float:
    """An RFC 3339 time as the API writes it ("2024-05-01T12:00:00Z") in UNIX seconds."""
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    when = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=timezone(offset))
    return when.timestamp() + (float(frac) if frac else 0.0)


def _dict(value: object, what: str, *, optional: bool = True) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is {type(value).__name__}, not an object")
    return value


def _str(value: object, what: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{what} is {type(value).__name__}, not a string")
    return value


def _str_map(value: object, what: str) -> Mapping[str, str]:
    items = _dict(value, what)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
        raise ValueError(f"{what} has a value that is not a string")
    return MappingProxyType(dict(items))


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is {type(value).__name__}, not a list")
    return value


def parse_pod(obj: object) -> tuple[PodInfo, str]:
    """A Pod's JSON → (PodInfo, spec.nodeName); ValueError when it is not a usable Pod."""
    pod = _dict(obj, "pod", optional=False)
    meta = _dict(pod.get("metadata"), "metadata", optional=False)
    spec = _dict(pod.get("spec"), "spec")
    status = _dict(pod.get("status"), "status")
    uid = _str(meta.get("uid"), "metadata.uid")
    name = _str(meta.get("name"), "metadata.name")
    if not uid or not name:
        raise ValueError("metadata.uid and metadata.name must not be empty")
    claims: list[str] = []
    for volume in _list(spec.get("volumes"), "spec.volumes"):
        volume = _dict(volume, "spec.volumes[]", optional=False)
        if "persistentVolumeClaim" in volume:
            pvc = _dict(volume["persistentVolumeClaim"], "persistentVolumeClaim", optional=False)
            claims.append(_str(pvc.get("claimName"), "persistentVolumeClaim.claimName"))
        elif "ephemeral" in volume:  # a generic ephemeral volume's PVC is named <pod>-<volume>
            claims.append(f"{name}-{_str(volume.get('name'), 'spec.volumes[].name')}")
    container_ids: list[str] = []
    finished: list[float | None] = []
    starts: dict[str, float | None] = {}
    for container in _list(status.get("containerStatuses"), "status.containerStatuses"):
        entry = _dict(container, "containerStatuses[]", optional=False)
        cid = _str(entry.get("containerID"), "containerID", "")
        if cid:
            container_ids.append(cid.split("://", 1)[-1])
        finished.append(_finished(entry))
        starts[_str(entry.get("name"), "containerStatuses[].name", "")] = _running_since(entry)
    deletion, creation = meta.get("deletionTimestamp"), meta.get("creationTimestamp")
    info = PodInfo(
        uid=uid,
        namespace=_str(meta.get("namespace"), "metadata.namespace", ""),
        name=name,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        annotations=_str_map(meta.get("annotations"), "metadata.annotations"),
        phase=_str(status.get("phase"), "status.phase", "Unknown"),
        pod_ip=_str(status.get("podIP"), "status.podIP", ""),
        deleted_at=None
        if deletion is None
        else parse_timestamp(_str(deletion, "metadata.deletionTimestamp")),
        claims=tuple(claims),
        container_ids=tuple(container_ids),
        created_at=None
        if creation is None
        else parse_timestamp(_str(creation, "metadata.creationTimestamp")),
        finished_at=_all_finished(finished),
        host_network=spec.get("hostNetwork") is True,
        containers=_containers(spec, starts),
    )
    return info, _str(spec.get("nodeName"), "spec.nodeName", "")


def _all_finished(times: list[float | None]) -> float | None:
    """The last finish time once every container has finished; None while any runs."""
    done = [t for t in times if t is not None]
    return max(done) if done and len(done) == len(times) else None


def _finished(container: dict[str, Any]) -> float | None:
    """state.terminated.finishedAt of a container status, or None while it runs (or never ran)."""
    terminated = _dict(
        _dict(container.get("state"), "containerStatuses[].state").get("terminated"), "terminated"
    )
    at = terminated.get("finishedAt")
    return None if at is None else parse_timestamp(_str(at, "terminated.finishedAt"))


def _running_since(container: dict[str, Any]) -> float | None:
    """state.running.startedAt of a container status, or None while it does not run."""
    running = _dict(_dict(container.get("state"), "containerStatuses[].state").get("running"), "running")
    at = running.get("startedAt")
    return None if at is None else parse_timestamp(_str(at, "running.startedAt"))


def _containers(spec: dict[str, Any], starts: Mapping[str, float | None]) -> tuple[ContainerRun, ...]:
    out = []
    for container in _list(spec.get("containers"), "spec.containers"):
        entry = _dict(container, "spec.containers[]", optional=False)
        name = _str(entry.get("name"), "spec.containers[].name", "")
        ports = _list(entry.get("ports"), "spec.containers[].ports")
        numbers = [_dict(p, "ports[]", optional=False).get("containerPort") for p in ports]
        declared = tuple(n for n in numbers if isinstance(n, int) and not isinstance(n, bool))
        image = _str(entry.get("image"), "spec.containers[].image", "")
        words = [
            *_list(entry.get("command"), "spec.containers[].command"),
            *_list(entry.get("args"), "spec.containers[].args"),
        ]
        args = tuple(w for w in words if isinstance(w, str))
        out.append(ContainerRun(name, declared, starts.get(name), image, args))
    return tuple(out)


def _resource_version(obj: object) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else ""
