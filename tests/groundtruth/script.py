"""Hand-written scenarios: a World driven tick by tick, then read by the exporter and the ideal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.groundtruth import exporter_run
from tests.groundtruth.answers import Fault
from tests.groundtruth.compare import differences
from tests.groundtruth.exporter_run import ExporterRun
from tests.groundtruth.ideal import Ideal, replay
from tests.groundtruth.record import Record
from tests.groundtruth.server import SimServer
from tests.groundtruth.truth import invisible
from tests.groundtruth.world import TickPlan, World


@dataclass(slots=True)
class Outcome:
    record: Record
    ideal: Ideal
    run: ExporterRun
    differences: list[str]
    invisible: dict[tuple[str, tuple[str, str]], float]

    def ideal_total(self, target: str, quantity: str, model: str = "") -> float:
        return self.ideal.counted[(target, (model or self.record.targets[target].model, quantity))]

    def lost(self, target: str, quantity: str, model: str = "") -> float:
        return self.invisible[(target, (model or self.record.targets[target].model, quantity))]


@dataclass
class Script:
    world: World = field(default_factory=World)
    plans: list[TickPlan] = field(default_factory=list)

    def tick(self, **faults: Fault) -> None:
        """Ends the tick; ``faults``: target name → what its scrape answers (default good)."""
        for name, fault in faults.items():
            self.world.set_fault(name, fault)
        self.plans.append(self.world.end_tick())

    def run(self, server: SimServer) -> Outcome:
        return read(self.world.finish(), self.plans, server)


def read(record: Record, plans: Sequence[TickPlan], server: SimServer) -> Outcome:
    """The exporter and the ideal scraper read the same scrapes; their differences."""
    ideal = replay(record)  # raises Ambiguous on a record no two scrapers need read alike
    run = exporter_run.run(record, plans, server)
    return Outcome(record, ideal, run, differences(record, ideal, run), invisible(record))
