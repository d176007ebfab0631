"""Chargeback per tenant (issue 17): gateways' per-team counters read like a server's, and each
model's money split among the teams that called it, to the nano-dollar, over time."""

from __future__ import annotations

import html
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.engines.gateways import GATEWAYS, NO_TENANT, read_gateway
from exporter.errors import ParseError
from exporter.meter.attribution import Line
from exporter.meter.settlement import DIRECT, INPUT, OUTPUT, Claim, Settlement
from exporter.meter.tenants import OTHER_TENANTS, TenantBook, TenantTotals, served_name
from exporter.meter.tokens import ModelDelta, TokenMeter
from exporter.records import ModelCounters, Owner, TargetScrape

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SERVED = frozenset({LLAMA, "qwen"})
WINDOW_NS = 60 * 10**9


def litellm(rows: list[tuple[str, str, float, float]]) -> str:
    """LiteLLM 1.108's exposition (prometheus_client): (deployment, team, input, output), one API key each."""
    out = ["# HELP litellm_input_tokens_metric_total Total number of input tokens from LLM requests",
           "# TYPE litellm_input_tokens_metric_total counter"]  # fmt: skip
    labels = 'api_key_alias="k",api_provider="hosted_vllm",end_user="None",hashed_api_key="h{k}",model="{m}",model_id="id",org_alias="None",org_id="None",requested_model="tiny",team="{t}",team_alias="{t}-alias",user="None",user_email="None"'
    for k, (m, t, i, _) in enumerate(rows):
        out.append(f"litellm_input_tokens_metric_total{{{labels.format(m=m, t=t, k=k)}}} {i}")
    out += ["# HELP litellm_output_tokens_metric_total Total number of output tokens from LLM requests",
            "# TYPE litellm_output_tokens_metric_total counter"]  # fmt: skip
    for k, (m, t, _, o) in enumerate(rows):
        out.append(f"litellm_output_tokens_metric_total{{{labels.format(m=m, t=t, k=k)}}} {o}")
    return "\n".join(out) + "\n"


def test_litellm_counters_become_one_series_per_served_model_and_team() -> None:
    text = litellm([
        (f"hosted_vllm/{LLAMA}", "search", 100, 10), (f"hosted_vllm/{LLAMA}", "search", 5, 1),
        (f"hosted_vllm/{LLAMA}", "chat", 40, 4), (f"hosted_vllm/{LLAMA}", "None", 7, 7),
        ("openai/gpt-4o", "search", 999, 999),  # routed elsewhere: no server here serves it
    ])  # fmt: skip
    read = read_gateway(
        text, GATEWAYS["litellm"]
    )  # every model is read: which ones are served is the meter's
    assert ("openai/gpt-4o", "search") in {(m.model, m.instance) for m in read}
    got = {
        (served_name(m.model, SERVED), m.instance): (m.input_tokens, m.output_tokens)
        for m in read
        if served_name(m.model, SERVED) is not None
    }
    assert got == {(LLAMA, "search"): (105, 11), (LLAMA, "chat"): (40, 4), (LLAMA, NO_TENANT): (7, 7)}


def test_envoy_ai_gateway_token_usage_histogram_by_token_type_and_a_configured_tenant_label() -> None:
    text = (
        "# TYPE gen_ai_client_token_usage histogram\n"
        'gen_ai_client_token_usage_bucket{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a",le="+Inf"} 3\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a"} 300\n'
        'gen_ai_client_token_usage_count{gen_ai_request_model="qwen",gen_ai_token_type="input",tenant="a"} 3\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="output",tenant="a"} 90\n'
        'gen_ai_client_token_usage_sum{gen_ai_request_model="qwen",gen_ai_token_type="output",tenant="b"} 10\n'
    )
    profile = GATEWAYS["envoy_ai_gateway"]
    with pytest.raises(ParseError, match="no tenant label"):
        read_gateway(text, profile)  # the tenant header's label must be named
    got = {
        (m.instance): (m.input_tokens, m.output_tokens)
        for m in read_gateway(text, profile, tenant_label="tenant")
    }
    assert got == {"a": (300, 90), "b": (0, 10)}


def test_a_gateway_model_name_maps_to_a_served_model() -> None:
    assert served_name(f"hosted_vllm/{LLAMA}", SERVED) == LLAMA  # the provider prefix goes
    assert served_name("qwen", SERVED) == "qwen"
    text = litellm([("chat-large", "search", 1, 1)])  # an explicit map renames it when it is read
    (m,) = read_gateway(text, GATEWAYS["litellm"], {"chat-large": "qwen"})
    assert served_name(m.model, SERVED) == "qwen"
    assert served_name("openai/gpt-4o", SERVED) is None


