"""Who holds each GPU unit: the precedence of sources and how several holders split a unit."""

from __future__ import annotations

from exporter.records import Owner
from exporter.sources.placement import DeviceClaim, UnitView, decide

A, B, C = ("ns", "a"), ("ns", "b"), ("other", "c")


def owner(pod: tuple[str, str]) -> Owner:
    return Owner(pod[0], pod[1], pod[0], "")


def held(decision, unit: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {p.holder.pod: p.weight for p in decision.placements if p.gpu_id == unit}


def test_the_kubelet_allocation_wins_over_processes_reader_and_config() -> None:
    u = UnitView("GPU-1", "0", pids=(10,), reader_holders=(C,))
    d = decide(
        [u],
        claims=[DeviceClaim(A, "GPU-1")],
        pod_of_pid={10: B},
        reader_rule="dcgm",
        static={"GPU-1": [(owner(C), 1)]},
        owner_of=owner,
    )
    assert held(d, "GPU-1") == {"a": 1}
    assert (d.placed_by["GPU-1"], d.split["GPU-1"]) == ("podresources", "whole")


def test_each_rule_answers_when_the_better_ones_have_nothing() -> None:
    units = [
        UnitView("GPU-0", "0", pids=(10, 11)),  # processes of two pods
        UnitView("GPU-1", "1", reader_holders=(C,)),
        UnitView("GPU-2", "2"),
        UnitView("GPU-3", "3", pids=(99,)),  # a process in no known pod
    ]
    static = {"GPU-2": [(owner(A), 1), (owner(B), 3)], "GPU-3": [(owner(A), 1)]}
    d = decide(units, pod_of_pid={10: A, 11: B}, reader_rule="dcgm", static=static, owner_of=owner)
    assert d.placed_by == {"GPU-0": "process", "GPU-1": "dcgm", "GPU-2": "static", "GPU-3": "static"}
    assert d.split == {"GPU-0": "equal", "GPU-1": "whole", "GPU-2": "share", "GPU-3": "whole"}
    assert held(d, "GPU-2") == {"a": 1, "b": 3}


def test_time_sliced_replicas_split_by_replica_count_whoever_used_them() -> None:
    """Who holds pays (issue 13.8): a replica reserved and left idle pays like a busy one, and the
    split does not jump with the driver's samples."""
    claims = [DeviceClaim(A, "0"), DeviceClaim(A, "0"), DeviceClaim(B, "0")]  # a holds 2 of 3 replicas
    d = decide([UnitView("GPU-0", "0")], claims=claims, owner_of=owner)
    assert held(d, "GPU-0") == {"a": 2, "b": 1} and d.split["GPU-0"] == "replicas"
    for sm in (((10, 0.0), (11, 0.45)), ((10, 0.0), (11, 0.0)), ()):  # a idle, both idle, no sample
        sampled = UnitView("GPU-0", "0", pids=(10, 11), process_sm=sm)
        d = decide([sampled], claims=claims, pod_of_pid={10: A, 11: B}, owner_of=owner)
        assert held(d, "GPU-0") == {"a": 2, "b": 1} and d.split["GPU-0"] == "replicas"
    shared = UnitView("GPU-1", "1", pids=(10, 11), process_sm=((10, 0.0), (11, 0.9)))
    d = decide([shared], pod_of_pid={10: A, 11: B}, owner_of=owner)
    assert held(d, "GPU-1") == {"a": 1, "b": 1} and d.split["GPU-1"] == "equal"


def test_who_used_a_shared_gpu_is_shown_beside_who_pays() -> None:
    """Issue 13.8: the driver's per-process samples become an efficiency figure per holder (a reserved,
    unused replica shows 0), never a money split; unknown (no samples) stays absent."""
    claims = [DeviceClaim(A, "0"), DeviceClaim(A, "0"), DeviceClaim(B, "0")]
    sampled = UnitView("GPU-0", "0", pids=(10, 11, 12), process_sm=((10, 0.0), (11, 0.45), (12, 0.1)))
    d = decide([sampled], claims=claims, pod_of_pid={10: A, 11: B, 12: C}, owner_of=owner)
    assert held(d, "GPU-0") == {"a": 2, "b": 1}  # money: by holding
    assert d.used["GPU-0"] == (("ns", "a", 0.0), ("ns", "b", 0.45))  # c holds nothing: not shown
    d = decide(
        [UnitView("GPU-0", "0", pids=(10, 11))], claims=claims, pod_of_pid={10: A, 11: B}, owner_of=owner
    )
    assert "GPU-0" not in d.used  # no samples: unknown, not 0
    # A sole holder (a static inventory) owns the processes no pod map names; samples add up, capped at 1.
    two = UnitView("GPU-1", "1", pids=(20, 21), process_sm=((20, 0.7), (21, 0.6)))
    d = decide([two], static={"GPU-1": [(owner(A), 1)]}, owner_of=owner)
    assert d.used["GPU-1"] == (("ns", "a", 1.0),)
    free = UnitView("GPU-2", "2", pids=(30,), process_sm=((30, 0.5),))
    assert "GPU-2" not in decide([free], owner_of=owner).used  # nobody holds it: no holder to show


def test_an_overcommitted_gpu_says_so() -> None:
    """Issue 13.11: HAMi gave two pods 80 % each; each pays half, and the unit's split says why."""
    d = decide([UnitView("GPU-0", "0")], fractions=[(A, "GPU-0", 80), (B, "GPU-0", 80)], owner_of=owner)
    assert held(d, "GPU-0") == {"a": 80, "b": 80} and d.split["GPU-0"] == "overcommitted"
    d = decide([UnitView("GPU-0", "0")], fractions=[(A, "GPU-0", 30), (B, "GPU-0", 50)], owner_of=owner)
    assert d.split["GPU-0"] == "fraction"


def test_claims_find_units_by_uuid_or_index_and_mig_instances_by_index() -> None:
    units = [UnitView("MIG-x", "0/gi1"), UnitView("MIG-y", "0/gi2"), UnitView("GPU-9", "1")]
    claims = [
        DeviceClaim(A, "MIG-x"),
        DeviceClaim(B, "0/gi2"),
        DeviceClaim(C, "1"),
        DeviceClaim(C, "GPU-gone"),
    ]
    d = decide(units, claims=claims, owner_of=owner)
    assert {p.gpu_id: p.holder.pod for p in d.placements} == {"MIG-x": "a", "MIG-y": "b", "GPU-9": "c"}


def test_a_unit_nobody_holds_is_unallocated() -> None:
    d = decide([UnitView("GPU-0", "0")], owner_of=owner)
    assert d.placements == () and d.placed_by == {"GPU-0": ""} and d.split == {}


def test_a_sharing_schedulers_fractions_bill_each_pod_its_percent_and_the_rest_is_idle() -> None:
    from exporter.records import IDLE

    units = [UnitView("GPU-0", "0", pids=(10,)), UnitView("GPU-1", "1")]
    fractions = [(A, "GPU-0", 30), (B, "GPU-0", 50), (C, "GPU-1", 100), (C, "GPU-gone", 10)]
    d = decide(
        units, fractions=fractions, claims=[DeviceClaim(C, "GPU-0")], pod_of_pid={10: C}, owner_of=owner
    )
    assert held(d, "GPU-0") == {"a": 30, "b": 50, IDLE.pod: 20}  # the kubelet's claim does not override
    assert [p.holder for p in d.placements if p.gpu_id == "GPU-0" and p.weight == 20] == [IDLE]
    assert held(d, "GPU-1") == {"c": 100}
    assert (d.placed_by["GPU-0"], d.split["GPU-0"]) == ("fraction", "fraction")
    assert d.split["GPU-1"] == "whole"
