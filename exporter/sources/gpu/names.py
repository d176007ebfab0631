"""A driver's GPU name → the hardware type prices are keyed by.

NVML and dcgm-exporter report marketing names ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe",
"NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB", a MIG device's "… MIG 3g.40gb"; dcgm-exporter
may write blanks as "-"). Prices are per type ("H100"), so every form factor of a type maps
to it (but A100 40 GB and 80 GB, whose prices differ); a user who prices form factors apart
names them in ``node_source.hardware_names``.
A name no rule knows keeps the driver's name: it is then unpriced, which is counted and shown,
never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# First match wins: longer and newer names before the names they contain (GH200 before H200).
_RULES: tuple[tuple[str, str], ...] = (
    (r"GH200", "GH200"),
    (r"GB300", "GB300"),
    (r"GB200", "GB200"),
    (r"B300", "B300"),
    (r"B200", "B200"),
    (r"H200", "H200"),
    (r"H100", "H100"),
    (r"H800", "H800"),
    (r"H20", "H20"),
    # A100 comes with 40 or 80 GB at list prices 25-40 % apart: priced apart (a config that
    # prices plain "A100" still prices both: pricing.prices.PRICE_FAMILIES).
    (r"A100\S*[ -](?:\S+[ -])?80GB", "A100-80GB"),
    (r"A100\S*[ -](?:\S+[ -])?40GB", "A100-40GB"),
    (r"A100", "A100"),
    (r"A800", "A800"),
    (r"L40S", "L40S"),
    (r"L40", "L40"),
    (r"L4", "L4"),
    (r"A10G", "A10G"),
    (r"A10", "A10"),
    (r"T4", "T4"),
    (r"V100", "V100"),
    (r"RTX[ -]PRO[ -]6000", "RTX-PRO-6000"),
)
# A type is a whole token: "H100" in "NVIDIA-H100-80GB-HBM3" but not "H20" in "H200".
_COMPILED = tuple((re.compile(rf"(?<![A-Za-z0-9]){rule}(?![A-Za-z0-9])"), hw) for rule, hw in _RULES)
_MIG_SUFFIX = re.compile(r"[ -]MIG[ -]\S+$")


def hardware_of(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The hardware type for a driver's GPU name (``overrides`` first, by exact name)."""
    name = name.strip()
    if overrides:
        whole = _MIG_SUFFIX.sub("", name)
        for candidate in (name, whole, whole.replace("-", " ")):
            if candidate in overrides:
                return overrides[candidate]
    for pattern, hardware in _COMPILED:
        if pattern.search(name):
            return hardware
    return name or "unknown"