def test_a_bad_counter_refuses_the_scrape() -> None:
    for bad in ("NaN", "-1", "+Inf"):
        with pytest.raises(ParseError) as e:
            read_gateway(
                litellm([(LLAMA, "search", 1, 1)]).replace(" 1\n", f" {bad}\n", 1),
                GATEWAYS["litellm"],
            )
        assert e.value.reason == "bad_value"


def test_a_family_missing_from_one_scrape_is_unknown_not_zero() -> None:
    text = litellm([(LLAMA, "search", 100, 10)]).split("# HELP litellm_output")[0]
    (m,) = read_gateway(text, GATEWAYS["litellm"])
    assert (m.input_tokens, m.output_tokens) == (100, None)


# --- the split -------------------------------------------------------------------------------------------


def gateway_delta(model: str, tenant: str, i: float, o: float) -> ModelDelta:
    return ModelDelta(owner=Owner("", "", "", model), input_tokens=i, output_tokens=o, instance=tenant)


# --- the settlement: served tokens claimed by the gateway's counts ----------------------------------------

POD = Owner("serve", "llama-0", "platform", LLAMA)
LINE = Line(POD, "H100", "on_demand")
S = 10**9


def claimed(claims: list[Claim]) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for c in claims:
        money, tokens = out.get(c.tenant, (0, 0.0))
        out[c.tenant] = (money + c.money, tokens + c.tokens)
    return out


def test_served_tokens_wait_for_the_gateways_count_then_move_to_the_tenants_that_counted_them() -> None:
    s = Settlement()
    s.add_batch(LINE, INPUT, 1 * S, 100, 1000)
    assert s.settle(1 * S, 300 * S) == [] and s.pending() == {LINE: (1000, 100, 0)}
    s.add_counts(LLAMA, INPUT, 2 * S, {"search": 60, "chat": 40})
    assert claimed(s.settle(2 * S, 300 * S)) == {"search": (600, 60), "chat": (400, 40)}
    assert s.pending() == {}


def test_a_count_ahead_of_the_servers_waits_as_credit_for_its_next_tokens() -> None:
    s = Settlement()
    s.add_counts(LLAMA, OUTPUT, 1 * S, {"search": 10})  # the gateway's scrape saw the answer end first
    assert s.settle(1 * S, 300 * S) == []
    s.add_batch(LINE, OUTPUT, 2 * S, 10, 77)
    assert claimed(s.settle(2 * S, 300 * S)) == {"search": (77, 10)}


def test_oldest_tokens_are_claimed_first_and_a_part_moves_its_part_of_the_money() -> None:
    s = Settlement()
    s.add_batch(LINE, INPUT, 1 * S, 3, 10)  # 10 nano-dollars over 3 tokens
    s.add_batch(LINE, INPUT, 2 * S, 5, 1000)
    s.add_counts(LLAMA, INPUT, 2 * S, {"a": 4})
    # All of the first batch (10), then 1 of 5 tokens of the second: 1000 * 1/5.
    assert claimed(s.settle(2 * S, 300 * S)) == {"a": (10 + 200, 4)}
    assert s.pending() == {LINE: (800, 4, 0)}


def test_tokens_no_gateway_claims_are_direct_after_the_horizon_and_stray_counts_are_counted() -> None:
    s = Settlement()
    s.add_batch(LINE, INPUT, 1 * S, 50, 500)
    assert s.settle(300 * S, 300 * S) == []  # 299 s old: still waiting
    assert claimed(s.settle(301 * S, 300 * S)) == {DIRECT: (500, 50)}
    s.add_counts(LLAMA, OUTPUT, 302 * S, {"a": 7})  # served on another node: nothing here to claim
    s.settle(302 * S, 300 * S)
    assert s.settle(602 * S, 300 * S) == [] and s.unmatched == {(LLAMA, OUTPUT): 7}
    s.add_counts(LLAMA, INPUT, 603 * S, {})  # a model a gateway counts: its unmatched count is known, 0
    assert s.unmatched == {(LLAMA, OUTPUT): 7, (LLAMA, INPUT): 0}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # ticks of lag between the servers' and the gateway's count
            st.sampled_from(["a", "b", "c", None]),  # None: a direct call
            st.integers(1, 500),
            st.integers(0, 10**9),
        ),
        max_size=40,
    )
)
def test_every_nano_dollar_and_token_is_claimed_once_or_still_waiting(requests) -> None:  # type: ignore[no-untyped-def]
    """Random traffic, each request counted by the gateway some ticks after the server: at every tick,
    claims + waiting = served, money and tokens; after the horizon everything is claimed, and each
    tenant's tokens are exactly what the gateway counted for it."""
    s = Settlement()
    due: dict[int, dict[str, float]] = {}
    served_money = served_tokens = 0.0
    moved: list[Claim] = []
    for tick, (lag, tenant, tokens, money) in enumerate(requests):
        s.add_batch(LINE, INPUT, tick * S, tokens, money)
        served_money, served_tokens = served_money + money, served_tokens + tokens
        if tenant is not None:
            due.setdefault(tick + lag, {}).setdefault(tenant, 0.0)
            due[tick + lag][tenant] += tokens
        s.add_counts(LLAMA, INPUT, tick * S, due.pop(tick, {}))
        moved += s.settle(tick * S, 10 * S)
        waiting = s.pending().get(LINE, (0, 0.0, 0.0))
        assert sum(c.money for c in moved) + waiting[0] == served_money
        assert sum(c.tokens for c in moved) + waiting[1] == served_tokens
    end = len(requests)
    for tick in range(end, end + 6):
        s.add_counts(LLAMA, INPUT, tick * S, due.pop(tick, {}))
        moved += s.settle(tick * S, 10 * S)
    moved += s.settle((end + 20) * S, 10 * S)
    assert s.pending() == {}
    assert sum(c.money for c in moved) == served_money and all(c.money >= 0 for c in moved)
    truth: dict[str, float] = {}
    for _, tenant, tokens, _ in requests:
        truth[tenant or DIRECT] = truth.get(tenant or DIRECT, 0.0) + tokens
    assert {t: n for t, (_, n) in claimed(moved).items() if n} == {t: n for t, n in truth.items() if n}


