"""The strict YAML reader at the ground: a node tree without aliases, anchors or tags (``compose``), and
the typed readers every config and catalogue file shares (``readers``)."""
