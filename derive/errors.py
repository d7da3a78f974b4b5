"""The one exception bnmft raises for input it refuses, and the batch-size check.

:class:`InvalidInput` (a ``ValueError``) is what the library raises for bad input: an
activation it cannot handle, an expression it cannot parse, a batch size outside the
theory. Its message is one line; the command line prints it as ``bnmft: error: ...`` and
exits with status 2.
"""

from __future__ import annotations

import math
import numbers
import operator

from bnmft.limits import MAX_BATCH_SIZE, MAX_BATCH_SIZES, MIN_BATCH_SIZE


class InvalidInput(ValueError):
    """Input bnmft refuses; the message is one line (user text may hold line breaks)."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))


def size_text(b) -> str:
    """A batch size for messages: digits, or scientific notation when long."""
    if isinstance(b, float) and not math.isfinite(b):
        return str(b)
    return str(b) if abs(b) < 10**16 else f"{b:.3e}"


def check_batch_size(b, finite: bool = False):
    """One batch size as an ``int`` (or ``math.inf`` unless ``finite``); refuses the rest."""
    if isinstance(b, bool) or not isinstance(b, numbers.Real):
        raise InvalidInput(f"batch size must be a number (got {b!r})")
    if isinstance(b, numbers.Integral):
        value = operator.index(b)
    else:
        value = float(b)
        if math.isnan(value):
            raise InvalidInput("batch size must be a number (got nan)")
        if value == math.inf:
            if finite:
                raise InvalidInput("verify needs finite batch sizes")
            return math.inf
        if math.isfinite(value) and value != int(value):
            raise InvalidInput(f"batch size must be an integer (got {b})")
        value = int(value) if math.isfinite(value) else value
    if value < MIN_BATCH_SIZE:
        raise InvalidInput(
            f"batch size must be >= {MIN_BATCH_SIZE} (got {size_text(value)}); "
            f"B < {MIN_BATCH_SIZE} is degenerate"
        )
    if value > MAX_BATCH_SIZE:
        raise InvalidInput(f"batch size must be <= 10^15 (got {size_text(value)}); "
                           "use 'inf' for the limit B -> oo")
    return value


def check_batch_sizes(batch_sizes, finite: bool = False) -> list:
    """Batch sizes as a list of ``int`` (and ``math.inf`` unless ``finite``).

    Each must be an integer from 4 to 10^15 (B < 4 is degenerate: the batchnorm output lies
    on a sphere of dimension B - 2 < 2), or ``math.inf`` for the limit; at most 10^6 of them.
    """
    if isinstance(batch_sizes, (str, bytes)) or not hasattr(batch_sizes, "__iter__"):
        raise InvalidInput(
            f"batch sizes must be a list of numbers (got {type(batch_sizes).__name__})"
        )
    out = []
    for b in batch_sizes:
        out.append(check_batch_size(b, finite))
        if len(out) > MAX_BATCH_SIZES:
            raise InvalidInput(f"too many batch sizes; at most {MAX_BATCH_SIZES:,} per call")
    if not out:
        raise InvalidInput("no batch size given")
    return out
