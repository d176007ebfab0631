"""Simulated engine instances on one clock: traffic, restarts, and what each scrape answers.

Tick ``k`` is the interval [start_s + k·dt_s, start_s + (k+1)·dt_s]; its scrape happens at
its end. Requests served before a ``restart`` in a tick go to the old life, after it to the
new one. ``end_tick`` renders every instance's answer and records what it served.

Restart kinds (what the new life holds at first):

* ``fresh``: the state of a server just started; its counters fall (a "seen" restart);
* ``partial``: the output side caught up with the old life, the input side starts over: one
  counter falls, its siblings do not;
* ``hidden``: already at or past the old values (it served at least as much again): only a
  start time (vLLM V1's ``_created``, or Kubernetes' startedAt) can show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.groundtruth.answers import GOOD, Answer, Fault, answer, apply
from tests.groundtruth.engines import Engine, Request
from tests.groundtruth.ir import Key, meant_values
from tests.groundtruth.record import READABLE, Life, Record, Served, TargetRecord
from tests.groundtruth.store import Store

START_S = 1.7e9
DT_S = 5.0


@dataclass(frozen=True, slots=True)
class TickPlan:
    tick: int
    start_s: float
    answers: Mapping[str, Answer]  # target name → what its scrape gets
    started_at: Mapping[str, float | None]  # target name → Target.started_at for this scrape


@dataclass(slots=True)
class Instance:
    name: str
    engine: Engine
    mode: str
    store: Store
    record: TargetRecord
    life: int = 1
    running: float = 0.0
    fault: Fault = GOOD
    read: bool = False  # a readable answer has been served
    restart_pending: bool = False  # restarted, no readable answer since
    complete: bool = True  # the last readable answer had every family
    life_ticks: int = 0  # ticks since this life began

    @property
    def started_at(self) -> float | None:
        """The container's startedAt, second precision, in kubernetes mode only."""
        return float(int(self.store.start)) if self.mode == "kubernetes" else None


@dataclass
class World:
    start_s: float = START_S
    dt_s: float = DT_S
    render: bool = True  # False: record only, every answer without a body (fast)
    tick: int = 0
    instances: dict[str, Instance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.record = Record(self.start_s, self.dt_s)

    @property
    def tick_start(self) -> float:
        return self.start_s + self.tick * self.dt_s

    def add(
        self,
        name: str,
        engine: Engine,
        mode: str = "static",
        prehistory: Iterable[Request] = (),
        age_s: float = 3600.0,
    ) -> None:
        """An instance whose first life began ``age_s`` before the first tick."""
        store = engine.new_store(self.start_s - age_s)
        record = TargetRecord(name, engine.kind, engine.model, mode)
        self.record.targets[name] = record
        inst = Instance(name, engine, mode, store, record, life_ticks=1_000_000)  # an old life: mature
        self.instances[name] = inst
        record.lives[1] = self._life(inst)
        self.serve(name, *prehistory)

    def serve(self, name: str, *requests: Request) -> None:
        inst = self.instances[name]
        for req in requests:
            inst.engine.observe(inst.store, req)

    def restart(self, name: str, kind: str = "fresh", at: float = 0.5) -> None:
        """Restarts ``name`` at fraction ``at`` of the current tick; see the module for ``kind``."""
        inst = self.instances[name]
        inst.record.lives[inst.life].final = self._values(inst)
        when = self.tick_start + at * self.dt_s
        if kind == "fresh":
            inst.store = inst.engine.new_store(when)
        else:
            inst.store = inst.store.copy(when)
            if kind == "partial":
                inst.store.zero(inst.engine.partial_zero)
        inst.life += 1
        inst.life_ticks = 0
        inst.restart_pending = True
        inst.record.lives[inst.life] = self._life(inst)
        inst.record.restarts.append((self.tick, kind))

    def set_fault(self, name: str, fault: Fault) -> None:
        self.instances[name].fault = fault

    def set_running(self, name: str, running: float) -> None:
        self.instances[name].running = running

    def end_tick(self) -> TickPlan:
        answers = {name: self._answer(inst) for name, inst in self.instances.items()}
        started = {name: inst.started_at for name, inst in self.instances.items()}
        plan = TickPlan(self.tick, self.tick_start, answers, started)
        self.tick += 1
        for inst in self.instances.values():
            inst.life_ticks += 1
        return plan

    def finish(self) -> Record:
        """The record, with every current life's final values."""
        for inst in self.instances.values():
            inst.record.lives[inst.life].final = self._values(inst)
        return self.record

    def _answer(self, inst: Instance) -> Answer:
        applied = apply(inst.fault, inst.engine.families(inst.store, inst.running), inst.engine)
        served = Served(
            self.tick,
            applied.kind,
            inst.life,
            meant_values(applied.shown) if applied.kind in READABLE else {},
            inst.engine.start_time(inst.store),
            inst.started_at,
            applied.detail,
        )
        inst.record.served.append(served)
        if served.readable:
            inst.read, inst.restart_pending, inst.complete = True, False, applied.kind != "missing_family"
        inst.fault = GOOD
        return answer(applied.kind, inst.engine.write(applied.printed) if self.render else "")

    def _values(self, inst: Instance) -> dict[Key, float]:
        return meant_values(inst.engine.families(inst.store, inst.running))

    def _life(self, inst: Instance) -> Life:
        return Life(inst.store.start, inst.engine.start_time(inst.store), inst.started_at)
