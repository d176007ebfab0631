"""The config file: loading and strict reading (load, pricing, inventory, node, kube, http) into the typed settings (schema)."""