# --- the book: lines, quiet ticks, the cap ---------------------------------------------------------------


def totals_of(book: dict[Line, tuple[int, float, float]]):  # type: ignore[no-untyped-def]
    return lambda line: book[line]


def test_a_quiet_tick_follows_the_shares_settled_over_the_window_then_the_span() -> None:
    book = TenantBook()
    book.tick(1 * S, WINDOW_NS, [gateway_delta(LLAMA, "search", 30, 3), gateway_delta(LLAMA, "chat", 10, 1)],
              SERVED, [(LINE, (400, 40, 0), (40.0, 4.0))], totals_of({LINE: (440, 40.0, 4.0)}))  # fmt: skip
    assert {t: x.cost for t, x in book.tenants[LINE].items()} == {"search": 330, "chat": 110}
    # A quiet tick: input money by input tokens (3 : 1), the rest by all tokens (33 : 11).
    split = book.quiet_split(LLAMA, (40, 0, 8), 30 * S, WINDOW_NS)
    assert {t: x.cost for t, x in split.items()} == {"search": 30 + 6, "chat": 10 + 2}
    assert set(book.quiet_split(LLAMA, (0, 0, 8), 120 * S, WINDOW_NS)) == {"search", "chat"}  # the span
    book.tick(700 * S, WINDOW_NS, [], SERVED, [], totals_of({}))
    assert book.quiet_split(LLAMA, (0, 0, 8), 700 * S, WINDOW_NS) == {DIRECT: TenantTotals(8)}


def test_tenants_past_the_cap_fold_into_one_with_their_money() -> None:
    book = TenantBook(max_tenants=2)
    book.tick(1 * S, WINDOW_NS, [gateway_delta(LLAMA, t, 1, 0) for t in ("a", "b", "c", "d")], SERVED,
              [(LINE, (4, 0, 0), (4.0, 0.0))], totals_of({LINE: (4, 4.0, 0.0)}))  # fmt: skip
    assert book.tenants[LINE] == {
        "a": TenantTotals(1, 1),
        "b": TenantTotals(1, 1),
        OTHER_TENANTS: TenantTotals(2, 2),
    }


def test_a_line_no_gateway_ever_claimed_gets_no_tenants() -> None:
    book = TenantBook(horizon_s=10)
    book.tick(
        1 * S, WINDOW_NS, [], SERVED, [(LINE, (4, 5, 6), (4.0, 5.0))], totals_of({LINE: (15, 4.0, 5.0)})
    )
    book.tick(20 * S, WINDOW_NS, [], SERVED, [], totals_of({LINE: (15, 4.0, 5.0)}))
    assert book.tenants == {} and book.settlement.pending() == {}


