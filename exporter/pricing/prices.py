"""Validated prices: what one GPU-hour, GB or kWh costs. Built by ``config.load_config``.

Prices are ``Decimal`` (exact, from the YAML text); the meter turns them into exact
fractions of nano-dollars. ``source`` is the provenance users see on ``cpm_price_info``:
``config`` (the user's file) or ``catalogue`` (our dated defaults, flagged loudly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

ZERO = Decimal(0)
BYTES_PER_GB = 2**30  # clouds bill transfer and storage in GiB ("GB" in AWS/GCP price lists)
HOURS_PER_YEAR = Decimal("8766")  # 365.25 days, for amortising capex
MONTH_CONVENTIONS = ("calendar", "730h")


@dataclass(frozen=True, slots=True)
class GpuPrice:
    hardware: str
    capacity: str
    usd_per_hour: Decimal
    source: str  # "config" | "catalogue"
    reference: str  # where the number comes from: "pricing.gpus.H100.on_demand (line 7)" or a citation
    date: str = ""  # date of the fact (catalogue rows); "" for the user's own prices


@dataclass(frozen=True, slots=True)
class OwnedHardware:
    """Owned GPUs: capex amortised linearly, plus energy metered separately."""

    capex_usd: Decimal
    amortisation_years: Decimal
    watts: Decimal | None = None  # assumed draw when no power reading exists

    @property
    def usd_per_hour(self) -> Decimal:
        return self.capex_usd / (self.amortisation_years * HOURS_PER_YEAR)


@dataclass(frozen=True, slots=True)
class Energy:
    usd_per_kwh: Decimal = ZERO
    pue: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Overhead:
    usd_per_node_hour: Decimal = ZERO
    percent: Decimal = ZERO  # of the GPU cost


def _frozen(d: Mapping[str, Decimal] | None = None) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Budgets:
    """CPM budgets in $ per million tokens (total direction), exported for alerting."""

    models: Mapping[str, Decimal] = field(default_factory=_frozen)
    teams: Mapping[str, Decimal] = field(default_factory=_frozen)
    tenants: Mapping[str, Decimal] = field(default_factory=_frozen)  # gateways' calling teams


# Hardware types the GPU names tell apart (sources/gpu/names.py) that a user may price as one: a
# config that prices the family and not the variant prices the variant at the family's price
# (over the catalogue's row for the variant: the user's own price always wins).
PRICE_FAMILIES: Mapping[str, str] = MappingProxyType({"A100-40GB": "A100", "A100-80GB": "A100"})


@dataclass(frozen=True, slots=True)
class PricingConfig:
    gpu_prices: Mapping[tuple[str, str], GpuPrice]
    egress_usd_per_gb: Decimal = ZERO
    cross_zone_usd_per_gb: Decimal = ZERO
    storage_usd_per_gb_month: Decimal = ZERO
    month: str = "calendar"
    support_uplift_percent: Decimal = ZERO
    overhead: Overhead = field(default_factory=Overhead)
    energy: Energy = field(default_factory=Energy)
    owned: Mapping[str, OwnedHardware] = field(default_factory=lambda: MappingProxyType({}))
    output_input_weight: Decimal = Decimal(4)
    budgets: Budgets = field(default_factory=Budgets)
    catalogue_date: str = ""

    def gpu_price(self, hardware: str, capacity: str) -> GpuPrice | None:
        return self.gpu_prices.get((hardware, capacity))
