"""The ``kubernetes`` section: watch this node's pods for holders, teams, models and targets.

kubernetes:
  enabled: true
  node_name: ""              # default ("" or absent): $NODE_NAME, set from the downward API (spec.nodeName)
  kubeconfig: ""             # default ("" or absent): in-cluster; a path for development
  team_label: team           # pod label naming the team (else namespace_teams, else the namespace)
  model_label: model         # pod label naming the model (else annotation cpm-exporter.io/model)
  namespace_teams: {llm-serving: search}
  podresources_socket: /var/lib/kubelet/pod-resources/kubelet.sock   # "" to not ask the kubelet
  proc_root: /proc           # the host's /proc: NVML's GPU processes → their pods
  scrape_annotated_pods: true
  scrape_https: {ca_file: /etc/cpm/pods-ca.crt}   # pods annotated prometheus.io/scheme: https
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from exporter.config.http import read_https
from exporter.config.schema import DEFAULT_PODRESOURCES_SOCKET, KubernetesConfig
from exporter.records import HttpClientConfig
from exporter.yamlstrict import readers as yn
from exporter.yamlstrict.readers import Problems, key_path, text_reader

AT = "kubernetes"
_FIELDS = (
    "enabled",
    "node_name",
    "kubeconfig",
    "team_label",
    "model_label",
    "namespace_teams",
    "podresources_socket",
    "proc_root",
    "scrape_annotated_pods",
    "scrape_https",
)


def read_kubernetes(p: Problems, node: Node | None) -> KubernetesConfig:
    m = yn.fields(p, node, AT, _FIELDS) if node is not None else None
    if m is None:
        return KubernetesConfig()
    text = text_reader(p)
    flag = lambda at, n: yn.boolean(p, n, at)  # noqa: E731  (a reader, as text_reader is)
    proc_root = yn.optional(m, "proc_root", AT, text, "/proc")
    if not proc_root.startswith("/"):
        p.add(key_path(AT, "proc_root"), m["proc_root"], f"must be an absolute path, got {proc_root!r}")
    return KubernetesConfig(
        enabled=yn.optional(m, "enabled", AT, flag, False),
        # "" written out is the documented default ($NODE_NAME; in-cluster), as KubernetesConfig says.
        node_name=yn.optional(m, "node_name", AT, _text_or_empty(p), ""),
        kubeconfig=yn.optional(m, "kubeconfig", AT, _text_or_empty(p), ""),
        team_label=yn.optional(m, "team_label", AT, text, "team"),
        model_label=yn.optional(m, "model_label", AT, text, "model"),
        namespace_teams=_teams(p, m.get("namespace_teams")),
        podresources_socket=yn.optional(
            m, "podresources_socket", AT, _text_or_empty(p), DEFAULT_PODRESOURCES_SOCKET
        ),
        proc_root=proc_root,
        scrape_annotated_pods=yn.optional(m, "scrape_annotated_pods", AT, flag, True),
        scrape_client=_scrape_client(p, m.get("scrape_https")),
    )


def _scrape_client(p: Problems, node: Node | None) -> HttpClientConfig:
    """How to reach pods annotated https. Any pod may annotate itself so: a token must never go
    to one whose certificate is not checked (it would collect the exporter's credentials)."""
    at = key_path(AT, "scrape_https")
    client = read_https(p, node, at, None)
    if client.bearer_token_file and client.insecure_skip_verify:
        p.add(
            at,
            node,
            "bearer_token_file with insecure_skip_verify would hand the token to any pod: verify with ca_file",
        )
    return client


def _text_or_empty(p: Problems) -> yn.Reader[str]:
    """Text, or a quoted "" meaning the field's empty default: "off" for podresources_socket (no
    kubelet socket is mounted), "$NODE_NAME" for node_name, "in-cluster" for kubeconfig. Unquoted
    nothing (``node_name:``) is still refused: it is more often a value forgotten than meant."""

    def read(at: str, n: Node) -> str | None:
        if isinstance(n, ScalarNode) and n.style in ("'", '"') and n.value == "":
            return ""
        return yn.text(p, n, at)

    return read


def _teams(p: Problems, node: Node | None) -> dict[str, str]:
    at = key_path(AT, "namespace_teams")
    out: dict[str, str] = {}
    for namespace, value in (yn.fields(p, node, at, None) or {}).items() if node is not None else []:
        team = yn.text(p, value, key_path(at, namespace))
        if team is not None:
            out[namespace] = team
    return out
