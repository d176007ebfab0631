"""dcgm-exporter payloads → GPU units.

On the fixture payloads, the expected units come from prometheus_client's own parser with
straightforward code (group by UUID and GPU instance, take the field, convert the unit), so
the test checks our reading, not a copy of it. Rules the fixtures do not show (time-slicing,
old label spellings, bad readings) are checked on small hand-written payloads.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.errors import ParseError
from exporter.sources.gpu.dcgm import FIELDS, DcgmHolder, DcgmUnit, read_dcgm

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "dcgm-exporter").glob("*.txt"))
UUID0 = "GPU-5d2b7c1e-9a3f-4e60-b1d8-0c7f2e4a9b13"
UUID1 = "GPU-a81c04f2-6e5d-4b97-8c3a-f21e7d590c6b"

Key = tuple[str, str | None]


def reference_units(text: str) -> dict[Key, dict[str, object]]:
    """What each unit should read, from prometheus_client's parse (no time-slicing in fixtures)."""
    series: dict[Key, dict[str, float]] = defaultdict(dict)
    labels: dict[Key, dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # prometheus_client renames the samples of a counter lacking _total to name_total.
            name = s.name.removesuffix("_total") if family.type == "counter" else s.name
            key = (s.labels["UUID"], s.labels.get("GPU_I_ID"))
            assert name not in series[key], "one series per field and unit in the fixtures"
            series[key][name] = s.value
            labels.setdefault(key, s.labels)
    expected: dict[Key, dict[str, object]] = {}
    for key, values in series.items():
        if not any(f.metric in values for f in FIELDS):
            continue
        lab = labels[key]
        if "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in values:
            util, util_field = values["DCGM_FI_PROF_GR_ENGINE_ACTIVE"], "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
        elif "DCGM_FI_DEV_GPU_UTIL" in values:
            util, util_field = values["DCGM_FI_DEV_GPU_UTIL"] / 100, "DCGM_FI_DEV_GPU_UTIL"
        else:
            util, util_field = None, None
        energy = values.get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
        fb = values.get("DCGM_FI_DEV_FB_USED")
        expected[key] = {
            "gpu_index": lab["gpu"],
            "model_name": lab["modelName"],
            "mig_profile": lab.get("GPU_I_PROFILE"),
            "utilization": util,
            "utilization_field": util_field,
            "power_watts": values.get("DCGM_FI_DEV_POWER_USAGE"),
            "energy_joules_total": None if energy is None else energy / 1000,
            "memory_used_bytes": None if fb is None else fb * 1024 * 1024,
            "holders": (((lab["namespace"], lab["pod"], lab["container"]),) if "pod" in lab else ()),
            "hostname": lab["Hostname"],
        }
    return expected


def as_reference(unit: DcgmUnit) -> dict[str, object]:
    return {
        "gpu_index": unit.gpu_index,
        "model_name": unit.model_name,
        "mig_profile": unit.mig_profile,
        "utilization": unit.utilization,
        "utilization_field": unit.utilization_field,
        "power_watts": unit.power_watts,
        "energy_joules_total": unit.energy_joules_total,
        "memory_used_bytes": unit.memory_used_bytes,
        "holders": tuple((h.namespace, h.pod, h.container) for h in unit.holders),
        "hostname": unit.hostname,
    }


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_reads_like_prometheus_client(path: Path) -> None:
    text = path.read_text()
    reading = read_dcgm(text)
    ref = reference_units(text)
    assert reading.skipped == 0
    assert {(u.uuid, u.gpu_instance_id) for u in reading.units} == set(ref)
    for unit in reading.units:
        assert as_reference(unit) == ref[(unit.uuid, unit.gpu_instance_id)], unit.unit_id
        assert unit.rejected == ()
    keys = [(int(u.gpu_index), int(u.gpu_instance_id or -1)) for u in reading.units]
    assert keys == sorted(keys)


def test_fixtures_are_what_the_report_says() -> None:
    """Two H100s (GPU 0 held by a vLLM pod with -k), and an A100 split into two 3g.40gb GIs."""
    by_name = {p.name: read_dcgm(p.read_text()).units for p in FIXTURES}
    plain, k8s, mig = (by_name[f"4.5.3-4.8.2{s}.txt"] for s in ("", "-k8s", "-mig"))
    assert [u.unit_id for u in plain] == [u.unit_id for u in k8s] == [UUID0, UUID1]
    assert [u.holders for u in k8s] == [
        (DcgmHolder("llm-serving", "vllm-llama31-8b-7d9f6c5b8-x2kqp", "vllm"),),
        (),
    ]
    parent = "GPU-7e0b21d4-3c58-4f1a-9d62-b84e5a0c1f37"
    assert [u.unit_id for u in mig] == [f"{parent}/gi1", f"{parent}/gi2"]
    assert {u.gpu_index for u in mig} == {"0"}
    assert {u.mig_profile for u in mig} == {"3g.40gb"}
    # The MIG sample has no device-level fields per GI: unknown, not zero.
    assert {(u.power_watts, u.energy_joules_total) for u in mig} == {(None, None)}


# --- Small payloads: one line per sample, labels in dcgm-exporter's order.


def line(metric: str, value: str, *, uuid: str = UUID0, gpu: str = "0", **extra: str) -> str:
    labels = {"gpu": gpu, "UUID": uuid, "device": f"nvidia{gpu}", "modelName": "NVIDIA H100 80GB HBM3"}
    labels.update(extra)
    if "uuid" in extra:  # --use-old-namespace spells it lower-case instead
        del labels["UUID"]
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{body}}} {value}\n"


