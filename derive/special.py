"""The special functions of non-integer degrees, in the forms float64 code evaluates them.

The closed forms of positive-homogeneous ``phi`` of non-integer degree contain gamma functions
of ``B`` (which come in ratios ``Gamma(B/2 + 1/2) / Gamma(B/2)``; taken apart they overflow
from ``B ~ 340``) and Gauss functions ``2F1(a, b; c; z)`` at ``z = 1/(B - 1)^2 <= 1/9``. Both
float64 routes -- the error-bounded kernels of ``bnmft.numerics.closed_float`` and the
generated numpy/C modules of ``bnmft.codegen`` -- use the rewriting and the series here:

* :func:`gamma_ratios`: every ``Gamma(v + r)`` of ``B`` as ``rf(v + r0, r - r0) Gamma(v + r0)``
  (``rf(x, a) = Gamma(x + a) / Gamma(x)``, ``r0`` the least offset of its group), so that the
  gamma functions cancel;
* :func:`log_gamma_ratio_series`: ``log rf(x, a) - a log x ~ sum_n c_n x^-n`` (Stirling's
  series of both log-gammas), truncated where the terms at ``x0`` are negligible;
* :func:`hyp2f1_ratio_sup`: bounds on the term ratios of the 2F1 power series, which bound
  its tail geometrically.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
import sympy as sp

from .symbols import B as B_SYM

#: Largest ``|z|`` at which ``2F1`` is summed as a power series by the float64 routes.
HYPER_Z_MAX = 0.5
#: Most terms of a 2F1 power series any float64 route sums.
HYPER_MAX_TERMS = 400


class NotInRatios(ValueError):
    """An expression has gamma functions of ``B`` that do not cancel in ratios."""


#: ``Gamma(x + a) / Gamma(x)``: the asymptotic (Stirling) series from this ``x`` on, in the
#: float64 kernels and the generated routines alike.
RATIO_SERIES_X0 = 32.0


def fraction(r: sp.Rational) -> Fraction:
    """A SymPy rational as a :class:`fractions.Fraction`."""
    return Fraction(int(r.p), int(r.q))


def gamma_ratios(expr: sp.Expr, symbol: sp.Symbol = B_SYM) -> sp.Expr:
    """``expr`` with every ``Gamma(v + r)`` of ``symbol`` written ``rf(v + r0, r - r0)
    Gamma(v + r0)``, ``r0`` the least rational offset of the group of ``v``
    (``rf(x, a) = Gamma(x + a) / Gamma(x)``, unevaluated), so that the gamma functions cancel
    in ratios; raises :class:`NotInRatios` if one is left over."""
    groups: dict = {}
    for g in expr.atoms(sp.gamma):
        if g.has(symbol):
            r, v = g.args[0].as_coeff_Add()
            if not r.is_Rational:
                raise NotInRatios(f"{g}: offset is not rational")
            groups.setdefault(v, []).append((r, g))
    subs = {}
    for v, items in groups.items():
        r0 = min(r for r, _ in items)
        for r, g in items:
            if r != r0:
                subs[g] = sp.RisingFactorial(v + r0, r - r0, evaluate=False) * sp.gamma(v + r0)
    out = expr.xreplace(subs)
    if any(g.has(symbol) for g in out.atoms(sp.gamma)):
        raise NotInRatios("gamma functions of B that do not cancel in ratios")
    return out


@lru_cache(maxsize=64)
def log_gamma_ratio_series(a: Fraction, x0: float, tol: float, max_terms: int = 80
                           ) -> tuple[tuple[Fraction, ...], float]:
    """Coefficients ``c_1, ..., c_N`` of ``log(Gamma(x + a) / Gamma(x)) - a log x ~ sum c_n
    x^-n`` (exact), ``c_n = (-1)^(n+1) (B_(n+1)(a) - B_(n+1)) / (n (n+1))`` with Bernoulli
    polynomials ``B_k(a)`` (Stirling's series of both log-gammas), up to where the terms at
    ``x >= x0`` fall below ``tol``, and a bound on the omitted rest there: twice the larger of
    the next two terms (every other coefficient vanishes for ``a = 1/2``). Raises
    :class:`ValueError` if more than ``max_terms`` would be needed."""
    aa = sp.Rational(a.numerator, a.denominator)

    def coefficient(n):
        c = (-1) ** (n + 1) * (sp.bernoulli(n + 1, aa) - sp.bernoulli(n + 1)) / (n * (n + 1))
        return Fraction(int(c.p), int(c.q)), abs(float(c)) * x0**-n

    coeffs, n = [], 1
    while True:
        (c, s1), (_, s2) = coefficient(n), coefficient(n + 1)
        if n > 4 and max(s1, s2) < tol:
            return tuple(coeffs), 2 * max(s1, s2)
        coeffs.append(c)
        n += 1
        if n > max_terms:
            raise ValueError(f"Gamma(x + {a}) / Gamma(x): asymptotic series too slow at {x0}")


@lru_cache(maxsize=256)
def hyp2f1_ratio_sup(a: Fraction, b: Fraction, c: Fraction,
                     terms: int = HYPER_MAX_TERMS) -> np.ndarray:
    """``s[k] = sup_(j >= k) |(a + j)(b + j) / ((c + j)(j + 1))|``, at least 1, for
    ``k <= terms + 1``: ``|t_(j+1)| <= s[k] |z| |t_j|`` for the terms ``t_j`` of the power
    series of ``2F1(a, b; c; z)`` and every ``j >= k``, so the tail after ``t_k`` is at most
    ``|t_k| rho / (1 - rho)`` with ``rho = s[k] |z| < 1``. (The ratio tends to 1 monotonically
    for large ``j``: the sup is taken over ``2 terms`` of them and 1, with a margin for the
    rounding.)"""
    j = np.arange(2 * terms + 1, dtype=float)
    f = np.abs((float(a) + j) * (float(b) + j) / ((float(c) + j) * (j + 1))) * (1 + 1e-12)
    sup = np.maximum.accumulate(np.maximum(f, 1.0)[::-1])[::-1]
    return sup[: terms + 2]
