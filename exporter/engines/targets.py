"""Pods → owners and scrape targets: pure functions of ``PodInfo`` records, no I/O.

Our documented pod annotations (all optional)::

    cpm-exporter.io/workload       inference | training     (default inference)
    cpm-exporter.io/model          the model the pod serves or trains, when no model label says it
    cpm-exporter.io/team           the team to charge, when no team label says it
    cpm-exporter.io/token-metric   training: the job's own token counter name
    cpm-exporter.io/target-tokens  training: tokens the whole run is meant to process
    cpm-exporter.io/role           prefill | decode         (disaggregated serving; default unified)
    cpm-exporter.io/adapter-label  a label of the server's token series naming the LoRA adapter
    cpm-exporter.io/models         the server's model names → the declared model, where they differ:
                                   "tensorrt_llm=meta-llama/Llama-3.1-8B-Instruct" (pairs split by ",")

Who pays: team from the ``team`` label (``OwnerRules.team_label``), else the
``cpm-exporter.io/team`` annotation, else ``OwnerRules.namespace_teams``, else the namespace.
Model from the ``model`` label, else the ``cpm-exporter.io/model`` annotation, else "".
``app.kubernetes.io/name`` is deliberately not a model fallback: it names the app
("vllm"), not the weights it serves.

Which pods are scraped follows the common Prometheus convention: ``prometheus.io/scrape:
"true"``, ``prometheus.io/port`` (required), ``prometheus.io/path`` (default /metrics) and
``prometheus.io/scheme`` (http or https), for Running pods with an IP that are not being
deleted. A bad annotation skips the pod and is returned as a problem for the caller to log;
a bad adapter-label annotation only drops the label (the pod's tokens go to its base model), a
bad models annotation only drops the map (the tokens keep the server's names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.engines.operating import hints_from_pod
from exporter.engines.read import MAX_LABEL_LENGTH
from exporter.quantity import parse_quantity
from exporter.records import NO_CLIENT_CONFIG, HttpClientConfig, Owner, PodInfo, Target

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def adapter_label_problem(name: str) -> str:
    """Why ``name`` cannot name the adapter label ("" if it can): histogram and reserved labels."""
    if not _LABEL_NAME.fullmatch(name):
        return f"is not a Prometheus label name, got {name!r}"
    if name in ("le", "quantile") or name.startswith("__"):
        return f"{name!r} is a label Prometheus reserves for histograms, summaries or itself"
    return ""


def declared_model_problem(name: str) -> str:
    """Why ``name`` cannot be what a server's model name maps to ("" if it can)."""
    if not name.strip():
        return "the declared model must not be empty"
    if len(name) > MAX_LABEL_LENGTH:
        return f"the declared model is {len(name)} characters; model names are cut at {MAX_LABEL_LENGTH}"
    return ""


def parse_model_map(text: str) -> tuple[dict[str, str], str]:
    """``cpm-exporter.io/models``: ``served=declared`` pairs split by "," (spaces around either are
    trimmed), as (the map, "") or ({}, why it cannot be read): a map half read would be a surprise."""
    found: dict[str, str] = {}
    for pair in text.split(","):
        served, equals, declared = (x.strip() for x in pair.partition("="))
        if not equals or not served:
            return {}, f"{pair.strip()!r} is not server-model=declared-model"
        why = declared_model_problem(declared)
        if why or served in found:
            return {}, f"{served!r}: {why or 'is mapped twice'}"
        found[served] = declared
    return found, ""


PREFIX = "cpm-exporter.io/"
WORKLOAD = PREFIX + "workload"
MODEL = PREFIX + "model"
TEAM = PREFIX + "team"
TOKEN_METRIC = PREFIX + "token-metric"
ADAPTER_LABEL = PREFIX + "adapter-label"
TENANT_LABEL = PREFIX + "tenant-label"
TARGET_TOKENS = PREFIX + "target-tokens"
ROLE = PREFIX + "role"
MODELS = PREFIX + "models"
SCRAPE, PORT, PATH, SCHEME = (f"prometheus.io/{k}" for k in ("scrape", "port", "path", "scheme"))

Problem = tuple[str, str]  # ("namespace/pod", message)


@dataclass(frozen=True, slots=True)
class OwnerRules:
    team_label: str = "team"
    model_label: str = "model"
    namespace_teams: Mapping[str, str] = field(default_factory=dict)


class Discovered(NamedTuple):
    """``targets, problems = targets_of(...)``."""

    targets: tuple[Target, ...]
    problems: tuple[Problem, ...]


def owner_of(pod: PodInfo, rules: OwnerRules) -> Owner:
    team = (
        pod.labels.get(rules.team_label)
        or pod.annotations.get(TEAM)
        or rules.namespace_teams.get(pod.namespace)
        or pod.namespace
    )
    model = pod.labels.get(rules.model_label) or pod.annotations.get(MODEL) or ""
    workload = "training" if pod.annotations.get(WORKLOAD, "").strip() == "training" else "inference"
    return Owner(namespace=pod.namespace, pod=pod.name, team=team, model=model, workload=workload)


