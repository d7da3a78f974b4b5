"""Digits: how many agree, how to print exactly as many as were achieved."""

from __future__ import annotations

import math

import mpmath

#: Significant digits a float64 route can be trusted with (rounding of ~1e-16 amplified by
#: a few dozen operations and quadrature sums).
FLOAT_DIGITS = 13

#: Largest ``--digits`` accepted (mpmath quadrature cost grows quickly beyond this).
MAX_DIGITS = 60


def agreeing_digits(a, b) -> float:
    """Significant decimal digits on which ``a`` and ``b`` agree (``inf`` if identical).

    ``-log10(|a - b| / |b|)``; for ``b = 0`` the absolute difference is used.
    """
    with mpmath.workdps(MAX_DIGITS + 40):  # the difference must not round away
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        if mpmath.isinf(a) or mpmath.isinf(b):
            return math.inf if a == b else 0.0
        diff = abs(a - b)
        if diff == 0:
            return math.inf
        scale = abs(b) if b != 0 else mpmath.mpf(1)
        return max(0.0, float(-mpmath.log10(diff / scale)))


def digits_from_error(value, error) -> float:
    """Significant digits implied by an absolute error estimate."""
    if error == 0:
        return math.inf
    value = mpmath.mpf(value)
    scale = abs(value) if value != 0 else mpmath.mpf(1)
    return max(0.0, float(-mpmath.log10(mpmath.mpf(error) / scale)))


def decimal_string(value, digits: int) -> str:
    """``value`` with exactly ``digits`` significant digits (``"inf"``, ``"-inf"`` as such)."""
    if value is None:
        return "null"
    with mpmath.workdps(digits + 10):  # mpf() rounds to the working precision
        v = mpmath.mpf(value)
    if mpmath.isinf(v):
        return "inf" if v > 0 else "-inf"
    if mpmath.isnan(v):
        raise ValueError("refusing to print NaN")
    if v == 0:
        return "0"
    with mpmath.workdps(digits + 10):
        return mpmath.nstr(v, digits, strip_zeros=False, min_fixed=-6, max_fixed=digits + 1)
