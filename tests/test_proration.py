"""Storage proration by the declared month convention (reliability P5)."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction

import pytest

from exporter.meter.proration import month_fraction

NS = 10**9


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp()) * NS


@pytest.mark.parametrize(
    ("year", "month", "hours"),
    [(2027, 2, 672), (2028, 2, 696), (2026, 4, 720), (2026, 1, 744)],
)
def test_a_whole_calendar_month_is_exactly_one(year: int, month: int, hours: int) -> None:
    start = ns(year, month, 1)
    end = start + hours * 3600 * NS
    assert month_fraction(start, end, "calendar") == 1
    assert month_fraction(start, end, "730h") == Fraction(hours, 730)


def test_interval_crossing_a_month_boundary_is_split_exactly() -> None:
    start = ns(2026, 1, 31, 12)  # 12 h of January (744 h) then 12 h of February (672 h)
    end = ns(2026, 2, 1, 12)
    assert month_fraction(start, end, "calendar") == Fraction(12, 744) + Fraction(12, 672)


def test_year_boundary() -> None:
    start = ns(2026, 12, 31, 23)
    end = ns(2027, 1, 1, 1)
    assert month_fraction(start, end, "calendar") == Fraction(1, 744) + Fraction(1, 744)


def test_empty_or_reversed_interval_is_zero() -> None:
    t = ns(2026, 5, 5)
    assert month_fraction(t, t, "calendar") == 0
    assert month_fraction(t, t - NS, "730h") == 0


def test_sub_second_interval_is_exact() -> None:
    start = ns(2026, 4, 10)
    assert month_fraction(start, start + 1, "calendar") == Fraction(1, 720 * 3600 * NS)