def test_requests_streamed_over_many_ticks_each_team_pays_for_the_tokens_served_for_it() -> None:
    """A simulated server behind a gateway, 400 ticks, read through the token meter: requests stream
    for 1-8 ticks (the server counts per tick, the gateway at the answer's end), the gateway restarts
    twice (counters back to 0) and misses scrapes, a team starts late, and a tenth of requests are
    direct calls. Each tick's money belongs, in truth, to the teams whose tokens were served in it:
    every team's tokens are exactly its own, and its money within 5 % of that truth (measured: 0.9,
    1.1, 3.4 and 1.0 %: a count claims the oldest waiting tokens, not the ticks its answer streamed
    in, which nothing the gateway exports tells); the direct calls' money stays with the pod."""
    rng = random.Random(7)
    mix = {"search": 0.5, "chat": 0.3, "batch": 0.1, DIRECT: 0.1}
    tokens_meter, book = TokenMeter(), TenantBook(horizon_s=60)
    counted = {t: 0.0 for t in mix if t != DIRECT}  # the gateway's cumulative counters
    truth_money: dict[str, int] = {}
    truth_tokens: dict[str, float] = {}
    streams: list[tuple[str, int, float, float]] = []  # (tenant, ticks left, tokens per tick, in all)
    served_total, money_total = 0.0, 0
    for tick in range(470):  # the last 70: the answers end, what waits past the horizon settles
        end_ns = (tick + 1) * S
        if tick < 400:
            for _ in range(rng.randint(0, 4)):
                tenant = rng.choices(list(mix), weights=list(mix.values()))[0]
                if tenant != "batch" or tick >= 100:
                    ticks, per_tick = rng.randint(1, 8), float(rng.randint(1, 40))
                    streams.append((tenant, ticks, per_tick, ticks * per_tick))
        if tick in (150, 300):
            counted = dict.fromkeys(counted, 0.0)  # the gateway restarted (between two answers)
        served: dict[str, float] = {}
        still = []
        for tenant, left, per_tick, whole in streams:
            served[tenant] = served.get(tenant, 0.0) + per_tick
            if left > 1:
                still.append((tenant, left - 1, per_tick, whole))
            elif tenant != DIRECT:  # the answer ends: the gateway counts the whole request now
                counted[tenant] += whole
        streams = still
        tick_tokens = sum(served.values())
        money = 1_000_003 if tick_tokens else 0
        served_total += tick_tokens
        money_total += money
        for tenant, n in served.items():  # the truth: this tick's money by whose tokens it served
            truth_tokens[tenant] = truth_tokens.get(tenant, 0.0) + n
            truth_money[tenant] = truth_money.get(tenant, 0) + money * n / tick_tokens
        models = tuple(ModelCounters(LLAMA, 0.0, v, instance=t) for t, v in counted.items() if v)
        ok = tick % 37 != 5
        scrape = TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", ok, models if ok else ())
        deltas = tokens_meter.tick([scrape], tick, 1.0).deltas
        book.tick(end_ns, WINDOW_NS, deltas, SERVED, [(LINE, (0, money, 0), (0.0, tick_tokens))],
                  totals_of({LINE: (money_total, 0.0, served_total)}))  # fmt: skip
    assert book.settlement.pending() == {}
    got = book.tenants[LINE]
    assert sum(x.cost for x in got.values()) == money_total
    for tenant in mix:
        assert got[tenant].output_tokens == truth_tokens[tenant], tenant
        assert got[tenant].cost == pytest.approx(truth_money[tenant], rel=0.05), tenant


# --- through the meter's public entry: a tick of inputs -------------------------------------------------


def test_through_the_meter_each_line_money_is_its_tenants_money_over_time_and_a_restart() -> None:
    """Two vLLM pods of one model on two GPUs behind a LiteLLM gateway with three teams, 60 ticks; the
    exporter restarts from its state file at tick 30. Every line's money equals the sum over its
    tenants (DIRECT included) to the nano-dollar, at every tick; the teams pay their true shares."""
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")},
        output_input_weight=Decimal(4),
    )
    pods = [Owner("serve", f"llama-{k}", "platform", LLAMA) for k in range(2)]
    gpus = tuple(GpuSample(str(k), "H100", "on_demand", utilization=0.8) for k in range(2))
    held = tuple(Placement(str(k), pods[k]) for k in range(2))
    mix = {"search": 5, "chat": 3, "batch": 2}  # tokens per tick per team and pod
    server = [[0.0, 0.0], [0.0, 0.0]]
    gateway = dict.fromkeys(mix, 0.0)
    meter = Meter("n")
    t0 = 1_767_225_600 * 10**9
    for tick in range(60):
        if tick == 30:  # the exporter restarts: a new meter goes on from the saved state
            saved = meter.to_state()
            meter = Meter("n")
            meter.restore(saved)
        for k in range(2):
            server[k][0] += 10 * sum(mix.values())
            server[k][1] += sum(mix.values())
        for team, n in mix.items():
            gateway[team] += 2 * 10 * n  # input and output counted once per request, for both pods
        scrapes = tuple(
            TargetScrape(p.pod, p, "vllm", True, (ModelCounters(LLAMA, server[k][0], server[k][1]),))
            for k, p in enumerate(pods)
        )
        gw = TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                          tuple(ModelCounters(LLAMA, v, v / 10, instance=t) for t, v in gateway.items()))  # fmt: skip
        start = t0 + tick * 10**10
        snap = meter.tick(
            TickInput(start, start + 10**10, "n", gpus, held, scrapes, gateways=(gw,)), prices, 60
        )
        for view in snap.lines:  # once a gateway claimed its tokens, every tick: tenants + waiting = money
            if view.line.owner.pod and tick >= 1:
                paid = sum(x.cost for x in view.tenants.totals.values())
                assert paid + view.tenants.waiting_nano == sum(view.totals.cost.values())
    served = [v for v in snap.lines if v.line.owner.pod]
    assert len(served) == 2
    for view in served:
        # The first tick (the servers' and the gateway's baselines: no shares yet) stayed DIRECT.
        assert view.tenants.totals[DIRECT].cost == pytest.approx(
            sum(view.totals.cost.values()) / 60, rel=0.05
        )
        assert view.tenants.waiting_nano == 0  # the gateway counted each tick's tokens in that tick
        paid = {t: x.cost for t, x in view.tenants.totals.items() if t in mix}
        for team, n in mix.items():
            assert paid[team] / sum(paid.values()) == pytest.approx(n / sum(mix.values()), abs=0.01)


