"""Records passed between layers: sources produce them, the meter consumes them.

All are frozen, slotted dataclasses of plain values. Sources know nothing of money; the
meter knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

CAPACITY_CLASSES = ("on_demand", "spot", "reserved", "contract", "owned")
WORKLOAD_KINDS = ("inference", "training")
# Disaggregated serving: a prefill pod's money is all input, a decode pod's all output.
SERVING_ROLES = ("unified", "prefill", "decode")


class Owner(NamedTuple):
    """Who a dollar is charged to. The idle owner has ``workload == "idle"``.

    A NamedTuple rather than a dataclass: owners are dict keys on the hot path, and a
    tuple's hash is computed in C.
    """

    namespace: str
    pod: str
    team: str
    model: str
    workload: str = "inference"

    @property
    def is_idle(self) -> bool:
        return self.workload == "idle"


IDLE = Owner(namespace="", pod="", team="__idle__", model="__idle__", workload="idle")
OVERFLOW_NAME = "__overflow__"
OVERFLOW = Owner(namespace=OVERFLOW_NAME, pod=OVERFLOW_NAME, team=OVERFLOW_NAME, model=OVERFLOW_NAME)
NOBODY = Owner("", "", "", "")  # counters that belong to no pod (a gateway's: its tenants split the pods')
NO_TENANT = "__none__"  # tokens no caller was named for (LiteLLM's "None" team, an unset custom label)


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One billable GPU unit as seen this tick (a whole GPU, later a MIG slice)."""

    gpu_id: str
    hardware: str
    capacity: str
    utilization: float | None = None  # 0..1 busy fraction over the tick; None = unknown
    # The physical GPU's power, whole (a MIG instance's too): owned hardware's energy fallback.
    power_watts: float | None = None
    # A MIG instance pays its slices' share of the parent's price (3 of 7 slices: 3/7), and that
    # share of the physical GPU's energy: the meter applies it, once.
    price_share: Fraction = Fraction(1)
    # The physical GPU's cumulative energy (NVML / DCGM total energy, in joules), whole: when
    # known, owned hardware's energy is its difference between ticks rather than power × time.
    energy_joules_total: float | None = None
    profile: str = ""  # MIG profile such as "3g.40gb"; "" for a whole GPU
    device: str = ""  # the physical GPU whose power and energy these are; "" = gpu_id itself


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str  # "nvml" | "dcgm" | "inventory"
    up: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class UnitInfo:
    """What the exposition shows per GPU unit (``cpm_gpu_info``, ``cpm_gpu_fault``)."""

    gpu_id: str
    index: str
    name: str
    hardware: str
    profile: str
    placed_by: str  # "fraction" | "podresources" | "process" | "dcgm" | "static" | "" (unallocated)
    fault: str = ""
    split: str = ""  # several holders: fraction, overcommitted, share, replicas, equal; one: "whole"
    # (namespace, pod, SM use 0..1) per holder: who used the unit by the driver's per-process
    # samples (an efficiency figure; money follows who holds). () where nothing was sampled.
    used: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Placement:
    """``holder`` holds ``gpu_id`` with an integer share ``weight`` (time-sliced GPUs), from
    ``since_ns`` until ``until_ns`` (wall clock) when it came or went within the tick."""

    gpu_id: str
    holder: Owner
    weight: int = 1
    since_ns: int | None = None
    until_ns: int | None = None


@dataclass(frozen=True, slots=True)
class PodUsage:
    """Non-GPU resources a pod consumed: cumulative counters and current capacity."""

    holder: Owner
    # Provisioned capacity right now (PVCs): a claim shared by several pods is split among them,
    # exactly (a Fraction), so the node bills it once.
    storage_bytes: float | Fraction = 0.0
    # Cumulative bytes the pod sent (cAdvisor): split into egress / cross-zone / free by the
    # node's configured destination shares (TickInput), an approximation cAdvisor forces.
    transmit_bytes_total: float | None = None


# A histogram as (upper bound, count) pairs in ascending bound order, the last +Inf.
# Upstream: cumulative counts (Prometheus ``le`` buckets); in deltas: the count in each bucket.
Buckets = tuple[tuple[float, float], ...]


