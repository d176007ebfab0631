"""dcgm-exporter as the node's GPU reader, end to end through the real fetch path (file://),
and the node_source config section."""

from __future__ import annotations

import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from exporter.config.load import load_config_text
from exporter.errors import ConfigError
from exporter.records import Owner
from exporter.sources.gpu.dcgm_reader import DcgmGpus, mig_share
from exporter.sources.node import DiscoveredNode

FIXTURES = Path(__file__).parent / "fixtures" / "dcgm-exporter"


def config(extra: str = "", workloads: str = "") -> str:
    return (
        textwrap.dedent(
            """\
        node: gpu-node-07
        pricing:
          gpus: {H100: {spot: 2.00}, A100: {spot: 1.40}}
        node_source:
          gpus: dcgm
          capacity: spot
          dcgm_url: http://127.0.0.1:9400/metrics
        """
        )
        + textwrap.dedent(extra)
        + textwrap.dedent(workloads)
    )


def node_over(fixture: str) -> tuple[DiscoveredNode, DcgmGpus]:
    reader = DcgmGpus(f"file://{FIXTURES / fixture}")
    return DiscoveredNode(reader), reader


def test_k8s_payload_gives_gpus_with_their_pod_and_the_free_one_unallocated() -> None:
    cfg = load_config_text(config())
    node, reader = node_over("4.5.3-4.8.2-k8s.txt")
    gpus = node.gpus(cfg)
    assert [(g.hardware, g.capacity) for g in gpus] == [("H100", "spot"), ("H100", "spot")]
    held = node.placements(cfg)
    assert [(p.gpu_id, p.holder) for p in held] == [
        (gpus[0].gpu_id, Owner("llm-serving", "vllm-llama31-8b-7d9f6c5b8-x2kqp", "llm-serving", ""))
    ]
    info = {u.gpu_id: u for u in node.unit_info()}
    assert info[gpus[0].gpu_id].placed_by == "dcgm" and info[gpus[1].gpu_id].placed_by == ""
    assert node.status() == (reader.status(),) and reader.status().up


def test_a_pod_declared_in_the_config_keeps_its_team_and_model() -> None:
    workloads = """\
        inventory:
          workloads:
            - {pod: vllm-llama31-8b-7d9f6c5b8-x2kqp, namespace: llm-serving, team: search, model: llama-8b}
        """
    cfg = load_config_text(config(workloads=workloads))
    node, _ = node_over("4.5.3-4.8.2-k8s.txt")
    node.gpus(cfg)
    (placed,) = node.placements(cfg)
    assert (placed.holder.team, placed.holder.model) == ("search", "llama-8b")


def test_static_placements_match_discovered_gpus_by_index_or_uuid() -> None:
    workloads = """\
        inventory:
          workloads:
            - {pod: a, namespace: x, team: t, model: m, gpus: ["0"]}
            - {pod: b, namespace: x, team: t, model: m, gpus: ["GPU-a81c04f2-6e5d-4b97-8c3a-f21e7d590c6b"]}
            - {pod: c, namespace: x, team: t, model: m, gpus: ["7"]}
        """
    cfg = load_config_text(config(workloads=workloads))
    node, _ = node_over("4.5.3-4.8.2.txt")
    gpus = node.gpus(cfg)
    placed = {p.holder.pod: p.gpu_id for p in node.placements(cfg)}
    assert placed["a"] == gpus[0].gpu_id
    assert "c" not in placed  # GPU 7 is not on this node: nothing to hold
    assert placed["b"] == "GPU-a81c04f2-6e5d-4b97-8c3a-f21e7d590c6b" == gpus[1].gpu_id  # by UUID
    assert {u.placed_by for u in node.unit_info()} <= {"static", ""}


def test_mig_payload_bills_each_instance_by_its_slices() -> None:
    cfg = load_config_text(config())
    node, _ = node_over("4.5.3-4.8.2-mig.txt")
    gpus = node.gpus(cfg)
    assert [(g.hardware, g.profile, g.price_share) for g in gpus] == [
        ("A100-80GB", "3g.40gb", Fraction(3, 7)),  # priced by the config's A100 row (PRICE_FAMILIES)
        ("A100-80GB", "3g.40gb", Fraction(3, 7)),
        ("A100-80GB", "unused", Fraction(1, 7)),  # the slice no instance uses: idle, and still paid
    ]
    assert len({g.gpu_id for g in gpus}) == 3
    held = node.placements(cfg)
    assert [p.holder.pod for p in held] == ["sglang-qwen-0"]
    assert [u.index for u in node.unit_info()] == ["0/gi1", "0/gi2", "0/unused"]


