"""``cpm-exporter calc``: one test per formula, DESIGN §3's worked example to the cent, bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from exporter.cli import main
from exporter.whatif import WhatIfError
from exporter.whatif.calc import Fleet, Mix, Overheads, cpm, inference, training

D = Decimal
DESIGN_FLEET = Fleet(D("4.50"), 8, D(3000), D("0.70"))


def close(a: Decimal, b: Decimal) -> bool:
    """Equal to 24 places: calc divides with 50 digits, the test's own arithmetic with 28."""
    return abs(a - b) < D("1e-24")


def test_design_worked_example_to_the_cent() -> None:
    """8 GPUs at $4.50/h ($36/h), 3,000 tok/s/GPU, 70 % ⇒ 60.48 M tokens/h ⇒ $0.595 per M tokens."""
    b = inference(DESIGN_FLEET)
    assert b["gpu_usd_per_hour"] == 36
    assert b["tokens_per_hour"] == 60_480_000
    assert b["usd_per_million_tokens"].quantize(D("0.001")) == D("0.595")
    assert b["usd_per_million_tokens"].quantize(D("0.01")) == D("0.60")
    assert close(b["usd_per_million_tokens"], D(36) / D("60.48"))


def test_gpu_only_cpm_does_not_depend_on_the_gpu_count() -> None:
    """CPM = $/GPU-h ÷ (tokens/s per GPU × 3600 × utilisation) × 10⁶."""
    assert cpm(D("4.50"), D(3000), D("0.70")) == inference(DESIGN_FLEET)["usd_per_million_tokens"]
    assert cpm(D("3.60"), D(1000)) == 1


def test_utilisation_scales_cost_as_one_over_u() -> None:
    full = inference(Fleet(D(3), 1, D(1000)))["usd_per_million_tokens"]
    third = inference(Fleet(D(3), 1, D(1000), D("0.3")))["usd_per_million_tokens"]
    assert (third / full).quantize(D("0.01")) == D("3.33")


def test_all_in_uplift_is_a_percentage_of_the_gpu_rate() -> None:
    b = inference(Fleet(D("4.50"), 8, D(3000), D("0.70"), Overheads(all_in_uplift_percent=D(25))))
    assert b["all_in_usd_per_hour"] == 9
    assert b["total_usd_per_hour"] == 45


def test_egress_is_gb_per_million_tokens_times_price() -> None:
    """egress $/h = tokens/h ÷ 10⁶ × GB per M tokens × $/GB: 60.48 × 0.5 × 0.10."""
    o = Overheads(egress_gb_per_million_tokens=D("0.5"), egress_usd_per_gb=D("0.10"))
    assert inference(Fleet(D("4.50"), 8, D(3000), D("0.70"), o))["egress_usd_per_hour"] == D("3.024")


def test_storage_month_is_730_hours() -> None:
    b = inference(Fleet(D("4.50"), 8, D(3000), D("0.70"), Overheads(storage_usd_per_month=D(730))))
    assert b["storage_usd_per_hour"] == 1
    assert any("730 h" in note for note in b.notes)


def test_support_uplift_is_on_gpu_egress_and_storage() -> None:
    o = Overheads(D("0.5"), D("0.10"), D(730), support_uplift_percent=D(10))
    b = inference(Fleet(D("4.50"), 8, D(3000), D("0.70"), o))
    assert b["support_usd_per_hour"] == D("0.1") * (36 + D("3.024") + 1)
    assert b["total_usd_per_hour"] == D("1.1") * (36 + D("3.024") + 1)


def test_zero_overheads_are_left_out_of_the_breakdown() -> None:
    keys = [line.key for line in inference(DESIGN_FLEET).lines]
    assert "egress_usd_per_hour" not in keys and "support_usd_per_hour" not in keys


def test_input_output_split_by_token_weight_adds_back_to_the_total() -> None:
    """CPM_in = CPM ÷ (s + w(1 − s)), CPM_out = w × CPM_in; s × CPM_in + (1 − s) × CPM_out = CPM."""
    b = inference(DESIGN_FLEET, Mix(D("0.8"), D(4)))
    total, cin, cout = (
        b["usd_per_million_tokens"],
        b["usd_per_million_input_tokens"],
        b["usd_per_million_output_tokens"],
    )
    assert close(cin, total / D("1.6"))
    assert close(cout, 4 * cin)
    assert close(D("0.8") * cin + D("0.2") * cout, total)


def test_all_input_mix_has_no_output_cpm() -> None:
    assert "usd_per_million_output_tokens" not in inference(DESIGN_FLEET, Mix(D(1)))


