"""The ``inventory`` section of a config file: GPUs, workloads and their scrape targets.

Readers only: they record problems in the shared ``Problems`` and return what was valid;
``config.load_config`` puts the pieces together and prices the GPUs.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

from yaml.nodes import Node, ScalarNode

from exporter.config.http import read_https, read_url
from exporter.config.schema import StaticGpu, StaticWorkload
from exporter.engines.profiles import SERVERS
from exporter.engines.targets import adapter_label_problem, declared_model_problem
from exporter.pricing.prices import ZERO
from exporter.records import (
    CAPACITY_CLASSES,
    SERVING_ROLES,
    WORKLOAD_KINDS,
    OperatingHints,
    Owner,
    Target,
)
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, choice_reader, key_path, number_reader, text_reader

MAX_GPUS = 1024  # per node; a typo like count: 80000000 must not allocate a huge tuple
_GPU_ENTRY = ("hardware", "count", "ids", "capacity", "utilization", "power_watts")
_WORKLOAD = (
    "pod",
    "namespace",
    "team",
    "model",
    "kind",
    "role",
    "gpus",
    "storage_gb",
    "targets",
    "target_tokens",
)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NO_OWNER = Owner("", "", "", "")  # targets are read before their workload's owner is known


def known_servers() -> tuple[str, ...]:
    """``"auto"`` plus every entry of the SERVERS table."""
    return ("auto", *sorted(SERVERS))


LocatedGpu = tuple[StaticGpu, str, Node]  # the GPU, and the entry that declared it (for errors)


def read_gpus(p: Problems, node: Node | None) -> tuple[list[LocatedGpu], set[str] | None]:
    """Valid GPUs with the entry that declared them, and every id declared (valid or not).

    The id set is ``None`` when some entry's ids could not be read: workloads then skip the
    "unknown GPU id" check rather than blame them for the inventory's problem.
    """
    complete = True
    located: list[LocatedGpu] = []
    first_seen: dict[str, str] = {}
    position = 0  # count ids continue from here, valid entries or not, so ids never shift
    entries = yn.items(p, node, "inventory.gpus") if node is not None else []
    for i, entry in enumerate(entries or []):
        at = yn.index_path("inventory.gpus", i)
        m = yn.fields(p, entry, at, _GPU_ENTRY)
        if m is None:
            complete = False
            continue
        hardware = yn.required(p, m, "hardware", at, entry, text_reader(p))
        capacity = yn.required(
            p, m, "capacity", at, entry, choice_reader(p, CAPACITY_CLASSES, "capacity class")
        )
        found = _entry_ids(p, m, at, entry, start=position)
        complete = complete and found is not None
        ids = found or []
        position += len(ids)
        util = yn.optional(m, "utilization", at, number_reader(p, ge=ZERO, le=Decimal(1)), None)
        watts = yn.optional(m, "power_watts", at, number_reader(p, ge=ZERO, le=Decimal(100000)), None)
        for gpu_id, id_path, id_node in ids:
            if gpu_id in first_seen:
                p.add(id_path, id_node, f"duplicate GPU id {gpu_id!r} (already {first_seen[gpu_id]})")
                continue
            first_seen[gpu_id] = f"defined by {at}"
            if hardware is not None and capacity is not None:
                gpu = StaticGpu(gpu_id, hardware, capacity, _float(util), _float(watts))
                located.append((gpu, at, entry))
    return located, set(first_seen) if complete and entries is not None else None


def _entry_ids(
    p: Problems, m: dict[str, Node], at: str, entry: Node, start: int
) -> list[tuple[str, str, Node]] | None:
    """The entry's ids: explicit ``ids``, or ``count`` ids numbered from ``start``; None if unreadable."""
    if ("count" in m) == ("ids" in m):
        p.add(at, entry, "give exactly one of count or ids")
        return None
    if "count" in m:
        count = yn.integer(p, m["count"], f"{at}.count", ge=1, le=MAX_GPUS)
        return None if count is None else [(str(start + k), f"{at}.count", m["count"]) for k in range(count)]
    nodes = yn.items(p, m["ids"], f"{at}.ids")
    if nodes is None:
        return None
    out = [(yn.text(p, n, f"{at}.ids[{k}]"), f"{at}.ids[{k}]", n) for k, n in enumerate(nodes)]
    if start + len(out) > MAX_GPUS:
        p.add(f"{at}.ids", m["ids"], f"more than {MAX_GPUS} GPUs on one node")
        return None
    valid = [(gpu_id, path, n) for gpu_id, path, n in out if gpu_id is not None]
    return valid if len(valid) == len(out) else None


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def read_workloads(p: Problems, node: Node | None, gpu_ids: set[str] | None) -> tuple[StaticWorkload, ...]:
    workloads: list[StaticWorkload] = []
    pods: dict[tuple[str, str], int] = {}
    target_names: set[str] = set()
    for i, entry in enumerate(yn.items(p, node, "inventory.workloads") or [] if node is not None else []):
        at = yn.index_path("inventory.workloads", i)
        workload = _read_workload(p, entry, at, gpu_ids)
        if workload is None:
            continue
        key = (workload.owner.namespace, workload.owner.pod)
        if key in pods:
            p.add(at, entry, f"duplicate pod {key[1]!r} in namespace {key[0]!r} (first at line {pods[key]})")
            continue
        pods[key] = entry.start_mark.line + 1
        for target in workload.targets:
            if target.name in target_names:
                p.add(
                    f"{at}.targets", entry, f"target name {target.name!r} is used twice; names must be unique"
                )
            target_names.add(target.name)
        workloads.append(workload)
    return tuple(workloads)


