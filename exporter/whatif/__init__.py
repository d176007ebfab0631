"""Offline projections: "what would a million tokens cost on this hardware, or on that one?"

Never imported by the live path (``runtime``, ``meter``, ``sources``, ``exposition``): these
modules answer questions asked at a keyboard, from flags, benchmark files and a dated table.

    calc.py        formulas: CPM, $/request, $/h, $/month, training run cost (pure, Decimal)
    benchmarks.py  operating points from vLLM / GenAI-Perf / AIPerf result JSON, or Prometheus
    table.py       the dated table of published throughput and cost (data/throughput-*.yaml)
    compare.py     measured hardware -> other hardware and capacity classes, interpolation
    render.py      table / json / csv, and the optional matplotlib plot
    command.py     the ``calc`` and ``compare`` subcommands (flags -> records -> render)

Money is ``Decimal`` throughout; floats appear only in JSON text and the plot.
"""

from __future__ import annotations

from exporter.errors import CpmError


class WhatIfError(CpmError):
    """Bad input to ``calc`` or ``compare``; the message says what was expected."""
