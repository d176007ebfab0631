"""The report as a table: CSV and JSON rows (ours), and FOCUS 1.2 rows (the FinOps Foundation's).

CSV/JSON: one row per period and group with every amount the exporter counts. FOCUS: each group's
money as charges a FinOps tool imports: its input and output (or training) token money as ``Tokens``
usage, and the rest (idle holding, lines without tokens, storage) as ``GPU-Hours`` usage, so a
row's charges add up to its money and none is counted twice. FOCUS has no column for what only we
know; those are ``x_`` columns, after FOCUS's own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from exporter.report.increase import ZERO
from exporter.report.rows import Report, Row

MILLION = Decimal(1_000_000)
HOUR = Decimal(3600)


def iso(t: float) -> str:
    """FOCUS's date-time: UTC, seconds, a Z."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(x: Decimal | None) -> str:
    """A plain decimal (no exponent, no trailing zeros); "" for unknown."""
    if x is None:
        return ""
    text = format(x.normalize(), "f")
    return "0" if text in ("-0", "") else text


SERVED = ("input", "output", "total")  # "total": a tenant's share of a split line


def cpm_parts(row: Row) -> tuple[Decimal, Decimal]:
    """(money, tokens computed) of a row's CPM, as the gauges and rules count them: inference money
    over the tokens the GPUs computed (prefix-cache hits left out; training left out, as the rules'
    input|output); a row that only trained, its training money over its training tokens."""
    served = [d for d in SERVED if d in row.tokens or d in row.by_direction]
    directions = served or ["training"]
    spent = sum((row.by_direction.get(d, ZERO) for d in directions), ZERO)
    tokens = sum((row.tokens.get(d, ZERO) for d in directions), ZERO)
    return spent, tokens - (row.cached or ZERO) if served else tokens


def usd_per_million(row: Row) -> Decimal | None:
    spent, tokens = cpm_parts(row)
    return (spent / tokens * MILLION).quantize(Decimal("1e-9")) if tokens > 0 else None


def flat_rows(report: Report) -> list[dict[str, str]]:
    """Our own table: every amount, one column each (components, directions, reasons as found)."""
    components = sorted({c for r in report.rows for c in r.cost})
    directions = sorted({d for r in report.rows for d in (*r.tokens, *r.by_direction)})
    reasons = sorted({x for r in report.rows for x in r.idle})
    out = []
    for r in report.rows:
        p = report.periods[r.period]
        row = {"period_start": iso(p.start), "period_end": iso(p.end)}
        row |= dict(zip(report.dims, r.key, strict=True))
        row["cost_usd"] = number(r.total)
        row |= {f"cost_{c}_usd": number(r.cost.get(c, ZERO)) for c in components}
        row |= {f"cost_{d}_usd": number(r.by_direction.get(d)) for d in directions}
        row |= {f"{d}_tokens": number(r.tokens.get(d)) for d in directions}
        row["cached_input_tokens"] = number(r.cached)
        row["requests"] = number(r.requests)
        row |= {f"gpu_seconds_{s}": number(r.gpu_seconds.get(s)) for s in ("held", "busy", "idle")}
        row |= {f"idle_{x}_usd": number(r.idle.get(x, ZERO)) for x in reasons}
        row["usd_per_million_tokens"] = number(usd_per_million(r))
        out.append(row)
    return out


def to_csv(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_json(report: Report, meta: Mapping[str, Any]) -> str:
    tenants = [
        {"period_start": iso(report.periods[t.period].start), "period_end": iso(report.periods[t.period].end),
         "tenant": t.tenant, "model": t.model, "cost_usd": number(t.cost),
         **{f"{d}_tokens": number(n) for d, n in sorted(t.tokens.items())}}
        for t in report.tenants
    ]  # fmt: skip
    return json.dumps({"meta": meta, "rows": flat_rows(report), "tenants": tenants}, indent=1) + "\n"


# --- FOCUS 1.2 ------------------------------------------------------------------------------------------

FOCUS_VERSION = "1.2"
FOCUS_COLUMNS = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
    "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountStatus", "ConsumedQuantity", "ConsumedUnit",
    "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost",
    "ListUnitPrice", "PricingCategory", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId",
    "SubAccountName", "Tags",
)  # fmt: skip
X_COLUMNS = ("x_CostKind", "x_CallingTeam", "x_Cluster", "x_Node", "x_Namespace", "x_Pod", "x_Team", "x_Model", "x_Workload",
             "x_Hardware", "x_CapacityClass", "x_IdleCost", "x_GpuSecondsBusy")  # fmt: skip
_X_DIMS = {"tenant": "x_CallingTeam", "cluster": "x_Cluster", "node": "x_Node", "namespace": "x_Namespace", "pod": "x_Pod", "team": "x_Team",
           "model": "x_Model", "workload": "x_Workload", "hardware": "x_Hardware",
           "capacity_class": "x_CapacityClass"}  # fmt: skip
