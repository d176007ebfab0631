"""A shared model's money to the teams that called it through a gateway (chargeback per tenant).

Each served line's tick of money waits with its tokens until a gateway's counts claim them
(meter/settlement.py): input money with input tokens, output money with output tokens, money no
direction claims with both by their tokens. Tokens no gateway claims within the horizon were direct
calls (``DIRECT``): their money stays with the pod's own team. A quiet tick's money (nothing served)
follows the tenants' shares of what was settled over the window, else over the span, else ``DIRECT``.

A line gets tenants when a gateway first claims its tokens; its money from before is ``DIRECT``.
From then on, at every tick: Σ its tenants' money + its money waiting = its money, to the nano-dollar.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from exporter.meter.attribution import Line
from exporter.meter.deltas import ModelDelta
from exporter.meter.money import allocate, weight
from exporter.meter.settlement import DIRECT, INPUT, OUTPUT, Claim, Settlement

OTHER_TENANTS = "__other__"  # tenants past the cap, their money kept
DEFAULT_HORIZON_S = 300.0  # how long served tokens wait for a gateway's count before they are direct
# A model quiet for a window splits its money by the shares settled over this many windows.
QUIET_SPAN = 10
Pair = tuple[float, float]  # (input tokens, output tokens)
Money = tuple[int, int, int]  # (input, output, other) nano-dollars
Booked = tuple[Line, Money, Pair]  # one line's tick, as the ledger booked it


@dataclass(slots=True)
class TenantTotals:
    """Cumulative per (line, tenant); only ever grows."""

    cost: int = 0  # nano-dollars
    input_tokens: float = 0.0
    output_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class TenantView:
    """One line's split for the exposition: cumulative per tenant, what waits, and the window's $/M."""

    totals: Mapping[str, TenantTotals] = field(default_factory=dict)
    waiting_nano: int = 0  # money of tokens no gateway has claimed yet (nor the horizon expired)
    usd_per_million: Mapping[str, float] = field(default_factory=dict)  # tenants settled in the window


NO_TENANTS = TenantView()


def served_name(gateway_model: str, served: frozenset[str]) -> str | None:
    """The served model a gateway's model name stands for: the same name, or the name without its
    provider prefix ("hosted_vllm/llama" → "llama"); None when no server here serves it (the
    gateway also routes elsewhere). A config's explicit map was applied when it was read."""
    if gateway_model in served:
        return gateway_model
    _, slash, rest = gateway_model.partition("/")
    return rest if slash and rest in served else None


