"""The spread of request cost: p50/p90/p99 from the servers' per-request token histograms.

A request's cost is its prompt tokens × the window's $ per prompt token plus its output
tokens × the window's $ per output token. Servers export the two lengths as separate
histograms, not their joint distribution, so a quantile of cost takes the same quantile
of each length (the comonotonic sum: exact when long prompts come with long outputs, and
always exact when one direction carries the money, as in disaggregated serving).
The $ per prompt token counts every prompt token (cache hits too), as the histogram
does: then the mean of the distribution is the window's $ per request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from exporter.records import Buckets

QUANTILES = (0.5, 0.9, 0.99)
Counts = dict[float, float]  # upper bound → observations in the bucket


class LengthWindow:
    """The per-bucket request counts of prompt and output lengths over the window.

    A bound stays while some record in the window has it (empty buckets included): PromQL
    interpolates from the bound below, so dropping an empty bucket would move a quantile.
    """

    def __init__(self) -> None:
        self._records: deque[tuple[int, Buckets, Buckets]] = deque()
        self.prompt: Counts = {}
        self.output: Counts = {}
        self._refs: tuple[dict[float, int], dict[float, int]] = ({}, {})

    def add(self, end_ns: int, prompt: Iterable[Buckets], output: Iterable[Buckets], length_ns: int) -> None:
        """Add one tick's buckets (one tuple per model delta) and drop what left the window."""
        p, o = _merged(prompt), _merged(output)
        if p or o:
            self._records.append((end_ns, p, o))
            _shift(self.prompt, self._refs[0], p, 1)
            _shift(self.output, self._refs[1], o, 1)
        while self._records and self._records[0][0] <= end_ns - length_ns:
            _, old_p, old_o = self._records.popleft()
            _shift(self.prompt, self._refs[0], old_p, -1)
            _shift(self.output, self._refs[1], old_o, -1)

    def empty(self) -> bool:
        return not self._records


def _merged(parts: Iterable[Buckets]) -> Buckets:
    parts = [part for part in parts if part]
    if len(parts) <= 1:
        return parts[0] if parts else ()
    counts: Counts = {}
    for part in parts:
        for le, n in part:
            counts[le] = counts.get(le, 0.0) + n
    return tuple(counts.items())


def _shift(sums: Counts, refs: dict[float, int], buckets: Buckets, sign: int) -> None:
    for le, n in buckets:
        left = refs.get(le, 0) + sign
        if left:
            refs[le] = left
            # Counts are whole requests: float residue of adding and taking away is dropped.
            sums[le] = max(round(sums.get(le, 0.0) + sign * n, 6), 0.0)
        else:
            refs.pop(le, None)
            sums.pop(le, None)


def bucket_quantile(q: float, counts: Counts) -> float | None:
    """The ``q`` quantile of per-bucket counts, interpolated as PromQL's ``histogram_quantile``.

    Linear within the bucket holding the rank, the first bucket starting at 0; a rank in the
    +Inf bucket gives the highest finite bound. None without observations or finite bounds.
    Layouts merged from several servers keep each observation at its own upper bound.
    """
    return bucket_quantiles((q,), counts)[0]


def bucket_quantiles(qs: Sequence[float], counts: Counts) -> list[float | None]:
    """``bucket_quantile`` for each of ``qs``, sorting and summing the buckets once."""
    bounds = sorted(counts)
    total = sum(counts.values())
    if total <= 0 or not bounds or bounds[0] == float("inf"):
        return [None] * len(qs)
    return [_quantile(q * total, bounds, counts) for q in qs]


def _quantile(rank: float, bounds: list[float], counts: Counts) -> float | None:
    below, start = 0.0, 0.0
    for i, le in enumerate(bounds):
        n = counts[le]
        if le == float("inf"):
            return start  # the highest finite bound
        if below + n >= rank:
            if i == 0 and le <= 0:
                return le
            if n == 0:  # q = 0 on an empty bucket: PromQL's 0/0, no value
                return None
            return start + (le - start) * ((rank - below) / n)  # PromQL's order of operations
        below += n
        start = le
    return start


def cost_quantiles(
    usd_per_prompt_token: float | None,
    usd_per_output_token: float | None,
    window: LengthWindow,
    quantiles: Sequence[float] = QUANTILES,
) -> tuple[tuple[float, float], ...]:
    """(quantile, USD) per quantile; () when a direction with money has no lengths or price.

    A price of None means the direction's money has no tokens to divide by; a price of 0
    (the direction cost nothing) needs no histogram.
    """
    lengths = []
    for price, counts in ((usd_per_prompt_token, window.prompt), (usd_per_output_token, window.output)):
        if price == 0:
            continue
        found = bucket_quantiles(quantiles, counts)
        if price is None or None in found:
            return ()
        lengths.append([price * length for length in found if length is not None])
    return tuple((q, sum(part[i] for part in lengths)) for i, q in enumerate(quantiles))
