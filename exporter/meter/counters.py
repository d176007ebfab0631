"""Deltas of upstream counters, with resets taken as a restart from zero.

Prometheus's own rule (``extrapolatedRate``): any decrease is a reset, and the new value
is the increase since the restart. We add a start-time check: when ``_created`` changes,
the target restarted even if its counter already overtook the old value (100 → 150 after
a restart must count 150, not 50). Never ``abs()`` and never clamp: both undercount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise


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


def valid_buckets(buckets: tuple[tuple[float, float], ...]) -> bool:
    """A cumulative histogram we accept: rising bounds ending at +Inf, counts valid and not falling."""
    if not buckets or buckets[-1][0] != math.inf:
        return False
    bound, count = -math.inf, 0.0
    for le, n in buckets:
        if not (le > bound and math.isfinite(n) and n >= count):  # also false for a NaN bound
            return False
        bound, count = le, n
    return True


def bucket_increase(
    prev: tuple[tuple[tuple[float, float], ...], float | None] | None,
    cur: tuple[tuple[tuple[float, float], ...], float | None],
    *,
    born_after: float | None = None,
) -> tuple[tuple[float, float], ...]:
    """Observations per bucket between two readings (bounds, created) of one valid histogram.

    The same rules as ``delta`` for every bucket at once: a first reading is a baseline, and
    a restart (new ``created``, a falling count) counts the new reading whole. New bounds with
    neither are a new baseline: counting a lifetime of requests as this tick's would be wrong.
    The result is per bucket (count in ``(previous bound, bound]``); () when no observation
    was added.
    """
    buckets, created = cur
    if prev is None:
        if born_after is None or created is None or created < born_after:
            return ()
        grown = [n for _, n in buckets]
    else:
        old, old_created = prev
        moved = old_created is not None and created is not None and created != old_created
        if moved or buckets[-1][1] < old[-1][1]:  # a restart: everything now is new
            grown = [n for _, n in buckets]
        elif len(old) != len(buckets) or any(a[0] != b[0] for a, b in zip(old, buckets, strict=True)):
            return ()  # new bounds, same life (a config change, a lost line): a new baseline
        else:
            grown = [n - o for (_, n), (_, o) in zip(buckets, old, strict=True)]
            if any(g < 0 for g in grown) or _falls(grown):  # only a restart does that
                grown = [n for _, n in buckets]
    if not grown[-1]:
        return ()  # no request finished
    # Every bound stays, empty buckets too: interpolation starts at the bound below.
    per_bucket = [g - below for g, below in zip(grown, [0.0, *grown[:-1]], strict=True)]
    return tuple((le, n) for (le, _), n in zip(buckets, per_bucket, strict=True))


def _falls(cumulative: list[float]) -> bool:
    """A cumulative increase that falls with the bound: only a restart between readings does that."""
    return any(b < a for a, b in pairwise(cumulative))
