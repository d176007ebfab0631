"""Load the exporter's YAML config into frozen records, collecting every problem at once.

The file format (every field is optional unless marked *required*)::

    node: gpu-node-1            # node label value; default "node"
    tick_seconds: 5             # > 0, <= 300
    window_seconds: 60          # window of the live gauges; >= tick_seconds, <= 86400
    max_owners: 2000            # cardinality cap (owners beyond it fold into __overflow__), >= 1
    max_tenants: 200            # cap on gateway tenants (beyond it: __other__, money kept), >= 1
    gateway_settle_seconds: 300 # served tokens wait this long for a gateway's count, then are direct
    published_table: /etc/cpm/throughput.yaml   # default: the packaged table (cpm_frontier_ratio)
    limits: {scrape_timeout_seconds: 2, max_body_bytes: 33554432, max_samples: 500000, max_series: 20000}
                                # timeout <= tick_seconds so one slow target cannot stall a tick
    state_file: /var/lib/cpm-exporter/state.json   # default: none (a restart starts from zero)
    state_max_gap_seconds: 3600 # a longer downtime is billed idle (exporter_down), not to holders
    pricing:
      currency: USD             # the only currency; stated so a file in EUR fails loudly
      catalogue: true           # false: every used price must come from this file
      month: calendar           # or 730h: how $/GB-month is prorated per second
      gpus:                     # $/GPU-hour per hardware type and capacity class
        H100: {on_demand: 4.50, spot: 2.10, reserved: 2.90}   # classes: on_demand spot
                                # reserved contract owned
      owned:                    # owned GPUs: capex amortised linearly + energy
        H100: {capex_usd: 30000, amortisation_years: 4, watts: 700}
      energy: {usd_per_kwh: 0.12, pue: 1.3}
      egress_usd_per_gb: 0.09
      cross_zone_usd_per_gb: 0.01
      storage_usd_per_gb_month: 0.08
      support_uplift_percent: 10
      overhead: {usd_per_node_hour: 0.50, percent: 0}
      output_input_weight: 4    # token-weight fallback for the input/output split
      budgets:
        usd_per_million_tokens:
          models: {"meta-llama/Llama-3.3-70B-Instruct": 0.80}
          teams: {search: 1.00}
    inventory:
      gpus:                     # each entry: hardware, capacity (required), count or ids
        - {hardware: H100, count: 8, capacity: on_demand}   # ids "0".."7"
        - {hardware: H100, ids: ["8", "9"], capacity: spot, utilization: 0.5, power_watts: 500}
      workloads:
        - pod: llama-70b-0      # required
          namespace: search     # required
          team: search          # default: the namespace
          model: meta-llama/Llama-3.3-70B-Instruct   # required
          kind: inference       # or training
          role: unified         # or prefill / decode: disaggregated serving (money all input / output)
          target_tokens: 2e10    # training: tokens the run is meant to process (projection)
          gpus: ["0", "1"]      # or [{id: "0", share: 2}, ...] for time-sliced GPUs
          storage_gb: 200
          targets:
            - {url: "http://127.0.0.1:8001/metrics", server: auto, name: llama-70b-0}
            # training: {url: "file:///shared/cpm/job.prom", token_metric: myjob_tokens_total}
            # LoRA: {url: ..., adapter_label: lora}: tokens labelled lora="sql" count as model sql
            # Server names: {url: ..., models: {tensorrt_llm: meta-llama/Llama-3.1-8B-Instruct}}
            # TLS: {url: "https://10.0.0.7:8443/metrics", https: {ca_file: /etc/cpm/ca.crt, server_name: vllm.internal}}

Rules worth knowing:

- Numbers are read from the YAML *text* into exact ``Decimal`` (never float): ``0.1``,
  ``.5``, ``1e-12`` (which plain PyYAML reads as a string!) and ``2.5E3`` are numbers;
  ``"0.1"`` (quoted), ``.nan``, ``.inf``, ``true``, ``0x10``, ``010`` and ``1_000`` are refused.
  Money fields take at most 9 decimal places: the meter keeps whole nano-dollars.
- A ``count`` entry numbers its GPUs by position in the inventory: the n-th GPU listed gets
  id ``"n-1"``, so a later ``count`` entry continues where the earlier entries stopped.
  GPU ids may be written ``0`` or ``"0"``; they must be unique.
- A workload GPU listed by id alone has share 1. Several workloads may list one GPU
  (time-slicing); its cost splits by the shares.
- Every inventory GPU needs a price for its (hardware, capacity): ``pricing.gpus``, then
  ``pricing.owned`` (capacity ``owned``), then, if ``catalogue: true``, the dated catalogue
  (logged as a WARNING and marked in ``check-config``), else it is an error.
- Refused anywhere: duplicate keys, unknown fields (with a "did you mean"), aliases,
  anchors, explicit tags, files over 1 MiB. All problems are reported together in one
  ``ConfigError`` as ``path (line N): message``.

The pricing section is read in ``config.pricing``. The catalogue (``pricing.catalogue``), the
inventory section (``config.inventory``) and the ``check-config`` table (``pricing.table``) live in
their own modules; their public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from yaml.nodes import Node

from exporter.config.gateways import read_gateways
from exporter.config.inventory import MAX_GPUS as MAX_GPUS
from exporter.config.inventory import known_servers as known_servers
from exporter.config.inventory import read_gpus, read_workloads
from exporter.config.kube import read_kubernetes
from exporter.config.node import read_node_source
from exporter.config.pricing import read_pricing, resolve_prices
from exporter.config.schema import ExporterConfig, ScrapeLimits
from exporter.errors import ConfigError
from exporter.pricing import table
from exporter.pricing.catalogue import CATALOGUE_PREFIX as CATALOGUE_PREFIX
from exporter.pricing.catalogue import Catalogue as Catalogue
from exporter.pricing.catalogue import CatalogueFact as CatalogueFact
from exporter.pricing.catalogue import CatalogueRow as CatalogueRow
from exporter.pricing.catalogue import fact_date as fact_date
from exporter.pricing.catalogue import load_catalogue as load_catalogue
from exporter.pricing.catalogue import parse_catalogue as parse_catalogue
from exporter.pricing.prices import ZERO
from exporter.pricing.published import PublishedRow, read_table
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, number_reader, text_reader

_TOP = (
    "node",
    "tick_seconds",
    "window_seconds",
    "max_owners",
    "limits",
    "pricing",
    "inventory",
    "node_source",
    "kubernetes",
    "state_file",
    "state_max_gap_seconds",
    "gateways",
    "max_tenants",
    "gateway_settle_seconds",
    "published_table",
)
_LIMITS = ("scrape_timeout_seconds", "max_body_bytes", "max_samples", "max_series")


def load_config(path: str | Path) -> ExporterConfig:
    """Read, parse and validate a config file; raise one ``ConfigError`` listing every problem."""
    source = str(path)
    try:
        text, data = yn.read_file(path)
    except OSError as exc:
        raise ConfigError([f"document: cannot read: {exc.strerror or exc}"], source) from exc
    return _load(text, data, source)


def load_config_text(text: str, source: str = "<string>") -> ExporterConfig:
    """Like ``load_config`` for text in memory (tests, the embedded demo)."""
    return _load(text, text.encode("utf-8", "surrogatepass"), source)


def _load(text: str, data: bytes, source: str) -> ExporterConfig:
    problems = Problems()
    root = yn.compose(text, problems)
    cfg = _read_root(problems, root) if root is not None else None
    if problems or cfg is None:
        raise ConfigError(problems.report() or ["document: unusable"], source)
    return replace(cfg, path=source, sha256=hashlib.sha256(data).hexdigest())


def _read_root(p: Problems, root: Node) -> ExporterConfig | None:
    top = yn.fields(p, root, "", _TOP)
    if top is None:
        return None
    # A DaemonSet shares one config across nodes: each names itself from the downward API.
    node = yn.optional(top, "node", "", text_reader(p), os.environ.get("NODE_NAME") or "node")
    tick = yn.optional(top, "tick_seconds", "", number_reader(p, gt=ZERO, le=Decimal(300)), Decimal(5))
    window = yn.optional(top, "window_seconds", "", number_reader(p, gt=ZERO, le=Decimal(86400)), Decimal(60))
    if window < tick:
        p.add("window_seconds", top.get("window_seconds", root), f"must be >= tick_seconds ({tick})")
    max_owners = yn.optional(top, "max_owners", "", lambda at, n: yn.integer(p, n, at, ge=1), 2000)
    max_tenants = yn.optional(top, "max_tenants", "", lambda at, n: yn.integer(p, n, at, ge=1), 200)
    settle = yn.optional(
        top, "gateway_settle_seconds", "", number_reader(p, gt=ZERO, le=Decimal(86400)), Decimal(300)
    )
    published = _published(p, top)
    limits = _read_limits(p, top.get("limits"), tick)
    own = read_pricing(p, top.get("pricing"))
    inventory = (
        yn.fields(p, top["inventory"], "inventory", ("gpus", "workloads")) if "inventory" in top else {}
    )
    node_source = read_node_source(p, top.get("node_source"), tick)
    located, gpu_ids = read_gpus(p, (inventory or {}).get("gpus"))
    # GPUs found at run time have ids (UUIDs, indexes) the file cannot be checked against.
    gpu_ids = gpu_ids if inventory is not None and node_source.gpus == "inventory" else None
    gpus = tuple(gpu for gpu, _, _ in located)
    workloads = read_workloads(p, (inventory or {}).get("workloads"), gpu_ids)
    pricing = resolve_prices(p, own, located)
    state_file = yn.optional(top, "state_file", "", text_reader(p), "")
    max_gap = yn.optional(top, "state_max_gap_seconds", "", number_reader(p, gt=ZERO), Decimal(3600))
    return ExporterConfig(
        pricing=pricing,
        node=node,
        tick_seconds=float(tick),
        window_seconds=float(window),
        limits=limits,
        gpus=gpus,
        workloads=workloads,
        max_owners=max_owners,
        node_source=node_source,
        kubernetes=read_kubernetes(p, top.get("kubernetes")),
        state_file=state_file,
        state_max_gap_seconds=float(max_gap),
        gateways=read_gateways(p, top.get("gateways")),
        max_tenants=max_tenants,
        gateway_settle_seconds=float(settle),
        published=published,
    )


def _read_limits(p: Problems, node: Node | None, tick: Decimal) -> ScrapeLimits:
    m = yn.fields(p, node, "limits", _LIMITS) if node is not None else None
    default = ScrapeLimits()
    if m is None:  # the default timeout never exceeds the tick either
        return ScrapeLimits(timeout_seconds=min(default.timeout_seconds, float(tick)))
    timeout = yn.optional(
        m,
        "scrape_timeout_seconds",
        "limits",
        number_reader(p, gt=ZERO),
        Decimal(str(default.timeout_seconds)),
    )
    if timeout > tick:  # a target slower than a tick would stall the meter
        p.add(
            "limits.scrape_timeout_seconds", m.get("scrape_timeout_seconds", node), "must be <= tick_seconds"
        )
    body = yn.optional(m, "max_body_bytes", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    samples = yn.optional(m, "max_samples", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    series = yn.optional(m, "max_series", "limits", lambda at, n: yn.integer(p, n, at, ge=1), 0)
    return ScrapeLimits(
        timeout_seconds=float(timeout),
        max_body_bytes=body or default.max_body_bytes,
        max_samples=samples or default.max_samples,
        max_series=series or default.max_series,
    )


def format_price_table(cfg: ExporterConfig) -> str:
    """The effective price table ``check-config`` prints for ``cfg`` (``pricing.table``)."""
    return table.format_price_table(
        cfg.pricing, ((g.hardware, g.capacity) for g in cfg.gpus), cfg.path, cfg.sha256
    )


def _published(p: Problems, top: dict[str, Node]) -> tuple[PublishedRow, ...] | None:
    """The config's own table of published CPMs, read now: a bad one fails the load, as a bad price does."""
    path = yn.optional(top, "published_table", "", text_reader(p), "")
    if not path:
        return None
    try:
        return read_table(path).rows
    except OSError as e:
        p.add("published_table", top["published_table"], f"cannot read {path}: {e.strerror}")
    except ConfigError as e:
        for problem in e.problems:
            p.add("published_table", top["published_table"], f"{path}: {problem}")
    return None