class TenantBook:
    """Every served line's money to the tenants that called it, through the settlement."""

    def __init__(self, max_tenants: int = 200, horizon_s: float = DEFAULT_HORIZON_S) -> None:
        self.max_tenants = max_tenants
        self.horizon_ns = int(horizon_s * 1e9)
        self.settlement = Settlement()
        self.tenants: dict[Line, dict[str, TenantTotals]] = {}  # lines a gateway's tenants called
        self.admitted: set[str] = set()
        self._settled: dict[str, deque[tuple[int, str, float, float]]] = {}  # model → (ns, tenant, in, out)
        self._recent: dict[Line, deque[tuple[int, str, int, float]]] = {}  # (ns, tenant, money, tokens)

    def tick(
        self,
        end_ns: int,
        window_ns: int,
        counts: Iterable[ModelDelta],
        served: frozenset[str],
        booked: Iterable[Booked],
        line_totals: Callable[[Line], tuple[int, float, float]],
    ) -> None:
        """One tick: the gateways' token deltas (``owner.model``: the gateway's model name;
        ``instance``: the tenant) for the models this node ``served``, and the lines' booked
        money; ``line_totals``: a line's cumulative (money, input, output tokens)."""
        quiet: list[tuple[Line, Money]] = []
        for line, money, tokens in booked:
            if line.owner.is_idle or line.owner.workload == "training":
                continue
            if not self._queue(line, end_ns, money, tokens):
                quiet.append((line, money))
        self._count(end_ns, counts, served)
        claims = self.settlement.settle(end_ns, self.horizon_ns)
        fresh = self._book(end_ns, claims, line_totals)
        for line, money in quiet:  # a line new to tenants this tick has its quiet money in DIRECT already
            if line in self.tenants and line not in fresh:
                self._credit(line, end_ns, self.quiet_split(line.owner.model, money, end_ns, window_ns))
        self._slide(end_ns, window_ns)

    def _queue(self, line: Line, end_ns: int, money: Money, tokens: Pair) -> bool:
        """A served tick's money and tokens to the settlement; False for a quiet tick."""
        if tokens[0] <= 0 and tokens[1] <= 0:
            return False
        cost_in, cost_out, rest = money
        rest_in, rest_out = allocate(rest, [weight(max(tokens[0], 0.0)), weight(max(tokens[1], 0.0))])
        parts = [cost_in + rest_in, cost_out + rest_out]
        if tokens[INPUT] <= 0:  # money of a direction that served nothing goes with the other's tokens
            parts = [0, parts[0] + parts[1]]
        elif tokens[OUTPUT] <= 0:
            parts = [parts[0] + parts[1], 0]
        for direction in (INPUT, OUTPUT):
            if tokens[direction] > 0:
                self.settlement.add_batch(line, direction, end_ns, tokens[direction], parts[direction])
        return True

    def _count(self, end_ns: int, counts: Iterable[ModelDelta], served: frozenset[str]) -> None:
        per_model: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        for d in counts:
            model = served_name(d.owner.model, served)
            if model is None or (d.input_tokens <= 0 and d.output_tokens <= 0):
                continue
            tenant = self._admit(d.instance)
            pair = per_model.setdefault(model, ({}, {}))
            pair[INPUT][tenant] = pair[INPUT].get(tenant, 0.0) + max(d.input_tokens, 0.0)
            pair[OUTPUT][tenant] = pair[OUTPUT].get(tenant, 0.0) + max(d.output_tokens, 0.0)
        for model, pair in per_model.items():
            for direction in (INPUT, OUTPUT):
                self.settlement.add_counts(model, direction, end_ns, pair[direction])

    def _book(
        self, end_ns: int, claims: list[Claim], line_totals: Callable[[Line], tuple[int, float, float]]
    ) -> set[Line]:
        """The claims to their lines' tenants; the lines that got tenants this tick."""
        fresh: set[Line] = set()
        by_line: dict[Line, list[Claim]] = {}
        for c in claims:
            by_line.setdefault(c.line, []).append(c)
        waiting = self.settlement.pending() if any(x not in self.tenants for x in by_line) else {}
        for line, mine in by_line.items():
            if line not in self.tenants:
                if all(c.tenant == DIRECT for c in mine):
                    continue  # no gateway ever claimed this line's tokens: no tenants to show
                self.tenants[line] = _before(line_totals(line), waiting.get(line, (0, 0.0, 0.0)), mine)
                fresh.add(line)
            split: dict[str, TenantTotals] = {}
            for c in mine:
                t = split.setdefault(c.tenant, TenantTotals())
                t.cost += c.money
                if c.direction == INPUT:
                    t.input_tokens += c.tokens
                else:
                    t.output_tokens += c.tokens
                self._settled.setdefault(line.owner.model, deque()).append(
                    (end_ns, c.tenant, c.tokens if c.direction == INPUT else 0.0,
                     c.tokens if c.direction == OUTPUT else 0.0))  # fmt: skip
            self._credit(line, end_ns, split)
        return fresh

    def _credit(self, line: Line, end_ns: int, split: Mapping[str, TenantTotals]) -> None:
        totals = self.tenants[line]
        recent = self._recent.setdefault(line, deque())
        for tenant, t in split.items():
            acc = totals.setdefault(tenant, TenantTotals())
            acc.cost += t.cost
            acc.input_tokens += t.input_tokens
            acc.output_tokens += t.output_tokens
            recent.append((end_ns, tenant, t.cost, t.input_tokens + t.output_tokens))

    def quiet_split(self, model: str, money: Money, end_ns: int, window_ns: int) -> dict[str, TenantTotals]:
        """Money of a tick that served nothing: by the shares settled over the window (input money
        by input tokens, output by output, the rest by both), else over the span, else DIRECT."""
        settled = self._settled.get(model, deque())
        shares = _shares(x for x in settled if x[0] > end_ns - window_ns) or _shares(settled)
        names = sorted(shares)
        if not names:
            return {DIRECT: TenantTotals(sum(money))} if sum(money) else {}
        weights = [
            [Fraction(weight(shares[t][0])) for t in names],
            [Fraction(weight(shares[t][1])) for t in names],
            [Fraction(weight(shares[t][0] + shares[t][1])) for t in names],
        ]
        out: dict[str, TenantTotals] = {}
        for amount, w in zip(money, weights, strict=True):
            if not amount:
                continue
            # a direction no tenant's tokens settled in goes by all tokens (weights[2] has some)
            for name, part in zip(names, allocate(amount, w if any(w) else weights[2]), strict=True):
                if part:
                    out.setdefault(name, TenantTotals()).cost += part
        return out

    def _slide(self, end_ns: int, window_ns: int) -> None:
        for model in list(self._settled):
            settled = self._settled[model]
            while settled and settled[0][0] <= end_ns - QUIET_SPAN * window_ns:
                settled.popleft()
            if not settled:
                del self._settled[model]
        for line in list(self._recent):
            recent = self._recent[line]
            while recent and recent[0][0] <= end_ns - window_ns:
                recent.popleft()
            if not recent:
                del self._recent[line]

    def view(self, line: Line, waiting: Mapping[Line, tuple[int, float, float]]) -> TenantView:
        """``waiting``: ``settlement.pending()``, computed once per snapshot."""
        totals = self.tenants.get(line)
        if not totals:
            return NO_TENANTS
        money: dict[str, list[float]] = {}
        for _, tenant, nano, tokens in self._recent.get(line, ()):
            acc = money.setdefault(tenant, [0, 0.0])
            acc[0] += nano
            acc[1] += tokens
        return TenantView(
            {t: TenantTotals(x.cost, x.input_tokens, x.output_tokens) for t, x in totals.items()},
            waiting.get(line, (0, 0.0, 0.0))[0],
            {t: nano / 1e9 / tokens * 1e6 for t, (nano, tokens) in money.items() if tokens > 0},
        )

    def drop(self, lines: Iterable[Line]) -> None:
        """Lines retired by the ledger: their tenants and waiting money go with them."""
        gone = set(lines)
        self.settlement.drop_lines(gone)
        for line in gone:
            self.tenants.pop(line, None)
            self._recent.pop(line, None)

    def busy(self) -> bool:
        """Something waits in the settlement (served tokens or a gateway's counts): ticks must go on
        settling it, gateways configured or not, so it expires and is booked."""
        return bool(self.settlement.batches or self.settlement.credits)

    def _admit(self, tenant: str) -> str:
        if tenant in self.admitted:
            return tenant
        if len(self.admitted) < self.max_tenants:
            self.admitted.add(tenant)
            return tenant
        return OTHER_TENANTS


def _before(
    totals: tuple[int, float, float], waiting: tuple[int, float, float], claims: list[Claim]
) -> dict[str, TenantTotals]:
    """A line's money and tokens from before its first claim, as DIRECT: what it booked, less what
    still waits and what this tick's claims move, so its tenants and its waiting add up to its money."""
    cost = totals[0] - waiting[0] - sum(c.money for c in claims)
    tin = totals[1] - waiting[1] - sum(c.tokens for c in claims if c.direction == INPUT)
    tout = totals[2] - waiting[2] - sum(c.tokens for c in claims if c.direction == OUTPUT)
    return {DIRECT: TenantTotals(cost, tin, tout)} if cost or tin or tout else {}


def _shares(settled: Iterable[tuple[int, str, float, float]]) -> dict[str, Pair]:
    out: dict[str, list[float]] = {}
    for _, tenant, i, o in settled:
        acc = out.setdefault(tenant, [0.0, 0.0])
        acc[0] += i
        acc[1] += o
    return {t: (p[0], p[1]) for t, p in out.items() if p[0] or p[1]}


__all__ = ["DIRECT", "OTHER_TENANTS", "TenantBook", "TenantTotals", "TenantView", "served_name"]
