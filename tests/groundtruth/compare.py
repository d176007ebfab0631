"""Every difference between the exporter's run and the ideal scraper, as readable lines."""

from __future__ import annotations

import math

from tests.groundtruth.exporter_run import ExporterRun
from tests.groundtruth.ideal import Ideal, LineKey
from tests.groundtruth.ir import QUANTITIES
from tests.groundtruth.record import Record

REL = 1e-12


def differences(record: Record, ideal: Ideal, run: ExporterRun) -> list[str]:
    return [*_outcomes(record, run), *_lines(ideal, run), *_totals(ideal, run)]


def _outcomes(record: Record, run: ExporterRun) -> list[str]:
    out = []
    for name, target in record.targets.items():
        for s in target.served:
            got = run.read.get((s.tick, name))
            if got is not None and got != s.readable:
                why = run.errors.get((s.tick, name), "read it" if got else "did not read it")
                if why == "timeout" and s.readable:
                    why += " (a loopback answer took longer than the client's timeout: machine too busy?)"
                out.append(f"tick {s.tick} {name}: served {s.kind} (readable={s.readable}), exporter: {why}")
    return out


def _lines(ideal: Ideal, run: ExporterRun) -> list[str]:
    out = []
    lines = set(ideal.known) | set(run.known)
    for line in sorted(lines):
        if line not in run.known:
            out.append(f"{_name(line)}: no exporter line; the ideal has {sorted(ideal.known[line])}")
            continue
        ideal_unknown, run_unknown = ideal.unknown(line), set(QUANTITIES) - run.known[line]
        if ideal_unknown != run_unknown:
            out.append(
                f"{_name(line)}: unknown quantities: exporter {sorted(run_unknown)}, ideal {sorted(ideal_unknown)}"
            )
    return out


def _totals(ideal: Ideal, run: ExporterRun) -> list[str]:
    out = []
    for key in sorted(set(ideal.counted) | set(run.counted)):
        target, (model, quantity) = key
        line = (target, model)
        if quantity in QUANTITIES and quantity in ideal.unknown(line):
            continue  # reported by _lines when the exporter disagrees
        want, got = ideal.counted.get(key, 0.0), run.counted.get(key, 0.0)
        if not math.isclose(want, got, rel_tol=REL, abs_tol=0.0):
            out.append(f"{_name(line)} {quantity}: exporter {got!r}, ideal {want!r} ({got - want:+g})")
    return out


def _name(line: LineKey) -> str:
    return f"{line[0]}/{line[1]}"
