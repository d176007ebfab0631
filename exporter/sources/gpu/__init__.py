"""GPU readers (NVML, dcgm-exporter, a static inventory), MIG layouts and hardware names: what each GPU unit is and how busy."""
