"""The four exposition writers the engines use, each matching its reference payload's style.

* ``client_python``: the real ``prometheus_client`` (vLLM, SGLang). Metric families rather
  than Counter objects, so that ``_created`` shows the simulator's clock and a scrape can
  carry values a Counter would refuse (NaN, a negative count, float noise).
* ``metrics_rs``: metrics-exporter-prometheus 0.15 (TGI): counters as integers without
  ``_total``, a blank line after every family, ``le`` last, f64 as Rust prints it.
* ``prometheus_cpp``: prometheus-cpp 1.0 (Triton): labels sorted, ``_count`` and ``_sum``
  before the buckets, 16 significant digits, ``Nan``.
* ``llamacpp``: hand-written, C++ iostream default precision (6 significant digits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tests.groundtruth.ir import Family, Labels, Series

# How prometheus_client prints a bucket bound ("1.0", "+Inf"); the library leaves it untyped.
go_float: Callable[[float], str] = floatToGoString


class _Families(Collector):
    def __init__(self, families: Sequence[Family]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield _metric(family)


def _metric(family: Family) -> Metric:
    names = [k for k, _ in family.series[0].labels] if family.series else []
    metric: Metric
    if family.kind == "counter":
        metric = CounterMetricFamily(family.name, family.help, labels=names)
        for s in family.series:
            metric.add_metric([v for _, v in s.labels], s.value, created=s.created)
    elif family.kind == "gauge":
        metric = GaugeMetricFamily(family.name, family.help, labels=names)
        for s in family.series:
            metric.add_metric([v for _, v in s.labels], s.value)
    else:
        metric = HistogramMetricFamily(family.name, family.help, labels=names)
        for s in family.series:
            buckets = [(go_float(le), n) for le, n in s.buckets]
            metric.add_metric([v for _, v in s.labels], buckets, s.value)
            if s.created is not None:  # Histogram children print it too; the family API has no field
                metric.add_sample(family.name + "_created", dict(s.labels), s.created)
    return metric


def client_python(families: Sequence[Family]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def _label_text(lbl: Labels, le: str = "") -> str:
    pairs = [f'{k}="{v}"' for k, v in lbl] + ([f'le="{le}"'] if le else [])
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _rust_f64(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)  # Rust's Display is the shortest round-trip form too, but "4095" for 4095.0
    return text[:-2] if text.endswith(".0") else text


def metrics_rs(families: Sequence[Family]) -> str:
    lines: list[str] = []
    for f in families:
        if f.help:
            lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for s in f.series:
            lines.extend(_metrics_rs_series(f, s))
        lines.append("")
    return "\n".join(lines) + "\n"


def _metrics_rs_series(f: Family, s: Series) -> Iterable[str]:
    if f.kind != "histogram":
        return [f"{f.name}{_label_text(s.labels)} {_rust_f64(s.value)}"]
    out = [f"{f.name}_bucket{_label_text(s.labels, _rust_f64(le))} {_rust_f64(n)}" for le, n in s.buckets]
    out.append(f"{f.name}_sum{_label_text(s.labels)} {_rust_f64(s.value)}")
    out.append(f"{f.name}_count{_label_text(s.labels)} {_rust_f64(s.count)}")
    return out


def _cpp_double(v: float) -> str:
    if math.isnan(v):
        return "Nan"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.16g}"


def prometheus_cpp(families: Sequence[Family]) -> str:
    lines: list[str] = []
    for f in families:
        if not f.series:  # prometheus-cpp omits a family without series
            continue
        lines += [f"# HELP {f.name} {f.help}", f"# TYPE {f.name} {f.kind}"]
        for s in f.series:
            if f.kind != "histogram":
                lines.append(f"{f.name}{_label_text(s.labels)} {_cpp_double(s.value)}")
                continue
            lines.append(f"{f.name}_count{_label_text(s.labels)} {_cpp_double(s.count)}")
            lines.append(f"{f.name}_sum{_label_text(s.labels)} {_cpp_double(s.value)}")
            for le, n in s.buckets:
                lines.append(f"{f.name}_bucket{_label_text(s.labels, _cpp_double(le))} {_cpp_double(n)}")
    return "\n".join(lines) + "\n"


def six_digits(v: float) -> float:
    """A value as llama.cpp prints it (``std::ostream`` default precision), read back."""
    return float(f"{v:g}")


def llamacpp(families: Sequence[Family]) -> str:
    lines: list[str] = []
    for f in families:
        lines += [f"# HELP {f.name} {f.help}", f"# TYPE {f.name} {f.kind}"]
        lines += [f"{f.name} {s.value:g}" for s in f.series]  # nan, inf: as iostream prints them
    return "\n".join(lines) + "\n"
