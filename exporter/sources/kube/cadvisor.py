"""Bytes each pod sent, from the kubelet's cAdvisor metrics (``/metrics/cadvisor``).

``container_network_transmit_bytes_total`` counts everything a pod's network namespace sent:
internet egress, other zones, and its own zone alike — cAdvisor has no destination. The
meter splits it by the node's configured shares (``node_source.egress_share``,
``cross_zone_share``): an approximation, documented as one.

Network namespaces are per pod, so the counters sit on the pod-level cgroup (``container``
empty, or the ``POD`` sandbox with some runtimes); the same bytes must not be summed over a
pod's containers. Loopback never leaves the pod and is left out.
"""

from __future__ import annotations

from collections import defaultdict

from exporter.http.textformat import parse_wanted

TRANSMIT = "container_network_transmit_bytes_total"
PodKey = tuple[str, str]


def pod_transmit_bytes(text: str, *, max_samples: int = 500_000) -> dict[PodKey, float]:
    """Cumulative bytes sent per (namespace, pod), over its non-loopback interfaces."""
    # (pod, cgroup id) → interface → bytes; one cgroup per pod is kept: the pod-level one.
    by_cgroup: dict[PodKey, dict[tuple[str, str], dict[str, float]]] = defaultdict(dict)
    for s in parse_wanted(text, (TRANSMIT,), max_samples=max_samples):
        labels = s.labels
        pod = (labels.get("namespace", ""), labels.get("pod", ""))
        container = labels.get("container", "")
        if not all(pod) or container not in ("", "POD") or labels.get("interface") == "lo":
            continue
        group = by_cgroup[pod].setdefault((container, labels.get("id", "")), {})
        group[labels.get("interface", "")] = s.value
    out: dict[PodKey, float] = {}
    for pod, groups in by_cgroup.items():
        # The pod cgroup ("") over the sandbox ("POD"): both can carry the same namespace's bytes.
        key = min(groups, key=lambda k: (k[0] != "", k[1]))
        out[pod] = sum(groups[key].values())
    return out
