"""The effective price table that ``check-config`` prints: every price, its source, and the gaps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal

from exporter.errors import ConfigError
from exporter.pricing.catalogue import load_catalogue
from exporter.pricing.prices import GpuPrice, PricingConfig
from exporter.records import CAPACITY_CLASSES
from exporter.yamlstrict import readers as yn


def format_price_table(
    pricing: PricingConfig, gpus: Iterable[tuple[str, str]], path: str, sha256: str
) -> str:
    """Every price the meter will use, where it comes from, and what is missing or defaulted.
    ``gpus``: (hardware, capacity class) of each GPU the config declares; ``path``, ``sha256``: the
    config file's, for the heading."""
    state = f"catalogue {pricing.catalogue_date} in use" if pricing.catalogue_date else "catalogue off"
    lines = [f"Effective prices for {path or '<config>'} (sha256 {sha256[:12] or '-'}), {state}", ""]
    lines += _gpu_table(pricing, gpus)
    lines += ["", "Other components:", *_other_rows(pricing)]
    budgets = [("model", k, v) for k, v in sorted(pricing.budgets.models.items())]
    budgets += [("team", k, v) for k, v in sorted(pricing.budgets.teams.items())]
    budgets += [("tenant", k, v) for k, v in sorted(pricing.budgets.tenants.items())]
    if budgets:
        lines += ["", "Budgets ($ per million tokens, all tokens):"]
        lines += [f"  {kind:<6} {name}: {value:f}" for kind, name, value in budgets]
    lines += ["", *_catalogue_notes(pricing)]
    return "\n".join(lines).rstrip() + "\n"


def _gpu_table(pricing: PricingConfig, gpus: Iterable[tuple[str, str]]) -> list[str]:
    in_use = Counter(gpus)
    hardware = sorted({hw for hw, _ in pricing.gpu_prices} | {hw for hw, _ in in_use} | set(pricing.owned))
    rows: list[tuple[str, ...]] = [("HARDWARE", "CLASS", "GPUS", "$/GPU-HOUR", "SOURCE", "DATE", "REFERENCE")]
    remarks = [""]
    for hw in hardware:
        for capacity in CAPACITY_CLASSES:
            price = pricing.gpu_price(hw, capacity)
            rows.append(_gpu_row(price, hw, capacity, in_use.get((hw, capacity), 0)))
            loud = price is not None and price.source == "catalogue"
            remarks.append(f"set pricing.gpus.{hw}.{capacity} to your real price" if loud else "")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["GPU prices ($ per GPU-hour), every hardware x capacity class:"]
    for row, remark in zip(rows, remarks, strict=True):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if remark:  # on its own line so that no terminal width hides it
            lines.append(f"  {'':{widths[0]}}  !! CATALOGUE DEFAULT — {remark}")
    return lines


def _gpu_row(price: GpuPrice | None, hw: str, capacity: str, count: int) -> tuple[str, ...]:
    used = str(count) if count else "-"
    if price is None:
        return (hw, capacity, used, "-", "no price", "-", "-")
    value = _usd(price.usd_per_hour)
    return (hw, capacity, used, value, price.source.upper() if price.source == "catalogue" else price.source,
            price.date or "-", price.reference)  # fmt: skip


def _usd(value: Decimal) -> str:
    """Exact as written; derived rates (owned capex) rounded to nano-dollars for display."""
    if yn.decimal_places(value) <= yn.NANO_PLACES:
        return f"{value:f}"
    return f"~{value.quantize(Decimal('1e-9')):f}"


def _other_rows(pricing: PricingConfig) -> list[str]:
    month = {
        "calendar": "each UTC calendar month's real length (672-744 h)",
        "730h": "a fixed 730 h month",
    }.get(pricing.month, pricing.month)
    energy, overhead = pricing.energy, pricing.overhead
    rows = [
        ("egress", f"{pricing.egress_usd_per_gb:f} $/GB"),
        ("cross-zone", f"{pricing.cross_zone_usd_per_gb:f} $/GB"),
        ("storage", f"{pricing.storage_usd_per_gb_month:f} $/GB-month, prorated per second over {month}"),
        ("support", f"+{pricing.support_uplift_percent:f} % on all other components"),
        ("overhead", f"{overhead.usd_per_node_hour:f} $/node-hour + {overhead.percent:f} % of GPU cost"),
        ("energy", f"{energy.usd_per_kwh:f} $/kWh x PUE {energy.pue:f} (owned hardware, measured power)"),
        (
            "split",
            f"output:input token weight {pricing.output_input_weight:f} when prefill/decode time is unknown",
        ),
    ]
    for hw, owned in sorted(pricing.owned.items()):
        watts = f", assumed draw {owned.watts:f} W" if owned.watts is not None else ""
        rows.append(
            (
                f"owned {hw}",
                f"capex {owned.capex_usd:f} $ over {owned.amortisation_years:f} y = "
                f"{_usd(owned.usd_per_hour)} $/GPU-hour + energy{watts}",
            )
        )
    width = max(len(name) for name, _ in rows)
    return [f"  {name.ljust(width)}  {text}" for name, text in rows]


def _catalogue_notes(pricing: PricingConfig) -> list[str]:
    try:
        catalogue = load_catalogue()
    except ConfigError:
        return ["Catalogue: unreadable (see the problems above)."]
    egress, uplift = catalogue.egress_usd_per_gb, catalogue.all_in_uplift_percent
    notes = []
    if pricing.egress_usd_per_gb == 0:
        notes.append(
            f"Egress is 0: the catalogue's {egress.high:f} $/GB ({egress.source}, {egress.date}; "
            f"{egress.note}) is NOT applied — set pricing.egress_usd_per_gb if pods send to the internet."
        )
    notes.append(
        f"For scale: hyperscaler all-in cost runs {uplift.low:f}-{uplift.high:f} % above the GPU list rate "
        f"({uplift.source}, {uplift.date}); information only, not applied."
    )
    return notes
