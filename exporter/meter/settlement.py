"""Server tokens matched to a gateway's counts, first in first out: the tenant split's clock.

A server counts a request's tokens as it serves them, a gateway when it answers: the same tokens
reach us ticks apart (a long answer, minutes apart). So each tick's tokens of a served line wait here
with their money, one batch per direction, until a gateway's counts of the same model claim them,
oldest first; the money moves to the claiming tenants by their parts of the count. A count that
finds nothing waiting (the gateway's scrape saw a request end that the server's scrape had not
shown yet) waits as credit for the server's next tokens. Tokens no gateway claims within the
horizon were direct calls: their money goes to ``DIRECT``. Credit nothing claims within it is
dropped and counted (``unmatched``): a gateway that also routes the model to other nodes.

Exact: a batch's money moves in whole nano-dollars, a part of it by its part of the batch's tokens
(the last part takes what is left), and each part to tenants by largest remainder.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

from exporter.meter.attribution import Line
from exporter.meter.money import allocate, weight

DIRECT = "__direct__"  # tokens no gateway claimed: the pod's own team keeps their money
INPUT, OUTPUT = 0, 1
EPS = 1e-9  # tokens: what float subtraction leaves of a whole batch


@dataclass(slots=True)
class Batch:
    """One line's tokens of one direction in one tick, with their money, waiting for a claim."""

    line: Line
    end_ns: int
    tokens: float
    money: int  # nano-dollars


@dataclass(slots=True)
class Credit:
    """One tick of a gateway's counts of a model, per tenant, not yet matched to served tokens."""

    end_ns: int
    tenants: dict[str, float]


@dataclass(frozen=True, slots=True)
class Claim:
    """Money and tokens of a line that moved to a tenant."""

    line: Line
    tenant: str
    direction: int
    money: int
    tokens: float


Key = tuple[str, int]  # (served model, direction)


class Settlement:
    """The queues of served tokens and of gateway counts, per model and direction."""

    def __init__(self) -> None:
        self.batches: dict[Key, deque[Batch]] = {}
        self.credits: dict[Key, deque[Credit]] = {}
        self.unmatched: dict[Key, float] = {}  # cumulative tokens of credit that expired

    def add_batch(self, line: Line, direction: int, end_ns: int, tokens: float, money: int) -> None:
        self.batches.setdefault((line.owner.model, direction), deque()).append(
            Batch(line, end_ns, tokens, money)
        )

    def add_counts(self, model: str, direction: int, end_ns: int, tenants: Mapping[str, float]) -> None:
        counted = {t: n for t, n in tenants.items() if n > 0}
        self.unmatched.setdefault(
            (model, direction), 0.0
        )  # known from a gateway's first count: 0, not absent
        if counted:
            self.credits.setdefault((model, direction), deque()).append(Credit(end_ns, counted))

    def settle(self, now_ns: int, horizon_ns: int) -> list[Claim]:
        """Match what can be matched, then expire what waited past the horizon."""
        out: list[Claim] = []
        for key in list(self.batches.keys() | self.credits.keys()):
            batches = self.batches.get(key, deque())
            credits = self.credits.get(key, deque())
            out.extend(_match(batches, credits, key[1]))
            while batches and batches[0].end_ns <= now_ns - horizon_ns:
                b = batches.popleft()
                out.append(Claim(b.line, DIRECT, key[1], b.money, b.tokens))
            while credits and credits[0].end_ns <= now_ns - horizon_ns:
                self.unmatched[key] = self.unmatched.get(key, 0.0) + sum(credits.popleft().tenants.values())
            if not batches:
                self.batches.pop(key, None)
            if not credits:
                self.credits.pop(key, None)
        return out

    def waiting(self) -> Iterator[Batch]:
        for batches in self.batches.values():
            yield from batches

    def pending(self) -> dict[Line, tuple[int, float, float]]:
        """Per line: (money, input tokens, output tokens) waiting for a claim."""
        out: dict[Line, list[float]] = {}
        for (_, direction), batches in self.batches.items():
            for b in batches:
                acc = out.setdefault(b.line, [0, 0.0, 0.0])
                acc[0] += b.money
                acc[1 + direction] += b.tokens
        return {line: (int(a[0]), a[1], a[2]) for line, a in out.items()}

    def drop_lines(self, lines: Iterable[Line]) -> None:
        """Lines retired: their waiting money left the books with them."""
        gone = set(lines)
        for key in list(self.batches):
            kept = deque(b for b in self.batches[key] if b.line not in gone)
            if kept:
                self.batches[key] = kept
            else:
                del self.batches[key]


def _match(batches: deque[Batch], credits: deque[Credit], direction: int) -> Iterator[Claim]:
    """Oldest served tokens to oldest counts; each part's money by its part of the batch."""
    while batches and credits:
        b, c = batches[0], credits[0]
        have = sum(c.tenants.values())
        n = min(b.tokens, have)
        whole = n >= b.tokens - EPS
        money = b.money if whole else int(Fraction(b.money) * Fraction(n) / Fraction(b.tokens))
        names = sorted(c.tenants)
        weights = [Fraction(weight(c.tenants[t])) for t in names]
        for name, part, tokens in zip(names, allocate(money, weights), split_tokens(n, weights), strict=True):
            if part or tokens:
                yield Claim(b.line, name, direction, part, tokens)
            c.tenants[name] = max(c.tenants[name] - tokens, 0.0)
        if n >= have - EPS:
            credits.popleft()
        if whole:
            batches.popleft()
        else:
            b.tokens -= n
            b.money -= money


def split_tokens(amount: float, weights: list[Fraction]) -> list[float]:
    """Tokens by ``weights``: whole tokens into whole parts that add up exactly."""
    if amount == int(amount) and amount >= 0 and any(weights):
        return [float(n) for n in allocate(int(amount), weights)]
    total = sum(weights)
    if total <= 0:
        return [0.0] * (len(weights) - 1) + [amount]
    return [float(amount * w / total) for w in weights]
