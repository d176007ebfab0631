"""A shared model's money to the teams that called it through a gateway (chargeback per tenant).

A model line's money (the pod's share, as every line's) goes to the gateway's tenants by their
token shares of that model over the window: input money by input tokens, output money by output
tokens, the rest (money no direction claims) by all tokens. Tokens this node's servers counted that
the gateway did not (direct calls) are the remainder ``DIRECT``: their money stays with the pod's
own team. Every nano-dollar lands on exactly one tenant (largest remainder).

Why the window, not the tick: a gateway counts a request's tokens when it answers, a server as it
serves; one tick's counts disagree, a window's agree up to the requests in flight at its edges.
A quiet tick (nothing served) follows the window's shares like a busy one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.meter.money import allocate, weight
from exporter.meter.tokens import ModelDelta

DIRECT = "__direct__"  # tokens the gateway did not see: the pod's own team keeps their money
OTHER_TENANTS = "__other__"  # tenants past the cap, their money kept
Pair = tuple[float, float]  # (input tokens, output tokens)


@dataclass(slots=True)
class TenantTotals:
    """Cumulative per (line, tenant); only ever grows."""

    cost: int = 0  # nano-dollars
    input_tokens: float = 0.0
    output_tokens: float = 0.0


@dataclass(slots=True)
class _ModelWindow:
    ticks: deque[tuple[int, dict[str, Pair]]] = field(default_factory=deque)

    def sums(self) -> dict[str, Pair]:
        out: dict[str, list[float]] = {}
        for _, tenants in self.ticks:
            for tenant, (i, o) in tenants.items():
                pair = out.setdefault(tenant, [0.0, 0.0])
                pair[0] += i
                pair[1] += o
        return {t: (p[0], p[1]) for t, p in out.items()}


class TenantShares:
    """The gateways' tokens per served model and tenant over the window, and the split they make."""

    def __init__(self, max_tenants: int = 200) -> None:
        self.max_tenants = max_tenants
        self._windows: dict[str, _ModelWindow] = {}
        self._tenants: set[str] = set()

    def add(self, end_ns: int, window_ns: int, deltas: Iterable[ModelDelta]) -> None:
        """One tick of the gateways' token deltas (``owner.model``: the served model;
        ``instance``: the tenant), kept for ``window_ns``."""
        tick: dict[str, dict[str, list[float]]] = {}
        for d in deltas:
            tenant = self._admit(d.instance)
            pair = tick.setdefault(d.owner.model, {}).setdefault(tenant, [0.0, 0.0])
            pair[0] += d.input_tokens
            pair[1] += d.output_tokens
        for model, tenants in tick.items():
            window = self._windows.setdefault(model, _ModelWindow())
            window.ticks.append((end_ns, {t: (p[0], p[1]) for t, p in tenants.items()}))
        for model in list(self._windows):
            ticks = self._windows[model].ticks
            while ticks and ticks[0][0] <= end_ns - window_ns:
                ticks.popleft()
            if not ticks:
                del self._windows[model]

    def knows(self, model: str) -> bool:
        """A gateway counted tokens of ``model`` within the window."""
        return model in self._windows

    def split(
        self, model: str, served: Pair, money: tuple[int, int, int], tokens: Pair
    ) -> dict[str, TenantTotals]:
        """This tick of one line of ``model``: ``money`` (input, output, rest in nano-dollars) and
        ``tokens`` (input, output) to tenants. ``served``: this node's tokens of the model over the
        window (what its servers counted), against which the gateway's are measured."""
        shares = self._windows[model].sums() if model in self._windows else {}
        direct = (max(served[0] - sum(p[0] for p in shares.values()), 0.0),
                  max(served[1] - sum(p[1] for p in shares.values()), 0.0))  # fmt: skip
        tenants = sorted(shares)
        names = [*tenants, DIRECT]
        w_in = [*(shares[t][0] for t in tenants), direct[0]]
        w_out = [*(shares[t][1] for t in tenants), direct[1]]
        w_all = [i + o for i, o in zip(w_in, w_out, strict=True)]
        cost_in, cost_out, rest = money
        parts = [_split(cost_in, w_in), _split(cost_out, w_out), _split(rest, w_all)]
        tok_in, tok_out = _split_tokens(tokens[0], w_in), _split_tokens(tokens[1], w_out)
        out: dict[str, TenantTotals] = {}
        for k, name in enumerate(names):
            cost = parts[0][k] + parts[1][k] + parts[2][k]
            if cost or tok_in[k] or tok_out[k]:
                out[name] = TenantTotals(cost, tok_in[k], tok_out[k])
        return out

    def _admit(self, tenant: str) -> str:
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < self.max_tenants:
            self._tenants.add(tenant)
            return tenant
        return OTHER_TENANTS


def _split(amount: int, weights: list[float]) -> list[int]:
    """``amount`` by ``weights``, exactly; nothing to weigh by: all to the last (``DIRECT``)."""
    exact = [weight(w) for w in weights]
    if not amount or not any(exact):
        return [0] * (len(weights) - 1) + [amount]
    return allocate(amount, exact)


def _split_tokens(amount: float, weights: list[float]) -> list[float]:
    """Tokens by ``weights``: whole tokens into whole parts that add up exactly."""
    if amount == int(amount) and amount >= 0:
        return [float(n) for n in _split(int(amount), weights)]
    total = sum(weights)
    if total <= 0:
        return [0.0] * (len(weights) - 1) + [amount]
    return [amount * w / total for w in weights]


def add_to(totals: dict[str, TenantTotals], tick: Mapping[str, TenantTotals]) -> None:
    """Book one tick's split into a line's cumulative per-tenant totals."""
    for tenant, t in tick.items():
        acc = totals.setdefault(tenant, TenantTotals())
        acc.cost += t.cost
        acc.input_tokens += t.input_tokens
        acc.output_tokens += t.output_tokens
