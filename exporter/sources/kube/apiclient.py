"""The Kubernetes API client of this node's exporter: its credentials, the node's name, and the
exceptions that mean the network failed."""

from __future__ import annotations

import http.client
import os
from collections.abc import Mapping

import kubernetes
import urllib3
import yaml

from exporter.errors import SourceError

_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


def load_api(kubeconfig: str | None = None) -> kubernetes.client.CoreV1Api:
    """A CoreV1Api from ``kubeconfig`` if given, else in-cluster credentials, else KUBECONFIG
    or ``~/.kube/config`` (for development); SourceError saying what was tried."""
    config = kubernetes.client.Configuration()
    tried: list[str] = []
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
            return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
        except kubernetes.config.ConfigException as exc:
            tried.append(f"in-cluster service account: {exc}")
    # Resolved here: the client reads KUBECONFIG once, when it is imported.
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=where, client_configuration=config, persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        tried.append(f"kubeconfig {where}: {exc}")
        raise SourceError(
            "no Kubernetes API credentials: " + "; ".join(tried) + " (run in a pod, or set KUBECONFIG)",
            reason="kubernetes",
        ) from exc
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))


def node_name_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """NODE_NAME, set from the downward API (``fieldRef: spec.nodeName``) in the DaemonSet."""
    name = environ.get("NODE_NAME", "").strip()
    if not name:
        raise SourceError(
            "NODE_NAME is not set: give the DaemonSet's container env NODE_NAME from "
            "valueFrom.fieldRef.fieldPath: spec.nodeName (the downward API)",
            reason="kubernetes",
        )
    return name
