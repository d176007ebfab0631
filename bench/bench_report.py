"""``cpm-exporter report``'s arithmetic at fleet scale, without a store: exact increases and grouped rows.

Builds the raw samples a store would return for N nodes (each: 60 lines × 3 cost components + the
bill, as the bench_tick node exports them), one sample every 5 s for an hour, fed chunk by chunk as
``collect`` does, then ``build`` (rows by team and model, the reconciliation). Prints samples/s for the
increases and the build's time; the store's own query time is bench_fleet's business.

    .venv/bin/python bench/bench_report.py --nodes 10 100
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from exporter.report.increase import Increases
from exporter.report.rows import METRICS, Period, build

STEP_S, HOUR = 5.0, 3600.0


def series(node: int) -> list[tuple[str, tuple[tuple[str, str], ...], Decimal]]:
    """(metric, labels, $ per sample) of one node's cost lines and its bill."""
    out = []
    total = Decimal(0)
    for k in range(60):
        line = {"node": f"node-{node}", "namespace": f"ns-{k % 12}", "pod": f"pod-{k}", "team": f"team-{k % 12}",
                "model": f"model-{k % 15}", "workload": "inference", "hardware": "H100", "capacity_class": "on_demand"}  # fmt: skip
        for component, usd in (
            ("gpu", Decimal("0.00625")),
            ("overhead", Decimal("0.0003125")),
            ("storage", Decimal("0.0000123")),
        ):
            out.append(
                (
                    "cpm_cost_usd_total",
                    tuple(sorted({**line, "component": component, "__name__": "cpm_cost_usd_total"}.items())),
                    usd,
                )
            )
            total += usd
    out.append(("cpm_bill_usd_total", (("__name__", "cpm_bill_usd_total"), ("node", f"node-{node}")), total))
    return out


def run(nodes: int) -> None:
    periods = [Period(0.0, HOUR)]
    inc = {m: Increases([0.0, HOUR]) for m in METRICS}
    everything = [s for n in range(nodes) for s in series(n)]
    samples, fed = 0, 0.0
    for chunk in range(6):  # ten-minute chunks, like --chunk 10m
        a = chunk * 600.0
        for metric, labels, usd in everything:
            points = [(a + STEP_S * (i + 1), usd * int((a + STEP_S * (i + 1)) / STEP_S)) for i in range(120)]
            began = time.process_time()  # the increases alone, not making the samples
            inc[metric].add(labels, points)
            fed += time.process_time() - began
            samples += len(points)
    began = time.process_time()
    report = build(periods, ("team", "model"), inc)
    built = time.process_time() - began
    assert report.reconciled
    print(f"{nodes:>5} nodes: {len(everything):>7} series, {samples:>10,} samples: increases {samples / fed:,.0f} "
          f"samples/s CPU ({fed:.2f} s), build {built * 1000:.0f} ms, {len(report.rows)} rows, reconciled")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    for n in parser.parse_args().nodes:
        run(n)


if __name__ == "__main__":
    main()
