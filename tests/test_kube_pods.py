"""PodWatcher through the REAL ``kubernetes`` client against the loopback fake API server.

Every wait polls with a deadline; the fake and the watcher are stopped in teardown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from exporter.errors import SourceError
from exporter.quantity import parse_quantity
from exporter.records import ContainerRun, PodInfo
from exporter.sources.kube.apiclient import load_api, node_name_from_env
from exporter.sources.kube.backoff import Backoff
from exporter.sources.kube.objects import parse_pod, parse_timestamp
from exporter.sources.kube.pods import PodWatcher
from tests.fake_kube_api import FakeKubeApi

NODE = "node-a"
GI = 2**30


def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    api = FakeKubeApi().start()
    yield api
    api.close()


@pytest.fixture
def watchers() -> Iterator[list[PodWatcher]]:
    made: list[PodWatcher] = []
    yield made
    for w in made:
        w.stop()
        assert w._thread is None or not w._thread.is_alive()


@pytest.fixture
def start(kube: FakeKubeApi, watchers: list[PodWatcher]) -> Callable[..., PodWatcher]:
    def make(fake: FakeKubeApi = kube, **options: float) -> PodWatcher:
        settings: dict[str, float] = {
            "watch_timeout_seconds": 5,
            "backoff_initial_seconds": 0.02,
            "backoff_max_seconds": 0.1,
            "request_timeout_seconds": 2,
            **options,
        }
        watcher = PodWatcher(NODE, fake.client(), **settings)  # type: ignore[arg-type]
        watchers.append(watcher)
        watcher.start()
        return watcher

    return make


def names(watcher: PodWatcher) -> set[str]:
    return {p.name for p in watcher.pods()}


def watching(kube: FakeKubeApi) -> Callable[[], bool]:
    return lambda: kube.open_watches() > 0


# ---- the fake speaks what the real client expects ----------------------------------------
def test_real_client_list_and_watch_stream_against_the_fake(kube: FakeKubeApi) -> None:
    kube.add_pod("a", "ml", node=NODE)
    kube.add_pod("other", "ml", node="node-b")
    api = kube.client()
    listing = api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}")
    assert [p.metadata.name for p in listing.items] == ["a"]
    assert listing.items[0].status.container_statuses[0].container_id.startswith("containerd://")

    def later() -> None:
        eventually(watching(kube))
        kube.add_pod("b", "ml", node=NODE)
        kube.bookmark()
        kube.delete_pod("ml", "a")
        kube.expire_watches()

    threading.Thread(target=later, daemon=True).start()
    seen = []
    w = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as gone:
        for event in w.stream(
            api.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={NODE}",
            resource_version=listing.metadata.resource_version,
            timeout_seconds=5,
        ):
            seen.append((event["type"], type(event["object"]).__name__))
    # The client turns the ERROR event into ApiException(410) itself when timeout_seconds is set.
    assert gone.value.status == 410 and "too old resource version" in str(gone.value.reason)
    assert seen == [("ADDED", "V1Pod"), ("BOOKMARK", "dict"), ("DELETED", "V1Pod")]
    assert kube.watch_requests()[0].query["watch"] == "true"


def test_watch_is_chunked_newline_delimited_json(kube: FakeKubeApi) -> None:
    kube.add_pod("a", "ml", node=NODE)
    http = urllib3.PoolManager()
    resp = http.request(
        "GET",
        f"{kube.host}/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}&watch=1&timeoutSeconds=1",
        preload_content=False,
    )
    assert resp.headers["Transfer-Encoding"] == "chunked"
    body = resp.read().decode()
    resp.release_conn()
    http.clear()
    assert body.startswith('{"type": "ADDED", "object": {"kind": "Pod"') and body.endswith("\n")


def test_without_timeout_the_client_silently_retries_a_410_once(kube: FakeKubeApi) -> None:
    api = kube.client()
    rv = kube.resource_version
    kube.add_pod("a", "ml", node=NODE, quiet=True)  # so the compaction passes rv

    def expire() -> None:
        eventually(watching(kube))
        kube.expire_watches()

    threading.Thread(target=expire, daemon=True).start()
    with pytest.raises(ApiException) as gone:
        for _ in kubernetes.watch.Watch().stream(api.list_pod_for_all_namespaces, resource_version=rv):
            pass
    assert gone.value.status == 410
    assert [r.query["resourceVersion"] for r in kube.watch_requests()] == [rv, rv]


def test_pvc_and_errors_are_real_json(kube: FakeKubeApi) -> None:
    kube.add_pvc("ml", "cache", "10Gi")
    api = kube.client()
    pvc = api.read_namespaced_persistent_volume_claim("cache", "ml")
    assert pvc.status.capacity == {"storage": "10Gi"}
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_persistent_volume_claim("nope", "ml")
    assert missing.value.status == 404 and '"reason": "NotFound"' in str(missing.value.body)


# ---- the view ----------------------------------------------------------------------------
def test_list_is_synchronous_then_events_update_the_view(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    watcher = start()
    assert names(watcher) == {"a"}
    assert watcher.status().up and watcher.status().error == ""
    kube.add_pod("b", "ml", node=NODE)
    eventually(lambda: names(watcher) == {"a", "b"})
    kube.update_pod("ml", "b", labels={"team": "search"})
    eventually(lambda: any(p.labels.get("team") == "search" for p in watcher.pods()))
    kube.delete_pod("ml", "a")
    eventually(lambda: names(watcher) == {"b"})
    rv = kube.bookmark()
    eventually(lambda: watcher.status().resource_version == str(rv))
    status = watcher.status()
    assert status.events == 4 and status.relists == 0 and status.malformed == 0
    assert [r.query.get("resourceVersion") for r in kube.list_requests()] == [None]
    assert kube.list_requests()[0].query["fieldSelector"] == f"spec.nodeName={NODE}"


def test_pod_fields(kube: FakeKubeApi, start: Callable[..., PodWatcher]) -> None:
    kube.add_pod(
        "vllm-0",
        "ml",
        node=NODE,
        uid="11111111-2222-3333-4444-555555555555",
        labels={"team": "search"},
        annotations={"prometheus.io/scrape": "true"},
        pod_ip="10.1.2.3",
        claims=("cache", "weights"),
        container_ids=("containerd://abc123", "cri-o://def456"),
        args=("--model", "meta-llama/Llama-3.1-8B-Instruct", "--quantization=fp8"),
    )
    watcher = start()
    (pod,) = watcher.pods()
    assert pod == PodInfo(
        uid="11111111-2222-3333-4444-555555555555",
        namespace="ml",
        name="vllm-0",
        labels={"team": "search"},
        annotations={"prometheus.io/scrape": "true"},
        phase="Running",
        pod_ip="10.1.2.3",
        deleted_at=None,
        claims=("cache", "weights"),
        container_ids=("abc123", "def456"),
        created_at=1714564800.0,  # the fake's creationTimestamp, 2024-05-01T12:00:00Z
        containers=tuple(  # what each runs: the operating point's version and precision (issue 20)
            ContainerRun(
                name,
                (8000,),
                1714564800.0,
                "vllm/vllm-openai:v0.6.0",
                ("--model", "meta-llama/Llama-3.1-8B-Instruct", "--quantization=fp8"),
            )
            for name in ("c0", "c1")
        ),
    )
    kube.mark_deleting("ml", "vllm-0", when="2024-05-01T12:30:00Z")
    eventually(lambda: watcher.pods()[0].deleted_at == 1714566600.0)
    kube.add_pod("nccl-0", "ml", node=NODE, host_network=True)
    eventually(lambda: {p.name: p.host_network for p in watcher.pods()} == {"vllm-0": False, "nccl-0": True})


def test_terminated_pods_stay_until_deleted(kube: FakeKubeApi, start: Callable[..., PodWatcher]) -> None:
    kube.add_pod("job", "ml", node=NODE)
    watcher = start()
    kube.update_pod("ml", "job", phase="Succeeded")
    eventually(lambda: watcher.pods()[0].phase == "Succeeded")
    kube.bookmark()
    eventually(lambda: watcher.status().events == 2)
    assert names(watcher) == {"job"}
    kube.delete_pod("ml", "job")
    eventually(lambda: watcher.pods() == ())


def test_pending_pod_has_no_ip_nor_container_ids(kube: FakeKubeApi, start: Callable[..., PodWatcher]) -> None:
    kube.add_pod("p", "ml", node=NODE, phase="Pending", pod_ip=None)
    (pod,) = start().pods()
    assert (pod.phase, pod.pod_ip, pod.container_ids) == ("Pending", "", ())


def test_other_nodes_pods_are_ignored_even_if_sent(start: Callable[..., PodWatcher]) -> None:
    careless = FakeKubeApi(honour_field_selector=False).start()
    try:
        careless.add_pod("mine", "ml", node=NODE)
        careless.add_pod("theirs", "ml", node="node-b")
        watcher = start(careless)
        assert names(watcher) == {"mine"}
        careless.add_pod("theirs-2", "ml", node="node-b")
        careless.add_pod("mine-2", "ml", node=NODE)
        eventually(lambda: "mine-2" in names(watcher))
        assert names(watcher) == {"mine", "mine-2"}
    finally:
        careless.close()


# ---- expiry, drops, backoff ----------------------------------------------------------------
def test_410_event_relists_and_the_view_is_never_empty(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    kube.add_pod("b", "ml", node=NODE)
    watcher = start()
    eventually(watching(kube))
    samples: list[set[str]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(names(watcher))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kube.delete_pod("ml", "b", quiet=True)  # events the compaction lost: only a LIST shows them
    kube.add_pod("c", "ml", node=NODE, quiet=True)
    kube.expire_watches()
    eventually(lambda: watcher.status().relists == 1)
    done.set()
    sampler.join()
    assert names(watcher) == {"a", "c"}
    assert samples and all("a" in s for s in samples)  # never empty, never lost a live pod
    eventually(watching(kube))
    kube.add_pod("d", "ml", node=NODE)  # and the watch resumed from the new list
    eventually(lambda: "d" in names(watcher))
    assert watcher.status().up


def test_410_http_status_relists(kube: FakeKubeApi, start: Callable[..., PodWatcher]) -> None:
    watcher = start()
    eventually(watching(kube))
    kube.fail_with(410, times=1)
    kube.drop_watches()
    eventually(lambda: watcher.status().relists == 1)
    assert len(kube.list_requests()) == 2


@pytest.mark.parametrize("abrupt", [False, True])
def test_dropped_stream_rewatches_from_the_last_version(
    kube: FakeKubeApi, start: Callable[..., PodWatcher], abrupt: bool
) -> None:
    watcher = start()
    kube.add_pod("a", "ml", node=NODE)
    eventually(lambda: names(watcher) == {"a"})
    rv = watcher.status().resource_version
    kube.drop_watches(abrupt=abrupt)
    eventually(lambda: len(kube.watch_requests()) == 2)
    assert kube.watch_requests()[1].query["resourceVersion"] == rv
    kube.add_pod("b", "ml", node=NODE)
    eventually(lambda: names(watcher) == {"a", "b"})
    status = watcher.status()
    assert status.up and status.error == "" and status.relists == 0 and len(kube.list_requests()) == 1


def test_streams_that_end_at_once_back_off_instead_of_spinning(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.end_watches_immediately = True
    start(backoff_initial_seconds=0.05, backoff_max_seconds=0.2)
    time.sleep(1.0)  # measuring a rate: a hot loop would make hundreds of requests here
    assert 3 <= len(kube.watch_requests()) <= 12


def test_backoff_doubles_to_its_cap_with_jitter_below() -> None:
    steady = Backoff(0.5, 30, rand=lambda: 0.0)
    assert [steady.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    steady.reset()
    assert steady.next() == 0.5
    assert Backoff(0.5, 30, rand=lambda: 1.0).next() == 0.375


# ---- errors ------------------------------------------------------------------------------
FORBIDDEN = (
    "RBAC: the service account needs list and watch on pods (core) cluster-wide; got 403 Forbidden: "
    'pods is forbidden: User "system:serviceaccount:monitoring:cpm-exporter" cannot list resource '
    '"pods" in API group "" at the cluster scope'
)


def test_403_names_the_missing_permission_keeps_the_view_and_retries(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    watcher = start()
    eventually(watching(kube))
    kube.fail_with(403)
    kube.drop_watches()
    eventually(lambda: not watcher.status().up)
    assert watcher.status().error == FORBIDDEN
    before = len(kube.requests)
    eventually(lambda: len(kube.requests) >= before + 2)  # still retrying
    assert names(watcher) == {"a"}
    kube.recover()
    eventually(lambda: watcher.status().up)
    assert watcher.status().error == ""
    kube.add_pod("b", "ml", node=NODE)
    eventually(lambda: names(watcher) == {"a", "b"})


def test_403_at_start_does_not_raise_and_recovers(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    kube.fail_with(403)
    watcher = start()
    assert watcher.status().error == FORBIDDEN and watcher.pods() == ()
    kube.recover()
    eventually(lambda: names(watcher) == {"a"})
    assert watcher.status().up and watcher.status().relists == 0


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            401,
            "authentication: the API server rejected the service account token (401 Unauthorized): Unauthorized",
        ),
        (
            500,
            "API server error 500 Internal Server Error: Internal error occurred: etcdserver: request timed out",
        ),
        (
            503,
            "API server error 503 Service Unavailable: the server is currently unable to handle the request",
        ),
    ],
)
def test_401_and_5xx_keep_the_view_and_retry(
    kube: FakeKubeApi, start: Callable[..., PodWatcher], code: int, expected: str
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    watcher = start()
    eventually(watching(kube))
    kube.fail_with(code)
    kube.drop_watches()
    eventually(lambda: watcher.status().error == expected)
    assert not watcher.status().up and names(watcher) == {"a"}
    kube.recover()
    eventually(lambda: watcher.status().up)


def test_unreachable_api_server_keeps_the_view_and_reconnects(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    watcher = start()
    eventually(watching(kube))
    kube.go_offline()
    eventually(lambda: not watcher.status().up)
    assert watcher.status().error.startswith(f"API server unreachable at {kube.host}: MaxRetryError")
    assert names(watcher) == {"a"}
    kube.go_online()
    eventually(lambda: watcher.status().up)
    kube.add_pod("b", "ml", node=NODE)
    eventually(lambda: names(watcher) == {"a", "b"})


def test_malformed_objects_are_skipped_and_counted(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_raw_pod(
        "ml", "no-uid", {"metadata": {"name": "no-uid", "namespace": "ml"}, "spec": {"nodeName": NODE}}
    )
    kube.add_pod("good", "ml", node=NODE)
    watcher = start()
    assert names(watcher) == {"good"} and watcher.status().malformed == 1
    eventually(watching(kube))
    kube.inject_event("ADDED", {"metadata": {"name": "x", "namespace": "ml"}, "spec": {"nodeName": NODE}})
    kube.inject_event("MODIFIED", {"metadata": "not an object"})
    kube.inject_event(
        "ADDED", {"metadata": {"uid": "u", "name": "x", "labels": ["team"]}, "spec": {"nodeName": NODE}}
    )
    kube.inject_event("ADDED", {"metadata": {"uid": "u", "name": "x", "deletionTimestamp": "yesterday"}})
    kube.inject_event("DELETED", ["not", "a", "pod"])
    kube.inject_event("SURPRISE", {})
    kube.inject_line("{not json")
    kube.add_pod("after", "ml", node=NODE)
    eventually(lambda: "after" in names(watcher))
    assert names(watcher) == {"good", "after"}
    assert watcher.status().malformed == 8 and watcher.status().up
    kube.inject_event("ERROR", {"kind": "Status", "status": "Failure"})  # no code: the client raises KeyError
    kube.add_pod("later", "ml", node=NODE)
    eventually(lambda: "later" in names(watcher))
    assert watcher.status().malformed == 9 and watcher.status().relists == 0
    assert watcher._thread is not None and watcher._thread.is_alive()


# ---- claims ------------------------------------------------------------------------------
def test_claim_capacity_is_known_when_the_pod_shows_and_refreshed_at_resync(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pvc("ml", "cache", "10Gi")
    kube.add_pvc("ml", "weights", "1.5Ti")
    kube.add_pod("a", "ml", node=NODE, claims=("cache", "missing"))
    watcher = start(resync_seconds=0.2)
    assert watcher.claim_capacity("ml", "cache") == 10 * GI
    assert watcher.claim_capacity("ml", "missing") is None
    assert watcher.status().claims_error == ""  # 404 is "unknown", not a failure
    kube.add_pod("b", "ml", node=NODE, claims=("weights",))
    eventually(lambda: "b" in names(watcher))
    assert watcher.claim_capacity("ml", "weights") == 1.5 * 2**40
    kube.add_pvc("ml", "cache", "20Gi")  # expanded
    time.sleep(0.25)  # let the resync period pass; any event then triggers it
    kube.bookmark()
    eventually(lambda: watcher.claim_capacity("ml", "cache") == 20 * GI)


def test_claim_403_is_reported_without_taking_the_watch_down(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.fail_with(403, "persistentvolumeclaims is forbidden", only="persistentvolumeclaims")
    kube.add_pod("a", "ml", node=NODE, claims=("cache",))
    watcher = start()
    status = watcher.status()
    assert status.up and names(watcher) == {"a"} and watcher.claim_capacity("ml", "cache") is None
    assert status.claims_error == (
        "RBAC: the service account needs get on persistentvolumeclaims (core) cluster-wide; "
        "got 403 Forbidden: persistentvolumeclaims is forbidden"
    )


# ---- parsing -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10Gi", 10 * GI),
        ("1.5Ti", 1.5 * 2**40),
        ("512Mi", 512 * 2**20),
        ("2Ki", 2048),
        ("500M", 500e6),
        ("1.5T", 1.5e12),
        ("1k", 1000),
        ("3G", 3e9),
        ("100", 100),
        ("0.5", 0.5),
        ("1e3", 1000),
        ("1E", 1e18),
        ("250m", 0.25),
    ],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "Gi", "10GB", "ten", "1..2", "10 Gi"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_parse_timestamp() -> None:
    assert parse_timestamp("2024-05-01T12:30:00Z") == 1714566600.0
    assert parse_timestamp("2024-05-01T14:30:00.250000+02:00") == 1714566600.25
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_parse_pod_counts_generic_ephemeral_volumes_as_claims() -> None:
    obj = {
        "metadata": {"uid": "u", "name": "p", "namespace": "ml"},
        "spec": {
            "nodeName": NODE,
            "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}],
        },
    }
    pod, node = parse_pod(obj)
    assert (pod.claims, node, pod.phase) == (("p-scratch",), NODE, "Unknown")


# ---- wiring ------------------------------------------------------------------------------
def test_node_name_from_env() -> None:
    assert node_name_from_env({"NODE_NAME": "gpu-7"}) == "gpu-7"
    with pytest.raises(SourceError, match=r"NODE_NAME is not set.*spec\.nodeName"):
        node_name_from_env({})


def test_load_api_from_kubeconfig(kube: FakeKubeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "config"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{kube.host}"}}}}]
users: [{{name: dev, user: {{token: dev-token}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: dev}}}}]
current-context: fake
"""
    )
    kube.add_pod("a", "ml", node=NODE)
    monkeypatch.setenv("KUBECONFIG", str(path))  # read at call time, not at import
    api = load_api()
    assert [p.metadata.name for p in api.list_pod_for_all_namespaces().items] == ["a"]
    assert [p.metadata.name for p in load_api(str(path)).list_pod_for_all_namespaces().items] == ["a"]


def test_load_api_without_credentials_says_what_it_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(SourceError, match=r"in-cluster service account: .*; kubeconfig .*absent"):
        load_api()


def test_a_pod_that_leaves_is_remembered_with_when_it_left(
    kube: FakeKubeApi, start: Callable[..., PodWatcher]
) -> None:
    kube.add_pod("a", "ml", node=NODE)
    kube.add_pod("b", "ml", node=NODE)
    watcher = start()
    before = time.time()
    kube.delete_pod("ml", "a")
    eventually(lambda: [p.name for p in watcher.pods()] == ["b"])
    (gone,) = watcher.removed_since(before)
    assert gone[0].name == "a" and before < gone[1] <= time.time()
    assert watcher.removed_since(time.time()) == ()
