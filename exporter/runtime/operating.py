"""Each served line's operating point, and how often it changed (issue 20).

Per pod and model: the engine the scrape detected, and the version, precision and KV-cache dtype the
target's hints give (engines/operating.py). A pod whose point changes (a rollout to a new engine
version, another quantisation, another served model) is counted, so a dashboard can mark the moment
and a jump in CPM can be explained. A failed scrape changes nothing; a pod gone is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.exposition.status import OperatingPoint
from exporter.records import Target, TargetScrape

PodKey = tuple[str, str]  # (namespace, pod)


class OperatingPoints:
    def __init__(self) -> None:
        self._last: dict[PodKey, frozenset[OperatingPoint]] = {}
        self.changes: dict[PodKey, int] = {}

    def update(
        self, targets: Iterable[Target], scrapes: Iterable[TargetScrape]
    ) -> tuple[OperatingPoint, ...]:
        by_name = {t.name: t for t in targets}
        now: dict[PodKey, set[OperatingPoint]] = {}
        for s in scrapes:
            target = by_name.get(s.target)
            if target is None or not s.ok or not s.server:
                continue
            pod = (s.holder.namespace, s.holder.pod)
            h = target.hints
            for m in s.models:
                model = m.model or s.holder.model
                kv = (
                    h.kv_cache_dtype or m.kv_cache_dtype
                )  # the pod or config first, then the server's info series
                source = h.source or ("server" if kv else "")
                point = OperatingPoint(
                    *pod, model, s.server, h.version, h.precision, kv, source, h.model_class
                )
                now.setdefault(pod, set()).add(point)
        live = {(t.owner.namespace, t.owner.pod) for t in targets}
        for pod, points in now.items():
            frozen = frozenset(points)
            if pod in self._last and self._last[pod] != frozen:
                self.changes[pod] = self.changes.get(pod, 0) + 1
            if pod not in self._last:
                self.changes.setdefault(pod, 0)
            self._last[pod] = frozen
        self._last = {p: v for p, v in self._last.items() if p in live}
        self.changes = {p: n for p, n in self.changes.items() if p in live}
        return tuple(sorted(p for points in self._last.values() for p in points))
