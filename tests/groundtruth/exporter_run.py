"""The exporter's public path, tick by tick: ``scrape`` every target over HTTP, then
``TokenMeter.tick``; its ModelDeltas summed per (target, model)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from exporter.engines.read import scrape
from exporter.http.textformat import FetchLimits
from exporter.meter.tokens import ModelDelta, TokenMeter
from exporter.records import Owner, Target, TargetScrape
from tests.groundtruth.ideal import LineKey, TotalKey
from tests.groundtruth.ir import QUANTITIES
from tests.groundtruth.record import Record
from tests.groundtruth.server import SimServer
from tests.groundtruth.world import TickPlan

TIMEOUT_S = 0.25  # short, so a slow answer costs little; loopback answers take milliseconds
NAMESPACE = "groundtruth"


@dataclass(slots=True)
class ExporterRun:
    counted: dict[TotalKey, float] = field(default_factory=lambda: defaultdict(float))
    known: dict[LineKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    read: dict[tuple[int, str], bool] = field(default_factory=dict)  # (tick, target) → read
    errors: dict[tuple[int, str], str] = field(default_factory=dict)  # (tick, target) → reason


def targets(record: Record, server: SimServer, started_at: dict[str, float | None]) -> list[Target]:
    out = []
    for name, t in record.targets.items():
        owner = Owner(namespace=NAMESPACE, pod=name, team="groundtruth", model=t.model)
        adapter = "lora_name" if t.engine == "sglang" else ""
        # started_at: the container's startedAt, as the Kubernetes source gives it (else None)
        out.append(
            Target(name, server.url(name), owner, adapter_label=adapter, started_at=started_at.get(name))
        )
    return out


def run(
    record: Record, plans: Sequence[TickPlan], server: SimServer, timeout_s: float = TIMEOUT_S
) -> ExporterRun:
    out = ExporterRun()
    meter = TokenMeter()
    limits = FetchLimits(timeout_seconds=timeout_s)
    with ThreadPoolExecutor(max_workers=max(1, len(record.targets))) as pool:
        for plan in plans:
            server.serve(plan.answers)
            tick_targets = targets(record, server, dict(plan.started_at))
            scrapes = list(pool.map(lambda t: scrape(t, limits), tick_targets))
            tick = meter.tick(scrapes, plan.start_s, record.dt_s)
            _note_outcomes(out, plan.tick, scrapes, tick.read_pods)
            for d in tick.deltas:
                _add(out, d)
    return out


def _note_outcomes(
    out: ExporterRun, tick: int, scrapes: list[TargetScrape], read: frozenset[tuple[str, str]]
) -> None:
    for s in scrapes:
        out.read[(tick, s.target)] = s.ok and (s.holder.namespace, s.holder.pod) in read
        if not s.ok:
            out.errors[(tick, s.target)] = s.error_reason


def _add(out: ExporterRun, d: ModelDelta) -> None:
    target, model = d.owner.pod, d.owner.model
    out.known[(target, model)].update(q for q in QUANTITIES if q in d.known)  # never known: unknown
    for q in QUANTITIES:
        out.counted[(target, (model, q))] += getattr(d, q)
    for why, n in d.requests_by_reason:
        out.counted[(target, (model, f"requests:{why}"))] += n