def test_an_exporter_restart_while_answers_stream_loses_no_claim() -> None:
    """The gateway counts each tick's tokens three ticks late (answers streaming); the exporter
    restarts from its state file with tokens waiting. The books end identical to a run without the
    restart, and tenants + waiting = the line's money at every tick of both."""
    import json
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    pod = Owner("serve", "llama-0", "platform", LLAMA)
    rng = random.Random(3)
    load = [{t: float(rng.randint(0, 50)) for t in ("search", "chat")} for _ in range(40)]

    def run(restart_at: int | None) -> list[tuple[str, int, float, float]]:
        meter, t0 = Meter("n", settle_s=30), 1_767_225_600 * 10**9
        server, counted = 0.0, {"search": 0.0, "chat": 0.0}
        for tick in range(40):
            if tick == restart_at:
                meter, saved = Meter("n", settle_s=30), json.loads(json.dumps(meter.to_state()))
                meter.restore(saved)
            server += sum(load[tick].values())
            if tick >= 3:
                for t, n in load[tick - 3].items():
                    counted[t] += n
            scrape = TargetScrape(pod.pod, pod, "vllm", True, (ModelCounters(LLAMA, server, server / 4),))
            gw = TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                              tuple(ModelCounters(LLAMA, n, n / 4, instance=t) for t, n in counted.items()))  # fmt: skip
            start = t0 + tick * 5 * 10**9
            snap = meter.tick(TickInput(start, start + 5 * 10**9, "n", (GpuSample("0", "H100", "on_demand"),),
                                        (Placement("0", pod),), (scrape,), gateways=(gw,)), prices, 60)  # fmt: skip
            (view,) = [v for v in snap.lines if v.line.owner.pod]
            split = view.tenants
            if split.totals:
                paid = sum(x.cost for x in split.totals.values())
                assert paid + split.waiting_nano == sum(view.totals.cost.values()), tick
        assert split.waiting_nano > 0  # the last three ticks' answers are still streaming
        return sorted((t, x.cost, x.input_tokens, x.output_tokens) for t, x in split.totals.items())

    assert run(restart_at=20) == run(restart_at=None)


def test_a_gateway_added_later_leaves_the_money_before_it_with_the_pod() -> None:
    """The line's money from before any gateway counted its model is DIRECT: its tenants still add up
    to its money (found against a real LiteLLM, which starts after the exporter's first ticks)."""
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    pod = Owner("serve", "llama-0", "platform", LLAMA)
    meter, t0 = Meter("n"), 1_767_225_600 * 10**9
    for tick in range(10):
        server = (
            TargetScrape(pod.pod, pod, "vllm", True, (ModelCounters(LLAMA, 100.0 * tick, 10.0 * tick),)),
        )
        gateway = () if tick < 5 else (TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                                                    (ModelCounters(LLAMA, 100.0 * tick, 10.0 * tick, instance="search"),)),)  # fmt: skip
        start = t0 + tick * 10**10
        snap = meter.tick(TickInput(start, start + 10**10, "n", (GpuSample("0", "H100", "on_demand"),),
                                    (Placement("0", pod),), server, gateways=gateway), prices, 60)  # fmt: skip
    (view,) = [v for v in snap.lines if v.line.owner.pod]
    split = view.tenants
    assert sum(x.cost for x in split.totals.values()) + split.waiting_nano == sum(view.totals.cost.values())
    # Five ticks before the gateway. The tick of its first reading (a baseline: it counted nothing)
    # is claimed by the next tick's count, oldest first, and so on: the last tick still waits.
    assert split.totals[DIRECT].cost == 5 * 10_000_000
    assert split.totals["search"].cost == 4 * 10_000_000 and split.waiting_nano == 10_000_000


