"""The exporter's whole configuration as frozen records (built by ``config.load_config``).

Split from ``config.py`` so that the runtime and the meter can import the shapes without
pulling in YAML parsing and validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from exporter.pricing.prices import PricingConfig
from exporter.pricing.published import PublishedRow
from exporter.records import NO_CLIENT_CONFIG, Gateway, HttpClientConfig, Owner, Target

DEFAULT_PORT = 9433  # not 9100 (node), 9400 (dcgm), 9003 (OpenCost), 8080 (kube-state-metrics)


@dataclass(frozen=True, slots=True)
class ScrapeLimits:
    timeout_seconds: float = 2.0  # whole request, connect to last byte
    max_body_bytes: int = 32 * 2**20  # counted after decompression
    max_samples: int = 500_000  # lines in the payload
    # Samples of the families a reader parses: parsing costs ~10 µs each, so this bounds what one
    # hostile target (100 000 models) can cost a tick; counted before any is parsed.
    max_series: int = 20_000


@dataclass(frozen=True, slots=True)
class StaticGpu:
    gpu_id: str
    hardware: str
    capacity: str
    utilization: float | None = None  # static busy fraction when nothing measures it
    power_watts: float | None = None


@dataclass(frozen=True, slots=True)
class StaticWorkload:
    owner: Owner
    gpus: tuple[tuple[str, int], ...] = ()  # (gpu_id, share weight)
    storage_gb: Decimal = Decimal(0)
    targets: tuple[Target, ...] = ()
    target_tokens: Decimal | None = None  # training: tokens to train, for the projection
    role: str = "unified"  # disaggregated serving: "prefill" or "decode" pods


GPU_SOURCES = ("inventory", "nvml", "dcgm", "auto")


@dataclass(frozen=True, slots=True)
class NodeSourceConfig:
    """Where the node's GPUs and their readings come from (``node_source`` in the file)."""

    gpus: str = "inventory"  # one of GPU_SOURCES; auto: NVML, else dcgm-exporter, else inventory
    capacity: str = "on_demand"  # capacity class of discovered GPUs
    dcgm_url: str = ""
    poll_seconds: float = 1.0  # NVML sweep period
    call_timeout_seconds: float = 2.0  # an NVML call slower than this marks its GPU hung
    hardware_names: Mapping[str, str] = field(default_factory=dict)  # driver name → hardware type
    starved_below_utilization: float = 0.2  # held, serving, but busy less than this: "starved"
    cadvisor_url: str = ""  # the kubelet's /metrics/cadvisor (or a file): bytes each pod sent
    cadvisor_client: HttpClientConfig = NO_CLIENT_CONFIG  # the kubelet's port 10250 is https
    dcgm_client: HttpClientConfig = NO_CLIENT_CONFIG
    egress_share: Fraction = Fraction(0)  # of those bytes: billed as internet egress
    cross_zone_share: Fraction = Fraction(0)  # ... and as cross-zone traffic (the rest is free)

    def restart_key(self) -> tuple[object, ...]:
        """What a reload cannot change: the sources are built once, at start."""
        return (self.gpus, self.dcgm_url, self.dcgm_client, self.poll_seconds, self.call_timeout_seconds)


DEFAULT_PODRESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """The ``kubernetes`` section: this node's pods, who holds each GPU, what to scrape."""

    enabled: bool = False
    node_name: str = ""  # "" → $NODE_NAME (the downward API)
    kubeconfig: str = ""  # "" → in-cluster config, else $KUBECONFIG or ~/.kube/config
    team_label: str = "team"
    model_label: str = "model"
    namespace_teams: Mapping[str, str] = field(default_factory=dict)
    podresources_socket: str = DEFAULT_PODRESOURCES_SOCKET  # "" → do not ask the kubelet
    proc_root: str = "/proc"  # the host's /proc (hostPID, or a mount): GPU processes → pods
    scrape_annotated_pods: bool = True  # prometheus.io/scrape pods become token targets
    scrape_client: HttpClientConfig = NO_CLIENT_CONFIG  # for pods annotated prometheus.io/scheme: https

    def restart_key(self) -> tuple[object, ...]:
        """All of it: the watcher and its rules are built once, at start."""
        return (
            self.enabled, self.node_name, self.kubeconfig, self.team_label, self.model_label,
            dict(self.namespace_teams), self.podresources_socket, self.proc_root, self.scrape_annotated_pods,
            self.scrape_client,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    pricing: PricingConfig
    node: str = "node"
    tick_seconds: float = 5.0
    window_seconds: float = 60.0
    limits: ScrapeLimits = field(default_factory=ScrapeLimits)
    gpus: tuple[StaticGpu, ...] = ()
    workloads: tuple[StaticWorkload, ...] = ()
    max_owners: int = 2000  # cardinality cap: owners beyond it fold into __overflow__
    gateways: tuple[Gateway, ...] = ()
    max_tenants: int = 200  # cardinality cap: tenants beyond it fold into __other__
    # served tokens wait this long for a gateway's count, then are direct
    gateway_settle_seconds: float = 300.0
    # Published CPMs the live ones are compared with (cpm_frontier_ratio): the packaged table unless the
    # config names its own (published_table: FILE, compare --table's format).
    published: tuple[PublishedRow, ...] | None = None
    node_source: NodeSourceConfig = field(default_factory=NodeSourceConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    # Where each tick's state is saved, so a restart goes on exactly ("" = no persistence), and the
    # longest downtime billed to the holders found at start (longer: billed idle, exporter_down).
    state_file: str = ""
    state_max_gap_seconds: float = 3600.0
    path: str = ""  # file it came from ("<embedded demo>" for the demo)
    sha256: str = ""  # of the file's bytes; exported as cpm_config_hash

    @property
    def targets(self) -> tuple[Target, ...]:
        return tuple(t for w in self.workloads for t in w.targets)
