"""Digits: the :class:`Number` every route returns, how many digits agree, and how to print
exactly as many as were achieved, correctly rounded.

A number leaves the library as its binary value at the precision it was computed (an mpmath
``mpf`` keeps every bit it was rounded to; a float64 keeps 53) together with the significant
digits the route achieved. The decimal string is made from that binary value exactly
(:func:`decimal_string`, via :mod:`decimal`), never through a float or the ambient mpmath
precision.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

import mpmath

from bnmft.limits import MAX_DIGITS

#: Significant digits a float64 route can be trusted with (rounding of ~1e-16 amplified by
#: a few dozen operations and quadrature sums).
FLOAT_DIGITS = 13

INF = math.inf


def _exact_decimal(value) -> decimal.Decimal:
    """The exact decimal value of a float, int or mpf (binary fractions are finite decimals)."""
    if isinstance(value, float):
        return decimal.Decimal(value)  # exact
    if isinstance(value, int):
        return decimal.Decimal(value)
    if not isinstance(value, mpmath.mpf):
        raise TypeError(f"not a real number: {value!r}")
    sign, man, exp, _ = value._mpf_
    if exp >= 0:
        return decimal.Decimal((sign, tuple(map(int, str(int(man) << exp))), 0))
    # man * 2^exp = (man * 5^-exp) * 10^exp exactly; built from digits, so no context rounds
    return decimal.Decimal((sign, tuple(map(int, str(int(man) * 5 ** (-exp)))), exp))


def decimal_string(value, digits: int) -> str:
    """``value`` correctly rounded (half-even) to ``digits`` significant digits.

    Fixed notation for decimal exponents in ``[-6, digits)``, scientific otherwise;
    ``"inf"``/``"-inf"``; ``"null"`` for None. The value is converted exactly, so every digit
    printed is the rounding of the stored binary number.
    """
    if value is None:
        return "null"
    if isinstance(value, mpmath.mpf) and not mpmath.isfinite(value) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        if value != value:
            raise ValueError("refusing to print NaN")
        return "inf" if value > 0 else "-inf"
    if not isinstance(value, (float, int, mpmath.mpf)):
        value = mpmath.mpf(value)
        if not mpmath.isfinite(value):
            return decimal_string(value, digits)
    exact = _exact_decimal(value)
    if exact == 0:
        return "0"
    ctx = decimal.Context(prec=digits, rounding=decimal.ROUND_HALF_EVEN, Emax=10**9,
                          Emin=-(10**9))
    rounded = ctx.plus(exact)
    exponent = rounded.adjusted()  # decimal exponent of the leading digit
    sign = "-" if rounded < 0 else ""
    coeff = "".join(map(str, rounded.as_tuple().digits)).ljust(digits, "0")
    if -6 <= exponent < digits:
        if exponent < 0:
            return f"{sign}0.{'0' * (-exponent - 1)}{coeff}"
        whole, frac = coeff[: exponent + 1], coeff[exponent + 1:]
        return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    mantissa = coeff[0] + ("." + coeff[1:] if len(coeff) > 1 else "")
    return f"{sign}{mantissa}e{exponent:+d}"


@dataclass(frozen=True)
class Number:
    """A computed value with the significant digits it is known to (``inf``: exact).

    ``value`` is an mpmath ``mpf`` at the precision it was computed, a float64, or None (did
    not converge; ``note`` says why). ``route`` names the computation. :meth:`text` prints it
    correctly rounded, and refuses more digits than were achieved.
    """

    value: object
    digits: float
    route: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def is_infinite(self) -> bool:
        return self.value is not None and mpmath.isinf(self.value)

    def reaches(self, digits: float) -> bool:
        return self.value is not None and self.digits >= digits

    def text(self, digits: int | None = None) -> str:
        """Decimal string with ``digits`` significant digits (default: the digits achieved,
        at most :data:`MAX_DIGITS`). Raises ``ArithmeticError`` beyond what was achieved."""
        if self.value is None:
            raise ArithmeticError(f"not converged: {self.note or self.route}")
        if digits is None:
            digits = MAX_DIGITS if self.digits == INF else max(1, math.floor(self.digits))
            digits = min(digits, MAX_DIGITS)
        if digits > self.digits:
            raise ArithmeticError(
                f"{digits} digits requested, {self.digits:.1f} achieved ({self.route})"
            )
        return decimal_string(self.value, digits)

    def __str__(self) -> str:
        return self.text() if self.value is not None else f"(not converged: {self.note})"

    def __repr__(self) -> str:
        shown = str(self) if self.value is not None else "None"
        digits = "exact" if self.digits == INF else f"{self.digits:.1f}"
        return f"Number({shown}, digits={digits}, route={self.route!r})"


def shortfalls(numbers: dict, digits: float) -> list[str]:
    """One line per number in ``{name: Number}`` that did not converge or has fewer than
    ``digits`` digits (what the CLI reports instead of printing it)."""
    out = []
    for name, num in numbers.items():
        if num.value is None:
            out.append(f"{name}: {num.note or 'not computed'}")
        elif num.digits < digits:
            out.append(f"{name}: only {num.digits:.1f} digits ({num.route})")
    return out


def agreeing_digits(a, b) -> float:
    """Significant decimal digits on which ``a`` and ``b`` agree (``inf`` if identical).

    ``-log10(|a - b| / |b|)``; for ``b = 0`` the absolute difference is used. Both are taken
    exactly (no rounding to the ambient precision).
    """
    if _is_inf(a) or _is_inf(b):
        return math.inf if a == b else 0.0
    a, b = _exact_decimal(_real(a)), _exact_decimal(_real(b))
    if a == b:
        return math.inf
    with decimal.localcontext() as ctx:
        ctx.prec = 30
        diff = abs(a - b)
        scale = abs(b) if b != 0 else decimal.Decimal(1)
        return max(0.0, float(-(diff / scale).log10()))


def _is_inf(v) -> bool:
    return isinstance(v, (float, mpmath.mpf)) and mpmath.isinf(v)


def _real(v):
    """A float, int or mpf as it is; anything else (a SymPy number, a string) converted at
    the current precision."""
    if isinstance(v, (float, int, mpmath.mpf)):
        return v
    return mpmath.mpf(v)


def digits_from_error(value, error) -> float:
    """Significant digits implied by an absolute error estimate."""
    if error == 0:
        return math.inf
    with mpmath.workprec(64):
        value = abs(mpmath.mpf(value))
        scale = value if value != 0 else mpmath.mpf(1)
        return max(0.0, float(-mpmath.log10(mpmath.mpf(error) / scale)))


def scale_number(num: Number, factor, what: str) -> Number:
    """``num`` times an exact positive SymPy number ``factor`` (e.g. ``sigma_w^2``), named
    ``what`` in the route. The product is formed with 64 guard bits beyond the value's own
    mantissa, so it keeps the digits ``num`` had (an exact product of binary fractions stays
    exact; otherwise the claim is capped by the working precision; a float64 value stays a
    float64 and keeps at most 15 digits)."""
    if num.value is None:
        return num
    import sympy as sp

    factor = sp.nsimplify(factor)
    bits = num.value._mpf_[3] if isinstance(num.value, mpmath.mpf) else 53
    prec = bits + 64
    with mpmath.workprec(prec):
        f = mpmath.mpf(sp.N(factor, int(prec / 3.3) + 10)._mpf_)
        value = mpmath.mpf(num.value) * f
        exact = num.digits == INF and factor.is_Rational and _dyadic(factor)
        digits = INF if exact else min(num.digits, prec * math.log10(2) - 2)
        if isinstance(num.value, float):
            value, digits = float(value), min(digits, 15.0)
    return Number(value, digits, f"{num.route}; times {what}", num.note)


def _dyadic(q) -> bool:
    """A rational whose denominator is a power of two (a finite binary fraction)."""
    d = int(q.q)
    return d & (d - 1) == 0
