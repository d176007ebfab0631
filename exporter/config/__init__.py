"""The config file: loading and strict reading (load, inventory, node, kube, http) into the typed settings (schema)."""
