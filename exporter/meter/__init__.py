"""The meter: pure arithmetic on snapshots.

Rule: the meter never imports ``sources``, ``exposition`` or ``prometheus_client``, and
does no I/O. Money is integer nano-dollars; exact remainders are carried, so rounding
never drifts and every tick's bill is split so that Σ allocations + idle = bill exactly.
"""
