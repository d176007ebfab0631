"""The demo: simulated inference servers speaking each engine's real text format, and the demo node."""