def targets_of(
    pods: Iterable[PodInfo], rules: OwnerRules, https: HttpClientConfig = NO_CLIENT_CONFIG
) -> Discovered:
    """Scrape targets of the annotated pods; ``https`` is how to reach the https ones."""
    targets: list[Target] = []
    problems: list[Problem] = []
    for pod in pods:
        notes = pod.annotations
        if (
            notes.get(SCRAPE) != "true"
            or pod.phase != "Running"
            or not pod.pod_ip
            or pod.deleted_at is not None
        ):
            continue
        name = f"{pod.namespace}/{pod.name}"
        url, problem = _url(pod.pod_ip, notes)
        if problem:
            problems.append((name, problem))
            continue
        owner = owner_of(pod, rules)
        token_metric = notes.get(TOKEN_METRIC, "").strip()
        adapter_label = notes.get(ADAPTER_LABEL, "").strip()
        why = adapter_label_problem(adapter_label) if adapter_label else ""
        if not why and adapter_label and (token_metric or owner.workload == "training"):
            why = "is for inference pods, not training"
        if why:  # the pod is still scraped: its tokens count under the base model
            problems.append((name, f"{ADAPTER_LABEL}: {why}"))
            adapter_label = ""
        tenant_label = notes.get(TENANT_LABEL, "").strip()
        why = adapter_label_problem(tenant_label) if tenant_label else ""
        if not why and tenant_label and (token_metric or owner.workload == "training"):
            why = "is for inference pods, not training"
        if why:  # the pod is still scraped: its callers are not told apart
            problems.append((name, f"{TENANT_LABEL}: {why}"))
            tenant_label = ""
        models, why = parse_model_map(notes[MODELS]) if notes.get(MODELS, "").strip() else ({}, "")
        if not why and models and (token_metric or owner.workload == "training"):
            models, why = {}, "is for inference pods, not training"
        if why:  # the pod is still scraped: its tokens keep the server's model names
            problems.append((name, f"{MODELS}: {why}"))
        client = https if url.startswith("https://") else NO_CLIENT_CONFIG
        started = pod.started_at(_port(notes))
        hints = hints_from_pod(pod, _port(notes))
        target = Target(name, url, owner, "auto", token_metric, adapter_label, client, started, tenant_label,
                        hints, models)  # fmt: skip
        targets.append(target)
    return Discovered(tuple(targets), tuple(problems))


def _port(notes: Mapping[str, str]) -> int:
    return int(notes[PORT].strip())  # _url has checked it


def _url(ip: str, notes: Mapping[str, str]) -> tuple[str, str]:
    """The scrape URL from the prometheus.io annotations, or ("", why it cannot be built)."""
    port_text = notes.get(PORT, "").strip()
    if not port_text:
        return "", f"{SCRAPE} is true but {PORT} is missing"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return "", f"{PORT}: {port_text!r} is not a port number (1-65535)"
    path = notes.get(PATH, "/metrics").strip() or "/metrics"
    if not path.startswith("/") or path.startswith("//") or any(c.isspace() or ord(c) < 32 for c in path):
        return "", f"{PATH}: {path!r} is not an absolute URL path"
    scheme = notes.get(SCHEME, "http").strip().lower() or "http"
    if scheme not in ("http", "https"):
        return "", f"{SCHEME}: {scheme!r} is neither http nor https"
    host = f"[{ip}]" if ":" in ip else ip  # IPv6 pod IPs
    return f"{scheme}://{host}:{int(port_text)}{path}", ""


def token_targets_of(pods: Iterable[PodInfo]) -> tuple[dict[tuple[str, str], float], tuple[Problem, ...]]:
    """Training pods' ``cpm-exporter.io/target-tokens`` ("2e12", "1.5T"), for TickInput."""
    found: dict[tuple[str, str], float] = {}
    problems: list[Problem] = []
    for pod in pods:
        text = pod.annotations.get(TARGET_TOKENS, "").strip()
        if not text:
            continue
        try:
            tokens = parse_quantity(text)
        except ValueError:
            tokens = -1.0
        if tokens > 0:
            found[(pod.namespace, pod.name)] = tokens
        else:
            problems.append(
                (f"{pod.namespace}/{pod.name}", f"{TARGET_TOKENS}: {text!r} is not a positive number")
            )
    return found, tuple(problems)


def roles_of(pods: Iterable[PodInfo]) -> tuple[dict[tuple[str, str], str], tuple[Problem, ...]]:
    """Disaggregated serving: ``cpm-exporter.io/role`` prefill | decode, for TickInput."""
    found: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    for pod in pods:
        role = pod.annotations.get(ROLE, "").strip()
        if role in ("prefill", "decode"):
            found[(pod.namespace, pod.name)] = role
        elif role and role != "unified":
            problems.append((f"{pod.namespace}/{pod.name}", f"{ROLE}: {role!r} is not prefill or decode"))
    return found, tuple(problems)
