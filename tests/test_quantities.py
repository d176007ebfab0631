"""One table per quantity (issue 16.2): records.QUANTITIES drives the reader, the deltas, the window, the
totals, the state file and the exposition; every record a quantity flows through carries its field.

A new quantity is an entry in the table; these tests name the record that still lacks its field.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from exporter.engines.profiles import SERVERS, ServerProfile
from exporter.engines.read import read_payload
from exporter.exposition.families import FAMILIES
from exporter.meter import state
from exporter.meter.deltas import AMOUNT_FIELDS, ModelDelta
from exporter.meter.snapshot import LineTotals
from exporter.meter.windows import QUANTITY_FIELDS, SPREAD_FIELDS, LiveGauges, TickRecord
from exporter.records import (
    AMOUNT,
    FIGURE,
    LEVEL,
    LEVELS,
    QUANTITIES,
    READING,
    TOKEN_AMOUNTS,
    TOKEN_COUNTERS,
    WINDOWED,
    ModelCounters,
    Quantity,
)


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def test_the_table_names_each_quantity_once_with_a_known_kind() -> None:
    names = [q.name for q in QUANTITIES]
    assert len(names) == len(set(names))
    assert {q.kind for q in QUANTITIES} <= {AMOUNT, READING, FIGURE, LEVEL}
    assert all(q.gauge for q in QUANTITIES if q.kind == LEVEL)
    assert not any(q.windowed or q.refuses for q in QUANTITIES if q.kind == LEVEL)


def test_the_views_keep_their_order() -> None:
    """The orders the records, the state file and the reader's messages have always had."""
    assert TOKEN_COUNTERS == (
        "input_tokens",
        "computed_input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "requests",
    )
    assert TOKEN_AMOUNTS == ("input_tokens", "cached_input_tokens", "output_tokens", "requests")
    assert (*TOKEN_AMOUNTS, "itl_seconds", "itl_count") == WINDOWED
    assert LEVELS == ("running", "waiting")


@pytest.mark.parametrize("q", QUANTITIES, ids=lambda q: q.name)
def test_every_record_a_quantity_flows_through_carries_it(q: Quantity) -> None:
    assert q.name in _names(ModelCounters), "records.ModelCounters"
    profile = _names(ServerProfile)
    assert ("token_time" if q.paired else q.name) in profile, "engines.profiles.ServerProfile"
    if q.kind != READING:
        assert q.name in _names(ModelDelta), "meter.tokens.ModelDelta"
    if q.kind in (AMOUNT, FIGURE):
        assert q.name in AMOUNT_FIELDS  # summed per line, split across GPU kinds
    if q.kind == AMOUNT:
        assert q.name in _names(LineTotals), "meter.snapshot.LineTotals"
    if q.windowed:
        assert q.name in TickRecord._fields, "meter.windows.TickRecord"
        assert TickRecord._fields.index(q.name) in SPREAD_FIELDS
    if q.kind == LEVEL:
        assert {f"{q.name}_seconds", f"{q.name}_ns"} <= set(TickRecord._fields), "meter.windows.TickRecord"
        assert q.gauge in _names(LiveGauges), "meter.windows.LiveGauges"
        assert f"cpm_{q.gauge}" in {f.name for f in FAMILIES}, "exposition.families.FAMILIES"


def test_the_window_record_ends_with_the_table() -> None:
    """The booking fills TickRecord positionally: its quantity fields are the table's, in order."""
    assert TickRecord._fields[-len(QUANTITY_FIELDS) :] == QUANTITY_FIELDS


def test_the_state_file_saves_every_amount_and_loads_it_back() -> None:
    totals = LineTotals(**{f: float(i + 1) for i, f in enumerate(TOKEN_AMOUNTS)})  # type: ignore[arg-type]
    saved = state.totals_to(totals)
    assert {f: saved[f] for f in TOKEN_AMOUNTS} == {f: float(i + 1) for i, f in enumerate(TOKEN_AMOUNTS)}
    assert state.totals_from(saved) == totals


def test_the_reader_reads_every_quantity_a_profile_names() -> None:
    """vLLM names a series for every quantity but the computed prompt tokens (llama.cpp's)."""
    vllm = SERVERS["vllm"]
    payload = "\n".join(
        [
            'vllm:prompt_tokens_total{model_name="m"} 100',
            'vllm:prompt_tokens_cached_total{model_name="m"} 40',
            'vllm:generation_tokens_total{model_name="m"} 50',
            'vllm:request_success_total{model_name="m",finished_reason="stop"} 3',
            'vllm:request_prefill_time_seconds_sum{model_name="m"} 1.5',
            'vllm:request_decode_time_seconds_sum{model_name="m"} 4.5',
            'vllm:inter_token_latency_seconds_sum{model_name="m"} 2.0',
            'vllm:inter_token_latency_seconds_count{model_name="m"} 47',
            'vllm:num_requests_running{model_name="m"} 5',
            'vllm:num_requests_waiting{model_name="m"} 2',
            "",
        ]
    )
    [m] = read_payload(payload, "vllm", 1000)
    read = {q.name: getattr(m, q.name) for q in QUANTITIES}
    assert read == {
        "input_tokens": 100,
        "computed_input_tokens": None,
        "cached_input_tokens": 40,
        "output_tokens": 50,
        "requests": 3,
        "prefill_seconds": 1.5,
        "decode_seconds": 4.5,
        "itl_seconds": 2.0,
        "itl_count": 47,
        "running": 5,
        "waiting": 2,
    }
    assert vllm.computed_input_tokens == ()