def one(text: str) -> DcgmUnit:
    (unit,) = read_dcgm(text).units
    return unit


def test_mig_units_are_keyed_by_uuid_and_gpu_instance_and_use_engine_active() -> None:
    text = "".join(
        line(metric, value, GPU_I_PROFILE=profile, GPU_I_ID=gi, Hostname="n")
        for metric, value in (("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.250000"), ("DCGM_FI_DEV_FB_USED", "100"))
        for profile, gi in (("1g.10gb", "13"), ("4g.40gb", "1"), ("2g.20gb", "5"))
    )
    text += line("DCGM_FI_DEV_GPU_UTIL", "40", uuid=UUID1, gpu="1")  # a whole GPU beside them
    units = read_dcgm(text).units
    assert [u.unit_id for u in units] == [f"{UUID0}/gi1", f"{UUID0}/gi5", f"{UUID0}/gi13", UUID1]
    assert [u.mig_profile for u in units] == ["4g.40gb", "2g.20gb", "1g.10gb", None]
    assert [u.utilization for u in units] == [0.25, 0.25, 0.25, 0.4]
    assert [u.utilization_field for u in units] == ["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] * 3 + [
        "DCGM_FI_DEV_GPU_UTIL"
    ]
    assert units[0].memory_used_bytes == 100 * 2**20


def test_engine_active_wins_over_gpu_util() -> None:
    unit = one(line("DCGM_FI_DEV_GPU_UTIL", "93") + line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "0.5"))
    assert (unit.utilization, unit.utilization_field) == (0.5, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")


def test_kubernetes_labels_give_holders() -> None:
    pod = {"container": "vllm", "namespace": "llm", "pod": "vllm-0"}
    unit = one(line("DCGM_FI_DEV_POWER_USAGE", "300.5", Hostname="n", **pod))
    assert unit.holders == (DcgmHolder("llm", "vllm-0", "vllm"),)
    assert unit.power_watts == 300.5


def test_time_slicing_merges_pods_and_sums_their_utilisation_capped_at_one() -> None:
    pods = [("b", "pod-b", "c"), ("a", "pod-a", "c"), ("a", "pod-a", "c2")]
    text = "".join(
        line(metric, value, container=c, namespace=ns, pod=p)
        for (ns, p, c), util in zip(pods, ("40", "35", "10"), strict=True)
        for metric, value in (
            ("DCGM_FI_DEV_GPU_UTIL", util),
            ("DCGM_FI_DEV_POWER_USAGE", "250.000000"),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "5000"),
        )
    )
    unit = one(text)
    assert unit.holders == tuple(DcgmHolder(*p) for p in sorted(pods))
    assert unit.utilization == 0.85
    assert unit.power_watts == 250.0  # device-level, repeated on every pod series: once
    assert unit.energy_joules_total == 5.0
    over = text.replace(" 40\n", " 90\n")
    assert one(over).utilization == 1.0


def test_time_slicing_with_the_device_value_repeated_is_not_summed() -> None:
    """Before #594 every pod series repeats the device's GPU_UTIL: summing would double count."""
    text = line("DCGM_FI_DEV_GPU_UTIL", "60", pod="a", namespace="n", container="c")
    text += line("DCGM_FI_DEV_GPU_UTIL", "60", pod="b", namespace="n", container="c")
    assert one(text).utilization == 0.6


