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
from fractions import Fraction

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
class _Tick:
    end_ns: int
    tenants: dict[str, Pair]  # the gateways' tokens per tenant
    served: list[float] = field(default_factory=lambda: [0.0, 0.0])  # this node's servers' tokens


def _sums(ticks: Iterable[_Tick]) -> dict[str, Pair]:
    out: dict[str, list[float]] = {}
    for tick in ticks:
        for tenant, (i, o) in tick.tenants.items():
            pair = out.setdefault(tenant, [0.0, 0.0])
            pair[0] += i
            pair[1] += o
    return {t: (p[0], p[1]) for t, p in out.items()}


@dataclass(slots=True)
class _ModelWindow:
    """A model's ticks over the window (the tenants' shares) and over the longer span against which
    direct calls are measured (``DIRECT_SPAN`` windows)."""

    ticks: deque[_Tick] = field(default_factory=deque)
    span: deque[_Tick] = field(default_factory=deque)
    counted_ns: int = 0  # the last tick a gateway counted tokens of the model


def served_name(gateway_model: str, served: frozenset[str]) -> str | None:
    """The served model a gateway's model name stands for: the same name, or the name without its
    provider prefix ("hosted_vllm/llama" → "llama"); None when no server here serves it (the
    gateway also routes elsewhere). A config's explicit map was applied when it was read."""
    if gateway_model in served:
        return gateway_model
    _, slash, rest = gateway_model.partition("/")
    return rest if slash and rest in served else None


# Direct calls are measured over this many windows: a server counts tokens as it serves them, a gateway
# when it answers, so over one window a burst's tokens in flight would read as direct; over ten their
# weight is a tenth, and a gateway that saw everything catches up within the span.
DIRECT_SPAN = 10


class TenantShares:
    """The gateways' tokens per served model and tenant over the window, and the split they make."""

    def __init__(self, max_tenants: int = 200) -> None:
        self.max_tenants = max_tenants
        self._windows: dict[str, _ModelWindow] = {}
        self._tenants: set[str] = set()
        # (model, served) → (tenants, input, output, all weights): one per model and tick, not per line
        self._plans: dict[
            tuple[str, Pair], tuple[list[str], list[Fraction], list[Fraction], list[Fraction]]
        ] = {}

    def add(self, end_ns: int, window_ns: int, deltas: Iterable[ModelDelta], served: frozenset[str]) -> None:
        """One tick of the gateways' token deltas (``owner.model``: the gateway's model name;
        ``instance``: the tenant) for the models this node ``served`` (the rest is routed elsewhere),
        kept for ``window_ns``. A model the gateways counted before gets this tick too, empty, so what
        the node's servers serve meanwhile is set against it."""
        self._plans.clear()
        tick: dict[str, dict[str, list[float]]] = {model: {} for model in self._windows}
        for d in deltas:
            model = served_name(d.owner.model, served)
            if model is None:
                continue
            pair = tick.setdefault(model, {}).setdefault(self._admit(d.instance), [0.0, 0.0])
            pair[0] += d.input_tokens
            pair[1] += d.output_tokens
        for model, tenants in tick.items():
            counted = any(i or o for i, o in tenants.values())
            if model not in self._windows and not counted:
                continue  # a first reading (a baseline) says nothing of shares: no window yet
            window = self._windows.setdefault(model, _ModelWindow())
            entry = _Tick(end_ns, {t: (p[0], p[1]) for t, p in tenants.items()})
            window.ticks.append(entry)
            window.span.append(entry)
            if counted:
                window.counted_ns = end_ns
        for model in list(self._windows):
            window = self._windows[model]
            while window.ticks and window.ticks[0].end_ns <= end_ns - window_ns:
                window.ticks.popleft()
            while window.span and window.span[0].end_ns <= end_ns - DIRECT_SPAN * window_ns:
                window.span.popleft()
            if window.counted_ns <= end_ns - DIRECT_SPAN * window_ns:  # nothing counted within the span
                del self._windows[model]

    def add_served(self, model: str, tokens: Pair) -> None:
        """This tick's (input, output) tokens of ``model`` on this node's servers: measured against
        the gateways' over the same ticks only (not before a gateway counted the model)."""
        window = self._windows.get(model)
        if window is not None and window.span:
            self._plans.clear()
            window.span[-1].served[0] += tokens[0]
            window.span[-1].served[1] += tokens[1]

    def served(self, model: str) -> Pair:
        """The node's servers' tokens of ``model`` over the span."""
        window = self._windows.get(model)
        if window is None:
            return 0.0, 0.0
        return sum(t.served[0] for t in window.span), sum(t.served[1] for t in window.span)

    def knows(self, model: str) -> bool:
        """A gateway counted tokens of ``model`` within the span."""
        return model in self._windows

    def split(
        self, model: str, served: Pair, money: tuple[int, int, int], tokens: Pair
    ) -> dict[str, TenantTotals]:
        """This tick of one line of ``model``: ``money`` (input, output, rest in nano-dollars) and
        ``tokens`` (input, output) to tenants. ``served``: this node's tokens of the model over the
        span (``served()``): what the gateways counted short of it is the direct part."""
        plan = self._plans.get((model, served))
        if plan is None:
            plan = self._plans[(model, served)] = self._plan(model, served)
        names, w_in, w_out, w_all = plan
        cost_in, cost_out, rest = money
        parts = [_split(cost_in, w_in), _split(cost_out, w_out), _split(rest, w_all)]
        tok_in, tok_out = _split_tokens(tokens[0], w_in), _split_tokens(tokens[1], w_out)
        out: dict[str, TenantTotals] = {}
        for k, name in enumerate(names):
            cost = parts[0][k] + parts[1][k] + parts[2][k]
            if cost or tok_in[k] or tok_out[k]:
                out[name] = TenantTotals(cost, tok_in[k], tok_out[k])
        return out

    def _plan(
        self, model: str, served: Pair
    ) -> tuple[list[str], list[Fraction], list[Fraction], list[Fraction]]:
        """The tenants (DIRECT last) and their weights for input, output and other money."""
        window = self._windows.get(model)
        shares = _sums(window.ticks) if window is not None else {}
        if window is not None and not any(i or o for i, o in shares.values()):
            shares = _sums(window.span)  # quiet for a window: the span's shares
        counted = _sums(window.span) if window is not None else {}
        tenants = sorted(shares)
        gateway = [sum(p[k] for p in counted.values()) for k in (0, 1)]
        return (
            [*tenants, DIRECT],
            _weights([shares[t][0] for t in tenants], served[0], gateway[0]),
            _weights([shares[t][1] for t in tenants], served[1], gateway[1]),
            _weights([shares[t][0] + shares[t][1] for t in tenants], served[0] + served[1], sum(gateway)),
        )

    def _admit(self, tenant: str) -> str:
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < self.max_tenants:
            self._tenants.add(tenant)
            return tenant
        return OTHER_TENANTS


