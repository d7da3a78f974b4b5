"""A wall-clock budget for symbolic steps that SymPy cannot bound itself.

SymPy has no cancellation: ``simplify`` or ``solveset`` on an innocent-looking input can
run for hours while the memory grows. :func:`time_budget` interrupts the block with an
interval timer (``SIGALRM``) and raises the caller's one-line error instead.

The timer exists only in the main thread of a process (POSIX); elsewhere, or while the
program runs its own interval timer, the block runs unbounded (the structural limits of
the callers still hold).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _OutOfTime(BaseException):
    """Raised by the timer. A BaseException, so that no ``except Exception`` inside SymPy
    swallows it."""


def _available() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


@contextmanager
def time_budget(seconds: float, error: Callable[[], Exception]) -> Iterator[None]:
    """Run the block for at most ``seconds``; then raise ``error()`` (from the block).

    Nested budgets: the inner one runs unbounded within the outer one's limit.
    """
    if not _available():
        yield
        return
    armed = [True]

    def alarm(signum, frame):
        if armed[0]:
            raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            yield
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _OutOfTime:
        raise error() from None
    finally:
        signal.signal(signal.SIGALRM, previous)
