"""``cpm-exporter report``: the exporter's counters, read back from a Prometheus-compatible store, as
chargeback rows (CSV, JSON, FOCUS 1.2, HTML) reconciled to each node's bill.

promapi (the store's HTTP API) → collect (raw samples, chunk by chunk) → increase (exact increases per
series and period) → rows (grouped rows, the reconciliation) → tables / html (the formats) → command.
"""
