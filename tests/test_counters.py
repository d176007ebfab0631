"""Upstream counter deltas: resets are a restart from zero, never abs() or clamping."""

from __future__ import annotations

import math

import pytest

from exporter.meter.counters import Reading, delta, is_valid_counter


@pytest.mark.parametrize(
    ("prev", "cur", "amount", "reset"),
    [
        (Reading(100), Reading(150), 50, False),
        (Reading(1e9), Reading(0), 0, True),  # restart seen at zero
        (Reading(1e9), Reading(5), 5, True),  # restart, then 5 more: count 5, not 1e9-5
        (Reading(100, created=1.0), Reading(150, created=2.0), 150, True),  # overtook its old value
        (Reading(1000.0), Reading(999.9999), 999.9999, True),  # float jitter backwards is a reset
        (Reading(7, created=3.0), Reading(7, created=3.0), 0, False),
    ],
)
def test_delta_table(prev: Reading, cur: Reading, amount: float, reset: bool) -> None:
    d = delta(prev, cur)
    assert d.amount == pytest.approx(amount)
    assert d.reset is reset


def test_first_sight_is_a_baseline_unless_born_while_we_watched() -> None:
    assert delta(None, Reading(500, created=10.0), born_after=20.0).amount == 0
    assert delta(None, Reading(500), born_after=20.0).amount == 0
    assert delta(None, Reading(500, created=25.0), born_after=20.0).amount == 500


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_invalid_counter_values(value: float) -> None:
    assert not is_valid_counter(value)


def test_valid_counter_values() -> None:
    assert is_valid_counter(None)
    assert is_valid_counter(0.0)
    assert is_valid_counter(1e300)
