"""Laws of the money: conservation to the nano-dollar, no drift, monotone counters."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.meter.ledger import Meter
from exporter.meter.money import Accruals, allocate
from exporter.meter.snapshot import MeterSnapshot
from exporter.pricing.prices import BYTES_PER_GB, PricingConfig
from exporter.records import ModelCounters, Owner, PodUsage, TargetScrape, TickInput
from tests.property.strategies import T0, fleet, owners, pricing, tick_ns


@given(amount=st.integers(min_value=0, max_value=10**15),
       weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))  # fmt: skip
def test_allocate_conserves_and_is_fair(amount: int, weights: list[int]) -> None:
    shares = allocate(amount, weights)
    assert sum(shares) == amount
    assert all(s >= 0 for s in shares)
    total = sum(weights) or len(weights)
    for s, w in zip(shares, weights or [1], strict=True):
        quota = Fraction(amount * (w if sum(weights) else 1), total)
        assert abs(s - quota) < 1  # never more than one unit from the exact quota


@given(
    amount=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(1, 100), min_size=2, max_size=8),
)
def test_allocate_is_monotone_in_weight(amount: int, weights: list[int]) -> None:
    shares = allocate(amount, weights)
    for i, wi in enumerate(weights):
        for j, wj in enumerate(weights):
            if wi > wj:
                assert shares[i] >= shares[j]


def _hourly(usd_per_hour: Decimal, dt_ns: int) -> Fraction:
    """Independent of the code under test: exact nano-dollars of an hourly price over dt."""
    return Fraction(usd_per_hour) * 10**9 * dt_ns / (3600 * 10**9)


def _exact_without_support(inp: TickInput, p: PricingConfig) -> Fraction:
    total = Fraction(0)
    for g in inp.gpus:
        price = p.gpu_price(g.hardware, g.capacity)
        assert price is not None
        gpu = _hourly(price.usd_per_hour, inp.dt_ns) * g.price_share
        total += gpu * (1 + Fraction(p.overhead.percent) / 100)
    total += _hourly(p.overhead.usd_per_node_hour, inp.dt_ns)
    from exporter.meter.proration import month_fraction

    months = month_fraction(inp.start_ns, inp.end_ns, p.month)
    for pod in inp.pods:
        total += (
            Fraction(pod.storage_bytes) / BYTES_PER_GB * Fraction(p.storage_usd_per_gb_month) * 10**9 * months
        )
    return total


def _line_sum(s: MeterSnapshot) -> int:
    return sum(sum(v.totals.cost.values()) for v in s.lines)


def _traffic(
    data: st.DataObject, holders: list[Owner], state: dict[Owner, list[float]]
) -> tuple[TargetScrape, ...]:
    """Random token traffic per holder: growth, restarts (with a new _created), failed scrapes."""
    scrapes = []
    for h in holders:
        value = state.setdefault(h, [0.0, 0.0, 1.0])
        if data.draw(st.booleans(), label="restart"):
            value[:] = [0.0, 0.0, value[2] + 1]
        value[0] += data.draw(st.integers(0, 10**6), label="in")
        value[1] += data.draw(st.integers(0, 10**6), label="out")
        ok = data.draw(st.integers(0, 4), label="ok") > 0  # one scrape in five fails
        counters = ModelCounters(
            data.draw(st.sampled_from(["m0", "m1"])), value[0], value[1], created=value[2]
        )
        scrapes.append(TargetScrape(f"{h.namespace}/{h.pod}", h, "vllm", ok, (counters,)))
    return tuple(scrapes)


@settings(max_examples=200, deadline=None)
@given(
    prices=pricing(),
    node=fleet(),
    ticks=st.lists(tick_ns, min_size=1, max_size=12),
    storage=st.lists(st.tuples(owners, st.integers(0, 10**13)), max_size=3, unique_by=lambda x: x[0]),
    data=st.data(),
)
def test_bill_is_conserved_exactly(prices, node, ticks, storage, data) -> None:  # type: ignore[no-untyped-def]
    gpus, placements = node
    pods = tuple(PodUsage(o, storage_bytes=float(b)) for o, b in storage)
    holders = sorted({p.holder for p in placements}, key=lambda o: (o.namespace, o.pod, o.model))
    holders = list({(h.namespace, h.pod): h for h in holders}.values())
    state: dict[Owner, list[float]] = {}
    # A long retention, or one short enough that lines expire mid-run (their money retires).
    meter = Meter("n", retention_s=data.draw(st.sampled_from([10**9, 1.0]), label="retention"))
    t, exact = T0, Fraction(0)
    support = 1 + Fraction(prices.support_uplift_percent) / 100
    previous: dict[tuple[object, str], float] = {}
    expired = False
    for dt in ticks:
        inp = TickInput(t, t + dt, "n", gpus, placements, _traffic(data, holders, state), pods)
        exact += _exact_without_support(inp, prices)
        snap = meter.tick(inp, prices, 60.0)
        t += dt
        # Σ allocations + idle (+ expired lines) = bill, to the nano-dollar, after every tick.
        assert _line_sum(snap) + snap.retired_nano == snap.bill_nano
        # ...and the bill is the exact cost, short only of the carried sub-nano remainders.
        carries = len(meter._gpus.accruals) + meter._gpus.accruals.dropped
        assert snap.bill_nano <= exact * support
        assert exact * support - snap.bill_nano < (carries + 1) * support
        live = {v.line for v in snap.lines}
        expired = expired or any(key[0] not in live for key in previous)
        previous = {k: n for k, n in previous.items() if k[0] in live}  # an expired series restarts
        for v in snap.lines:
            assert all(n >= 0 for n in v.totals.cost.values())
            if not v.line.owner.is_idle:
                assert v.totals.cost_input + v.totals.cost_output == sum(v.totals.cost.values())
            observed = {**v.totals.cost, "in": v.totals.input_tokens, "out": v.totals.output_tokens}
            for name, n in observed.items():  # our counters never decrease while exported
                key = (v.line, name)
                assert n >= previous.get(key, 0)
                previous[key] = n
    # Every GPU-nanosecond lands on a holder or idle, exactly once (while no line expired).
    if not expired:
        assert sum(v.totals.held_ns for v in snap.lines) == len(gpus) * sum(ticks)


@settings(max_examples=40, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 5000), st.booleans(), st.booleans()),
        min_size=1,
        max_size=15,
    )
)
def test_tokens_equal_truth_across_resets(history: list[tuple[int, int, bool, bool]]) -> None:
    """Upstream restarts never lose or double-count tokens, with one documented exception: a
    restart with no new _created whose new values all already overtook the old ones
    (undetectable: exactly the old values are lost, as in Prometheus's own rate())."""
    from exporter.records import GpuSample, Placement

    owner = Owner("ns", "pod", "team", "m")
    gpus = (GpuSample("0", "H100", "on_demand"),)
    meter = Meter("n")
    value = [0.0, 0.0]
    expected = [0.0, 0.0]  # what our counters must show: truth minus baseline minus the lost
    created = 1.0
    t = T0
    last = (0.0, 0.0)
    for step, (add_in, add_out, restart, new_created) in enumerate(history):
        old = list(value)
        if restart:
            value = [0.0, 0.0]
            created += new_created
        value[0] += add_in
        value[1] += add_out
        # A restart seen on either counter (a fall) restarts both: only one that neither
        # counter nor _created shows goes unseen.
        undetectable = restart and not new_created and value[0] >= old[0] and value[1] >= old[1]
        for i, added in enumerate((add_in, add_out)):
            if step > 0:  # the first reading is a baseline: the series predates the exporter
                expected[i] += added - (old[i] if undetectable else 0)
        counters = ModelCounters("m", value[0], value[1], created=created)
        scrape = TargetScrape("t", owner, "vllm", True, (counters,))
        snap = meter.tick(
            TickInput(t, t + 10**9, "n", gpus, (Placement("0", owner),), (scrape,)), PricingConfig({}), 60
        )
        t += 10**9
        tok = next(v.totals for v in snap.lines if v.line.owner.pod == "pod")
        assert tok.input_tokens >= last[0] and tok.output_tokens >= last[1]  # never decrease
        last = (tok.input_tokens, tok.output_tokens)
        assert [tok.input_tokens, tok.output_tokens] == expected


def test_accruals_of_tiny_increments_do_not_drift() -> None:
    """10^6 increments of 1/3 nano-dollar: the whole amounts charged equal the exact sum's floor."""
    acc = Accruals()
    charged = sum(acc.accrue("line", (1, 3)) for _ in range(1_000_000))
    assert charged == 333_333


def test_meter_ticks_of_a_millisecond_do_not_drift() -> None:
    """5,000 one-millisecond ticks of an odd price: the bill is the exact total, floored."""
    from exporter.pricing.prices import GpuPrice
    from exporter.records import GpuSample

    price = Decimal("0.123456789")
    prices = PricingConfig(gpu_prices={("H100", "spot"): GpuPrice("H100", "spot", price, "config", "x")})
    gpus = (GpuSample("0", "H100", "spot"),)
    meter = Meter("n")
    t = T0
    for _ in range(5_000):
        snap = meter.tick(TickInput(t, t + 10**6, "n", gpus, ()), prices, 1.0)
        t += 10**6
    exact = _hourly(price, 5_000 * 10**6)
    assert snap.bill_nano == int(exact)


@settings(max_examples=40, deadline=None)
@given(
    shares=st.lists(st.integers(1, 20), min_size=2, max_size=4),
    busy=st.lists(st.booleans(), min_size=3, max_size=30),
)
def test_a_multi_model_pods_money_follows_its_token_shares_through_quiet_ticks(
    shares: list[int], busy: list[bool]
) -> None:
    """A pod serving adapters in fixed proportions, with random quiet ticks: each adapter's money is
    its token share of the pod's money (issue 13.5: quiet ticks all went to the last model by name)."""
    from exporter.pricing.prices import GpuPrice
    from exporter.records import GpuSample, Placement

    prices = PricingConfig(
        {("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    holder = Owner("ns", "pod", "team", "base")
    meter, totals, t = Meter("n"), [0.0] * len(shares), T0
    for step, active in enumerate(busy):
        if active or step == 0:
            totals = [x + 100 * s for x, s in zip(totals, shares, strict=True)]
        models = tuple(ModelCounters(f"lora-{i}", x, x / 4) for i, x in enumerate(totals))
        scrape = TargetScrape("t", holder, "sglang", True, models)
        snap = meter.tick(
            TickInput(
                t,
                t + 10**9,
                "n",
                (GpuSample("0", "H100", "on_demand"),),
                (Placement("0", holder),),
                (scrape,),
            ),
            prices,
            3600,
        )
        t += 10**9
    # Before the first tokens the pod's money is its declared model's ("base"): nothing to split by.
    money = {
        v.line.owner.model: sum(v.totals.cost.values()) for v in snap.lines if v.line.owner.model != "base"
    }
    paid = sum(money.values())
    for i, s in enumerate(shares):
        assert abs(money.get(f"lora-{i}", 0) - paid * s / sum(shares)) <= len(busy), (money, shares)
