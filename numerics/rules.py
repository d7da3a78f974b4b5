"""Quadrature rules on ``[0, 1]``, in float64 and at mpmath precision.

Gauss-Legendre for integrands analytic on the closed interval; tanh-sinh (double
exponential) where an endpoint carries an algebraic singularity, e.g. ``|z - k|^{1/2}`` at a
kink of ``max(x, 0)^1.5`` or the square-root behaviour of a two-point integral where the
kink line of ``phi(z2)`` becomes tangent to the sphere's disk.

A rule is ``(u, v, w)`` with nodes ``u`` in ``(0, 1)``, ``v = 1 - u`` computed without
cancellation (tanh-sinh nodes crowd the endpoints), and weights ``w`` summing to 1.
``level`` doubles the number of nodes at each step (the error estimate compares two levels).
"""

from __future__ import annotations

from functools import lru_cache

import mpmath
import numpy as np

#: Number of Gauss-Legendre nodes at level ``l``: ``6 * 2^(l-1)`` (l = 1, 2, ...).
def gl_count(level: int) -> int:
    return 6 * 2 ** (level - 1)


@lru_cache(maxsize=64)
def gauss_legendre_nodes(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n``-point Gauss-Legendre on ``[-1, 1]`` as ``(t, w, (1 - t)/2)``, correctly rounded.

    Roots and weights come from Arb (``legendre_p_root``) at 128 bits: numpy's
    ``leggauss`` weights carry relative errors ~1e-13 from a few dozen nodes on, which
    shows up directly as 1e-14 quadrature errors.
    """
    from flint import arb, ctx

    old = ctx.prec
    ctx.prec = 128
    try:
        roots = [arb.legendre_p_root(n, k, weight=True) for k in range(n)]
        t = np.array([float(r) for r, _ in roots])
        w = np.array([float(wk) for _, wk in roots])
        v = np.array([float((1 - r) / 2) for r, _ in roots])
    finally:
        ctx.prec = old
    order = np.argsort(t)
    return t[order], w[order], v[order]


@lru_cache(maxsize=32)
def gauss_legendre_float(level: int):
    return gauss_legendre_float_count(gl_count(level))


@lru_cache(maxsize=32)
def gauss_legendre_float_count(n: int):
    """The ``n``-point Gauss-Legendre rule on ``[0, 1]`` as ``(u, v, w)`` in float64."""
    t, w, v = gauss_legendre_nodes(n)
    return (1 + t) / 2, v, w / 2


@lru_cache(maxsize=32)
def tanh_sinh_float(level: int):
    """Tanh-sinh with step ``h = 2^-(level-1) / 2``; nodes kept while weights exceed 1e-20."""
    h = 0.5 / 2 ** (level - 1)
    kmax = int(np.ceil(4.0 / h))
    t = h * np.arange(-kmax, kmax + 1)
    y = np.pi / 2 * np.sinh(t)
    # u = (1 + tanh y)/2 = 1/(1 + e^{-2y}),  v = 1 - u = 1/(1 + e^{2y})
    with np.errstate(over="ignore"):
        u = 1 / (1 + np.exp(-2 * y))
        v = 1 / (1 + np.exp(2 * y))
        w = h * (np.pi / 2) * np.cosh(t) / np.cosh(y) ** 2 / 2
    keep = (w > 1e-20) & (u > 0) & (v > 0)
    return u[keep], v[keep], w[keep]


@lru_cache(maxsize=64)
def gauss_legendre_mp(level: int, prec: int):
    """The ``gl_count(level)``-point Gauss-Legendre rule on ``[0, 1]`` as ``(u, v, w)`` mpmath
    numbers rounded to ``prec`` bits: Arb's roots and weights (``legendre_p_root``, at
    ``prec + 20`` bits, :func:`.arbmath.gauss_legendre`), ``v = 1 - u`` from the root itself
    (no cancellation at the ends). mpmath's own ``GaussLegendre.calc_nodes`` gives the same
    rule at ``prec`` bits but takes a second for 96 nodes at 47 digits."""
    from .arbmath import gauss_legendre, to_mpf

    with mpmath.workprec(prec):
        return tuple((+to_mpf(u), +to_mpf(v), +to_mpf(w))
                     for u, v, w in gauss_legendre(gl_count(level), prec))


@lru_cache(maxsize=64)
def tanh_sinh_mp(level: int, prec: int):
    with mpmath.workprec(prec):
        h = mpmath.mpf(1) / 2**level
        tiny = mpmath.mpf(2) ** (-prec - 10)
        out = []
        k = 0
        while True:
            t = k * h
            y = mpmath.pi / 2 * mpmath.sinh(t)
            w = h * (mpmath.pi / 2) * mpmath.cosh(t) / mpmath.cosh(y) ** 2 / 2
            v = 1 / (1 + mpmath.exp(2 * y))
            u = 1 - v if k else mpmath.mpf(1) / 2
            if w < tiny or v < tiny:
                break
            out.append((u, v, w))
            if k:
                out.append((v, u, w))
            k += 1
        return tuple(out)


def rule_float(kind: str, level: int):
    return tanh_sinh_float(level) if kind == "ts" else gauss_legendre_float(level)


def rule_mp(kind: str, level: int, prec: int):
    return tanh_sinh_mp(level, prec) if kind == "ts" else gauss_legendre_mp(level, prec)
