"""Load the exporter's YAML config into frozen records, collecting every problem at once.

The file format (every field is optional unless marked *required*)::

    node: gpu-node-1            # node label value; default "node"
    tick_seconds: 5             # > 0, <= 300
    window_seconds: 60          # window of the live gauges; >= tick_seconds, <= 86400
    max_owners: 2000            # cardinality cap (owners beyond it fold into __overflow__), >= 1
    limits: {scrape_timeout_seconds: 2, max_body_bytes: 33554432, max_samples: 500000, max_series: 20000}
                                # timeout <= tick_seconds so one slow target cannot stall a tick
    state_file: /var/lib/cpm-exporter/state.json   # default: none (a restart starts from zero)
    state_max_gap_seconds: 3600 # a longer downtime is billed idle (exporter_down), not to holders
    pricing:
      currency: USD             # the only currency; stated so a file in EUR fails loudly
      catalogue: true           # false: every used price must come from this file
      month: calendar           # or 730h: how $/GB-month is prorated per second
      gpus:                     # $/GPU-hour per hardware type and capacity class
        H100: {on_demand: 4.50, spot: 2.10, reserved: 2.90}   # classes: on_demand spot
                                # reserved contract owned
      owned:                    # owned GPUs: capex amortised linearly + energy
        H100: {capex_usd: 30000, amortisation_years: 4, watts: 700}
      energy: {usd_per_kwh: 0.12, pue: 1.3}
      egress_usd_per_gb: 0.09
      cross_zone_usd_per_gb: 0.01
      storage_usd_per_gb_month: 0.08
      support_uplift_percent: 10
      overhead: {usd_per_node_hour: 0.50, percent: 0}
      output_input_weight: 4    # token-weight fallback for the input/output split
      budgets:
        usd_per_million_tokens:
          models: {"meta-llama/Llama-3.3-70B-Instruct": 0.80}
          teams: {search: 1.00}
    inventory:
      gpus:                     # each entry: hardware, capacity (required), count or ids
        - {hardware: H100, count: 8, capacity: on_demand}   # ids "0".."7"
        - {hardware: H100, ids: ["8", "9"], capacity: spot, utilization: 0.5, power_watts: 500}
      workloads:
        - pod: llama-70b-0      # required
          namespace: search     # required
          team: search          # default: the namespace
          model: meta-llama/Llama-3.3-70B-Instruct   # required
          kind: inference       # or training
          role: unified         # or prefill / decode: disaggregated serving (money all input / output)
          target_tokens: 2e10    # training: tokens the run is meant to process (projection)
          gpus: ["0", "1"]      # or [{id: "0", share: 2}, ...] for time-sliced GPUs
          storage_gb: 200
          targets:
            - {url: "http://127.0.0.1:8001/metrics", server: auto, name: llama-70b-0}
            # training: {url: "file:///shared/cpm/job.prom", token_metric: myjob_tokens_total}
            # LoRA: {url: ..., adapter_label: lora}: tokens labelled lora="sql" count as model sql
            # TLS: {url: "https://10.0.0.7:8443/metrics", https: {ca_file: /etc/cpm/ca.crt, server_name: vllm.internal}}

Rules worth knowing:

- Numbers are read from the YAML *text* into exact ``Decimal`` (never float): ``0.1``,
  ``.5``, ``1e-12`` (which plain PyYAML reads as a string!) and ``2.5E3`` are numbers;
  ``"0.1"`` (quoted), ``.nan``, ``.inf``, ``true``, ``0x10``, ``010`` and ``1_000`` are refused.
  Money fields take at most 9 decimal places: the meter keeps whole nano-dollars.
- A ``count`` entry numbers its GPUs by position in the inventory: the n-th GPU listed gets
  id ``"n-1"``, so a later ``count`` entry continues where the earlier entries stopped.
  GPU ids may be written ``0`` or ``"0"``; they must be unique.
- A workload GPU listed by id alone has share 1. Several workloads may list one GPU
  (time-slicing); its cost splits by the shares.
- Every inventory GPU needs a price for its (hardware, capacity): ``pricing.gpus``, then
  ``pricing.owned`` (capacity ``owned``), then, if ``catalogue: true``, the dated catalogue
  (logged as a WARNING and marked in ``check-config``), else it is an error.
- Refused anywhere: duplicate keys, unknown fields (with a "did you mean"), aliases,
  anchors, explicit tags, files over 1 MiB. All problems are reported together in one
  ``ConfigError`` as ``path (line N): message``.

The catalogue (``pricing.catalogue``), the inventory section (``config.inventory``) and the
``check-config`` table (``pricing.table``) live in their own modules; their public names are
re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from yaml.nodes import Node

from exporter.config.gateways import read_gateways
from exporter.config.inventory import MAX_GPUS as MAX_GPUS
from exporter.config.inventory import LocatedGpu, read_gpus, read_workloads
from exporter.config.inventory import known_servers as known_servers
from exporter.config.kube import read_kubernetes
from exporter.config.node import read_node_source
from exporter.config.schema import ExporterConfig, ScrapeLimits
from exporter.errors import ConfigError
from exporter.pricing import table
from exporter.pricing.catalogue import CATALOGUE_PREFIX as CATALOGUE_PREFIX
from exporter.pricing.catalogue import Catalogue as Catalogue
from exporter.pricing.catalogue import CatalogueFact as CatalogueFact
from exporter.pricing.catalogue import CatalogueRow as CatalogueRow
from exporter.pricing.catalogue import fact_date as fact_date
from exporter.pricing.catalogue import load_catalogue as load_catalogue
from exporter.pricing.catalogue import parse_catalogue as parse_catalogue
from exporter.pricing.prices import (
    MONTH_CONVENTIONS,
    ZERO,
    Budgets,
    Energy,
    GpuPrice,
    Overhead,
    OwnedHardware,
    PricingConfig,
)
from exporter.records import CAPACITY_CLASSES
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, choice_reader, key_path, number_reader, text_reader

log = logging.getLogger(__name__)

_TOP = (
    "node",
    "tick_seconds",
    "window_seconds",
    "max_owners",
    "limits",
    "pricing",
    "inventory",
    "node_source",
    "kubernetes",
    "state_file",
    "state_max_gap_seconds",
    "gateways",
    "max_tenants",
)
_LIMITS = ("scrape_timeout_seconds", "max_body_bytes", "max_samples", "max_series")
_PRICING = (
    *("currency", "catalogue", "month", "gpus", "owned", "energy", "egress_usd_per_gb"),
    *("cross_zone_usd_per_gb", "storage_usd_per_gb_month", "support_uplift_percent", "overhead"),
    *("output_input_weight", "budgets"),
)


def load_config(path: str | Path) -> ExporterConfig:
    """Read, parse and validate a config file; raise one ``ConfigError`` listing every problem."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(yn.MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"document: cannot read: {exc.strerror or exc}"], source) from exc
    if len(data) > yn.MAX_BYTES:
        raise ConfigError([f"document: is larger than {yn.MAX_BYTES} bytes (1 MiB)"], source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"document: is not UTF-8 (byte {exc.start})"], source) from exc
    return _load(text, data, source)


