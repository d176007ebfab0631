"""A claim several pods mount (a ReadWriteMany model cache) is billed once per node, split among them.

Issue 13 case 1: four replicas sharing one 1 TiB claim were billed $327.68 a month for an $81.92 volume.
The pods come from the watcher's seam (``PodView``), the money from a real ``Meter`` tick.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.engines.targets import OwnerRules
from exporter.meter.ledger import Meter
from exporter.pricing.prices import BYTES_PER_GB, PricingConfig
from exporter.records import Owner, PodInfo, PodUsage, TickInput
from exporter.sources.kube.link import KubeLink

TIB = 2**40
S = 10**9
T0 = 1_767_225_600 * S  # 2026-01-01: a 31-day month
CLAIMS = {("ml", "model-cache"): float(TIB), ("ml", "scratch-0"): 100.0 * 2**30, ("ml", "scratch-1"): 3.0}


def pod(name: str, *claims: str) -> PodInfo:
    return PodInfo(
        uid=f"uid-{name}", namespace="ml", name=name, labels=MappingProxyType({}),
        annotations=MappingProxyType({}), phase="Running", pod_ip="10.0.0.1", deleted_at=None,
        claims=claims, container_ids=(),
    )  # fmt: skip


class View:
    def __init__(self, pods: list[PodInfo]) -> None:
        self._pods = tuple(pods)

    def pods(self) -> tuple[PodInfo, ...]:
        return self._pods

    def claim_capacity(self, namespace: str, claim: str) -> float | None:
        return CLAIMS.get((namespace, claim))


def link(*pods: PodInfo) -> KubeLink:
    k = KubeLink(View(list(pods)), OwnerRules())  # type: ignore[arg-type]
    k.refresh()
    return k


def test_a_shared_claim_is_split_evenly_and_its_parts_sum_to_it_exactly() -> None:
    k = link(*(pod(f"vllm-{i}", "model-cache") for i in range(3)), pod("solo", "model-cache", "scratch-0"))
    parts = k.storage_bytes([("ml", f"vllm-{i}") for i in range(3)] + [("ml", "solo")])
    assert parts[("ml", "vllm-0")] == Fraction(TIB, 4)
    assert parts[("ml", "solo")] == Fraction(TIB, 4) + 100 * 2**30
    assert sum(parts.values()) == TIB + 100 * 2**30  # each claim once


def test_only_the_pods_billed_share_a_claim() -> None:
    """A pod this node does not bill (no GPU) mounting the cache leaves the whole claim to the others."""
    k = link(pod("vllm-0", "model-cache"), pod("gateway", "model-cache"))
    assert k.storage_bytes([("ml", "vllm-0")]) == {("ml", "vllm-0"): Fraction(TIB)}


def test_the_node_bills_a_shared_claim_once_per_second() -> None:
    names = [f"vllm-{i}" for i in range(4)]
    k = link(*(pod(n, "model-cache") for n in names), pod("odd", "scratch-1"))
    parts = k.storage_bytes([("ml", n) for n in [*names, "odd"]])
    price = PricingConfig({}, storage_usd_per_gb_month=Decimal("0.08"))
    owners = {p: k.owner(p) for p in parts}
    usage = tuple(PodUsage(o, storage_bytes=parts[p]) for p, o in owners.items() if o is not None)
    meter = Meter("n")
    for i in range(31 * 24):  # a month of hourly ticks
        snap = meter.tick(
            TickInput(T0 + i * 3600 * S, T0 + (i + 1) * 3600 * S, "n", (), (), pods=usage), price, 60
        )
    billed = sum(v.totals.cost.get("storage", 0) for v in snap.lines)
    # $0.08 per GB-month: the 1 TiB cache is $81.92 a month, not 4 × $81.92; the 3-byte claim rounds away.
    expected = Fraction(8, 100) * (TIB + 3) / BYTES_PER_GB * 10**9
    assert abs(billed - expected) < len(parts)  # each pod's carry holds < 1 nano-dollar
    assert round(billed / 10**9, 2) == 81.92


@settings(max_examples=60, deadline=None)
@given(
    mounts=st.lists(
        st.sets(st.sampled_from(sorted(c for _, c in CLAIMS)), max_size=3), min_size=1, max_size=8
    ),
    billed=st.data(),
)
def test_each_claim_is_billed_exactly_once_whoever_mounts_it(
    mounts: list[set[str]], billed: st.DataObject
) -> None:
    pods = [pod(f"p{i}", *sorted(m)) for i, m in enumerate(mounts)]
    keys = [("ml", p.name) for p in pods]
    chosen = billed.draw(st.lists(st.sampled_from(keys), unique=True))
    parts = link(*pods).storage_bytes(chosen)
    mounted = {c for p in pods if ("ml", p.name) in chosen for c in p.claims}
    assert sum(parts.values(), Fraction(0)) == sum(Fraction(CLAIMS[("ml", c)]) for c in mounted)
    price = PricingConfig({}, storage_usd_per_gb_month=Decimal("0.08"))
    usage = tuple(PodUsage(Owner("ml", p, "ml", ""), storage_bytes=b) for (_, p), b in parts.items())
    meter = Meter("n")
    for i in range(3):
        snap = meter.tick(
            TickInput(T0 + i * 10 * S, T0 + (i + 1) * 10 * S, "n", (), (), pods=usage), price, 60
        )
    billed_nano = sum(v.totals.cost.get("storage", 0) for v in snap.lines)
    month_s = 31 * 86_400
    exact = (
        Fraction(8, 100)
        * 10**9
        * sum(Fraction(CLAIMS[("ml", c)]) for c in mounted)
        / BYTES_PER_GB
        * 30
        / month_s
    )
    assert 0 <= exact - billed_nano < max(len(parts), 1)  # each pod's carry holds < 1 nano-dollar
