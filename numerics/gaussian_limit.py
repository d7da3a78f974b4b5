"""Sphere moments and the Thm 9 rate in the limit ``B -> oo``.

One coordinate of the normalised batch tends to ``g ~ N(0, 1)`` (its density
``(1 - z^2/(B-1))^((B-4)/2)`` tends to ``exp(-z^2/2)``), and ``r_k -> 0`` for ``k >= 1``, so
two-point moments factorise: ``E[F(z1) G(z2)] -> E[F(g)] E[G(g)]`` (Funk-Hecke keeps only
``k = 0``). Everything reduces to Gaussian moments ``E[g^m phi(g)^p phi'(g)^q]``.
"""

from __future__ import annotations

import mpmath
import sympy as sp

from bnmft.derive import Activation
from bnmft.derive import Point

#: Refinements of the working precision for a moment far below 1 (see :func:`gaussian_moment`).
_MAX_REFINEMENTS = 3


def gaussian_moment(act: Activation, point: Point, dps: int):
    """``E[g^m phi(g)^p phi'(g)^q]``, ``g ~ N(0, 1)``, to ``dps`` significant digits:
    ``(value, abs_error)``.

    Tanh-sinh on ``(-oo, oo)`` split at the kinks (no truncation of the Gaussian: ``phi`` may
    grow like ``exp(b g^2)``, ``b < 1/4``). mpmath's quadrature stops on an *absolute* error of
    about ``10^-(working dps)``, so a tiny moment (``tanh(x)^1000``) is redone with the working
    precision raised by its magnitude until the error is relative (``10^-(dps+5) |value|``).
    """
    phi, dphi = act.mpmath, act.mpmath_derivative

    def integrand(g):
        val = g**point.m if point.m else mpmath.mpf(1)
        if point.p:
            val *= phi(g) ** point.p
        if point.q:
            val *= dphi(g) ** point.q
        return val * mpmath.exp(-g * g / 2)

    extra = 0
    for _ in range(_MAX_REFINEMENTS + 1):
        with mpmath.workdps(dps + 10 + extra):
            kinks = [mpmath.mpf(sp.N(k, mpmath.mp.dps + 5)) for k in act.kinks]
            value, err = mpmath.quad(integrand, [-mpmath.inf, *kinks, mpmath.inf], error=True,
                                     maxdegree=10)
            norm = mpmath.sqrt(2 * mpmath.pi)
            value, err = value / norm, abs(err) / norm + mpmath.mpf(10) ** (-dps - 5) * abs(value)
            if value == 0 or err <= mpmath.mpf(10) ** (-dps) * abs(value):
                return +value, +err
            # err is about 10^-(working dps) absolute: raise it by the moment's magnitude
            short = int(mpmath.ceil(mpmath.log10(err / (abs(value) * mpmath.mpf(10) ** -dps))))
        extra += max(5, short)
    return value, err


def limit_moments(act: Activation, moments, digits: int):
    """Sphere moments at ``B = oo`` to ``digits`` digits (five guard digits per Gaussian
    moment): ``(values, abs_errors)``, dicts keyed by moment."""
    one: dict = {}
    vals, errs = {}, {}
    for mo in moments:
        parts = []
        for pt in mo.points:
            if pt not in one:
                one[pt] = gaussian_moment(act, pt, digits + 5)
            parts.append(one[pt])
        if len(parts) == 1:
            vals[mo], errs[mo] = parts[0]
        else:
            (a, ea), (b, eb) = parts
            vals[mo], errs[mo] = a * b, abs(a) * eb + abs(b) * ea
    return vals, errs


def gradient_rate_limit(act: Activation, dps: int = 30):
    """``lim_{B -> oo}`` of Thm 9: ``sum k a_k^2 / sum_{k>=1} a_k^2 = E[phi'(g)^2] / Var(phi(g))``
    (Hermite: ``sum_k k a_k^2 = E[phi'(g)^2]``). Returns ``(value, abs_error)``."""
    if act.derivative_has_delta:
        return mpmath.inf, mpmath.mpf(0)
    m1, e1 = gaussian_moment(act, Point(0, 1, 0), dps)
    m2, e2 = gaussian_moment(act, Point(0, 2, 0), dps)
    d2, ed = gaussian_moment(act, Point(0, 0, 2), dps)
    with mpmath.workdps(dps + 10):
        var = m2 - m1 * m1
        evar = e2 + 2 * abs(m1) * e1
        rate = d2 / var
        return +rate, abs(rate) * (ed / abs(d2) + evar / abs(var))
