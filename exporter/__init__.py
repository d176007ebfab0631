"""cpm-exporter: what AI workloads cost per million tokens, live, as Prometheus metrics.

Data flows one way: ``sources`` (read the world) → ``meter`` (pure arithmetic on money) →
``exposition`` (present a snapshot). Only ``cli`` exits the process.
"""

__version__ = "0.1.0"
