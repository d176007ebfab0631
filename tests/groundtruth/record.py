"""What the simulated servers served, scrape by scrape, and what each life ended with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.groundtruth.ir import Key

# Answers a scraper can read: the good body, or one with a harmless flaw.
READABLE = frozenset({"good", "noise", "gauge_nan", "missing_family"})
FAILURES = (
    "http_500",
    "slow",
    "html",
    "truncated",
    "binary",
    "nan_counter",
    "inf_counter",
    "negative_counter",
)


@dataclass(frozen=True, slots=True)
class Served:
    tick: int
    kind: str  # a READABLE kind or one of FAILURES
    life: int
    values: Mapping[Key, float]  # the meaning of every series served (readable kinds only)
    start_time: float | None = None  # the start time the payload showed (vLLM V1)
    started_at: float | None = None  # Target.started_at given with this scrape (kubernetes mode)
    detail: str = ""  # the family a missing_family or noise answer acted on

    @property
    def readable(self) -> bool:
        """A payload a scraper reads: a readable kind that carries at least one series."""
        return self.kind in READABLE and bool(self.values)


@dataclass(slots=True)
class Life:
    start: float
    start_time: float | None  # as the payload shows it
    started_at: float | None
    final: dict[Key, float] = field(default_factory=dict)  # the meaning of every series at its end


@dataclass(slots=True)
class TargetRecord:
    name: str
    engine: str  # engines.KINDS
    model: str  # the declared model (TGI, llama.cpp: where their tokens go)
    mode: str  # "static" | "kubernetes"
    served: list[Served] = field(default_factory=list)
    lives: dict[int, Life] = field(default_factory=dict)
    restarts: list[tuple[int, str]] = field(default_factory=list)  # (tick, kind)


@dataclass(slots=True)
class Record:
    start_s: float
    dt_s: float
    targets: dict[str, TargetRecord] = field(default_factory=dict)