def _read_workload(p: Problems, entry: Node, at: str, gpu_ids: set[str] | None) -> StaticWorkload | None:
    m = yn.fields(p, entry, at, _WORKLOAD)
    if m is None:
        return None
    name = text_reader(p)
    pod = yn.required(p, m, "pod", at, entry, name)
    namespace = yn.required(p, m, "namespace", at, entry, name)
    model = yn.required(p, m, "model", at, entry, name)
    team = yn.optional(m, "team", at, name, namespace)
    kind = yn.optional(m, "kind", at, choice_reader(p, WORKLOAD_KINDS, "workload kind"), "inference")
    storage = yn.optional(m, "storage_gb", at, number_reader(p, ge=ZERO), ZERO)
    gpus = _workload_gpus(p, m.get("gpus"), f"{at}.gpus", gpu_ids)
    targets = _read_targets(p, m.get("targets"), f"{at}.targets", default_name=pod or "")
    target_tokens = yn.optional(m, "target_tokens", at, number_reader(p, gt=ZERO), None)
    role = yn.optional(m, "role", at, choice_reader(p, SERVING_ROLES, "serving role"), "unified")
    if pod is None or namespace is None or model is None or team is None:
        return None
    owner = Owner(namespace, pod, team, model, workload=kind)
    return StaticWorkload(
        owner=owner,
        gpus=gpus,
        storage_gb=storage,
        targets=tuple(replace(t, owner=owner) for t in targets),
        target_tokens=target_tokens,
        role=role,
    )


def _workload_gpus(
    p: Problems, node: Node | None, at: str, gpu_ids: set[str] | None
) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for k, item in enumerate(yn.items(p, node, at) or [] if node is not None else []):
        here = yn.index_path(at, k)
        gpu_id, share = _gpu_share(p, item, here)
        if gpu_id is None or share is None:
            continue
        if gpu_ids is not None and gpu_id not in gpu_ids:
            known = ", ".join(sorted(gpu_ids, key=lambda s: (len(s), s))[:10]) or "none"
            p.add(here, item, f"GPU id {gpu_id!r} is not in inventory.gpus (known: {known})")
        elif any(gpu_id == seen for seen, _ in out):
            p.add(here, item, f"GPU id {gpu_id!r} is listed twice in this workload")
        else:
            out.append((gpu_id, share))
    return tuple(out)


def _gpu_share(p: Problems, item: Node, here: str) -> tuple[str | None, int | None]:
    """A plain id (share 1) or ``{id, share}``."""
    if isinstance(item, ScalarNode):
        return yn.text(p, item, here), 1
    m = yn.fields(p, item, here, ("id", "share"))
    if m is None:
        return None, None
    gpu_id = yn.required(p, m, "id", here, item, text_reader(p))
    share = yn.optional(m, "share", here, lambda path, n: yn.integer(p, n, path, ge=1, le=1000), 1)
    return gpu_id, share


