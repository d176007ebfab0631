"""The README's configuration reference stays a config: ``check-config`` accepts it as written, and it
names every field the loader reads, so the documentation and the code cannot drift apart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from exporter.config import gateways, http, inventory, kube, load, node, pricing

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
# Documentation addresses (RFC 5737) for the ${NAME} variables a DaemonSet gets from the downward API.
ENV_VALUE = "192.0.2.7"


def reference_blocks() -> list[str]:
    """The YAML blocks of the README's "Configuration reference" section."""
    section = README.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks, "the Configuration reference has no ```yaml block"
    return blocks


def test_the_configuration_reference_passes_check_config(tmp_path: Path) -> None:
    for k, block in enumerate(reference_blocks()):
        # The loader reads the published table when it loads the file (a bad one fails the load): the
        # documented path does not exist here, so a copy of the packaged table stands in for it, at a
        # path of this machine. Nothing else of the text is changed.
        documented = (yaml.safe_load(block) or {}).get("published_table")
        text = block
        if documented:
            assert block.count(f" {documented} ") == 1, documented
            table = tmp_path / f"throughput-{k}.yaml"
            shutil.copy(ROOT / "exporter" / "data" / "throughput-2026-11-23.yaml", table)
            text = block.replace(f" {documented} ", f" {table} ")
        path = tmp_path / f"reference-{k}.yaml"
        path.write_text(text)
        # ${NAME} in a URL is an environment variable (an unset one is an error): set as on a node.
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.update({name: ENV_VALUE for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)})
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert f"{path}: OK (" in done.stdout


def test_the_reference_documents_every_top_level_field_the_loader_knows() -> None:
    documented: set[str] = set()
    for block in reference_blocks():
        documented |= set(yaml.safe_load(block) or {})
    assert documented == set(load._TOP)


# Every section's fields, as the loader's own readers list them: (section, fields).
SECTIONS = (
    ("limits", load._LIMITS),
    ("pricing", pricing._PRICING),
    ("node_source", node._FIELDS),
    ("kubernetes", kube._FIELDS),
    ("gateways[]", gateways._FIELDS),
    ("inventory.gpus[]", inventory._GPU_ENTRY),
    ("inventory.workloads[]", inventory._WORKLOAD),
    ("inventory.workloads[].targets[]", inventory._TARGET),
    ("https", http._HTTPS_FIELDS),
)


def test_the_reference_names_every_field_of_every_section() -> None:
    """Written as a key, or (an alternative that cannot be set beside the one shown, e.g. dcgm_https)
    named as ``key:`` in a comment of the block."""
    text = "\n".join(reference_blocks())
    missing = [
        f"{section}.{field}"
        for section, fields in SECTIONS
        for field in fields
        if not re.search(rf"(?<![\w-]){re.escape(field)}:", text)
    ]
    assert missing == []
