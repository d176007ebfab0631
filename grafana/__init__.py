"""Grafana dashboards for cpm-exporter, as code: ``python -m grafana.generate`` writes ``dashboards/*.json``."""