def test_a_gateway_restart_is_seen_through_created_even_when_its_counters_overtake() -> None:
    """LiteLLM (prometheus_client) exports each series' _created: a new process is a restart even if its
    counters already passed the old values by the next scrape; nothing is counted twice."""

    def payload(created: float, value: float) -> str:
        return litellm([(LLAMA, "search", value, value)]).replace(
            "# HELP litellm_output",
            f'litellm_input_tokens_metric_created{{model="{LLAMA}",team="search"}} {created}\n# HELP litellm_output',
        )

    meter = TokenMeter()
    read = [(100.0, 50), (100.0, 80), (500.0, 95)]  # restarted at 500 s and served 95 since: overtook 80
    got = []
    for k, (created, value) in enumerate(read):
        models = read_gateway(payload(created, value), GATEWAYS["litellm"])
        got.append(
            meter.tick(
                [TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True, models)], 10 * k, 10
            ).deltas
        )
    assert [d.input_tokens for d in got[1]] == [30]
    assert [d.input_tokens for d in got[2]] == [95]  # from zero, not 95 - 80


def test_a_model_this_node_starts_serving_late_takes_the_gateways_counts_since_not_its_life() -> None:
    """Over time, through the runtime: the gateway counted a model for long (tenant ads: a million
    tokens before) while this node's server was down; when it comes up, the two tenants calling it
    equally from then on pay equally. Read only once served, the gateway's series would look born
    then and their whole life would count as one tick's."""
    from exporter.config.load import load_config_text
    from exporter.demo.simulation import SimEngine
    from exporter.errors import FetchError
    from exporter.runtime.loop import Runtime

    config = """
node: n
tick_seconds: 5
window_seconds: 60
pricing: {catalogue: false, gpus: {H100: {on_demand: 3.60}}}
gateways: [{kind: litellm, url: "http://gw:1/metrics"}]
inventory:
  gpus: [{hardware: H100, count: 1, capacity: on_demand}]
  workloads:
    - {pod: p-0, namespace: a, team: platform, model: declared, gpus: ["0"], targets: [{url: "http://vllm:1/metrics"}]}
"""
    server, counted = SimEngine("served"), {"ads": 1e6, "search": 0.0}
    clock = {"ns": 1_767_225_600 * 10**9, "tick": 0}

    def fetch(url: str, limits: object, client: object = None) -> str:
        if url == "http://gw:1/metrics":
            return litellm([("hosted_vllm/served", team, n, n) for team, n in counted.items()])
        if clock["tick"] < 3:
            raise FetchError("connection refused", reason="connect")
        return server.text()

    rt = Runtime(lambda: load_config_text(config), clock=lambda: clock["ns"], fetch=fetch)
    for tick in range(15):
        clock["tick"], clock["ns"] = tick, clock["ns"] + 5 * 10**9
        for team in counted:  # each tenant: one request of 100 + 100 tokens per tick
            counted[team] += 100
            server.serve(100, 100)
        snap = rt.tick()
    (view,) = [v for v in snap.lines if v.line.owner.pod == "p-0" and v.line.owner.model == "served"]
    paid = {t: x.cost for t, x in view.tenants.totals.items() if t in counted}
    assert paid["ads"] / (paid["ads"] + paid["search"]) == pytest.approx(0.5, abs=0.05), view.tenants


