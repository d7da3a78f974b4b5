"""Templates of a standalone, pip-installable package of generated modules (bnmft export)."""