def test_a_down_endpoint_keeps_billing_the_last_known_gpus_with_busy_time_unknown(tmp_path: Path) -> None:
    payload = tmp_path / "dcgm.txt"
    payload.write_text((FIXTURES / "4.5.3-4.8.2-k8s.txt").read_text())
    cfg = load_config_text(config())
    reader = DcgmGpus(f"file://{payload}")
    node = DiscoveredNode(reader)
    before = node.gpus(cfg)
    assert any(g.utilization for g in before)
    payload.write_text('DCGM_FI_DEV_GPU_UTIL{gpu="0" 5\n')  # malformed
    after = node.gpus(cfg)
    assert [g.gpu_id for g in after] == [g.gpu_id for g in before]
    assert all(g.utilization is None for g in after)
    assert len(node.placements(cfg)) == 1  # the pod still holds its GPU
    status = reader.status()
    assert not status.up and "DCGM_FI_DEV_GPU_UTIL" in status.error


@pytest.mark.parametrize(
    ("profile", "model", "share"),
    [
        ("3g.40gb", "NVIDIA H100 80GB HBM3", Fraction(3, 7)),
        ("1g.10gb", "NVIDIA A100-SXM4-80GB", Fraction(1, 7)),
        ("7g.80gb", "NVIDIA H100 80GB HBM3", Fraction(1)),
        ("2g.12gb", "NVIDIA A30", Fraction(2, 4)),
        ("garbage", "NVIDIA H100 80GB HBM3", Fraction(1)),  # unreadable: the whole GPU, never less
        ("9g.99gb", "NVIDIA H100 80GB HBM3", Fraction(1)),
    ],
)
def test_mig_share_from_the_profile(profile: str, model: str, share: Fraction) -> None:
    assert mig_share(profile, model) == share


def test_node_source_is_validated_with_every_problem_at_once() -> None:
    bad = """\
        node: n
        node_source:
          gpus: nvlm
          capacity: cheap
          poll_seconds: 0
          hardware_names: {"NVIDIA H100 NVL": 3}
          starved_below_utilization: 2
          colour: blue
        """
    with pytest.raises(ConfigError) as e:
        load_config_text(textwrap.dedent(bad))
    text = str(e.value)
    for needle in ("node_source.gpus", "node_source.capacity", "node_source.poll_seconds",
                   "node_source.starved_below_utilization", "node_source.colour"):  # fmt: skip
        assert needle in text, text
    with pytest.raises(ConfigError, match="needs dcgm_url"):
        load_config_text("node: n\nnode_source: {gpus: dcgm}\n")


def test_node_source_defaults_to_the_inventory() -> None:
    cfg = load_config_text("node: n\n")
    assert cfg.node_source.gpus == "inventory" and cfg.node_source.starved_below_utilization == 0.2


CADVISOR = Path(__file__).parent / "fixtures" / "cadvisor" / "v0.60.5-network.txt"


