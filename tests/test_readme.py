"""The README stays true: its metric table equals the code's, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.exposition.families import FAMILIES, LINE_LABELS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def documented_families() -> dict[str, tuple[str, tuple[str, ...]]]:
    table = README.split("<!-- metric-table:start -->")[1].split("<!-- metric-table:end -->")[0]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        name, kind, labels, _help = (c.strip() for c in line.strip("|").split("|"))
        names = tuple(x.strip() for x in labels.split(",")) if labels != "–" else ()
        if names and names[0] == "*line*":
            names = LINE_LABELS + names[1:]
        rows[name.strip("`")] = (kind, names)
    return rows


def test_metric_table_equals_the_families_table() -> None:
    code = {f.name: (f.type, f.labels) for f in FAMILIES}
    assert documented_families() == code


def test_every_family_has_help_and_a_valid_name() -> None:
    for f in FAMILIES:
        assert re.fullmatch(r"cpm_[a-z0-9_]+", f.name)
        assert f.help.endswith(".")
        assert (f.type == "counter") == f.name.endswith("_total")


def test_ci_runs_the_readme_test_command() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    test_command = first_block[1].split("#")[0].strip()
    assert (
        test_command == ".ci/test-deps && .venv/bin/python -m pytest"
    )  # installs what is missing, then runs
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1].strip() == test_command  # CI ends with exactly that line
    # Every venv and tool the suite uses is installed by that command, not by a test.
    deps = (ROOT / ".ci" / "test-deps").read_text()
    for installer in (".ci/vllm-venv", ".ci/litellm-venv", ".ci/focus-venv", "install-crd-validator.sh",
                      "pip install -q -e '.[test]'"):  # fmt: skip
        assert installer in deps, installer
    assert "cpm-exporter demo" in first_block[0]