_HINTS = (
    "engine_version",
    "precision",
    "kv_cache_dtype",
    "model_class",
)  # what the server runs, where no pod says
_TARGET = (
    "url",
    "server",
    "name",
    "token_metric",
    "adapter_label",
    "tenant_label",
    "https",
    "models",
    *_HINTS,
)


def _read_targets(p: Problems, node: Node | None, at: str, default_name: str) -> list[Target]:
    """The targets of one workload (owner still unknown); read even when the workload is invalid."""
    servers = known_servers()
    out: list[Target] = []
    for k, item in enumerate(yn.items(p, node, at) or [] if node is not None else []):
        here = yn.index_path(at, k)
        m = yn.fields(p, item, here, _TARGET)
        if m is None:
            continue
        url = yn.required(p, m, "url", here, item, lambda path, n: read_url(p, n, path))
        server = yn.optional(m, "server", here, choice_reader(p, servers, "server"), "auto")
        name = yn.optional(m, "name", here, text_reader(p), default_name)
        metric = yn.optional(m, "token_metric", here, lambda path, n: _metric_name(p, n, path), "")
        adapter = yn.optional(m, "adapter_label", here, lambda path, n: read_label_name(p, n, path), "")
        tenant = yn.optional(m, "tenant_label", here, lambda path, n: read_label_name(p, n, path), "")
        if tenant and (metric or server == "training"):
            p.add(f"{here}.tenant_label", m["tenant_label"], "is for inference targets, not training")
        if tenant and tenant == adapter:
            p.add(
                f"{here}.tenant_label", m["tenant_label"], "names the adapter label too: one label, one job"
            )
        if metric and server not in ("auto", "training"):
            p.add(
                f"{here}.token_metric", m["token_metric"], f"is for training targets, not server {server!r}"
            )
        if adapter and (metric or server == "training"):
            p.add(f"{here}.adapter_label", m["adapter_label"], "is for inference targets, not training")
        models = _model_map(p, m["models"], f"{here}.models") if "models" in m else {}
        if models and (metric or server == "training"):
            p.add(f"{here}.models", m["models"], "is for inference targets, not training")
        elif models and server in SERVERS and not SERVERS[server].model_label:
            p.add(
                f"{here}.models",
                m["models"],
                f"server {server!r} exports no model name: its tokens are filed under the workload's model",
            )
        client = read_https(p, m.get("https"), f"{here}.https", url)
        version, precision, kv, model_class = (
            yn.optional(m, f, here, text_reader(p), "") or "" for f in _HINTS
        )
        said = version or precision or kv
        hints = OperatingHints(version, precision, kv, "config" if said else "", model_class)
        if url is not None:
            out.append(
                Target(
                    name,
                    url,
                    NO_OWNER,
                    server,
                    metric or "",
                    adapter or "",
                    client,
                    None,
                    tenant or "",
                    hints,
                    models,
                )
            )
    return out


def _model_map(p: Problems, node: Node, at: str) -> dict[str, str]:
    """``models: {server's model name: declared model}``: each value non-empty text a model label
    can carry whole."""
    out: dict[str, str] = {}
    for served, value in (yn.fields(p, node, at, None) or {}).items():
        here = key_path(at, served)
        if not served.strip():
            p.add(here, value, "the server's model name must not be empty")
            continue
        declared = yn.text(p, value, here)
        if declared is not None and (why := declared_model_problem(declared)):
            p.add(here, value, why)
        elif declared is not None:
            out[served] = declared
    return out


def read_label_name(p: Problems, node: Node, path: str) -> str | None:
    """A label of upstream series we read by name (an adapter's, a gateway's tenant): a Prometheus
    label name, and not one Prometheus reserves."""
    name = yn.text(p, node, path)
    if name is None:
        return None
    problem = adapter_label_problem(name)
    if problem:
        p.add(path, node, problem)
        return None
    return name


def _metric_name(p: Problems, node: Node, path: str) -> str | None:
    name = yn.text(p, node, path)
    if name is not None and not _METRIC_NAME.fullmatch(name):
        p.add(path, node, f"is not a Prometheus metric name, got {name!r}")
        return None
    return name
