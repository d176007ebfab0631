"""Idle burn by reason: which part of the GPU money bought no work, and why.

Users ask which idle they can fix: a GPU nobody holds (``unallocated``: scale the node pool),
a held GPU whose server served nothing (``no_traffic``: scale the deployment down), or one
serving but mostly waiting (``starved``: batch more, or share the GPU). The amounts are a
subset of the line's money, never added to it: conservation is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.meter.attribution import Line

GPU_COMPONENTS = ("gpu", "overhead", "energy")  # what the GPU time itself cost
IDLE_REASONS = ("unallocated", "exporter_down", "no_traffic", "starved")


def idle_cost(
    line: Line,
    charges: Mapping[str, int],
    time: tuple[int, int, int] | list[int],
    tokens: float,
    tokens_read: bool,
    starved_below: float,
    unheld: str = "unallocated",
) -> tuple[str, int] | None:
    """(reason, nano-dollars) of this line's tick money that bought idle GPU time, or None.

    ``time`` is (held, busy, measured) ns. ``tokens`` are the line's tokens over the window, not
    the tick: a training job adding its tokens once per 30-s step is not idle between steps.
    ``tokens_read``: the pod's token counters were read this tick; without them "no traffic"
    cannot be told from "not measured", so it is not claimed. A GPU the measured utilisation
    says is busy is never idle, whatever the counters say.
    """
    money = sum(charges.get(c, 0) for c in GPU_COMPONENTS)
    if not money:
        return None
    if line.owner.is_idle:
        return unheld, money
    held, busy, measured = time
    if measured > 0 and busy >= starved_below * measured:
        return None  # busy enough by its own measurement
    if tokens_read and tokens <= 0:
        return "no_traffic", money
    if measured <= 0 or held <= 0:
        return None
    # Only the unbusy part of the measured time is idle; floor keeps it ≤ the money.
    return "starved", money * (measured - busy) // held
