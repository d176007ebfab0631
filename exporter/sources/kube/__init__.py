"""Kubernetes on this node: the pod watch, the kubelet's PodResources (gRPC) and cAdvisor, /proc cgroups; loaded only on Kubernetes nodes."""
