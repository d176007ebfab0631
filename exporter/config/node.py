"""The ``node_source`` section: where the node's GPUs, their readings and their holders come from.

node_source:
  gpus: nvml                 # inventory (default) | nvml | dcgm | auto
  capacity: on_demand        # capacity class of the GPUs found (they carry none)
  dcgm_url: http://127.0.0.1:9400/metrics
  dcgm_https: {ca_file: /etc/cpm/dcgm-ca.crt}   # an https dcgm_url: trust and token (config.http)
  poll_seconds: 1            # NVML sweep period
  call_timeout_seconds: 2    # a slower NVML call marks its GPU hung
  hardware_names: {"NVIDIA H100 NVL": H100-NVL}
  starved_below_utilization: 0.2
  cadvisor_url: https://${HOST_IP}:10250/metrics/cadvisor   # bytes each pod sent (the kubelet)
  cadvisor_https: {insecure_skip_verify: true,
                   bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token}
  egress_share: 0.1          # of those bytes, billed as internet egress
  cross_zone_share: 0.3      # ... and as cross-zone traffic; the rest is free (same zone)
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from yaml.nodes import Node

from exporter.config.http import read_https, read_url
from exporter.config.schema import GPU_SOURCES, NodeSourceConfig
from exporter.pricing.prices import ZERO
from exporter.records import CAPACITY_CLASSES
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, choice_reader, key_path, number_reader

_FIELDS = (
    "gpus",
    "capacity",
    "dcgm_url",
    "dcgm_https",
    "poll_seconds",
    "call_timeout_seconds",
    "hardware_names",
    "starved_below_utilization",
    "cadvisor_url",
    "cadvisor_https",
    "egress_share",
    "cross_zone_share",
)
AT = "node_source"


def read_node_source(p: Problems, node: Node | None, tick: Decimal) -> NodeSourceConfig:
    m = yn.fields(p, node, AT, _FIELDS) if node is not None else None
    if m is None:
        return NodeSourceConfig()
    gpus = yn.optional(m, "gpus", AT, choice_reader(p, GPU_SOURCES, "GPU source"), "inventory")
    url = yn.optional(m, "dcgm_url", AT, lambda at, n: read_url(p, n, at), "")
    if gpus == "dcgm" and not url:
        p.add(key_path(AT, "dcgm_url"), node, "gpus: dcgm needs dcgm_url (dcgm-exporter's /metrics)")
    poll = yn.optional(m, "poll_seconds", AT, number_reader(p, ge=Decimal("0.1"), le=tick), Decimal(1))
    timeout = yn.optional(
        m, "call_timeout_seconds", AT, number_reader(p, gt=ZERO, le=Decimal(60)), Decimal(2)
    )
    starved = yn.optional(
        m, "starved_below_utilization", AT, number_reader(p, ge=ZERO, le=Decimal(1)), Decimal("0.2")
    )
    cadvisor = yn.optional(m, "cadvisor_url", AT, lambda at, n: read_url(p, n, at), "")
    share = number_reader(p, ge=ZERO, le=Decimal(1))
    egress = yn.optional(m, "egress_share", AT, share, ZERO)
    cross_zone = yn.optional(m, "cross_zone_share", AT, share, ZERO)
    if egress + cross_zone > 1:
        p.add(key_path(AT, "cross_zone_share"), node, "egress_share + cross_zone_share must be <= 1")
    for key in ("dcgm", "cadvisor"):
        if f"{key}_https" in m and f"{key}_url" not in m:
            p.add(key_path(AT, f"{key}_https"), m[f"{key}_https"], f"has no {key}_url to apply to")
    return NodeSourceConfig(
        gpus=gpus,
        capacity=yn.optional(
            m, "capacity", AT, choice_reader(p, CAPACITY_CLASSES, "capacity class"), "on_demand"
        ),
        dcgm_url=url,
        poll_seconds=float(poll),
        call_timeout_seconds=float(timeout),
        hardware_names=_names(p, m.get("hardware_names")),
        starved_below_utilization=float(starved),
        cadvisor_url=cadvisor,
        cadvisor_client=read_https(p, m.get("cadvisor_https"), key_path(AT, "cadvisor_https"), cadvisor),
        dcgm_client=read_https(p, m.get("dcgm_https"), key_path(AT, "dcgm_https"), url),
        egress_share=Fraction(egress),
        cross_zone_share=Fraction(cross_zone),
    )


def _names(p: Problems, node: Node | None) -> dict[str, str]:
    at = key_path(AT, "hardware_names")
    out: dict[str, str] = {}
    for name, value in (yn.fields(p, node, at, None) or {}).items() if node is not None else []:
        hardware = yn.text(p, value, key_path(at, name))
        if hardware is not None:
            out[name] = hardware
    return out