def load_config_text(text: str, source: str = "<string>") -> ExporterConfig:
    """Like ``load_config`` for text in memory (tests, the embedded demo)."""
    return _load(text, text.encode("utf-8", "surrogatepass"), source)


def _load(text: str, data: bytes, source: str) -> ExporterConfig:
    problems = Problems()
    root = yn.compose(text, problems)
    cfg = _read_root(problems, root) if root is not None else None
    if problems or cfg is None:
        raise ConfigError(problems.report() or ["document: unusable"], source)
    return replace(cfg, path=source, sha256=hashlib.sha256(data).hexdigest())


def _read_root(p: Problems, root: Node) -> ExporterConfig | None:
    top = yn.fields(p, root, "", _TOP)
    if top is None:
        return None
    # A DaemonSet shares one config across nodes: each names itself from the downward API.
    node = yn.optional(top, "node", "", text_reader(p), os.environ.get("NODE_NAME") or "node")
    tick = yn.optional(top, "tick_seconds", "", number_reader(p, gt=ZERO, le=Decimal(300)), Decimal(5))
    window = yn.optional(top, "window_seconds", "", number_reader(p, gt=ZERO, le=Decimal(86400)), Decimal(60))
    if window < tick:
        p.add("window_seconds", top.get("window_seconds", root), f"must be >= tick_seconds ({tick})")
    max_owners = yn.optional(top, "max_owners", "", lambda at, n: yn.integer(p, n, at, ge=1), 2000)
    max_tenants = yn.optional(top, "max_tenants", "", lambda at, n: yn.integer(p, n, at, ge=1), 200)
    limits = _read_limits(p, top.get("limits"), tick)
    own = _read_pricing(p, top.get("pricing"))
    inventory = (
        yn.fields(p, top["inventory"], "inventory", ("gpus", "workloads")) if "inventory" in top else {}
    )
    node_source = read_node_source(p, top.get("node_source"), tick)
    located, gpu_ids = read_gpus(p, (inventory or {}).get("gpus"))
    # GPUs found at run time have ids (UUIDs, indexes) the file cannot be checked against.
    gpu_ids = gpu_ids if inventory is not None and node_source.gpus == "inventory" else None
    gpus = tuple(gpu for gpu, _, _ in located)
    workloads = read_workloads(p, (inventory or {}).get("workloads"), gpu_ids)
    pricing = _resolve_prices(p, own, located)
    state_file = yn.optional(top, "state_file", "", text_reader(p), "")
    max_gap = yn.optional(top, "state_max_gap_seconds", "", number_reader(p, gt=ZERO), Decimal(3600))
    return ExporterConfig(
        pricing=pricing,
        node=node,
        tick_seconds=float(tick),
        window_seconds=float(window),
        limits=limits,
        gpus=gpus,
        workloads=workloads,
        max_owners=max_owners,
        node_source=node_source,
        kubernetes=read_kubernetes(p, top.get("kubernetes")),
        state_file=state_file,
        state_max_gap_seconds=float(max_gap),
        gateways=read_gateways(p, top.get("gateways")),
        max_tenants=max_tenants,
    )


