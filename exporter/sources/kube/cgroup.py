"""Host PID → Kubernetes pod UID and container id, from ``/proc/<pid>/cgroup``.

The fallback placement when the kubelet's PodResources API is not reachable: NVML lists the
PIDs running on each GPU; the kubelet puts every container in a cgroup whose path names its
pod. The forms the kubelet writes (cgroup v1 and v2, cgroupfs and systemd drivers):

    /kubepods/burstable/pod0d9e1c1a-5b3f-4a61-9b40-8e3c2f7d1a22/<container id>
    /kubepods/pod0d9e1c1a-.../<container id>                                   (guaranteed)
    /kubepods.slice/kubepods-besteffort.slice/
        kubepods-besteffort-pod0d9e1c1a_5b3f_4a61_9b40_8e3c2f7d1a22.slice/
        cri-containerd-<container id>.scope                                     (systemd: _ for -)

The DaemonSet reads host PIDs' files, so it runs with ``hostPID: true`` or mounts the host's
``/proc`` (``node_source.proc_root``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CONTAINER = re.compile(r"(?:^|[-/])([0-9a-f]{64})(?:\.scope)?$")
MAX_CGROUP_BYTES = 64 * 1024  # a cgroup file is a few lines; more is not one


class PodRef(NamedTuple):
    pod_uid: str
    container_id: str  # "" when the path does not end in one


def pod_of_cgroup(text: str) -> PodRef | None:
    """The pod (and container) a cgroup file's lines name; None for a process outside any pod."""
    for line in text.splitlines():
        _, _, path = line.partition(":")
        _, _, path = path.partition(":")  # "hierarchy-id:controllers:path"
        found = _POD.search(path)
        if found is None:
            continue
        container = _CONTAINER.search(path)
        return PodRef(found.group(1).replace("_", "-"), container.group(1) if container else "")
    return None


def pod_of_pid(pid: int, proc_root: str = "/proc") -> PodRef | None:
    """Read ``<proc_root>/<pid>/cgroup``; None if the process is gone, unreadable, or in no pod."""
    try:
        with (Path(proc_root) / str(pid) / "cgroup").open("rb") as fh:
            data = fh.read(MAX_CGROUP_BYTES)
    except OSError:  # exited since NVML listed it, or no permission: not attributable this tick
        return None
    return pod_of_cgroup(data.decode("utf-8", "replace"))