def _weights(shares: list[float], served: float, counted: float) -> list[Fraction]:
    """The tenants' shares scaled to the part the gateways counted, then the direct part: the
    servers' tokens the gateways did not count (``served - counted``, never below 0), as a share."""
    total = Fraction(sum(weight(x) for x in shares))
    direct = (
        Fraction(0)
        if served <= 0
        else max(Fraction(0), 1 - Fraction(weight(counted)) / Fraction(weight(served)))
    )
    if not total:
        return [Fraction(0)] * len(shares) + [Fraction(1)]
    return [Fraction(weight(x)) / total * (1 - direct) for x in shares] + [direct]


def _split(amount: int, weights: list[Fraction]) -> list[int]:
    """``amount`` by ``weights``, exactly; nothing to weigh by: all to the last (``DIRECT``)."""
    if not amount or not any(weights):
        return [0] * (len(weights) - 1) + [amount]
    return allocate(amount, weights)


def _split_tokens(amount: float, weights: list[Fraction]) -> list[float]:
    """Tokens by ``weights``: whole tokens into whole parts that add up exactly."""
    if amount == int(amount) and amount >= 0:
        return [float(n) for n in _split(int(amount), weights)]
    total = sum(weights)
    if total <= 0:
        return [0.0] * (len(weights) - 1) + [amount]
    return [float(amount * w / total) for w in weights]


def add_to(totals: dict[str, TenantTotals], tick: Mapping[str, TenantTotals]) -> None:
    """Book one tick's split into a line's cumulative per-tenant totals."""
    for tenant, t in tick.items():
        acc = totals.setdefault(tenant, TenantTotals())
        acc.cost += t.cost
        acc.input_tokens += t.input_tokens
        acc.output_tokens += t.output_tokens
