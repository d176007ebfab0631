"""Exact money: integer nano-dollars, carried remainders, largest-remainder splits."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal
from fractions import Fraction

NANO_PER_USD = 10**9
NS_PER_HOUR = 3600 * 10**9
ZERO = Fraction(0)


def usd(amount: Decimal | int) -> Fraction:
    """A dollar amount from config as an exact fraction of nano-dollars."""
    return Fraction(amount) * NANO_PER_USD


def per_hour(usd_per_hour: Decimal, duration_ns: int) -> Fraction:
    """Exact nano-dollars that ``usd_per_hour`` costs over ``duration_ns``."""
    return usd(usd_per_hour) * duration_ns / NS_PER_HOUR


def to_usd(nano: int | Fraction) -> float:
    """For exposition only: floats never flow back into the ledger."""
    return float(Fraction(nano) / NANO_PER_USD)


class Accruals:
    """Turns exact amounts into whole nano-dollars, carrying the fraction per line.

    The carry of each line stays in [0, 1) nano-dollar, so the whole amounts charged
    on a line never differ from the exact running total by one nano-dollar or more.
    """

    def __init__(self) -> None:
        self._carry: dict[Hashable, Fraction] = {}

    def accrue(self, line: Hashable, exact: Fraction) -> int:
        if exact < 0:
            raise ValueError(f"negative accrual {exact} on {line!r}")
        total = self._carry.get(line, ZERO) + exact
        whole = total.numerator // total.denominator
        self._carry[line] = total - whole
        return whole

    def forget(self, keep: set[Hashable]) -> None:
        """Drop the carries of lines that no longer exist (a deleted pod)."""
        self._carry = {k: v for k, v in self._carry.items() if k in keep}

    def __len__(self) -> int:
        return len(self._carry)


def allocate(amount: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split ``amount`` by ``weights`` into integers that sum to ``amount`` exactly.

    Largest remainder (Hamilton): each share gets the floor of its quota, and the units
    left over go to the largest remainders, ties to the earlier index, so the result is
    deterministic and no share is ever negative or off by more than one unit.
    """
    if amount < 0:
        raise ValueError(f"cannot allocate a negative amount {amount}")
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError(f"negative weight in {list(weights)}")
    total = sum(weights, ZERO)
    if total == 0:
        weights, total = [1] * len(weights), Fraction(len(weights))
    quotas = [Fraction(amount) * w / total for w in weights]
    shares = [q.numerator // q.denominator for q in quotas]
    left = amount - sum(shares)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares
