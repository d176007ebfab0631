"""What the servers really served while watched, and what of it no scraper could count.

Truth per key: over every life from the one read first, the life's final value less what the
first readable scrape showed (for that first life). ``invisible`` = truth − what the ideal
scraper counts when it is given one more good scrape of the final state: the tails of lives
after their last reading, and the old values under invisible restarts.
"""

from __future__ import annotations

from collections import defaultdict

from tests.groundtruth.ideal import Ideal, TotalKey, read_target
from tests.groundtruth.ir import folded
from tests.groundtruth.record import Record, Served, TargetRecord


def truth(record: Record) -> dict[TotalKey, float]:
    out: dict[TotalKey, float] = defaultdict(float)
    for name, target in record.targets.items():
        first = next((s for s in target.served if s.readable), None)
        if first is None:
            continue
        for life_id, life in target.lives.items():
            if life_id < first.life:
                continue  # ended before anyone read the target
            for key, value in life.final.items():
                out[(name, folded(key))] += value - (
                    first.values.get(key, 0.0) if life_id == first.life else 0.0
                )
    return out


def invisible(record: Record) -> dict[TotalKey, float]:
    """Truth − the ideal count after one last good scrape: what no scraper could see."""
    ideal = Ideal()
    for name, target in record.targets.items():
        read_target(ideal, name, [*target.served, _final_scrape(target)], strict=False)
    return {key: value - ideal.counted.get(key, 0.0) for key, value in truth(record).items()}


def _final_scrape(target: TargetRecord) -> Served:
    life_id = max(target.lives)
    life = target.lives[life_id]
    tick = target.served[-1].tick + 1 if target.served else 0
    return Served(tick, "good", life_id, life.final, life.start_time, life.started_at)
