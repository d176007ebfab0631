"""Deltas of upstream counters, with resets taken as a restart from zero.

Prometheus's own rule (``extrapolatedRate``): any decrease is a reset, and the new value
is the increase since the restart. We add a start-time check: when ``_created`` changes,
the target restarted even if its counter already overtook the old value (100 → 150 after
a restart must count 150, not 50). Never ``abs()`` and never clamp: both undercount.

A decrease of at most ``NOISE`` × the old value is float rounding (a sum taken in another
order, a value printed with fewer digits), not a restart: it adds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from exporter.records import Buckets

NOISE = 1e-9


def fell(old: float, new: float) -> bool:
    """``new`` is below ``old`` by more than float rounding: only a restart does that."""
    return new < old - NOISE * old


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
    if fell(prev.value, cur.value):
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
    return Delta(max(cur.value - prev.value, 0.0), reset=False)


def valid_buckets(buckets: Buckets) -> bool:
    """A cumulative histogram we accept: rising bounds ending at +Inf, counts valid and not falling."""
    if not buckets or buckets[-1][0] != math.inf:
        return False
    bound, count = -math.inf, 0.0
    for le, n in buckets:
        if not (le > bound and math.isfinite(n) and n >= count):  # also false for a NaN bound
            return False
        bound, count = le, n
    return True


def bucket_increase(prev: Buckets | None, cur: Buckets, *, whole: bool) -> Buckets:
    """Observations per bucket between two readings of one valid histogram.

    ``whole``: the histogram started since ``prev`` (a restart, or a series born since the
    last reading), so every observation in ``cur`` is new. Otherwise a first reading is a
    baseline, a falling count is a restart (the new reading counts whole), and new bounds
    without a restart are a new baseline: counting a lifetime of requests as this tick's would
    be wrong. The result is per bucket (count in ``(previous bound, bound]``); () when no
    observation was added.
    """
    if whole:
        grown = [n for _, n in cur]
    elif prev is None:
        return ()
    elif fell(prev[-1][1], cur[-1][1]):
        grown = [n for _, n in cur]
    elif len(prev) != len(cur) or any(a[0] != b[0] for a, b in zip(prev, cur, strict=True)):
        return ()
    else:
        grown = [max(n - o, 0.0) for (_, n), (_, o) in zip(cur, prev, strict=True)]
        if any(fell(o, n) for (_, n), (_, o) in zip(cur, prev, strict=True)) or _falls(grown):
            grown = [n for _, n in cur]  # only a restart between readings does either
    if not grown[-1]:
        return ()  # no request finished
    # Every bound stays, empty buckets too: interpolation starts at the bound below.
    per_bucket = [g - below for g, below in zip(grown, [0.0, *grown[:-1]], strict=True)]
    return tuple((le, n) for (le, _), n in zip(cur, per_bucket, strict=True))


def _falls(cumulative: list[float]) -> bool:
    """A cumulative increase that falls with the bound: only a restart between readings does that."""
    return any(b < a for a, b in pairwise(cumulative))