_METER = {
    "input": "Input Tokens",
    "output": "Output Tokens",
    "training": "Training Tokens",
    "total": "Tokens",
}


def focus_rows(report: Report, account: str) -> list[dict[str, str]]:
    """Every row's money as FOCUS charges: token money as Tokens usage, the rest as GPU-Hours usage."""
    start, end = iso(report.periods[0].start), iso(report.periods[-1].end)
    out = []
    for r in report.rows:
        dims = {d: v for d, v in zip(report.dims, r.key, strict=True) if v}
        token_money = ZERO
        for direction, spent in sorted(r.by_direction.items()):
            tokens = r.tokens.get(direction, ZERO)
            if tokens > 0 and spent:
                token_money += spent
                out.append(_charge(report, r, dims, account, start, end, f"{direction}_tokens",
                                   spent, tokens, "Tokens", _METER[direction]))  # fmt: skip
        rest = r.total - token_money
        held = (r.gpu_seconds.get("held", ZERO) + r.gpu_seconds.get("idle", ZERO)) / HOUR
        if rest or (held and not token_money):
            out.append(_charge(report, r, dims, account, start, end, "gpu_hours", rest, held, "GPU-Hours",
                               "GPU Hours"))  # fmt: skip
    return out


def _charge(
    report: Report,
    r: Row,
    dims: Mapping[str, str],
    account: str,
    start: str,
    end: str,
    kind: str,
    cost: Decimal,
    quantity: Decimal,
    unit: str,
    meter: str,
) -> dict[str, str]:
    p = report.periods[r.period]
    price = number((cost / quantity).quantize(Decimal("1e-12"))) if quantity > 0 else "0"
    what = ", ".join(f"{k} {v}" for k, v in dims.items()) or "all"
    workload = dims.get("workload", "")
    sku = "-".join(x for x in (kind.replace("_", "-"), dims.get("hardware", ""), dims.get("model", "")) if x)
    tags = {**dims, "cost_kind": kind}
    money = number(cost)
    row = {
        "BilledCost": money, "BillingAccountId": f"cpm:{account}", "BillingAccountName": account,
        "BillingCurrency": "USD", "BillingPeriodEnd": end, "BillingPeriodStart": start, "ChargeCategory": "Usage",
        "ChargeClass": "", "ChargeDescription": f"{meter}: {what}", "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": iso(p.end), "ChargePeriodStart": iso(p.start), "CommitmentDiscountStatus": "",
        "ConsumedQuantity": number(quantity), "ConsumedUnit": unit, "ContractedCost": money,
        "ContractedUnitPrice": price, "EffectiveCost": money, "InvoiceId": "", "InvoiceIssuerName": account,
        "ListCost": money, "ListUnitPrice": price, "PricingCategory": "Standard", "PricingCurrency": "USD",
        "PricingCurrencyContractedUnitPrice": price, "PricingCurrencyEffectiveCost": money,
        "PricingCurrencyListUnitPrice": price, "PricingQuantity": number(quantity), "PricingUnit": unit,
        "ProviderName": account, "PublisherName": "cpm-exporter",
        "ResourceId": "cpm://" + "/".join(f"{k}={v}" for k, v in dims.items()) if dims else f"cpm://{account}",
        "ResourceName": dims.get("model") or dims.get("pod") or what,
        "ResourceType": {"training": "Training Job", "idle": "Idle GPU Capacity"}.get(workload, "AI Workload"),
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "LLM Training" if workload == "training" else "LLM Inference",
        "ServiceSubcategory": "Generative AI", "SkuId": sku, "SkuMeter": meter, "SkuPriceDetails": "",
        "SkuPriceId": f"{sku}-measured", "SubAccountId": dims.get("tenant") or dims.get("team") or dims.get("namespace") or account,
        "SubAccountName": dims.get("tenant") or dims.get("team") or dims.get("namespace") or account,
        "Tags": json.dumps(tags, sort_keys=True),
        "x_CostKind": kind, "x_IdleCost": number(sum(r.idle.values(), ZERO)) if kind == "gpu_hours" else "",
        "x_GpuSecondsBusy": number(r.gpu_seconds.get("busy")) if kind == "gpu_hours" else "",
    }  # fmt: skip
    row |= {column: dims.get(dim, "") for dim, column in _X_DIMS.items()}
    return {c: row.get(c, "") for c in (*FOCUS_COLUMNS, *X_COLUMNS)}


def focus_csv(report: Report, account: str) -> str:
    rows = focus_rows(report, account)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*FOCUS_COLUMNS, *X_COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def check_lines(report: Report) -> Iterator[str]:
    """The reconciliation, one line per node and period that does not add up, then the verdict."""
    for c in report.checks:
        if not c.ok:
            bill = "no bill series" if c.bill_usd is None else f"bill ${number(c.bill_usd)}"
            yield (f"  {iso(report.periods[c.period].start)} {c.cluster + '/' if c.cluster else ''}{c.node}: "
                   f"rows ${number(c.rows_usd)}, {bill}")  # fmt: skip
