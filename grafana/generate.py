"""Generate the Grafana dashboards of cpm-exporter with grafana-foundation-sdk.

    python -m grafana.generate          # write grafana/dashboards/*.json
    python -m grafana.generate --check  # exit 1 if a committed file differs from a fresh generation

The JSON is importable as is (Dashboards > New > Import); pick the Prometheus data source in ``datasource``.
tests/test_grafana.py keeps the committed files equal to this output and checks every query.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.cost_dashboards import chargeback, fleet
from grafana.health_dashboard import health
from grafana.model_dashboard import model_detail
from grafana.ops_dashboards import gpu, training

OUT = Path(__file__).resolve().parent / "dashboards"

# File name (without .json) -> dashboard. The uid is set in each builder and never changes.
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "fleet-cpm": fleet,
    "team-chargeback": chargeback,
    "model-detail": model_detail,
    "gpu-utilisation": gpu,
    "training-runs": training,
    "exporter-health": health,
}


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    """The dashboard as JSON text, panels numbered 1.. in order (Grafana needs unique panel ids)."""
    model = build().build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    return {f"{name}.json": render(build) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    files = render_all()
    if args.check:
        stale = [n for n, text in files.items() if not (OUT / n).is_file() or (OUT / n).read_text() != text]
        for name in stale:
            print(f"stale: {OUT / name} (run python -m grafana.generate)", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