# What a quantity is, and so where it flows (the QUANTITIES table):
AMOUNT = "amount"  # a counter a line adds up: per-tick deltas, cumulative totals, the state file
READING = "reading"  # a counter only read: it becomes another quantity (computed prompt tokens → input)
FIGURE = "figure"  # a counter feeding one figure (the direction split, interactivity): deltas, no totals
LEVEL = "level"  # a gauge read at each tick (requests in the batch): integrated over the tick's time


@dataclass(frozen=True, slots=True)
class Quantity:
    """One quantity a server exports, declared once: ``name`` is its field in ModelCounters (read from
    the ServerProfile field of that name unless ``paired``) and, but for a READING, in ModelDelta."""

    name: str
    kind: str  # AMOUNT | READING | FIGURE | LEVEL
    # Tokens and requests: a bad value refuses the whole scrape (cpm_target_up 0), and a model with
    # none of these this scrape is not read. A bad value of another counter drops that figure alone.
    refuses: bool = False
    # Summed in the live window (meter.windows.TickRecord, a field of this name; a catch-up after an
    # outage spreads it back); a LEVEL always is, as ``<name>_seconds`` and ``<name>_ns``.
    windowed: bool = False
    paired: bool = False  # read as a (seconds, count) pair from ServerProfile.token_time, not by name
    gauge: str = ""  # a LEVEL's mean over the window: its LiveGauges field (and cpm_<gauge> family)


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("input_tokens", AMOUNT, refuses=True, windowed=True),  # every prompt token, cached or not
    Quantity("computed_input_tokens", READING, refuses=True),  # prompt tokens without cache hits (llama.cpp)
    Quantity("cached_input_tokens", AMOUNT, refuses=True, windowed=True),  # prompt tokens from a prefix cache
    Quantity("output_tokens", AMOUNT, refuses=True, windowed=True),
    Quantity("requests", AMOUNT, refuses=True, windowed=True),  # finished requests
    Quantity("prefill_seconds", FIGURE),  # Σ per-request prefill time: the direction split
    Quantity("decode_seconds", FIGURE),  # Σ per-request decode time
    Quantity("itl_seconds", FIGURE, windowed=True, paired=True),  # inter-token latency _sum: interactivity
    Quantity("itl_count", FIGURE, windowed=True, paired=True),  # ... and _count
    Quantity("running", LEVEL, gauge="running_requests"),  # requests in the batch: the concurrency
    Quantity("waiting", LEVEL, gauge="waiting_requests"),  # requests queued for the batch
)
# The table's views, in its order (the records' fields are checked against them: tests/test_quantities.py).
TOKEN_COUNTERS = tuple(q.name for q in QUANTITIES if q.refuses)
TOKEN_AMOUNTS = tuple(q.name for q in QUANTITIES if q.kind == AMOUNT)  # what a line's totals add up
FIGURES = tuple(q.name for q in QUANTITIES if q.kind == FIGURE)
COUNTERS = tuple(q.name for q in QUANTITIES if q.kind != LEVEL)  # cumulative: read as deltas
WINDOWED = tuple(q.name for q in QUANTITIES if q.windowed)  # summed in the window, spread on a catch-up
LEVELS = tuple(q.name for q in QUANTITIES if q.kind == LEVEL)


