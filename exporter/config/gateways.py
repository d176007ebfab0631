"""The ``gateways:`` section: gateways whose per-tenant token counters split shared servers' money.

gateways:
  - name: litellm                      # a label value; default: the kind
    url: http://litellm.gateway:4000/metrics/
    kind: litellm                      # an entry of engines.gateways.GATEWAYS
    tenant_label: team                 # default: the kind's (required for envoy_ai_gateway)
    models: {chat-large: Qwen/Qwen2.5-7B-Instruct}   # gateway model → served model, where the names differ
    https: {ca_file: /etc/cpm/ca.crt, bearer_token_file: /var/run/secrets/litellm}
  - name: router                       # kind counters: any router's per-tenant token counters
    kind: counters
    url: http://router.llm-d:9090/metrics
    input_counter: router_prompt_tokens_total       # required for kind counters
    output_counter: router_completion_tokens_total  # required for kind counters
    tenant_label: tenant               # required for kind counters
    model_label: model                 # default: model
"""

from __future__ import annotations

import re

from yaml.nodes import Node

from exporter.config.http import read_https, read_url
from exporter.config.inventory import read_label_name
from exporter.engines.gateways import GATEWAYS
from exporter.records import Gateway
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, choice_reader, text_reader

_FIELDS = (
    "name",
    "url",
    "kind",
    "tenant_label",
    "models",
    "https",
    "input_counter",
    "output_counter",
    "model_label",
)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def read_gateways(p: Problems, node: Node | None) -> tuple[Gateway, ...]:
    out: list[Gateway] = []
    names: set[str] = set()
    for k, item in enumerate(yn.items(p, node, "gateways") or [] if node is not None else []):
        at = yn.index_path("gateways", k)
        m = yn.fields(p, item, at, _FIELDS)
        if m is None:
            continue
        url = yn.required(p, m, "url", at, item, lambda path, n: read_url(p, n, path))
        kind = yn.required(p, m, "kind", at, item, choice_reader(p, tuple(sorted(GATEWAYS)), "gateway kind"))
        name = yn.optional(m, "name", at, text_reader(p), kind or "")
        label = yn.optional(m, "tenant_label", at, lambda path, n: read_label_name(p, n, path), "")
        if kind and not (label or GATEWAYS[kind].tenant_label):
            p.add(f"{at}.tenant_label", item, f"is required for {kind}: the label its tenant header maps to")
        if name in names:
            p.add(f"{at}.name", m.get("name", item), f"{name!r} names another gateway already")
        names.add(name)
        models = {
            key: yn.text(p, value, f"{at}.models.{key}") or ""
            for key, value in (yn.fields(p, m["models"], f"{at}.models", None) or {}).items()
        } if "models" in m else {}  # fmt: skip
        client = read_https(p, m.get("https"), f"{at}.https", url)
        counters = (
            _counter(p, m, at, item, "input_counter", kind),
            _counter(p, m, at, item, "output_counter", kind),
        )
        model_label = yn.optional(m, "model_label", at, lambda path, n: read_label_name(p, n, path), "")
        if url is not None and kind is not None:
            out.append(Gateway(name, url, kind, label, models, client, counters, model_label))
    return tuple(out)


def _counter(p: Problems, m: dict[str, Node], at: str, item: Node, field: str, kind: str | None) -> str:
    """A token counter's series name: required for kind counters, which has no names of its own."""
    if kind != "counters":
        if field in m:
            p.add(f"{at}.{field}", m[field], f"is for kind counters; {kind} has its own counter names")
        return ""
    name = yn.required(p, m, field, at, item, lambda path, n: yn.text(p, n, path)) or ""
    if name and not _METRIC_NAME.fullmatch(name):
        p.add(f"{at}.{field}", m[field], f"{name!r} is not a Prometheus metric name")
    return name