def test_device_level_values_that_differ_across_pods_take_the_max() -> None:
    text = line("DCGM_FI_DEV_POWER_USAGE", "250", pod="a", namespace="n", container="c")
    text += line("DCGM_FI_DEV_POWER_USAGE", "260", pod="b", namespace="n", container="c")
    assert one(text).power_watts == 260.0


def test_old_namespace_labels() -> None:
    old = {"uuid": UUID0, "container_name": "trainer", "pod_name": "train-0", "pod_namespace": "ml"}
    unit = one(line("DCGM_FI_DEV_GPU_UTIL", "50", **old))
    assert unit.unit_id == UUID0
    assert unit.holders == (DcgmHolder("ml", "train-0", "trainer"),)
    assert unit.utilization == 0.5


@pytest.mark.parametrize("label", ["Hostname", "hostname"])
def test_hostname_in_either_spelling(label: str) -> None:
    assert one(line("DCGM_FI_DEV_GPU_UTIL", "1", **{label: "gpu-node-07"})).hostname == "gpu-node-07"


def test_no_hostname_label() -> None:
    assert one(line("DCGM_FI_DEV_GPU_UTIL", "1")).hostname == ""


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-1.5"])
def test_bad_power_reading_is_unknown_and_rejected(value: str) -> None:
    unit = one(line("DCGM_FI_DEV_POWER_USAGE", value) + line("DCGM_FI_DEV_FB_USED", "10"))
    assert unit.power_watts is None
    assert unit.rejected == ("DCGM_FI_DEV_POWER_USAGE",)
    assert unit.memory_used_bytes == 10 * 2**20  # the other fields still read


def test_one_bad_pod_series_rejects_the_field() -> None:
    text = line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "5000", pod="a", namespace="n", container="c")
    text += line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "NaN", pod="b", namespace="n", container="c")
    unit = one(text)
    assert (unit.energy_joules_total, unit.rejected) == (None, ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",))


@pytest.mark.parametrize(
    ("metric", "value"), [("DCGM_FI_DEV_GPU_UTIL", "101"), ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "1.2")]
)
def test_utilisation_above_one_is_rejected(metric: str, value: str) -> None:
    unit = one(line(metric, value))
    assert (unit.utilization, unit.utilization_field, unit.rejected) == (None, None, (metric,))


def test_a_rejected_engine_active_falls_back_to_gpu_util() -> None:
    unit = one(line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "NaN") + line("DCGM_FI_DEV_GPU_UTIL", "20"))
    assert (unit.utilization, unit.utilization_field) == (0.2, "DCGM_FI_DEV_GPU_UTIL")
    assert unit.rejected == ("DCGM_FI_PROF_GR_ENGINE_ACTIVE",)


def test_series_without_uuid_are_skipped_and_counted() -> None:
    text = line("DCGM_FI_DEV_GPU_UTIL", "10")
    text += 'DCGM_FI_DEV_GPU_UTIL{gpu="1",device="nvidia1"} 20\n'
    text += 'DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="",device="nvidia1"} 20\n'
    reading = read_dcgm(text)
    assert [u.unit_id for u in reading.units] == [UUID0]
    assert reading.skipped == 2


def test_unwanted_metrics_and_empty_payload_give_no_units() -> None:
    assert read_dcgm("").units == ()
    assert read_dcgm(line("DCGM_FI_DEV_SM_CLOCK", "1980")).units == ()


@pytest.mark.parametrize(
    "text",
    [
        line("DCGM_FI_DEV_GPU_UTIL", "93").rstrip("\n"),  # truncated
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-x} 93\n',  # unterminated quote
        line("DCGM_FI_DEV_POWER_USAGE", "563,7"),  # not a number
        line("DCGM_FI_DEV_FB_USED", "1") * 2,  # duplicate series
    ],
)
def test_malformed_payload_raises_the_parsers_error(text: str) -> None:
    with pytest.raises(ParseError):
        read_dcgm(text)


def test_sample_limit_is_passed_to_the_parser() -> None:
    with pytest.raises(ParseError) as info:
        read_dcgm(FIXTURES[0].read_text(), max_samples=10)
    assert info.value.reason == "sample_limit"
