"""Sources read the world and know nothing of money; they never import meter or exposition."""
