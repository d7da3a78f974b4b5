"""The paper's integrals as written, for any Python callable phi (mpmath ``quad``).

Plain references for users who hold ``phi`` as a function rather than an expression:
the fixed point from paper Thm 4 (eqs 13-15, hyperspherical angles) and the gradient rate
from paper Thm 7 (the two-dimensional integral, with the Gamma-normalised density so that
no ``(B(B-2))^(2-B/2)`` overflow occurs). mpmath's tanh-sinh ``quad`` with breakpoints at
the supplied kinks; accuracy as reported by mpmath. The project's own routes
(:mod:`.sphere`, :mod:`.cartesian`, :mod:`.gegenbauer`) are faster and split more carefully.
"""

from __future__ import annotations

import mpmath


def _z1(B, t):
    return -mpmath.sqrt(mpmath.mpf(B - 1) / B) * mpmath.cos(t)


def _z2(B, t1, t2):
    return (mpmath.cos(t1) / mpmath.sqrt(B) - mpmath.sqrt(B - 2) * mpmath.sin(t1) * mpmath.cos(t2)
            ) / mpmath.sqrt(B - 1)


def _breaks_1d(B, kinks, tangencies=False):
    """Breakpoints in ``t1``: kinks of ``phi(sqrt(B) z1)`` and, for the double integral, the
    angles where the inner kink ``sqrt(B) z2 = k`` leaves ``[0, pi]`` (``cos t2 = +-1``):
    ``cos t1 -+ sqrt(B(B-2)) sin t1 = k sqrt(B-1)``, i.e. ``cos(t1 +- phi0) = k/sqrt(B-1)``
    with ``tan phi0 = sqrt(B(B-2))``."""
    pts = {mpmath.mpf(0), mpmath.pi}
    root = mpmath.sqrt(B - 1)
    phi0 = mpmath.atan(mpmath.sqrt(mpmath.mpf(B) * (B - 2)))
    for k in kinks:
        x = mpmath.mpf(k) / root
        if -1 < x < 1:
            pts.add(mpmath.acos(-x))  # sqrt(B) z1(t) = -sqrt(B-1) cos t = k
        if -1 <= x <= 1:  # |k| = sqrt(B-1): the kink line touches the disk's edge
            if tangencies:
                a = mpmath.acos(x)
                for cand in (a - phi0, -a - phi0, a + phi0, -a + phi0):
                    for shift in (0, 2 * mpmath.pi, -2 * mpmath.pi):
                        if 0 < cand + shift < mpmath.pi:
                            pts.add(cand + shift)
    return sorted(pts)


def fixed_point(phi, B: int, dps: int = 30, kinks=()) -> tuple:
    """``(q*, c*)`` of paper Thm 4 for a callable ``phi`` (mpmath numbers in and out).

    ``q* = Gamma((B-1)/2)/(Gamma((B-2)/2) sqrt(pi)) int sin^{B-3} t phi(sqrt(B) z1(t))^2 dt``,
    ``q* c* = (B-3)/(2 pi) int int sin^{B-3} t1 sin^{B-4} t2 phi(sqrt(B) z1) phi(sqrt(B) z2)``.
    """
    if B < 4:
        raise ValueError("B must be >= 4")
    with mpmath.workdps(dps + 10):
        sB = mpmath.sqrt(B)
        c1 = mpmath.exp(
            mpmath.loggamma(mpmath.mpf(B - 1) / 2) - mpmath.loggamma(mpmath.mpf(B - 2) / 2)
        ) / mpmath.sqrt(mpmath.pi)
        q = c1 * mpmath.quad(lambda t: mpmath.sin(t) ** (B - 3) * phi(sB * _z1(B, t)) ** 2,
                             _breaks_1d(B, kinks))

        def inner(t1):
            f1 = phi(sB * _z1(B, t1))
            if f1 == 0:
                return mpmath.mpf(0)
            pts = [mpmath.mpf(0), mpmath.pi]
            for k in kinks:
                # sqrt(B) z2 = k  <=>
                #   cos t2 = (cos t1/sqrt(B) - k sqrt(B-1)/sqrt(B)) / (sqrt(B-2) sin t1)
                den = mpmath.sqrt(mpmath.mpf(B) * (B - 2)) * mpmath.sin(t1)
                if den:
                    x = (mpmath.cos(t1) - mpmath.mpf(k) * mpmath.sqrt(B - 1)) / den
                    if -1 < x < 1:
                        pts.append(mpmath.acos(x))
            g = mpmath.quad(lambda t2: mpmath.sin(t2) ** (B - 4) * phi(sB * _z2(B, t1, t2)),
                            sorted(pts))
            return mpmath.sin(t1) ** (B - 3) * f1 * g

        qc = (B - 3) / (2 * mpmath.pi) * mpmath.quad(inner, _breaks_1d(B, kinks, tangencies=True))
        return +q, +(qc / q)


def gradient_rate(phi, dphi, B: int, dps: int = 30, kinks=()) -> mpmath.mpf:
    """Paper Thm 7: ``E[(B-1-z1^2) phi'(z1)^2 + (1 + z1 z2) phi'(z1) phi'(z2)] / ((B-3) s)``.

    The expectation is the Thm 7 integral over ``Z > 0`` with its density normalised
    (``(B-3)/(2 pi sqrt(B(B-2))) (1 - |w|^2)^((B-5)/2)``, :mod:`.cartesian`); ``s = q*(1-c*)``.
    """
    q, c = fixed_point(phi, B, dps, kinks)
    with mpmath.workdps(dps + 10):
        const = (B - 3) / (2 * mpmath.pi * mpmath.sqrt(mpmath.mpf(B) * (B - 2)))

        def dens(u, v):
            qq = 1 - (u * u + v * v + (u + v) ** 2 / (B - 2)) / B
            return qq ** (mpmath.mpf(B - 5) / 2) if qq > 0 else mpmath.mpf(0)

        def chord(u):
            a, b, cc = B - 1, 2 * u, (B - 1) * u * u - B * (B - 2)
            d = mpmath.sqrt(max(b * b - 4 * a * cc, 0))
            return (-b - d) / (2 * a), (-b + d) / (2 * a)

        R = mpmath.sqrt(B - 1)

        def inner(u):
            lo, hi = chord(u)
            pts = [lo] + [mpmath.mpf(k) for k in kinks if lo < k < hi] + [hi]
            du = dphi(u)
            return mpmath.quad(
                lambda v: ((B - 1 - u * u) * du**2 + (1 + u * v) * du * dphi(v)) * dens(u, v), pts)

        outer = {-R, R} | {mpmath.mpf(k) for k in kinks if -R < k < R}
        for k in kinks:  # where the chord's end meets the kink line: (z1, k) on the ellipse
            k = mpmath.mpf(k)
            disc = 4 * k * k - 4 * (B - 1) * ((B - 1) * k * k - B * (B - 2))
            if disc >= 0:
                for t in ((-2 * k - mpmath.sqrt(disc)) / (2 * (B - 1)),
                          (-2 * k + mpmath.sqrt(disc)) / (2 * (B - 1))):
                    if -R < t < R:
                        outer.add(t)
        outer = sorted(outer)
        total = const * mpmath.quad(inner, outer)
        return +(total / ((B - 3) * q * (1 - c)))