def _read_limits(p: Problems, node: Node | None, tick: Decimal) -> ScrapeLimits:
    m = yn.fields(p, node, "limits", _LIMITS) if node is not None else None
    default = ScrapeLimits()
    if m is None:  # the default timeout never exceeds the tick either
        return ScrapeLimits(timeout_seconds=min(default.timeout_seconds, float(tick)))
    timeout = yn.optional(
        m,
        "scrape_timeout_seconds",
        "limits",
        number_reader(p, gt=ZERO),
        Decimal(str(default.timeout_seconds)),
    )
    if timeout > tick:  # a target slower than a tick would stall the meter
        p.add(
            "limits.scrape_timeout_seconds", m.get("scrape_timeout_seconds", node), "must be <= tick_seconds"
        )
    body = yn.optional(m, "max_body_bytes", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    samples = yn.optional(m, "max_samples", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    series = yn.optional(m, "max_series", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    return ScrapeLimits(
        timeout_seconds=float(timeout),
        max_body_bytes=body or default.max_body_bytes,
        max_samples=samples or default.max_samples,
        max_series=series or default.max_series,
    )


# --- pricing -------------------------------------------------------------------------------


class _FilePrices(NamedTuple):
    """What the file itself prices, before the catalogue fills gaps."""

    config: PricingConfig
    use_catalogue: bool
    # (hardware, class) pairs the file tried to price, valid or not; "*" for unreadable
    # blocks. A bad price is reported once, not again as "no price" for each GPU using it.
    attempted: frozenset[tuple[str, str]]


def _read_pricing(p: Problems, node: Node | None) -> _FilePrices:
    m = yn.fields(p, node, "pricing", _PRICING) if node is not None else None
    if m is None:
        tried = frozenset() if node is None else frozenset({("*", "*")})
        return _FilePrices(PricingConfig(gpu_prices=MappingProxyType({})), True, tried)
    at = "pricing"
    yn.optional(m, "currency", at, choice_reader(p, ("USD",), "currency (only USD is supported)"), "USD")
    use_catalogue = yn.optional(m, "catalogue", at, lambda path, n: yn.boolean(p, n, path), True)
    price = number_reader(p, ge=ZERO, usd=True)
    attempted: set[tuple[str, str]] = set()
    owned = _read_owned(p, m.get("owned"), attempted)
    config = PricingConfig(
        gpu_prices=MappingProxyType(_read_gpu_prices(p, m.get("gpus"), owned, attempted)),
        egress_usd_per_gb=yn.optional(m, "egress_usd_per_gb", at, price, ZERO),
        cross_zone_usd_per_gb=yn.optional(m, "cross_zone_usd_per_gb", at, price, ZERO),
        storage_usd_per_gb_month=yn.optional(m, "storage_usd_per_gb_month", at, price, ZERO),
        month=yn.optional(
            m, "month", at, choice_reader(p, MONTH_CONVENTIONS, "month convention"), "calendar"
        ),
        support_uplift_percent=yn.optional(
            m, "support_uplift_percent", at, number_reader(p, ge=ZERO, le=Decimal(1000)), ZERO
        ),
        overhead=_read_overhead(p, m.get("overhead")),
        energy=_read_energy(p, m.get("energy")),
        owned=MappingProxyType({hw: spec for hw, (spec, _) in owned.items()}),
        output_input_weight=yn.optional(m, "output_input_weight", at, number_reader(p, gt=ZERO), Decimal(4)),
        budgets=_read_budgets(p, m.get("budgets")),
    )
    return _FilePrices(config, use_catalogue, frozenset(attempted))


def _read_gpu_prices(
    p: Problems,
    node: Node | None,
    owned: Mapping[str, tuple[OwnedHardware, int]],
    attempted: set[tuple[str, str]],
) -> dict[tuple[str, str], GpuPrice]:
    """``pricing.gpus`` rows, then one ``owned`` row per ``pricing.owned`` entry."""
    prices: dict[tuple[str, str], GpuPrice] = {}
    hardware = yn.fields(p, node, "pricing.gpus", None) if node is not None else None
    if node is not None and hardware is None:
        attempted.add(("*", "*"))
    for hw, classes_node in (hardware or {}).items():
        at = key_path("pricing.gpus", hw)
        classes = yn.fields(p, classes_node, at, CAPACITY_CLASSES, "capacity class")
        if classes is None or len(classes) < len(classes_node.value):  # a bad or misspelt class
            attempted.add((hw, "*"))
        attempted.update((hw, c) for c in classes or ())
        for capacity, value_node in (classes or {}).items():
            here = key_path(at, capacity)
            value = yn.number(p, value_node, here, ge=ZERO, usd=True)
            if value is not None:
                ref = f"{here} (line {value_node.start_mark.line + 1})"
                prices[(hw, capacity)] = GpuPrice(hw, capacity, value, "config", ref)
    for hw, (spec, line) in owned.items():
        if (hw, "owned") in prices:
            p.add_line(
                key_path("pricing.owned", hw), line, f"pricing.gpus.{hw}.owned also prices it; keep one"
            )
            continue
        ref = f"{key_path('pricing.owned', hw)} (line {line}): capex amortised"
        prices[(hw, "owned")] = GpuPrice(hw, "owned", spec.usd_per_hour, "config", ref)
    return prices


def _read_owned(
    p: Problems, node: Node | None, attempted: set[tuple[str, str]]
) -> dict[str, tuple[OwnedHardware, int]]:
    m = yn.fields(p, node, "pricing.owned", None) if node is not None else None
    out: dict[str, tuple[OwnedHardware, int]] = {}
    if node is not None and m is None:
        attempted.add(("*", "owned"))
    for hw, spec_node in (m or {}).items():
        at = key_path("pricing.owned", hw)
        attempted.add((hw, "owned"))
        spec = yn.fields(p, spec_node, at, ("capex_usd", "amortisation_years", "watts"))
        if spec is None:
            continue
        capex = yn.required(p, spec, "capex_usd", at, spec_node, number_reader(p, ge=ZERO, usd=True))
        years = yn.required(
            p, spec, "amortisation_years", at, spec_node, number_reader(p, gt=ZERO, le=Decimal(100))
        )
        watts = yn.optional(spec, "watts", at, number_reader(p, ge=ZERO), None)
        if capex is not None and years is not None:
            out[hw] = (OwnedHardware(capex, years, watts), spec_node.start_mark.line + 1)
    return out


def _read_energy(p: Problems, node: Node | None) -> Energy:
    m = yn.fields(p, node, "pricing.energy", ("usd_per_kwh", "pue")) if node is not None else None
    if m is None:
        return Energy()
    at = "pricing.energy"
    return Energy(
        usd_per_kwh=yn.optional(m, "usd_per_kwh", at, number_reader(p, ge=ZERO, usd=True), ZERO),
        pue=yn.optional(m, "pue", at, number_reader(p, ge=Decimal(1), le=Decimal(10)), Decimal(1)),
    )


def _read_overhead(p: Problems, node: Node | None) -> Overhead:
    allowed = ("usd_per_node_hour", "percent")
    m = yn.fields(p, node, "pricing.overhead", allowed) if node is not None else None
    if m is None:
        return Overhead()
    at = "pricing.overhead"
    return Overhead(
        usd_per_node_hour=yn.optional(m, "usd_per_node_hour", at, number_reader(p, ge=ZERO, usd=True), ZERO),
        percent=yn.optional(m, "percent", at, number_reader(p, ge=ZERO, le=Decimal(1000)), ZERO),
    )


def _read_budgets(p: Problems, node: Node | None) -> Budgets:
    at = "pricing.budgets"
    outer = yn.fields(p, node, at, ("usd_per_million_tokens",)) if node is not None else None
    inner_node = (outer or {}).get("usd_per_million_tokens")
    at = f"{at}.usd_per_million_tokens"
    inner = yn.fields(p, inner_node, at, ("models", "teams", "tenants")) if inner_node is not None else None
    found: dict[str, dict[str, Decimal]] = {"models": {}, "teams": {}, "tenants": {}}
    for group, group_node in (inner or {}).items():
        for name, value_node in (yn.fields(p, group_node, f"{at}.{group}", None) or {}).items():
            value = yn.number(p, value_node, key_path(f"{at}.{group}", name), gt=ZERO, usd=True)
            if value is not None:
                found[group][name] = value
    return Budgets(*(MappingProxyType(found[group]) for group in ("models", "teams", "tenants")))


# --- prices for the inventory --------------------------------------------------------------


def _resolve_prices(p: Problems, own: _FilePrices, gpus: list[LocatedGpu]) -> PricingConfig:
    """Add catalogue rows the file does not override; every inventory GPU must be priced."""
    catalogue = _catalogue_or_report(p)
    use_catalogue = own.use_catalogue
    prices = dict(own.config.gpu_prices)
    if use_catalogue and catalogue is not None:
        for row in catalogue.rows:
            prices.setdefault((row.hardware, row.capacity), row.price())
    reported: set[tuple[str, str]] = set()
    for gpu, at, entry in gpus:
        pair = (gpu.hardware, gpu.capacity)
        if pair in reported:
            continue
        reported.add(pair)
        price = prices.get(pair)
        tried = {pair, (pair[0], "*"), ("*", pair[1]), ("*", "*")} & own.attempted
        if price is None and tried:
            continue  # its price was given but invalid: already reported
        if price is None:
            p.add(at, entry, _unpriced(pair, use_catalogue, catalogue))
        elif price.source == "catalogue":
            log.warning(
                "price_source=catalogue hardware=%s capacity=%s usd_per_hour=%s reference=%r date=%s: "
                "no configured price, using the catalogue default; set pricing.gpus.%s.%s to your real price",
                *pair, price.usd_per_hour, price.reference, price.date, *pair,
            )  # fmt: skip
    date = catalogue.date if use_catalogue and catalogue is not None else ""
    return replace(own.config, gpu_prices=MappingProxyType(prices), catalogue_date=date)


def _catalogue_or_report(p: Problems) -> Catalogue | None:
    try:
        return load_catalogue()
    except ConfigError as exc:  # a broken package: report it like any other problem
        for problem in exc.problems:
            p.add_raw(f"catalogue {exc.source}: {problem}")
        return None


def _unpriced(pair: tuple[str, str], use_catalogue: bool, catalogue: Catalogue | None) -> str:
    hw, capacity = pair
    fix = f"set pricing.gpus.{hw}.{capacity}"
    if capacity == "owned":
        fix += f", or pricing.owned.{hw} with capex_usd and amortisation_years"
    row = catalogue.row(hw, capacity) if catalogue is not None else None
    if not use_catalogue and row is not None:
        return (
            f"no price for {hw} {capacity} and pricing.catalogue is false: {fix} "
            f"(or set pricing.catalogue: true for the catalogue default {row.usd_per_hour} "
            f"from {row.source}, {row.date})"
        )
    if not use_catalogue:
        return f"no price for {hw} {capacity} and pricing.catalogue is false: {fix}"
    date = catalogue.date if catalogue is not None else "?"
    return f"no price for {hw} {capacity}: {fix} (the catalogue of {date} has none)"


def format_price_table(cfg: ExporterConfig) -> str:
    """The effective price table ``check-config`` prints for ``cfg`` (``pricing.table``)."""
    return table.format_price_table(
        cfg.pricing, ((g.hardware, g.capacity) for g in cfg.gpus), cfg.path, cfg.sha256
    )
