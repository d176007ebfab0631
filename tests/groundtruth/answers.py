"""Faults: how one scrape's answer departs from the good body, and the HTTP answer it makes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tests.groundtruth.engines import Engine
from tests.groundtruth.ir import Family, Series

TEXT = "text/plain; version=0.0.4; charset=utf-8"
SLOW_S = 1.0  # longer than the client's timeout; the server stops waiting when it closes
NOISE = 1e-9  # 12345 printed as 12344.999999999
NOISE_FLOOR = 1000.0  # noise only on values where it is far below the exporter's tolerance
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>\n"
BINARY = bytes(range(256)) * 4  # not UTF-8, not text


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str = "good"  # record.READABLE or record.FAILURES
    family: str = ""  # missing_family / noise: which family ("" → the engine's first eligible)


GOOD = Fault()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Applied:
    kind: str  # the fault that took effect ("good" when it found nothing to act on)
    shown: list[Family]  # the families served, with their meant values
    printed: list[Family]  # the same with the values actually printed
    detail: str = ""  # the family acted on


def apply(fault: Fault, families: list[Family], engine: Engine) -> Applied:
    kind = fault.kind
    if kind == "missing_family":
        name = fault.family or engine.missable[0]
        shown = [f for f in families if f.name != name]
        return Applied(kind, shown, shown, name)
    edit = _editor(fault, engine)
    if edit is None:
        return Applied(kind, families, families)
    names, pick, new_value = edit
    edited = _edit_first(families, names, pick, new_value)
    if edited is None:  # nothing to act on: a NaN with no counter yet, noise on small values
        return Applied("good" if kind in ("noise", "gauge_nan") else "http_500", families, families)
    return Applied(kind, families, edited[0], edited[1])


Edit = tuple[Sequence[str], Callable[[Series], bool], Callable[[float], float]]


# A counter the exporter must refuse, made from its good value.
POISON: dict[str, Callable[[float], float]] = {
    "nan_counter": lambda v: math.nan,
    "inf_counter": lambda v: math.inf,
    "negative_counter": lambda v: -(v + 1.0),
}


def _read(s: Series) -> bool:
    return bool(s.keys or s.count_keys)


def _noisy(s: Series) -> bool:
    return bool(s.keys) and s.value >= NOISE_FLOOR


def _editor(fault: Fault, engine: Engine) -> Edit | None:
    if fault.kind == "noise":
        names = [fault.family] if fault.family else engine.noise_families
        return names, _noisy, lambda v: v - NOISE
    if fault.kind == "gauge_nan":
        return [engine.gauge_family], lambda s: True, lambda v: math.nan
    if fault.kind in POISON:
        return [engine.poison_family], _read, POISON[fault.kind]
    return None


def _edit_first(
    families: list[Family],
    names: Sequence[str],
    pick: Callable[[Series], bool],
    new: Callable[[float], float],
) -> tuple[list[Family], str] | None:
    """The families with ``new`` applied to the first series picked in ``names`` (a gauge: all),
    and the name of the family edited."""
    for i, family in enumerate(families):
        if family.name not in names:
            continue
        every = family.kind == "gauge"
        hits = [j for j, s in enumerate(family.series) if pick(s)]
        if not hits:
            continue
        chosen = set(hits if every else hits[:1])
        series = tuple(
            replace(s, value=new(s.value)) if j in chosen else s for j, s in enumerate(family.series)
        )
        return [*families[:i], replace(family, series=series), *families[i + 1 :]], family.name
    return None


def answer(kind: str, body: str) -> Answer:
    """The HTTP answer of a scrape of this kind, ``body`` being the (possibly faulty) payload."""
    data = body.encode()
    if kind == "http_500":
        return Answer(500, "text/plain", b"Internal Server Error\n")
    if kind == "slow":
        return Answer(200, TEXT, data, delay_s=SLOW_S)
    if kind == "html":
        return Answer(200, "text/html; charset=utf-8", HTML)
    if kind == "binary":
        return Answer(200, "application/octet-stream", BINARY)
    if kind == "truncated":  # cut inside a line: the body no longer ends with a newline
        cut = len(data) // 2
        while data[cut - 1 : cut] == b"\n":
            cut -= 1
        return Answer(200, TEXT, data[:cut])
    return Answer(200, TEXT, data)
