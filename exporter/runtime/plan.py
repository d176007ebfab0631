"""What a tick needs from a config, worked out once per load, and each tick's plan: the config's
workloads plus those the node discovered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from exporter.config.schema import ExporterConfig, StaticWorkload
from exporter.http.textformat import FetchLimits
from exporter.pricing.prices import GpuPrice
from exporter.records import Target


class Plan(NamedTuple):
    """This tick's scrape targets and per-pod facts, from the config and the node's discoveries."""

    targets: tuple[Target, ...]
    token_targets: dict[tuple[str, str], float]
    roles: dict[tuple[str, str], str]


class Derived(NamedTuple):
    """What every tick needs from a config, worked out once per load, not once per tick."""

    limits: FetchLimits
    token_targets: dict[tuple[str, str], float]  # training runs with a target token count
    roles: dict[tuple[str, str], str]  # disaggregated serving: prefill / decode pods
    prices_in_use: tuple[GpuPrice, ...]
    declared: frozenset[tuple[str, str]]  # pods the config names: they win over discovered ones


def pod_facts(
    workloads: Iterable[StaticWorkload],
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], str]]:
    """Per pod: the tokens a training run means to process, and a disaggregated serving role."""
    tokens: dict[tuple[str, str], float] = {}
    roles: dict[tuple[str, str], str] = {}
    for w in workloads:
        key = (w.owner.namespace, w.owner.pod)
        if w.target_tokens is not None:
            tokens[key] = float(w.target_tokens)
        if w.role != "unified":
            roles[key] = w.role
    return tokens, roles


def derive(cfg: ExporterConfig) -> Derived:
    pairs = sorted({(g.hardware, g.capacity) for g in cfg.gpus})
    prices = (cfg.pricing.gpu_price(hw, cap) for hw, cap in pairs)
    tokens, roles = pod_facts(cfg.workloads)
    return Derived(
        limits=FetchLimits(
            cfg.limits.timeout_seconds,
            cfg.limits.max_body_bytes,
            cfg.limits.max_samples,
            cfg.limits.max_series,
        ),
        token_targets=tokens,
        roles=roles,
        prices_in_use=tuple(p for p in prices if p is not None),
        declared=frozenset((w.owner.namespace, w.owner.pod) for w in cfg.workloads),
    )
