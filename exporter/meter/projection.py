"""Where a training run is heading: its projected total cost and time to finish.

    remaining tokens   = target − tokens done (the job's own counter, whole run)
    projected total $  = $ so far + remaining tokens × ($ per token over the window)
    ETA                = remaining tokens ÷ (tokens per second over the window)

"$ so far" counts from when this exporter first saw the job. A multi-node job exports a
share per node; the fleet projection is PromQL over every node's counters.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Projection:
    target_tokens: float
    tokens_done: float
    projected_total_usd: float | None  # None: no tokens in the window to price the rest
    eta_seconds: float | None  # None: no progress in the window


def project(
    target: float,
    done: float,
    cost_so_far_usd: float,
    window_usd: float,
    window_tokens: float,
    window_s: float,
) -> Projection:
    remaining = max(target - done, 0.0)
    if remaining == 0:
        return Projection(target, done, cost_so_far_usd, 0.0)
    if window_tokens <= 0 or window_s <= 0:
        return Projection(target, done, None, None)
    per_token = window_usd / window_tokens
    rate = window_tokens / window_s
    return Projection(target, done, cost_so_far_usd + remaining * per_token, remaining / rate)