@dataclass(frozen=True, slots=True)
class ModelCounters:
    """Cumulative counters one inference target exports for one model (engines summed).

    ``created`` is the upstream ``_created`` timestamp (or process start): when it changes,
    the counters restarted from zero even if they already overtook their old values.
    Histogram sums are seconds; counts are observations. ``None`` is a counter this scrape
    did not carry (the server has none, or the family is missing this once): unknown, not 0.
    """

    model: str
    input_tokens: float | None
    output_tokens: float | None
    requests: float | None = None
    created: float | None = None
    prefill_seconds: float | None = None  # sum of per-request prefill time
    decode_seconds: float | None = None  # sum of per-request decode time
    itl_seconds: float | None = None  # inter-token latency histogram _sum
    itl_count: float | None = None  # ... and _count
    itl_method: str = ""  # what the pair measures (ServerProfile.token_time_method)
    running: float | None = None  # gauge: requests in the batch right now
    waiting: float | None = None  # gauge: requests queued for the batch right now
    kv_cache_dtype: str = ""  # as the server's own info series says (vLLM cache_config_info), "" if not
    instance: str = ""  # one of several independent counter sets of the model (vLLM engine)
    cached_input_tokens: float | None = None  # part of input_tokens served from a prefix cache
    requests_by_reason: tuple[tuple[str, float], ...] = ()  # (finish reason, finished requests)
    prompt_lengths: Buckets = ()  # cumulative histogram of finished requests' prompt tokens
    generation_lengths: Buckets = ()  # ... and of their output tokens
    created_by: str = ""  # the series ``created`` was read from (vLLM: _created, else process start)
    # Servers whose prompt counter leaves cache hits out (llama.cpp): input_tokens is then None
    # and the meter adds this counter's increase and cached_input_tokens' increase.
    computed_input_tokens: float | None = None
    # (field, series) for fields read from one of several alternatives: which one it was.
    sources: tuple[tuple[str, str], ...] = ()
    # The server's own model name where a target's ``models`` map renamed it ("" = ``model``): the
    # meter follows a series by it, so a map set, changed or taken away on a running server renames
    # its series instead of starting a new one (whose lifetime would be counted again). Several
    # names mapped to one model are several series of it, each followed on its own; they add up.
    server_model: str = ""


@dataclass(frozen=True, slots=True)
class TargetScrape:
    """The result of scraping one inference target in one tick.

    A failed scrape has ``ok == False`` and no models: it is discarded whole, so the
    meter freezes that target's counters rather than resetting them.
    """

    target: str
    holder: Owner
    server: str  # entry of the SERVERS table that matched ("vllm"), "" if unknown
    ok: bool
    models: tuple[ModelCounters, ...] = ()
    error_reason: str = ""
    error: str = ""
    duration_seconds: float = 0.0
    started_at: float | None = None  # the serving container's start (Kubernetes), if known
    tenants: tuple[ModelCounters, ...] = ()  # per (model, caller) where the target has a tenant_label


@dataclass(frozen=True, slots=True)
class TickInput:
    """Everything the meter needs for one tick; times are wall-clock UNIX nanoseconds."""

    start_ns: int
    end_ns: int
    node: str
    gpus: tuple[GpuSample, ...]
    placements: tuple[Placement, ...]
    scrapes: tuple[TargetScrape, ...] = ()
    pods: tuple[PodUsage, ...] = field(default_factory=tuple)
    # Training jobs: (namespace, pod) → tokens the whole run is meant to process.
    token_targets: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # (namespace, pod) → "prefill" | "decode" for disaggregated serving; absent: unified.
    roles: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # Held, serving, but busy less than this fraction of the measured time: "starved" idle.
    starved_below: float = 0.2
    # Of the bytes pods send: the share billed as internet egress, and as cross-zone traffic.
    egress_share: Fraction = Fraction(0)
    cross_zone_share: Fraction = Fraction(0)
    # Why a GPU nobody holds is idle: "unallocated", or "exporter_down" for a downtime too long
    # to bill to the holders found at start.
    idle_reason: str = "unallocated"
    # Gateways' per-tenant counters (engines.gateways): each model's money splits among its tenants.
    gateways: tuple[TargetScrape, ...] = ()

    @property
    def dt_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class HttpClientConfig:
    """How to reach an https endpoint: whom to trust, and the token to show (Prometheus's
    ``tls_config`` and ``bearer_token_file``). The defaults trust the system's CAs, no token."""

    ca_file: str = ""  # a PEM bundle trusted instead of the system's CAs
    insecure_skip_verify: bool = False  # accept any certificate (self-signed kubelets)
    server_name: str = ""  # the name the certificate must carry, when the URL holds an IP
    bearer_token_file: str = ""  # sent as "Authorization: Bearer …", re-read for every request


NO_CLIENT_CONFIG = HttpClientConfig()