def test_cost_per_request_and_requests_per_hour() -> None:
    b = inference(DESIGN_FLEET, tokens_per_request=D(1500))
    assert b["requests_per_hour"] == 40_320
    assert close(b["usd_per_request"], b["usd_per_million_tokens"] * D("0.0015"))
    assert close(b["usd_per_request"] * b["requests_per_hour"], D(36))


def test_month_is_total_per_hour_times_730() -> None:
    assert inference(DESIGN_FLEET)["usd_per_month"] == 36 * 730


def test_training_run_cost_per_million_tokens_and_wall_clock() -> None:
    """8 GPUs × $2.50, 5,000 tok/s/GPU ⇒ 144 M tokens/h; 1.44 B tokens ⇒ 10 h, $200, $0.1389/M."""
    b = training(Fleet(D("2.50"), 8, D(5000)), D("1.44e9"))
    assert b["wall_clock_hours"] == 10
    assert b["gpu_hours"] == 80
    assert b["run_cost_usd"] == 200
    assert b["usd_per_million_tokens"].quantize(D("0.0001")) == D("0.1389")


def test_training_with_overheads_and_utilisation() -> None:
    fleet = Fleet(D("2.50"), 8, D(5000), D("0.5"), Overheads(storage_usd_per_month=D(730)))
    b = training(fleet, D("1.44e9"))
    assert b["wall_clock_hours"] == 20
    assert b["run_cost_usd"] == 21 * 20


def test_zero_throughput_says_what_was_expected() -> None:
    with pytest.raises(
        WhatIfError, match=r"--tokens-per-second: expected a throughput > 0 tokens/s per GPU, got 0"
    ):
        inference(Fleet(D(2), 8, D(0)))


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(WhatIfError) as e:
        training(Fleet(D(0), 0, D(1), D("1.3")), D(0))
    message = str(e.value)
    for expected in (
        "--usd-per-gpu-hour",
        "--gpus",
        "--utilisation: expected a fraction in (0, 1]",
        "--train-tokens",
    ):
        assert expected in message


def test_cli_json_carries_usd_per_million_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "--usd-per-gpu-hour", "4.50", "--gpus", "8", "--tokens-per-second", "3000"]
    assert main([*argv, "--utilisation", "70%", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["usd_per_million_tokens"] == 0.595238095
    assert doc["tokens_per_hour"] == 60_480_000
    assert [line["key"] for line in doc["breakdown"]][:2] == ["usd_per_gpu_hour", "gpus"]


def test_cli_accepts_utilization_spelling_and_table_shows_each_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "calc",
        "--usd-per-gpu-hour",
        "4.50",
        "--gpus",
        "8",
        "--tokens-per-second",
        "3000",
        "--utilization",
        "0.7",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "60,480,000" in out and "0.5952" in out and "730 h" in out


def test_cli_csv_has_one_row_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "calc",
        "--usd-per-gpu-hour",
        "4.50",
        "--gpus",
        "8",
        "--tokens-per-second",
        "3000",
        "--format",
        "csv",
    ]
    assert main(argv) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "key,label,value,unit,formula"
    assert any(r.startswith("usd_per_million_tokens,") for r in rows)


def test_cli_catalogue_price_says_source_and_date(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "--hardware", "B200", "--capacity", "spot", "--gpus", "64", "--tokens-per-second", "9000"]
    assert main([*argv, "--train-tokens", "1T", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["usd_per_gpu_hour"] == 2.07
    assert doc["breakdown"][0]["formula"] == "catalogue 2026-12-07: B200 spot, Spheron, April 2026"
    assert doc["train_tokens"] == 10**12


def test_cli_unknown_hardware_is_exit_2_naming_what_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calc", "--hardware", "H900", "--capacity", "spot", "--tokens-per-second", "9000"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown hardware 'H900'" in err and "B200" in err and "--usd-per-gpu-hour" in err


def test_cli_missing_catalogue_class_names_the_classes_it_has(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calc", "--hardware", "H100", "--capacity", "spot", "--tokens-per-second", "1"]) == 2
    assert "no catalogue price for H100 spot" in capsys.readouterr().err


def test_cli_zero_throughput_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calc", "--usd-per-gpu-hour", "2", "--tokens-per-second", "0"]) == 2
    assert "expected a throughput > 0" in capsys.readouterr().err


def test_cli_egress_volume_needs_a_price(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "calc",
        "--usd-per-gpu-hour",
        "2",
        "--tokens-per-second",
        "1",
        "--egress-gb-per-million-tokens",
        "1",
    ]
    assert main(argv) == 2
    assert "needs --egress-usd-per-gb" in capsys.readouterr().err
