"""What every simulated engine provides: its series, how a request moves them, its text.

An engine object is stateless across lives: the state of one life is a ``Store``; a restart
gives the engine a new one (``World`` decides how it starts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tests.groundtruth.ir import Family, Key, Labels, Series
from tests.groundtruth.store import Store


@dataclass(frozen=True, slots=True)
class Request:
    prompt: int  # every prompt token, cache hits included
    output: int
    cached: int = 0  # prompt tokens served from the prefix cache
    model: str = ""  # "" → the engine's model; else a model or adapter it serves
    reason: str = "stop"  # finish reason
    streaming: bool = True
    finished: bool = True  # False: tokens were processed, the request has not finished yet


@dataclass(frozen=True, slots=True)
class Meaning:
    """Which quantities a family's samples carry, for the series matching ``where``."""

    quantities: tuple[str, ...] = ()
    count_quantities: tuple[str, ...] = ()  # a histogram's _count
    where: tuple[tuple[str, str], ...] = ()
    per_label: str = ""  # also count each value of this label apart ("requests:stop")


NOTHING = Meaning()  # a family the exporter reads nothing from


class Engine(ABC):
    kind: str
    model: str  # the model a target of this engine declares (TGI, llama.cpp: the only one)
    adapter_label = ""  # Target.adapter_label for this engine's targets
    missable: tuple[str, ...] = ()  # families that may be missing from one good answer
    noise_families: tuple[str, ...] = ()  # token counters a server may print with float noise
    poison_family = ""  # a token or request counter the exporter reads: where NaN/Inf/-1 goes
    gauge_family = ""  # the concurrency gauge
    partial_zero: frozenset[str] = frozenset()  # the input side: what a "partial" restart zeroes
    docs: Mapping[str, str] = {}  # family → HELP text, as the server prints it ("": no HELP line)

    @abstractmethod
    def new_store(self, start: float) -> Store:
        """A life's state right after start-up (the series a server creates at once)."""

    @abstractmethod
    def observe(self, store: Store, req: Request) -> None: ...

    @abstractmethod
    def families(self, store: Store, running: float) -> list[Family]: ...

    @abstractmethod
    def write(self, families: Sequence[Family]) -> str: ...

    def model_of(self, lbl: Labels) -> str:
        return self.model

    def start_time(self, store: Store) -> float | None:
        """The start time the payload shows (``_created``, process start); None if none."""
        return None

    def keys(self, meaning: Meaning, lbl: Labels, quantities: tuple[str, ...]) -> tuple[Key, ...]:
        found = dict(lbl)
        if any(found.get(k) != v for k, v in meaning.where):
            return ()
        model = self.model_of(lbl)
        keys = [(model, q) for q in quantities]
        if meaning.per_label:
            keys += [(model, f"{q}:{found[meaning.per_label]}") for q in quantities]
        return tuple(keys)

    def counter(self, store: Store, name: str, meaning: Meaning = NOTHING, created: bool = False) -> Family:
        """A counter family from the store (``created``: with prometheus_client's ``_created``)."""
        when = store.start if created else None
        series = tuple(
            Series(lbl, v, created=when, keys=self.keys(meaning, lbl, meaning.quantities))
            for lbl, v in store.series(name)
        )
        return Family(name, "counter", self.docs.get(name, ""), series)

    def histogram(self, store: Store, name: str, meaning: Meaning = NOTHING, created: bool = False) -> Family:
        when = store.start if created else None
        series = tuple(
            Series(
                lbl,
                h.total,
                h.cumulative(),
                when,
                self.keys(meaning, lbl, meaning.quantities),
                self.keys(meaning, lbl, meaning.count_quantities),
            )
            for lbl, h in store.hist_series(name)
        )
        return Family(name, "histogram", self.docs.get(name, ""), series)

    def gauge(self, name: str, values: Sequence[tuple[Labels, float]]) -> Family:
        return Family(name, "gauge", self.docs.get(name, ""), tuple(Series(lbl, v) for lbl, v in values))
