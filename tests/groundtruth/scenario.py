"""Seeded random worlds: one instance of every engine kind, random traffic, restarts and faults.

The scenario keeps to what an ideal scraper can read one way only (``ideal.Ambiguous``): a
restart only after a readable answer with every family (a fall is then seen against the
reading just before the restart), not before an instance was first read, not within 6 ticks
of the last one, and the main model served at once after it; no missing family on an
instance's first readable answer, nor on the first after a restart. Checked on 300 seeds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tests.groundtruth.answers import Fault
from tests.groundtruth.engines import KINDS, Request, make
from tests.groundtruth.engines.sglang import MODEL as SGLANG_MODEL
from tests.groundtruth.engines.sglang import Sglang
from tests.groundtruth.record import Record
from tests.groundtruth.world import Instance, TickPlan, World

EXTRA_MODEL = "meta-llama/Llama-3.2-3B-Instruct"  # added to the SGLang instance mid-run
ADAPTERS = ("sql-lora", "chat-lora")  # LoRA adapters of the SGLang instance's base model
# A tick costs ~12 ms of scraping (8 targets over HTTP); the file's budget is ~20 s.
TICKS = (60, 90)
RESTART_P = 0.02
RESTART_KINDS = ("fresh", "partial", "hidden")
MIN_LIFE_TICKS = 6
ANSWERS = {
    "good": 60,
    "noise": 6,
    "gauge_nan": 4,
    "missing_family": 7,
    "http_500": 3,
    "html": 2,
    "truncated": 3,
    "binary": 2,
    "nan_counter": 2,
    "inf_counter": 2,
    "negative_counter": 2,
    "slow": 1,
}
REQUESTS_PER_TICK = (0, 1, 1, 2, 2, 3, 4)
ADAPTER_REQUESTS_PER_TICK = (0, 0, 1, 1, 2)


@dataclass(slots=True)
class Scenario:
    record: Record
    plans: Sequence[TickPlan]


def random_request(rng: random.Random, model: str = "") -> Request:
    prompt = rng.randint(1, 3000)
    return Request(
        prompt=prompt,
        output=rng.randint(1, 800),
        cached=0 if rng.random() < 0.5 else rng.randint(0, prompt),
        model=model,
        reason=rng.choices(("stop", "length", "abort"), (80, 15, 5))[0],
        streaming=rng.random() < 0.7,
    )


class _Run:
    def __init__(self, seed: int, render: bool) -> None:
        self.rng = random.Random(seed)
        self.world = World(render=render)
        self.ticks = self.rng.randint(*TICKS)
        self.slow_left = 1 if self.rng.random() < 0.25 else 0  # each costs a client timeout
        # tick → model or adapter the SGLang instance starts serving then
        self.joins = {self.rng.randint(10, self.ticks - 10): EXTRA_MODEL}
        self.joins.update({self.rng.randint(0, self.ticks - 10): a for a in ADAPTERS})
        self.sglang_models = [SGLANG_MODEL]

    def build(self) -> Scenario:
        for kind in KINDS:
            engine = (
                Sglang(adapters=dict.fromkeys(ADAPTERS, SGLANG_MODEL)) if kind == "sglang" else make(kind)
            )
            history = [random_request(self.rng) for _ in range(self.rng.randint(5, 40))]
            self.world.add(kind, engine, self.rng.choice(("static", "kubernetes")), history)
        plans = []
        for tick in range(self.ticks):
            if tick in self.joins:
                self.sglang_models.append(self.joins[tick])
            for inst in self.world.instances.values():
                self.traffic(inst)
                self.world.set_fault(inst.name, self.fault(inst))
            plans.append(self.world.end_tick())
        return Scenario(self.world.finish(), plans)

    def traffic(self, inst: Instance) -> None:
        rng = self.rng
        models = self.sglang_models if inst.name == "sglang" else [""]
        requests = [
            random_request(rng, model)
            for model in models
            for _ in range(rng.choice(ADAPTER_REQUESTS_PER_TICK if model in ADAPTERS else REQUESTS_PER_TICK))
        ]
        rng.shuffle(requests)
        self.world.set_running(inst.name, float(rng.randint(0, 16)))
        ready = inst.read and inst.complete and inst.life_ticks >= MIN_LIFE_TICKS
        if not (ready and rng.random() < RESTART_P):
            self.world.serve(inst.name, *requests)
            return
        cut = rng.randint(0, len(requests))
        self.world.serve(inst.name, *requests[:cut])
        self.world.restart(inst.name, rng.choice(RESTART_KINDS), at=rng.uniform(0.05, 0.95))
        # The main model is served at once, so the next readable answer shows it against the
        # reading before the restart (else only adapters born since might show, and nothing fell).
        self.world.serve(inst.name, random_request(rng), *requests[cut:])

    def fault(self, inst: Instance) -> Fault:
        kind = self.rng.choices(list(ANSWERS), list(ANSWERS.values()))[0]
        if kind == "slow":
            if not self.slow_left:
                return Fault()
            self.slow_left -= 1
        if kind == "missing_family":
            if not inst.read or inst.restart_pending or not inst.engine.missable:
                return Fault()
            return Fault(kind, self.rng.choice(inst.engine.missable))
        return Fault(kind)


def random_scenario(seed: int, render: bool = True) -> Scenario:
    """The scenario of ``seed``; ``render=False``: the record only (answers carry no body)."""
    return _Run(seed, render).build()
