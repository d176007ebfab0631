"""How much of a month an interval is, under the declared month convention.

``calendar``: each month is its real length (28–31 days), so a $/GB-month price summed
over a whole month equals the price exactly; an interval crossing a month boundary is
split at the boundary. ``730h``: every month is 730 hours (8760 / 12), OpenCost's rule.
All in UTC.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from fractions import Fraction

NS_PER_S = 10**9
FIXED_MONTH_NS = 730 * 3600 * NS_PER_S


def _month_bounds_ns(t_ns: int) -> tuple[int, int]:
    day = datetime.fromtimestamp(t_ns // NS_PER_S, tz=timezone.utc)
    start = datetime(day.year, day.month, 1, tzinfo=timezone.utc)
    days = calendar.monthrange(day.year, day.month)[1]
    start_ns = int(start.timestamp()) * NS_PER_S
    return start_ns, start_ns + days * 86400 * NS_PER_S


def month_fraction(start_ns: int, end_ns: int, convention: str) -> Fraction:
    """The interval [start_ns, end_ns) as an exact fraction of a month."""
    if end_ns <= start_ns:
        return Fraction(0)
    if convention == "730h":
        return Fraction(end_ns - start_ns, FIXED_MONTH_NS)
    total = Fraction(0)
    t = start_ns
    while t < end_ns:
        month_start, month_end = _month_bounds_ns(t)
        segment_end = min(end_ns, month_end)
        total += Fraction(segment_end - t, month_end - month_start)
        t = segment_end
    return total
