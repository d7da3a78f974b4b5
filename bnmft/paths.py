"""Where bnmft keeps its caches (compiled C, generated modules, derived forms)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the cache: ``$BNMFT_CACHE_DIR``, ``$XDG_CACHE_HOME/bnmft`` or ``~/.cache/bnmft``."""
    explicit = os.environ.get("BNMFT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bnmft"
