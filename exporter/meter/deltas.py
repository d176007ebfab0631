"""What one model served in one tick (``ModelDelta``): the token meter's output, which the ledger splits,
sums and books, and gateways' tenants claim. Its counted fields are records.QUANTITIES'."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.records import FIGURES, TOKEN_AMOUNTS, Buckets, Owner

# What a ModelDelta counts: the token amounts and the figures' sums (records.QUANTITIES).
AMOUNT_FIELDS = TOKEN_AMOUNTS + FIGURES


@dataclass(frozen=True, slots=True)
class ModelDelta:
    """What one model served in one tick, already attributed to its owner."""

    owner: Owner
    input_tokens: float = 0.0
    cached_input_tokens: float = 0.0  # part of input_tokens the server served from cache
    output_tokens: float = 0.0
    requests: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    itl_seconds: float = 0.0
    itl_count: float = 0.0
    running: float | None = None  # LEVELS: the gauges as read this tick (None: not read)
    waiting: float | None = None
    requests_by_reason: tuple[tuple[str, float], ...] = ()  # finished this tick, per reason
    itl_method: str = ""  # what itl_seconds / itl_count measure (the server's profile says)
    has_phase_time: bool = False  # the server exports prefill and decode time
    prompt_lengths: Buckets = ()  # requests finished this tick, per prompt-length bucket
    generation_lengths: Buckets = ()  # ... per output-length bucket
    # The COUNTERS the server exported this tick: a field never known is unknown, not 0.
    known: frozenset[str] = frozenset()
    accrued_s: float = 0.0  # the time these amounts accrued over (longer than a tick after an outage)
    instance: str = ""  # the counter set read (a vLLM engine; a gateway's tenant: meter/tenants.py)

    @property
    def computed_input_tokens(self) -> float:
        """Prompt tokens the GPU actually prefilled: what the input price is spread over."""
        return max(self.input_tokens - self.cached_input_tokens, 0.0)

    @property
    def tokens(self) -> float:
        return self.input_tokens + self.output_tokens
