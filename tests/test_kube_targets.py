"""Pods → owners and scrape targets (pure), plus one pass from the fake API server through the watcher."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import pytest

from exporter.engines.targets import OwnerRules, owner_of, roles_of, targets_of, token_targets_of
from exporter.records import HttpClientConfig, Owner, PodInfo, Target
from exporter.sources.kube.pods import PodWatcher
from tests.fake_kube_api import FakeKubeApi

SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}


def pod(
    name: str = "vllm-0",
    namespace: str = "ml",
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    phase: str = "Running",
    pod_ip: str = "10.0.0.7",
    deleted_at: float | None = None,
) -> PodInfo:
    return PodInfo(
        uid=f"uid-{namespace}-{name}",
        namespace=namespace,
        name=name,
        labels=MappingProxyType(dict(labels or {})),
        annotations=MappingProxyType(dict(annotations or {})),
        phase=phase,
        pod_ip=pod_ip,
        deleted_at=deleted_at,
        claims=(),
        container_ids=(),
    )


# ---- owner_of ----------------------------------------------------------------------------
def test_owner_from_labels() -> None:
    owner = owner_of(pod(labels={"team": "search", "model": "llama-3-70b"}), OwnerRules())
    assert owner == Owner(
        namespace="ml", pod="vllm-0", team="search", model="llama-3-70b", workload="inference"
    )


def test_team_falls_back_to_annotation_then_namespace_map_then_namespace() -> None:
    rules = OwnerRules(namespace_teams={"ml": "platform"})
    assert owner_of(pod(annotations={"cpm-exporter.io/team": "ads"}), rules).team == "ads"
    assert owner_of(pod(), rules).team == "platform"
    assert owner_of(pod(namespace="research"), rules).team == "research"
    assert owner_of(pod(labels={"team": ""}), rules).team == "platform"  # an empty label says nothing


def test_model_falls_back_to_our_annotation_never_to_the_app_name() -> None:
    rules = OwnerRules()
    assert owner_of(pod(annotations={"cpm-exporter.io/model": "mistral-7b"}), rules).model == "mistral-7b"
    app_only = pod(labels={"app.kubernetes.io/name": "vllm", "app": "vllm"})
    assert owner_of(app_only, rules).model == ""


def test_custom_label_names() -> None:
    rules = OwnerRules(team_label="acme.com/team", model_label="acme.com/model")
    owner = owner_of(pod(labels={"acme.com/team": "t", "acme.com/model": "m", "team": "ignored"}), rules)
    assert (owner.team, owner.model) == ("t", "m")


@pytest.mark.parametrize(
    ("value", "workload"),
    [("training", "training"), ("inference", "inference"), ("", "inference"), ("Training!", "inference")],
)
def test_workload_annotation(value: str, workload: str) -> None:
    notes = {"cpm-exporter.io/workload": value} if value else {}
    assert owner_of(pod(annotations=notes), OwnerRules()).workload == workload


# ---- targets_of --------------------------------------------------------------------------
def test_target_from_prometheus_annotations() -> None:
    p = pod(
        labels={"team": "search", "model": "llama"},
        annotations={
            **SCRAPE,
            "prometheus.io/path": "/v1/metrics",
            "cpm-exporter.io/token-metric": "tokens_total",
        },
    )
    targets, problems = targets_of([p], OwnerRules())
    assert problems == ()
    assert targets == (
        Target(
            name="ml/vllm-0",
            url="http://10.0.0.7:8000/v1/metrics",
            owner=Owner("ml", "vllm-0", "search", "llama", "inference"),
            server="auto",
            token_metric="tokens_total",
        ),
    )


def test_an_adapter_label_annotation_is_checked_and_kept() -> None:
    lora = pod("lora-0", annotations={**SCRAPE, "cpm-exporter.io/adapter-label": " lora "})
    odd = pod("odd-0", annotations={**SCRAPE, "cpm-exporter.io/adapter-label": "lora-name"})
    le = pod("le-0", annotations={**SCRAPE, "cpm-exporter.io/adapter-label": "le"})
    train = {**SCRAPE, "cpm-exporter.io/adapter-label": "lora", "cpm-exporter.io/workload": "training"}
    targets, problems = targets_of([lora, odd, le, pod("train-0", annotations=train)], OwnerRules())
    assert [(t.name, t.adapter_label) for t in targets] == [
        ("ml/lora-0", "lora"), ("ml/odd-0", ""), ("ml/le-0", ""), ("ml/train-0", ""),
    ]  # fmt: skip
    assert problems == (
        ("ml/odd-0", "cpm-exporter.io/adapter-label: is not a Prometheus label name, got 'lora-name'"),
        (
            "ml/le-0",
            "cpm-exporter.io/adapter-label: 'le' is a label Prometheus reserves for histograms, summaries or itself",
        ),
        ("ml/train-0", "cpm-exporter.io/adapter-label: is for inference pods, not training"),
    )


def test_a_tenant_label_annotation_is_checked_and_kept() -> None:
    named = pod("sglang-0", annotations={**SCRAPE, "cpm-exporter.io/tenant-label": " team "})
    odd = pod("odd-0", annotations={**SCRAPE, "cpm-exporter.io/tenant-label": "team-id"})
    targets, problems = targets_of([named, odd], OwnerRules())
    assert [(t.name, t.tenant_label) for t in targets] == [("ml/sglang-0", "team"), ("ml/odd-0", "")]
    assert problems == (
        ("ml/odd-0", "cpm-exporter.io/tenant-label: is not a Prometheus label name, got 'team-id'"),
    )


def test_a_models_annotation_maps_the_servers_names_and_a_bad_one_is_dropped_alone() -> None:
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    notes = {
        "triton-0": f"tensorrt_llm={llama}",
        "two-0": f" tensorrt_llm = {llama} , ensemble={llama}",
        "blank-0": "  ",  # says nothing
        "bare-0": "tensorrt_llm",
        "empty-0": "tensorrt_llm=",
        "nameless-0": f"={llama}",
        "twice-0": "a=x,a=y",
        "long-0": "a=" + "m" * 129,
    }
    pods = [pod(name, annotations={**SCRAPE, "cpm-exporter.io/models": text}) for name, text in notes.items()]
    train = {**SCRAPE, "cpm-exporter.io/models": "a=b", "cpm-exporter.io/workload": "training"}
    targets, problems = targets_of([*pods, pod("train-0", annotations=train)], OwnerRules())
    assert [(t.name, dict(t.models)) for t in targets] == [
        ("ml/triton-0", {"tensorrt_llm": llama}),
        ("ml/two-0", {"tensorrt_llm": llama, "ensemble": llama}),
        *((f"ml/{name}", {}) for name in list(notes)[2:]),
        ("ml/train-0", {}),
    ]  # every pod is still scraped: a bad map only leaves the server's names
    assert problems == (
        ("ml/bare-0", "cpm-exporter.io/models: 'tensorrt_llm' is not server-model=declared-model"),
        ("ml/empty-0", "cpm-exporter.io/models: 'tensorrt_llm': the declared model must not be empty"),
        ("ml/nameless-0", f"cpm-exporter.io/models: '={llama}' is not server-model=declared-model"),
        ("ml/twice-0", "cpm-exporter.io/models: 'a': is mapped twice"),
        (
            "ml/long-0",
            "cpm-exporter.io/models: 'a': the declared model is 129 characters; model names are cut at 128",
        ),
        ("ml/train-0", "cpm-exporter.io/models: is for inference pods, not training"),
    )


def test_default_path_https_and_ipv6() -> None:
    (plain,), _ = targets_of([pod(annotations=SCRAPE)], OwnerRules())
    assert plain.url == "http://10.0.0.7:8000/metrics" and plain.token_metric == ""
    https = pod(annotations={**SCRAPE, "prometheus.io/scheme": "https"}, pod_ip="fd00::7")
    client = HttpClientConfig(ca_file="/etc/cpm/pods-ca.crt")
    (target,), _ = targets_of([https], OwnerRules(), client)
    assert target.url == "https://[fd00::7]:8000/metrics" and target.client == client
    (plain,), _ = targets_of([pod(annotations=SCRAPE)], OwnerRules(), client)
    assert plain.client == HttpClientConfig()  # trust settings are for https pods only


@pytest.mark.parametrize(
    "change",
    [
        {"annotations": {"prometheus.io/port": "8000"}},  # not opted in
        {"annotations": {**SCRAPE, "prometheus.io/scrape": "false"}},
        {"phase": "Pending"},
        {"phase": "Succeeded"},
        {"pod_ip": ""},
        {"deleted_at": 1714566600.0},  # being deleted: its counters are going away
    ],
)
def test_pods_not_scraped(change: dict[str, object]) -> None:
    p = dataclasses.replace(pod(annotations=SCRAPE), **change)  # type: ignore[arg-type]
    assert targets_of([p], OwnerRules()) == ((), ())


@pytest.mark.parametrize(
    ("notes", "message"),
    [
        ({"prometheus.io/port": ""}, "prometheus.io/scrape is true but prometheus.io/port is missing"),
        ({"prometheus.io/port": "http"}, "prometheus.io/port: 'http' is not a port number (1-65535)"),
        ({"prometheus.io/port": "70000"}, "prometheus.io/port: '70000' is not a port number (1-65535)"),
        ({"prometheus.io/port": "0"}, "prometheus.io/port: '0' is not a port number (1-65535)"),
        ({"prometheus.io/path": "metrics"}, "prometheus.io/path: 'metrics' is not an absolute URL path"),
        ({"prometheus.io/path": "/a b"}, "prometheus.io/path: '/a b' is not an absolute URL path"),
        (
            {"prometheus.io/path": "//evil.example/x"},
            "prometheus.io/path: '//evil.example/x' is not an absolute URL path",
        ),
        ({"prometheus.io/scheme": "ftp"}, "prometheus.io/scheme: 'ftp' is neither http nor https"),
    ],
)
def test_bad_annotations_are_problems_and_the_rest_go_on(notes: dict[str, str], message: str) -> None:
    bad = pod("bad", annotations={**SCRAPE, **notes})
    good = pod("good", annotations=SCRAPE)
    targets, problems = targets_of([bad, good], OwnerRules())
    assert [t.name for t in targets] == ["ml/good"]
    assert problems == (("ml/bad", message),)


# ---- the other documented annotations ------------------------------------------------------
def test_token_targets_and_roles() -> None:
    pods = [
        pod("train", annotations={"cpm-exporter.io/target-tokens": "2e12"}),
        pod("train-t", annotations={"cpm-exporter.io/target-tokens": "1.5T"}),
        pod("oops", annotations={"cpm-exporter.io/target-tokens": "lots"}),
        pod("pre", annotations={"cpm-exporter.io/role": "prefill"}),
        pod("dec", annotations={"cpm-exporter.io/role": "decode"}),
        pod("uni", annotations={"cpm-exporter.io/role": "unified"}),
        pod("odd", annotations={"cpm-exporter.io/role": "both"}),
    ]
    tokens, token_problems = token_targets_of(pods)
    assert tokens == {("ml", "train"): 2e12, ("ml", "train-t"): 1.5e12}
    assert token_problems == (("ml/oops", "cpm-exporter.io/target-tokens: 'lots' is not a positive number"),)
    roles, role_problems = roles_of(pods)
    assert roles == {("ml", "pre"): "prefill", ("ml", "dec"): "decode"}
    assert role_problems == (("ml/odd", "cpm-exporter.io/role: 'both' is not prefill or decode"),)


def test_documented_annotations_are_in_the_module_docstring() -> None:
    import exporter.engines.targets as module

    for key in (
        "workload",
        "token-metric",
        "model",
        "team",
        "target-tokens",
        "role",
        "adapter-label",
        "models",
    ):
        assert f"cpm-exporter.io/{key}" in (module.__doc__ or "")


# ---- end to end: fake API server → real client → watcher → targets ---------------------------
def test_targets_from_watched_pods() -> None:
    kube = FakeKubeApi().start()
    watcher = PodWatcher("node-a", kube.client(), watch_timeout_seconds=5)
    try:
        kube.add_pod(
            "vllm-0", "ml", node="node-a", labels={"team": "search"}, annotations=SCRAPE, pod_ip="10.1.0.4"
        )
        kube.add_pod("idle", "ml", node="node-a")
        kube.add_pod("elsewhere", "ml", node="node-b", annotations=SCRAPE)
        watcher.start()
        targets, problems = targets_of(watcher.pods(), OwnerRules())
        assert [(t.name, t.url, t.owner.team) for t in targets] == [
            ("ml/vllm-0", "http://10.1.0.4:8000/metrics", "search")
        ]
        assert problems == ()
    finally:
        watcher.stop()
        kube.close()


def test_hami_fraction_annotations() -> None:
    from exporter.sources.kube.link import hami_fractions

    text = "GPU-aaa,NVIDIA,4000,30:GPU-bbb,NVIDIA,8000,0:;GPU-ccc,NVIDIA,1000,150:;garbage:;"
    assert hami_fractions(text) == [("GPU-aaa", 30), ("GPU-bbb", 100), ("GPU-ccc", 100)]
    assert hami_fractions("") == []


def test_a_finished_pods_gpu_is_held_until_its_last_container_stopped() -> None:
    from exporter.records import Owner, Placement
    from exporter.sources.kube.link import KubeLink
    from exporter.sources.kube.objects import parse_pod

    def container(finished: str | None) -> dict[str, object]:
        state = {"terminated": {"exitCode": 0, "finishedAt": finished}} if finished else {"running": {}}
        return {"name": "c", "containerID": "containerd://abc", "state": state}

    def pod(*finished: str | None) -> dict[str, object]:
        return {
            "metadata": {"name": "job-0", "namespace": "ml", "uid": "u-1"},
            "spec": {"nodeName": "n"},
            "status": {"phase": "Running", "containerStatuses": [container(f) for f in finished]},
        }

    assert parse_pod(pod("2026-01-01T00:00:05Z", None))[0].finished_at is None  # one still runs
    done, _ = parse_pod(pod("2026-01-01T00:00:05Z", "2026-01-01T00:00:07Z"))
    assert done.finished_at == 1_767_225_607.0

    class View:
        def pods(self):  # type: ignore[no-untyped-def]
            return (done,)

        def removed_since(self, since: float):  # type: ignore[no-untyped-def]
            return ()

    link = KubeLink(View(), OwnerRules())  # type: ignore[arg-type]
    link.refresh()
    before = (Placement("GPU-0", Owner("ml", "job-0", "ml", "")),)
    bounded = link.bound((), before, since=1_767_225_600.0)  # the kubelet no longer lists it
    assert [(p.gpu_id, p.until_ns) for p in bounded] == [("GPU-0", 1_767_225_607 * 10**9)]


# ---- the serving container's start: a restart no counter shows ---------------------------
def _pod_json(containers: list[dict[str, object]], statuses: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {"uid": "u1", "name": "tgi-0", "namespace": "ml", "annotations": SCRAPE},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "podIP": "10.0.0.9", "containerStatuses": statuses},
    }


def _running(name: str, at: str) -> dict[str, object]:
    return {"name": name, "state": {"running": {"startedAt": at}}, "restartCount": 1}


def test_a_target_carries_the_start_of_the_container_serving_its_port() -> None:
    from exporter.sources.kube.objects import parse_pod, parse_timestamp

    containers = [{"name": "proxy", "ports": [{"containerPort": 15001}]},
                  {"name": "tgi", "ports": [{"containerPort": 8000}, {"containerPort": 9000}]}]  # fmt: skip
    statuses = [_running("proxy", "2026-12-01T00:00:00Z"), _running("tgi", "2026-12-01T01:02:03Z")]
    info, _ = parse_pod(_pod_json(containers, statuses))
    (target,) = targets_of([info], OwnerRules()).targets
    assert target.started_at == parse_timestamp("2026-12-01T01:02:03Z")


def test_the_only_container_serves_an_undeclared_port_and_two_undeclared_are_not_guessed() -> None:
    from exporter.sources.kube.objects import parse_pod, parse_timestamp

    one, _ = parse_pod(_pod_json([{"name": "tgi"}], [_running("tgi", "2026-12-01T01:02:03Z")]))
    assert targets_of([one], OwnerRules()).targets[0].started_at == parse_timestamp("2026-12-01T01:02:03Z")
    statuses = [_running("a", "2026-12-01T00:00:00Z"), _running("b", "2026-12-01T01:00:00Z")]
    two, _ = parse_pod(_pod_json([{"name": "a"}, {"name": "b"}], statuses))
    assert targets_of([two], OwnerRules()).targets[0].started_at is None  # a sidecar's restart is not ours
    waiting, _ = parse_pod(_pod_json([{"name": "tgi"}], [{"name": "tgi", "state": {"waiting": {}}}]))
    assert targets_of([waiting], OwnerRules()).targets[0].started_at is None


def test_a_pod_recreated_under_its_name_within_a_tick_holds_in_both_incarnations() -> None:
    """Issue 13.9: the old incarnation's seconds went to idle. It holds until it left, the new one
    from its creation; both are the same holder (one line)."""
    from exporter.records import Placement
    from exporter.sources.kube.link import KubeLink

    old = dataclasses.replace(pod("vllm-0"), uid="u-old")
    new = dataclasses.replace(pod("vllm-0"), uid="u-new", created_at=1_767_225_606.0)

    class View:
        def pods(self):  # type: ignore[no-untyped-def]
            return (new,)

        def removed_since(self, since: float):  # type: ignore[no-untyped-def]
            return ((old, 1_767_225_604.0),)

    link = KubeLink(View(), OwnerRules())  # type: ignore[arg-type]
    link.refresh()
    holder = Owner("ml", "vllm-0", "ml", "")
    bounded = link.bound((Placement("GPU-0", holder),), (Placement("GPU-0", holder),), since=1_767_225_600.0)
    assert [(p.since_ns, p.until_ns) for p in bounded] == [
        (1_767_225_606 * 10**9, None),  # the new incarnation, from its creation
        (None, 1_767_225_604 * 10**9),  # the old one, from the tick's start until it left
    ]


def test_a_target_carries_what_its_pod_runs() -> None:
    """Issue 20: the serving container's image tag and flags, under the pod's annotations."""
    from dataclasses import replace

    from exporter.records import ContainerRun

    server = ContainerRun("vllm", (8000,), None, "vllm/vllm-openai:v0.8.5", ("--quantization", "fp8"))
    plain = replace(pod(annotations=SCRAPE), containers=(server,))
    noted = replace(pod("vllm-1", annotations={**SCRAPE, "cpm-exporter.io/engine-version": "0.8.5+patch"}),
                    containers=(server,))  # fmt: skip
    (a, b), _ = targets_of([plain, noted], OwnerRules())
    assert (a.hints.version, a.hints.precision, a.hints.source) == ("0.8.5", "fp8", "container")
    assert (b.hints.version, b.hints.precision, b.hints.source) == ("0.8.5+patch", "fp8", "annotation")
