"""Deltas of upstream counters, with resets taken as a restart from zero.

Prometheus's own rule (``extrapolatedRate``): any decrease is a reset, and the new value
is the increase since the restart. We add a start-time check: when ``_created`` changes,
the target restarted even if its counter already overtook the old value (100 → 150 after
a restart must count 150, not 50). Never ``abs()`` and never clamp: both undercount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reading:
    """One cumulative counter value and the start time of the series that produced it."""

    value: float
    created: float | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    amount: float
    reset: bool


def is_valid_counter(value: float | None) -> bool:
    """A counter value we accept: finite and not negative (None means 'not exported')."""
    return value is None or (math.isfinite(value) and value >= 0)


def restarted(prev: Reading, cur: Reading) -> bool:
    if cur.value < prev.value:
        return True
    return prev.created is not None and cur.created is not None and cur.created != prev.created


def delta(prev: Reading | None, cur: Reading, *, born_after: float | None = None) -> Delta:
    """Increase from ``prev`` to ``cur``.

    A series seen for the first time counts as a baseline (0) — we cannot know when its
    earlier increments happened — unless its ``created`` time is after ``born_after``
    (the start of the current tick): then it started while we watched and all of it is new.
    """
    if prev is None:
        new = born_after is not None and cur.created is not None and cur.created >= born_after
        return Delta(cur.value if new else 0.0, reset=False)
    if restarted(prev, cur):
        return Delta(cur.value, reset=True)
    return Delta(cur.value - prev.value, reset=False)
