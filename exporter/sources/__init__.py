"""Sources read the world and know nothing of money; they never import meter or exposition.

discovery.py   which node source a config asks for (a static inventory, NVML, dcgm-exporter)
node.py        a node's GPU units, their holders, and its pods' storage and egress
placement.py   who holds each GPU unit, by the best source that knows
gpu/           the GPU readers (NVML, dcgm-exporter, the inventory), MIG, hardware names
kube/          the pod watch, the kubelet (PodResources, cAdvisor), /proc cgroups
"""
