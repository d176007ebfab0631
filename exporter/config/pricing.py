"""The ``pricing`` section: what the file itself prices (GPUs, owned hardware, energy, overhead,
budgets), then the prices of the inventory's GPUs, the dated catalogue filling what the file leaves
out (each such fallback logged as a WARNING) and every GPU still unpriced reported as a problem."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from yaml.nodes import Node

from exporter.config.inventory import LocatedGpu
from exporter.errors import ConfigError
from exporter.pricing.catalogue import Catalogue, load_catalogue
from exporter.pricing.prices import (
    MONTH_CONVENTIONS,
    PRICE_FAMILIES,
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
from exporter.yamlstrict.readers import Problems, choice_reader, key_path, number_reader

log = logging.getLogger(__name__)

_PRICING = (
    *("currency", "catalogue", "month", "gpus", "owned", "energy", "egress_usd_per_gb"),
    *("cross_zone_usd_per_gb", "storage_usd_per_gb_month", "support_uplift_percent", "overhead"),
    *("output_input_weight", "budgets"),
)


class _FilePrices(NamedTuple):
    """What the file itself prices, before the catalogue fills gaps."""

    config: PricingConfig
    use_catalogue: bool
    # (hardware, class) pairs the file tried to price, valid or not; "*" for unreadable
    # blocks. A bad price is reported once, not again as "no price" for each GPU using it.
    attempted: frozenset[tuple[str, str]]


def read_pricing(p: Problems, node: Node | None) -> _FilePrices:
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


def resolve_prices(p: Problems, own: _FilePrices, gpus: list[LocatedGpu]) -> PricingConfig:
    """Add catalogue rows the file does not override; every inventory GPU must be priced."""
    catalogue = _catalogue_or_report(p)
    use_catalogue = own.use_catalogue
    prices = dict(own.config.gpu_prices)
    owned = dict(own.config.owned)
    for variant, family in PRICE_FAMILIES.items():  # "A100" in the file prices A100-40GB and -80GB
        for (hw, capacity), family_price in own.config.gpu_prices.items():
            if hw == family:
                # Under the variant's name (cpm_price_info{hardware} matches the lines'); the
                # reference still names the family's entry it came from.
                prices.setdefault((variant, capacity), replace(family_price, hardware=variant))
        if family in owned:
            owned.setdefault(variant, owned[family])
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
    return replace(
        own.config, gpu_prices=MappingProxyType(prices), owned=MappingProxyType(owned), catalogue_date=date
    )


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
    variants = sorted(v for v, family in PRICE_FAMILIES.items() if family == hw)
    if variants:  # a static inventory's plain "A100": the catalogue prices its variants only
        fix += f" (or name the GPUs {' or '.join(variants)}: the catalogue prices those)"
    return f"no price for {hw} {capacity}: {fix} (the catalogue of {date} has none)"