def test_bytes_sent_by_gpu_pods_become_egress_and_cross_zone_money(tmp_path: Path) -> None:
    from exporter.meter.ledger import Meter
    from exporter.records import TickInput

    network = tmp_path / "cadvisor.txt"
    network.write_text(CADVISOR.read_text())
    extra = f"""\
        pricing:
          gpus: {{H100: {{spot: 2.00}}}}
          egress_usd_per_gb: 0.10
          cross_zone_usd_per_gb: 0.01
        node_source:
          gpus: dcgm
          capacity: spot
          dcgm_url: http://127.0.0.1:9400/metrics
          cadvisor_url: file://{network}
          egress_share: 0.25
          cross_zone_share: 0.5
        """
    cfg = load_config_text("node: gpu-node-07\n" + textwrap.dedent(extra))
    node, _ = node_over("4.5.3-4.8.2-k8s.txt")
    meter, t = Meter("n"), 1_767_225_600 * 10**9

    def tick() -> set[str]:
        nonlocal t
        gpus, placements, pods = node.gpus(cfg), node.placements(cfg), node.pods(cfg)
        meter.tick(
            TickInput(t, t + 5 * 10**9, "n", gpus, placements, (), pods,
                      egress_share=cfg.node_source.egress_share, cross_zone_share=cfg.node_source.cross_zone_share),
            cfg.pricing, 60,
        )  # fmt: skip
        t += 5 * 10**9
        return {p.holder.pod for p in pods}

    assert tick() == {"vllm-llama31-8b-7d9f6c5b8-x2kqp"}  # a baseline; not dcgm-exporter's own pod
    network.write_text(CADVISOR.read_text().replace("7.3645128834e+10", str(73645128834 + 4 * 2**30)))
    tick()  # the pod sent 4 GiB more
    (line,) = [v for v in meter._snapshot.lines if v.line.owner.pod.startswith("vllm")]
    assert line.totals.cost["egress"] == 100_000_000  # 4 GiB × 0.25 × $0.10
    assert line.totals.cost["cross_zone"] == 20_000_000  # 4 GiB × 0.5 × $0.01
    assert [s.source for s in node.status()] == ["dcgm", "cadvisor"] and all(s.up for s in node.status())
    network.write_text("garbage{")
    assert tick() == {"vllm-llama31-8b-7d9f6c5b8-x2kqp"}  # unreadable: listed, nothing sent, baseline kept
    assert not node.status()[1].up
    network.write_text(CADVISOR.read_text().replace("7.3645128834e+10", str(73645128834 + 8 * 2**30)))
    tick()  # back: the 4 GiB sent across the outage are billed once
    (line,) = [v for v in meter._snapshot.lines if v.line.owner.pod.startswith("vllm")]
    assert line.totals.cost["egress"] == 200_000_000


def test_a_quoted_empty_socket_turns_the_kubelet_off_and_bare_empty_text_is_refused() -> None:
    cfg = load_config_text('node: n\nkubernetes: {enabled: true, podresources_socket: ""}\n')
    assert cfg.kubernetes.podresources_socket == ""
    with pytest.raises(ConfigError, match=r"kubernetes\.team_label"):
        load_config_text('node: n\nkubernetes: {team_label: ""}\n')


def test_the_node_label_defaults_to_the_downward_apis_node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "gpu-node-7")
    assert load_config_text("tick_seconds: 5\n").node == "gpu-node-7"
    assert load_config_text("node: pinned\n").node == "pinned"
    monkeypatch.delenv("NODE_NAME")
    assert load_config_text("tick_seconds: 5\n").node == "node"


def test_a_host_network_pods_bytes_are_the_nodes_and_never_its_egress(tmp_path: Path) -> None:
    from exporter.engines.targets import OwnerRules
    from exporter.records import PodInfo
    from exporter.sources.kube.link import KubeLink

    network = tmp_path / "cadvisor.txt"
    network.write_text(CADVISOR.read_text())
    name = "vllm-llama31-8b-7d9f6c5b8-x2kqp"  # holds a GPU in the dcgm fixture, sends bytes in cAdvisor's

    class View:
        host_network = False

        def pods(self) -> tuple[PodInfo, ...]:
            pod = PodInfo("u-1", "llm-serving", name, {}, {}, "Running", "10.0.0.5", None, (), ())
            return (
                PodInfo(**{**{f: getattr(pod, f) for f in pod.__slots__}, "host_network": self.host_network}),
            )

        def removed_since(self, since: float) -> tuple[()]:
            return ()

    view = View()
    link = KubeLink(view, OwnerRules())  # type: ignore[arg-type]
    reader = DcgmGpus(f"file://{FIXTURES / '4.5.3-4.8.2-k8s.txt'}")
    node = DiscoveredNode(reader, kube=link)
    cfg = load_config_text(config() + f"  cadvisor_url: file://{network}\n")

    def sent() -> dict[str, float | None]:
        link.refresh()
        node.gpus(cfg), node.placements(cfg)
        return {u.holder.pod: u.transmit_bytes_total for u in node.pods(cfg)}

    assert sent() == {name: 73645128834.0}
    view.host_network = True  # the same pod on the node's network: cAdvisor shows the node's bytes
    assert sent() == {name: None}
    view.pods = lambda: ()  # type: ignore[method-assign]  # a watch gap: the API view forgets it
    assert sent() == {name: None}  # still the node's bytes, still not billed