@dataclass(frozen=True, slots=True)
class OperatingHints:
    """What a server runs, as its pod or config says (engines/operating.py): "" where nothing says."""

    version: str = ""  # the engine's version (an image tag, an annotation)
    precision: str = ""  # the weights' quantisation or dtype: fp8, awq, bfloat16, Q4_K_M …
    kv_cache_dtype: str = ""
    source: str = ""  # annotation | container | config: where the first of them came from
    model_class: str = (
        ""  # the published table's class of the model (llama-70b): only annotations or config say
    )


NO_HINTS = OperatingHints()


@dataclass(frozen=True, slots=True)
class Target:
    """An inference server's /metrics endpoint and the owner its tokens belong to."""

    name: str
    url: str
    owner: Owner
    server: str = "auto"  # a key of engines.profiles.SERVERS, or "auto" to detect
    token_metric: str = ""  # training: the job's own token counter name, if not the default
    # Per-adapter (LoRA) accounting: a label whose non-empty value names the adapter a
    # sample's tokens were served for; those tokens become their own model line.
    adapter_label: str = ""
    client: HttpClientConfig = NO_CLIENT_CONFIG  # https targets: trust and token
    # Kubernetes: when the container serving the metrics started (UNIX s). A new start after
    # our last reading is a restart even where the server exports no start time of its own.
    started_at: float | None = None
    # Chargeback by the server's own labels: a label (SGLang's custom labels) whose value names the
    # caller a sample's tokens were served for; those counts split the model's money like a gateway's.
    tenant_label: str = ""
    hints: OperatingHints = NO_HINTS  # engine version and precision, from the pod or the config
    # The server's model name → the declared model, where they differ (Triton names its TensorRT-LLM
    # model "tensorrt_llm"): the reader files the server's samples under the declared name.
    models: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Gateway:
    """A gateway whose per-tenant token counters split the money of the models it routes to."""

    name: str
    url: str
    kind: str  # an entry of engines.gateways.GATEWAYS
    tenant_label: str = ""  # "" = the kind's own
    models: Mapping[str, str] = field(default_factory=dict)  # gateway model → served model
    client: HttpClientConfig = NO_CLIENT_CONFIG
    # kind "counters" (any router): its (input, output) token counter names and its model label
    counters: tuple[str, str] = ("", "")
    model_label: str = ""


@dataclass(frozen=True, slots=True)
class ContainerRun:
    """One container of a pod: the ports it declares, when its current run started, what it runs."""

    name: str
    ports: tuple[int, ...]  # spec.containers[].ports[].containerPort
    started_at: float | None  # status.containerStatuses[].state.running.startedAt; None unless running
    image: str = ""  # spec.containers[].image
    args: tuple[str, ...] = ()  # spec.containers[].command + args: the server's flags (--dtype …)


@dataclass(frozen=True, slots=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    phase: str  # Pending/Running/Succeeded/Failed/Unknown
    pod_ip: str
    deleted_at: float | None  # metadata.deletionTimestamp as UNIX seconds, else None
    claims: tuple[str, ...]  # PVC names the pod mounts
    container_ids: tuple[str, ...]  # runtime prefix ("containerd://") stripped
    created_at: float | None = None  # metadata.creationTimestamp as UNIX seconds
    # When its last container terminated, once all have (a finished Job's pod lingers until deleted).
    finished_at: float | None = None
    # spec.hostNetwork: the pod sends on the node's own interfaces, so cAdvisor's network
    # counters for it are the whole node's, not the pod's.
    host_network: bool = False
    containers: tuple[ContainerRun, ...] = ()

    def serving(self, port: int) -> ContainerRun | None:
        """The container serving ``port``: the one declaring it, or the pod's only container."""
        declaring = [c for c in self.containers if port in c.ports]
        if len(declaring) == 1:
            return declaring[0]
        return self.containers[0] if len(self.containers) == 1 else None

    def started_at(self, port: int) -> float | None:
        """When the container serving ``port`` last started: the one declaring the port, or the
        pod's only container. None when no container can be told (a restart of it is then seen
        only through the server's own start time)."""
        declaring = [c for c in self.containers if port in c.ports]
        if len(declaring) == 1:
            return declaring[0].started_at
        return self.containers[0].started_at if len(self.containers) == 1 and not declaring else None
