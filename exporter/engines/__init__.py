"""The inference-server table (profiles), reading their payloads (read), and the rules that make a pod a target (targets): shared by config and sources, owned by neither."""
