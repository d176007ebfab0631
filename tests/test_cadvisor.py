from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.sources.kube.cadvisor import pod_transmit_bytes

FIXTURE = Path(__file__).parent / "fixtures" / "cadvisor" / "v0.60.5-network.txt"


def test_the_real_payload_matches_prometheus_client() -> None:
    text = FIXTURE.read_text()
    expected: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "container_network_transmit_bytes_total" and s.labels["container"] == "":
                key = (s.labels["namespace"], s.labels["pod"])
                expected[key] = expected.get(key, 0.0) + s.value
    assert expected and pod_transmit_bytes(text) == expected


def line(container: str, interface: str, value: float, pod: str = "p", cgroup: str = "/kubepods/podx") -> str:
    return (
        f'container_network_transmit_bytes_total{{container="{container}",id="{cgroup}",interface="{interface}",'
        f'namespace="ns",pod="{pod}"}} {value} 1763904812345\n'
    )


def test_interfaces_add_up_loopback_and_containers_do_not() -> None:
    text = (
        line("", "eth0", 1000)
        + line("", "eth1", 24)
        + line("", "lo", 5_000_000)  # never leaves the pod
        + line("vllm", "eth0", 1000, cgroup="/kubepods/podx/abc")  # the same namespace's bytes again
    )
    assert pod_transmit_bytes(text) == {("ns", "p"): 1024.0}


def test_the_sandbox_counts_only_when_there_is_no_pod_cgroup_series() -> None:
    sandbox = line("POD", "eth0", 700, cgroup="/kubepods/podx/pause")
    assert pod_transmit_bytes(sandbox) == {("ns", "p"): 700.0}
    assert pod_transmit_bytes(sandbox + line("", "eth0", 700)) == {("ns", "p"): 700.0}


def test_series_without_a_pod_are_not_pods() -> None:
    text = 'container_network_transmit_bytes_total{container="",id="/",interface="eth0",namespace="",pod=""} 9e9\n'
    assert pod_transmit_bytes(text) == {}
