"""Coefficients ``a_k`` of any ``phi`` at mpmath precision, with error estimates."""

from __future__ import annotations

import mpmath

from bnmft.derive.activation import Activation
from bnmft.derive.moments import Point

from ._common import PHI, point_value_mp
from .homogeneous import homogeneous_coefficients_mp
from .mp_grid import (
    PANEL_LEVEL_MP,
    gauss_nodes_mp,
    trapezoid_nodes_mp,
    use_trapezoid,
    window_angle_mp,
)
from .recurrence import recurrence_beta


def coefficients_mp(act: Activation, B: int, K: int, dps: int = 20, point: Point = PHI):
    """``a_k``, ``k < K``, of ``z^m phi^p phi'^q`` at ``dps`` digits: ``(values, abs_errors)``.

    Homogeneous ``phi``: closed form (errors ~ rounding). Otherwise quadrature (trapezoid or
    Gauss-Legendre split at kinks, as :func:`.mp_route.moments_gegenbauer_mp`) at two
    resolutions with at least ``2K`` nodes; the error is their difference (the coarser rule's
    error).
    """
    if act.homogeneous is not None:
        with mpmath.workdps(dps + 15):
            vals = homogeneous_coefficients_mp(act, B, K, point)
            return [+v for v in vals], [abs(v) * mpmath.mpf(10) ** (-dps - 5) for v in vals]
    with mpmath.workdps(dps + 15):
        prec = mpmath.mp.prec
        wdigits = 2 * dps + 12
        W = window_angle_mp(B, wdigits)
        root = mpmath.sqrt(mpmath.mpf(B) - 1)
        trap = not act.kinks and use_trapezoid(B, wdigits)
        tol = mpmath.mpf(10) ** (-dps - 2)
        results = []
        step = 0
        panels0 = 1
        while 6 * 2 ** (PANEL_LEVEL_MP - 1) * panels0 < 2 * K + 32:
            panels0 *= 2
        while True:
            if trap:
                nodes, wls = trapezoid_nodes_mp(W, max(32, (K + 32) // 2) * 2**step)
            else:
                nodes, wls = gauss_nodes_mp(act, W, root, panels0 * 2**step, prec)
            results.append(_mp_project(act, B, nodes, wls[0], point, K))
            step += 1
            if len(results) < 2:
                continue
            hi, lo = results[-1], results[-2]
            scale = mpmath.sqrt(mpmath.fsum(v * v for v in hi))
            diff = max(abs(x - y) for x, y in zip(hi, lo))
            if diff <= tol * scale or len(nodes) > 8000:
                break
        errs = [abs(x - y) + scale * mpmath.mpf(10) ** (-dps - 10) for x, y in zip(hi, lo)]
        return [+v for v in hi], [+e for e in errs]


def _mp_project(act, B, nodes, weights, point, K):
    Bm = mpmath.mpf(B)
    lam = (Bm - 3) / 2
    root = mpmath.sqrt(Bm - 1)
    phi, dphi = act.mpmath, act.mpmath_derivative
    idx = [i for i, w in enumerate(weights) if w != 0]
    d = [nodes[i] for i in idx]
    t = [mpmath.sin(x) for x in d]
    z = [root * ti for ti in t]
    cw = [weights[i] * mpmath.exp((Bm - 3) * mpmath.log1p(-2 * mpmath.sin(x / 2) ** 2))
          for i, x in zip(idx, d)]
    norm = mpmath.fsum(cw)
    wf = [c / norm * point_value_mp(point, zi, phi(zi) if point.p else 0,
                                    dphi(zi) if point.q else 0)
          for c, zi in zip(cw, z)]
    out = []
    e_prev, e_cur, beta_prev = [mpmath.mpf(0)] * len(t), [mpmath.mpf(1)] * len(t), mpmath.mpf(0)
    for k in range(K):
        out.append(mpmath.fdot(wf, e_cur))
        beta = recurrence_beta(mpmath.mpf(k + 1), lam)
        e_next = [(ti * ec - beta_prev * ep) / beta for ti, ec, ep in zip(t, e_cur, e_prev)]
        e_prev, e_cur, beta_prev = e_cur, e_next, beta
    return out
