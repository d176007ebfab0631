"""The ideal scraper: replays a Record and counts what a perfect scraper could count.

Per target, per (model, quantity) key:

* the target's first readable scrape is a baseline; a key first seen later was born since
  and counts whole (from 0);
* within one life the increase is the new value minus the last one read;
* a restart is *visible* at a scrape when the start time the payload shows changed, the
  Kubernetes startedAt changed, or a key read at the previous readable scrape fell. It
  applies to every key of the target, those absent at that scrape included (they count
  whole when they come back): the new life counts whole, the old life's tail after its last
  reading is lost;
* an invisible restart (none of these) is read as any scraper reads it: new − old;
* a missing key freezes (no increase, no reset); an unreadable scrape freezes the target;
* a quantity summed from parts (``ir.part``) adds the parts' increases, each read as above.

``Ambiguous`` is raised for a record no two scrapers need read alike (a key absent at the
previous readable scrape now lower, with no other sign of a restart): the scenarios must not
make one, and a test fails if they do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.groundtruth.ir import QUANTITIES, Key, folded
from tests.groundtruth.record import Record, Served

LineKey = tuple[str, str]  # (target, model)
TotalKey = tuple[str, Key]  # (target, (model, quantity))


class Ambiguous(AssertionError):
    pass


@dataclass(slots=True)
class _Reading:
    value: float
    epoch: int  # the target's count of visible restarts when it was read
    life: int


@dataclass(slots=True)
class _Target:
    read: bool = False
    epoch: int = 0
    life: int = 0
    start_time: float | None = None
    started_at: float | None = None
    last: dict[Key, _Reading] = field(default_factory=dict)
    previous_keys: frozenset[Key] = frozenset()  # keys of the last readable scrape


@dataclass(slots=True)
class Ideal:
    counted: dict[TotalKey, float] = field(default_factory=lambda: defaultdict(float))
    known: dict[LineKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    visible_restarts: list[tuple[str, int]] = field(default_factory=list)  # (target, tick)

    def unknown(self, line: LineKey) -> set[str]:
        return set(QUANTITIES) - self.known.get(line, set())


def replay(record: Record, strict: bool = True) -> Ideal:
    ideal = Ideal()
    for name, target in record.targets.items():
        read_target(ideal, name, target.served, strict)
    return ideal


def read_target(ideal: Ideal, name: str, served: Iterable[Served], strict: bool = True) -> None:
    state = _Target()
    for s in served:
        if s.readable:
            _read(ideal, name, state, s, strict)


def _read(ideal: Ideal, name: str, t: _Target, s: Served, strict: bool) -> None:
    for key in s.values:
        model, quantity = folded(key)
        ideal.counted[(name, (model, quantity))] += 0.0  # the line exists, even at 0
        if quantity in QUANTITIES:
            ideal.known[(name, model)].add(quantity)
    if t.read and _restart_seen(t, s):
        if s.life == t.life:
            raise AssertionError(f"{name} tick {s.tick}: a restart is visible where none happened")
        t.epoch += 1
        ideal.visible_restarts.append((name, s.tick))
    for key, value in s.values.items():
        ideal.counted[(name, folded(key))] += _increase(t, key, value, s, strict) if t.read else 0.0
        t.last[key] = _Reading(value, t.epoch, s.life)
    t.read, t.life, t.start_time, t.started_at = True, s.life, s.start_time, s.started_at
    t.previous_keys = frozenset(s.values)


def _restart_seen(t: _Target, s: Served) -> bool:
    if _changed(t.start_time, s.start_time) or _changed(t.started_at, s.started_at):
        return True
    return any(key in t.previous_keys and value < t.last[key].value for key, value in s.values.items())


def _changed(old: float | None, new: float | None) -> bool:
    return old is not None and new is not None and old != new


def _increase(t: _Target, key: Key, value: float, s: Served, strict: bool) -> float:
    last = t.last.get(key)
    if last is None or last.epoch < t.epoch:
        return value  # born since the last reading, or restarted since (visibly)
    if value < last.value:
        if strict:
            raise Ambiguous(
                f"tick {s.tick}: {key} fell from {last.value} to {value} with no sign of a restart"
            )
        return value
    return value - last.value