def test_the_page_shows_each_calling_teams_money_and_escapes_its_name() -> None:
    """The landing page's split table: one row per (line, tenant), most money first, the cost and tokens
    /metrics exports, the waiting money; a tenant name from a gateway's label is escaped."""
    from decimal import Decimal

    from exporter.exposition.page import LandingPage
    from exporter.exposition.status import ExportView, RuntimeStatus
    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    pod = Owner("serve", "llama-0", "platform", LLAMA)
    meter, t0, evil = Meter("n"), 1_767_225_600 * 10**9, "<img src=x onerror=alert(1)>"
    for tick in range(7):
        server = (
            TargetScrape(pod.pod, pod, "vllm", True, (ModelCounters(LLAMA, 300.0 * tick, 30.0 * tick),)),
        )
        gw = TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                          (ModelCounters(LLAMA, 200.0 * tick, 20.0 * tick, instance="search"),
                           ModelCounters(LLAMA, 100.0 * tick, 10.0 * tick, instance=evil)))  # fmt: skip
        start = t0 + tick * 10**10
        snap = meter.tick(TickInput(start, start + 10**10, "n", (GpuSample("0", "H100", "on_demand"),),
                                    (Placement("0", pod),), server, gateways=(gw,)), prices, 60)  # fmt: skip
    view = ExportView(snap, RuntimeStatus("run", "test", prices, window_seconds=60))
    page = LandingPage().render(view, 10)[0].decode()
    table = page.split('<table id="tenants"')[1].split("</table>")[0]
    assert evil not in page and html.escape(evil) in table
    rows = [r for r in table.split("<tr") if "<td" in r]
    assert [re.findall(r"<td[^>]*>(.*?)</td>", r)[0] for r in rows[:3]] == [
        "search",
        html.escape(evil),
        "__direct__",
    ]
    (view,) = [v for v in snap.lines if v.line.owner.pod]
    search = view.tenants.totals["search"]
    assert f"${search.cost / 1e9:,.4f}" in rows[0] and f"{search.input_tokens:,.0f}" in rows[0]
    assert "waiting for the gateway" in table


def test_any_routers_token_counters_are_a_gateway_the_config_names() -> None:
    """Kind counters: a router's per-direction token counters with a tenant and a model label, named in
    the config, read with the same rules (every model, unset tenant, bad values refused)."""
    from exporter.engines.gateways import profile_of
    from exporter.records import Gateway

    text = """# TYPE router_prompt_tokens_total counter
router_prompt_tokens_total{tenant="search",served="llama",pool="a"} 120
router_prompt_tokens_total{tenant="search",served="llama",pool="b"} 30
router_prompt_tokens_total{tenant="",served="llama",pool="a"} 5
# TYPE router_completion_tokens_total counter
router_completion_tokens_total{tenant="search",served="llama",pool="a"} 12
router_completion_tokens_total{tenant="",served="llama",pool="a"} 1
"""
    gw = Gateway("router", "http://r:1/metrics", "counters", "tenant", {}, counters=(
        "router_prompt_tokens_total", "router_completion_tokens_total"), model_label="served")  # fmt: skip
    got = read_gateway(text, profile_of(gw), tenant_label=gw.tenant_label)
    assert [(m.model, m.instance, m.input_tokens, m.output_tokens) for m in got] == [
        ("llama", NO_TENANT, 5, 1), ("llama", "search", 150, 12)]  # fmt: skip
    with pytest.raises(ParseError):
        read_gateway(text.replace(" 30\n", " NaN\n"), profile_of(gw), tenant_label="tenant")


def sglang_by_team(counts: dict[str, list[float]], started: float) -> str:
    """SGLang 0.5 with --tokenizer-metrics-allowed-custom-labels team: every tokenizer series carries the
    team the request's x-custom-labels header named ("" when none did)."""
    rows = [f"sglang:{name}_total{{engine_type=\"unified\",model_name=\"qwen\",team=\"{team}\"}} {pair[k]}"
            for name, k in (("prompt_tokens", 0), ("generation_tokens", 1)) for team, pair in sorted(counts.items())]  # fmt: skip
    rows.append(f"process_start_time_seconds {started}")
    return "\n".join(rows) + "\n"


