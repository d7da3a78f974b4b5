"""Progress on stderr for work that can take more than a few seconds.

One switch for the whole library: :func:`set_enabled` (the CLI's ``--quiet`` turns it off).
Bars are drawn only when stderr is a terminal, so pipes, files and tests see nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ENABLED = True
#: Work shorter than this many items is not worth a bar.
MIN_ITEMS = 2


def set_enabled(flag: bool) -> None:
    """Turn progress bars on or off for this process."""
    global _ENABLED
    _ENABLED = bool(flag)


def enabled() -> bool:
    """True if bars are on and stderr is a terminal."""
    return _ENABLED and sys.stderr is not None and sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """``items``, with a tqdm bar on stderr when :func:`enabled` (else unchanged)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled() or (total is not None and total < MIN_ITEMS):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False,
                    mininterval=0.5, delay=2.0)
