"""The limit ``B -> oo``: sphere moments become Gaussian moments.

As ``B -> oo`` one coordinate of the normalised batch tends to ``N(0, 1)`` and two
coordinates become independent (their correlation is ``-1/(B-1)``), so a two-point sphere
moment factorises into one-point Gaussian moments ``E[g^m phi(g)^p phi'(g)^q]``.
"""

from __future__ import annotations

import mpmath
import sympy as sp


def gaussian_moment(act, point, dps: int):
    """``(value, abs error)`` of ``E[g^m phi(g)^p phi'(g)^q]``, ``g ~ N(0, 1)``: mpmath
    tanh-sinh quadrature split at the kinks of ``phi``, at ``dps`` digits."""
    phi, dphi = act.mpmath, act.mpmath_derivative
    with mpmath.workdps(dps + 10):
        pts = [-mpmath.inf] + [mpmath.mpf(sp.N(k, dps + 15)) for k in act.kinks] + [mpmath.inf]

        def integrand(g):
            val = g**point.m if point.m else 1
            if point.p:
                val *= phi(g) ** point.p
            if point.q:
                val *= dphi(g) ** point.q
            return val * mpmath.exp(-g * g / 2)

        value, err = mpmath.quad(integrand, pts, error=True, maxdegree=10)
        norm = mpmath.sqrt(2 * mpmath.pi)
        return value / norm, abs(err) / norm + mpmath.mpf(10) ** (-dps - 5) * abs(value)


def limit_moments(act, moments, digits: int):
    """``({moment: value}, {moment: abs error})`` of sphere moments at ``B = oo``."""
    one: dict = {}
    vals, errs = {}, {}
    with mpmath.workdps(digits + 10):
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
