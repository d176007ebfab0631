"""The meter: pure arithmetic on snapshots.

Rule: the meter never imports ``sources``, ``exposition`` or ``prometheus_client``, and
does no I/O (``lint-imports`` checks it). Money is integer nano-dollars; exact remainders are
carried, so rounding never drifts and every tick's bill is split so that Σ allocations + idle
= bill exactly.

    ledger.py       the Meter: one tick in over its parts, in order; a snapshot out
    tokens.py       token deltas per target and model: baselines, restarts, late series
    deltas.py       what one model served in one tick (ModelDelta), as the ledger books it
    attribution.py  GPU, node and pod money per holder, or idle
    modelsplit.py   a holder's money across its models; a pod's tokens across its GPU kinds; the owner cap
    booking.py      the book of lines: a line's tick into its totals and window, its money into
                    input and output; the bill, retention, the live gauges
    idle.py         which money bought idle time, and why
    windows.py      the live gauges over the window
    snapshot.py     what the exposition reads
    state.py        the books to and from the state file
    money.py, counters.py, proration.py, projection.py, request_cost.py: the arithmetic
"""
