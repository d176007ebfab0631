"""Each served line's operating point, and how often it changed (issue 20).

Per pod and model: the engine the scrape detected, and the version, precision and KV-cache dtype the
target's hints give (engines/operating.py). A pod whose point changes (a rollout to a new engine
version, another quantisation, another served model) is counted, so a dashboard can mark the moment
and a jump in CPM can be explained. A failed scrape changes nothing (each target keeps its last
points, so a pod with two targets, one failing once, neither loses nor recounts them); a target gone
is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.exposition.status import OperatingPoint
from exporter.records import ModelCounters, Target, TargetScrape

PodKey = tuple[str, str]  # (namespace, pod)


class OperatingPoints:
    def __init__(self) -> None:
        # Per target (a pod may have several): a failed scrape of one keeps its last points.
        self._last: dict[str, frozenset[OperatingPoint]] = {}
        self.changes: dict[PodKey, int] = {}

    def update(
        self, targets: Iterable[Target], scrapes: Iterable[TargetScrape]
    ) -> tuple[OperatingPoint, ...]:
        by_name = {t.name: t for t in targets}
        changed: set[PodKey] = set()
        for s in scrapes:
            target = by_name.get(s.target)
            if target is None or not s.ok or not s.server:
                continue
            pod = (s.holder.namespace, s.holder.pod)
            points = frozenset(_point(pod, m.model or s.holder.model, m, s.server, target) for m in s.models)
            if s.target in self._last and self._last[s.target] != points:
                changed.add(pod)
            self.changes.setdefault(pod, 0)
            self._last[s.target] = points
        for pod in changed:  # once a tick, however many of its targets changed
            self.changes[pod] += 1
        live = {(t.owner.namespace, t.owner.pod) for t in by_name.values()}
        self._last = {name: v for name, v in self._last.items() if name in by_name}
        self.changes = {p: n for p, n in self.changes.items() if p in live}
        return tuple(sorted({p for points in self._last.values() for p in points}))


def _point(pod: PodKey, model: str, m: ModelCounters, server: str, target: Target) -> OperatingPoint:
    h = target.hints
    kv = h.kv_cache_dtype or m.kv_cache_dtype  # the pod or config first, then the server's info series
    source = h.source or ("server" if kv else "")
    return OperatingPoint(*pod, model, server, h.version, h.precision, kv, source, h.model_class)