def test_a_server_that_names_its_callers_splits_its_own_money_exactly_over_time() -> None:
    """Chargeback without a gateway: an SGLang pod whose callers name their team in a custom label,
    read with tenant_label over 40 ticks of changing traffic and a server restart at tick 20. Its counts come with its tokens (no lag), so every tick's money goes to that tick's callers:
    input money by input tokens, output money by output tokens, to the nano-dollar per tick."""
    from exporter.config.load import load_config_text
    from exporter.runtime.loop import Runtime

    config = """
node: n
tick_seconds: 5
window_seconds: 60
pricing: {catalogue: false, gpus: {H100: {on_demand: 3.60}}}
inventory:
  gpus: [{hardware: H100, count: 1, capacity: on_demand}]
  workloads:
    - {pod: sglang-0, namespace: a, team: platform, model: qwen, gpus: ["0"],
       targets: [{url: "http://sglang:1/metrics", tenant_label: team}]}
"""
    rng = random.Random(11)
    counts: dict[str, list[float]] = {"search": [0.0, 0.0], "ads": [0.0, 0.0], "": [0.0, 0.0]}
    clock = {"ns": 1_767_225_600 * 10**9, "tick": 0, "started": 1_767_225_000.0}

    def fetch(url: str, limits: object, client: object = None) -> str:
        return sglang_by_team(counts, clock["started"])

    rt = Runtime(lambda: load_config_text(config), clock=lambda: clock["ns"], fetch=fetch)
    truth: dict[str, float] = {}
    tokens: dict[str, list[float]] = {}
    last = None
    for tick in range(40):
        clock["tick"], clock["ns"] = tick, clock["ns"] + 5 * 10**9
        if tick == 20:  # the server restarts: its counters start again
            clock["started"] += 600
            counts = {t: [0.0, 0.0] for t in counts}
        served = {t: [float(rng.randint(0, 400)), float(rng.randint(0, 40))] for t in counts}
        for t, (i, o) in served.items():
            counts[t][0] += i
            counts[t][1] += o
        snap = rt.tick()
        (view,) = [v for v in snap.lines if v.line.owner.pod == "sglang-0"]
        t_ = view.totals
        now = (t_.cost_input, t_.cost_output, sum(t_.cost.values()) - t_.cost_input - t_.cost_output)
        if last is not None:  # the first tick is a baseline: its money stays __direct__
            delta = [a - b for a, b in zip(now, last, strict=True)]
            tin, tout = sum(p[0] for p in served.values()), sum(p[1] for p in served.values())
            for t, (i, o) in served.items():
                name = t or "__none__"
                truth[name] = (
                    truth.get(name, 0.0)
                    + delta[0] * i / tin
                    + delta[1] * o / tout
                    + delta[2] * (i + o) / (tin + tout)
                )
                tokens.setdefault(name, [0.0, 0.0])
                tokens[name][0] += i
                tokens[name][1] += o
        last = now
    split = view.tenants.totals
    assert view.tenants.waiting_nano == 0
    assert sum(x.cost for x in split.values()) == sum(view.totals.cost.values())
    for name, money in truth.items():
        assert split[name].cost == pytest.approx(money, abs=3 * 40), name  # largest remainder: ±1 per part
        assert [split[name].input_tokens, split[name].output_tokens] == tokens[name], name
    assert set(split) == set(truth)  # the runtime's first tick is a baseline: no money before the first claim


def test_counts_left_waiting_when_the_gateway_is_removed_still_expire_and_are_counted() -> None:
    """Over time through the meter: the gateway counts tokens no server here served (credit), then the
    config drops the gateway. Later ticks still settle: past the settle time the credit is counted as
    unmatched, not kept forever."""
    from decimal import Decimal

    from exporter.meter.ledger import Meter
    from exporter.pricing.prices import GpuPrice, PricingConfig
    from exporter.records import GpuSample, Placement, TickInput

    prices = PricingConfig(
        gpu_prices={("H100", "on_demand"): GpuPrice("H100", "on_demand", Decimal("3.60"), "config", "t")}
    )
    pod = Owner("serve", "llama-0", "platform", LLAMA)
    meter, t0 = Meter("n", settle_s=30), 1_767_225_600 * 10**9
    for tick in range(12):
        server = (
            TargetScrape(pod.pod, pod, "vllm", True, (ModelCounters(LLAMA, 100.0, 10.0),)),
        )  # no traffic
        gateway = (TargetScrape("gateway/litellm", Owner("", "", "", ""), "litellm", True,
                                (ModelCounters(LLAMA, 50.0 * tick, 0.0, instance="search"),)),) if tick < 3 else ()  # fmt: skip
        start = t0 + tick * 5 * 10**9
        snap = meter.tick(TickInput(start, start + 5 * 10**9, "n", (GpuSample("0", "H100", "on_demand"),),
                                    (Placement("0", pod),), server, gateways=gateway), prices, 60)  # fmt: skip
    assert snap.gateway_unmatched == {(LLAMA, "input"): 100.0, (LLAMA, "output"): 0.0}


def test_a_gateway_map_set_on_a_running_gateway_renames_its_series_without_counting_them_again() -> None:
    """A gateway's ``models`` map added by a reload (and a second name mapped to the same model): each
    of the gateway's own names is followed as it was, so every tick's 100 tokens count once; nothing
    of their lifetimes (a million each) lands on one tenant as a credit."""
    meter, gw = TokenMeter(), Owner("", "", "", "")
    aliases = ("llama-alias", "llama-b")
    per_tick: list[float] = []
    for k in range(6):
        text = litellm([(a, "search", 10**6 + 100 * k, 0) for a in aliases])
        names = {a: LLAMA for a in aliases} if k >= 2 else {} if k < 1 else {aliases[0]: LLAMA}
        read = read_gateway(text, GATEWAYS["litellm"], names)
        tick = meter.tick((TargetScrape("gateway/litellm", gw, "litellm", True, read),), k * 5.0, 5.0)
        per_tick.append(sum(d.input_tokens for d in tick.deltas))
        if k >= 2:
            assert {m.model for m in read} == {LLAMA}, read
    assert per_tick == [0, 200, 200, 200, 200, 200], per_tick
