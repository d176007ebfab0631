"""What an engine exposes at one scrape, before it is written in the engine's text format.

Every series says what it *means*: the (model, quantity) keys its value adds to. The record
takes those meanings from the families actually served, so the ideal scraper and the text
the exporter parses can never disagree about which numbers were on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]  # sorted by name
Key = tuple[str, str]  # (model, quantity)
# The exporter's ModelDelta field names; "requests:<reason>" keys also count per finish reason.
QUANTITIES = ("input_tokens", "output_tokens", "cached_input_tokens", "requests")
PART = "/"  # "input_tokens/cached": one of the counters a quantity is the sum of


def part(quantity: str, name: str) -> str:
    """A counter of its own that adds to ``quantity`` (llama.cpp's computed and cached prompt
    tokens): a scraper freezes or restarts it apart, and adds the increases."""
    return quantity + PART + name


def folded(key: Key) -> Key:
    """The quantity a part adds to (the key itself for a quantity that is one counter)."""
    return key[0], key[1].split(PART, 1)[0]


INF = math.inf


@dataclass(frozen=True, slots=True)
class Series:
    labels: Labels
    value: float  # counter or gauge value; a histogram's _sum
    buckets: tuple[tuple[float, float], ...] = ()  # histogram: (le, cumulative count), +Inf last
    created: float | None = None  # prometheus_client's _created, where the format has it
    keys: tuple[Key, ...] = ()  # what ``value`` adds to
    count_keys: tuple[Key, ...] = ()  # what a histogram's _count adds to

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # as printed: counters with their suffix (``_total`` or none), histograms without
    kind: str  # "counter" | "gauge" | "histogram"
    help: str  # "" for a family printed without a HELP line
    series: tuple[Series, ...]


def labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


def meant_values(families: Iterable[Family]) -> dict[Key, float]:
    """The value of every (model, quantity) these families carry, as a scraper sums them."""
    out: dict[Key, float] = {}
    for family in families:
        for s in family.series:
            for key in s.keys:
                out[key] = out.get(key, 0.0) + s.value
            for key in s.count_keys:
                out[key] = out.get(key, 0.0) + s.count
    return out


def label_dict(series: Series) -> Mapping[str, str]:
    return dict(series.labels)
