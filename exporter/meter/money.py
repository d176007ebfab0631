"""Exact money: integer nano-dollars, carried remainders, largest-remainder splits."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

NANO_PER_USD = 10**9
NS_PER_HOUR = 3600 * 10**9
# An exact amount of nano-dollars as (numerator, denominator > 0): plain integers, because
# Fraction's normalisation on every operation was most of a tick's time.
Exact = tuple[int, int]


@lru_cache(maxsize=4096)
def nano(usd: Decimal | int) -> Exact:
    """A dollar amount from config as exact nano-dollars."""
    f = Fraction(usd) * NANO_PER_USD
    return f.numerator, f.denominator


def per_hour(usd_per_hour: Decimal, duration_ns: int) -> Exact:
    """Exact nano-dollars that ``usd_per_hour`` costs over ``duration_ns``."""
    n, d = nano(usd_per_hour)
    return n * duration_ns, d * NS_PER_HOUR


def times(amount: Exact, factor: Fraction) -> Exact:
    return amount[0] * factor.numerator, amount[1] * factor.denominator


def exact(f: Fraction) -> Exact:
    return f.numerator, f.denominator


def to_usd(nano_usd: int) -> float:
    """For exposition only: floats never flow back into the ledger (int / int rounds once)."""
    return nano_usd / NANO_PER_USD


class Accruals:
    """Turns exact amounts into whole nano-dollars, carrying the fraction per line.

    The carry of each line stays in [0, 1) nano-dollar, so the whole amounts charged
    on a line never differ from the exact running total by one nano-dollar or more.
    A line's denominator only changes with its prices (a reload, a new month); the carry
    is then moved to the common multiple, exactly.
    """

    def __init__(self) -> None:
        self._carry: dict[Hashable, Exact] = {}
        self.dropped = 0  # carries forgotten with their lines: each was < 1 nano-dollar

    def accrue(self, line: Hashable, amount: Exact) -> int:
        num, den = amount
        if num == 0:
            return 0  # nothing accrues: leave the carry (and its denominator) alone
        if num < 0 or den <= 0:
            raise ValueError(f"negative accrual {num}/{den} on {line!r}")
        carry, carry_den = self._carry.get(line, (0, den))
        if carry_den != den:
            common = math.lcm(carry_den, den)
            carry, num, den = carry * (common // carry_den), num * (common // den), common
        whole, rest = divmod(carry + num, den)
        self._carry[line] = (rest, den)
        return whole

    def drop(self, gone: Callable[[Hashable], bool]) -> None:
        """Drop the carries of lines that no longer exist (an expired pod): < 1 nano-dollar each."""
        kept = {k: v for k, v in self._carry.items() if not gone(k)}
        self.dropped += len(self._carry) - len(kept)
        self._carry = kept

    def __len__(self) -> int:
        return len(self._carry)

    def items(self) -> list[tuple[Hashable, Exact]]:
        """The carries, for the state file."""
        return list(self._carry.items())

    def restore(self, carries: list[tuple[Hashable, Exact]], dropped: int) -> None:
        self._carry, self.dropped = dict(carries), dropped


def weight(x: float) -> int | Fraction:
    """A float weight (tokens, seconds) exactly, as an int when it is whole (the usual case)."""
    if isinstance(x, int) or x.is_integer():
        return int(x)
    return Fraction(x)


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
    if len(weights) == 1:
        return [amount]
    ints = _as_integers(weights)
    total = sum(ints)
    if total == 0:
        ints, total = [1] * len(ints), len(ints)
    split = [divmod(amount * w, total) for w in ints]
    shares = [q for q, _ in split]
    left = amount - sum(shares)
    by_remainder = sorted(range(len(split)), key=lambda i: (-split[i][1], i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def _as_integers(weights: Sequence[int | Fraction]) -> list[int]:
    """The same proportions as integers (scaled by the common denominator)."""
    if all(isinstance(w, int) for w in weights):
        return [int(w) for w in weights]
    fractions = [Fraction(w) for w in weights]
    common = math.lcm(*(f.denominator for f in fractions))
    return [f.numerator * (common // f.denominator) for f in fractions]
