"""Coefficients ``a_k`` of any ``phi`` at mpmath precision, with error estimates.

``a_k = E_w[F e_k]`` needs at least ``~2K`` nodes to resolve ``e_k`` up to ``K``, so the
cost is ``~K^2`` recurrence steps (about 1 us each): they run on python-flint ``arb``
numbers, an order of magnitude faster than mpmath's. Only the midpoints are used (plain
rounded arithmetic at the working precision): the ball radii follow the absolute-value
recurrence, which grows like ``(1 + sqrt 2)^k`` although the recurrence itself is stable.
"""

from __future__ import annotations

import operator

import mpmath
from flint import arb

from bnmft.derive import Activation
from bnmft.derive import Point
from bnmft.progress import progress

from .. import arbmath
from ._common import PHI
from .homogeneous import homogeneous_coefficients_mp
from .mp_grid import (
    PANEL_LEVEL_MP,
    gauss_nodes_mp,
    trapezoid_nodes_mp,
    use_trapezoid,
    window_angle_mp,
)

#: Node count after which the resolution is no longer doubled (the error says what is left).
_MAX_NODES = 8000


def coefficients_mp(act: Activation, B: int, K: int, dps: int = 20, point: Point = PHI):
    """``a_k``, ``k < K``, of ``z^m phi^p phi'^q`` at ``dps`` digits: ``(values, abs_errors)``.

    Homogeneous ``phi``: closed form (errors ~ rounding). Otherwise quadrature at two
    resolutions with at least ``2K`` nodes; the error is their difference (the coarser rule's
    error; rounding at 15 guard digits is far below it). Trapezoid rule where the window
    truncation is deep (its ``2h`` sub-rule is the coarser resolution, from the same pass),
    Gauss-Legendre split at the kinks otherwise (as :func:`.mp_route.moments_gegenbauer_mp`).
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
        panels0 = 1
        while 6 * 2 ** (PANEL_LEVEL_MP - 1) * panels0 < 2 * K + 32:
            panels0 *= 2
        results = []
        step = 0
        while True:
            if trap:
                # levels h and 2h of one node set: both resolutions from one pass
                nodes, wls = trapezoid_nodes_mp(W, max(32, (K + 32) // 2) * 2 ** (step + 1))
                hi, lo = _project(act, B, nodes, wls[:2], point, K, prec)
            else:
                nodes, wls = gauss_nodes_mp(act, W, root, panels0 * 2**step, prec)
                results.append(_project(act, B, nodes, wls[:1], point, K, prec)[0])
                if len(results) < 2:
                    step += 1
                    continue
                hi, lo = results[-1], results[-2]
            step += 1
            scale = mpmath.sqrt(mpmath.fsum(v * v for v in hi))
            diff = max(abs(x - y) for x, y in zip(hi, lo))
            if diff <= tol * scale or len(nodes) > _MAX_NODES:
                break
        errs = [abs(x - y) + scale * mpmath.mpf(10) ** (-dps - 10) for x, y in zip(hi, lo)]
        return [+v for v in hi], [+e for e in errs]


def _project(act: Activation, B: int, nodes, weight_levels, point: Point, K: int, prec: int):
    """``a_k = sum_i wt_i F(z_i) e_k(t_i)``, ``k < K``, for each weight level (normalised to sum
    1) on the angle nodes: per level the list of ``a_k`` (mpmath numbers).

    ``e_k`` by the orthonormal recurrence (as :func:`.grid.project`), in Arb at ``prec`` bits;
    ``cos^{B-3} d = exp((B-3) log1p(-2 sin^2(d/2)))`` (relative accuracy at any ``B``).
    """
    with arbmath.precision(prec):
        Bm = arb(B)
        lam = (Bm - 3) / 2
        root = (Bm - 1).sqrt()
        d = [arbmath.from_mpf(x) for x in nodes]
        t = [x.sin() for x in d]
        z = [root * ti for ti in t]
        half = [(x / 2).sin() for x in d]
        cw = [((Bm - 3) * (-2 * s * s).log1p()).exp() for s in half]
        values = _point_values(act, point, z, prec)
        levels = []
        for wl in weight_levels:
            # nested trapezoid levels use every stride-th node
            stride = next(s for s in range(1, len(wl) + 1) if all(
                (w != 0) == (i % s == 0) for i, w in enumerate(wl)))
            wt = [arbmath.from_mpf(w) * c for w, c in zip(wl[::stride], cw[::stride])]
            norm = sum(wt, arb(0))
            levels.append((stride, [w / norm * v for w, v in zip(wt, values[::stride])]))
        out = [[] for _ in levels]
        e_prev, e_cur, beta_prev = [arb(0)] * len(t), [arb(1)] * len(t), arb(0)
        for k in progress(range(K), f"a_k at {len(t)} nodes", K):
            for (stride, wf), res in zip(levels, out):
                s = sum(map(operator.mul, wf, e_cur[::stride]), arb(0))
                res.append(arbmath.to_mpf(s))
            kk = k + 1
            beta = (kk * (kk + 2 * lam - 1) / (4 * (kk + lam) * (kk + lam - 1))).sqrt()
            inv = 1 / beta
            e_next = [(ti * ec - beta_prev * ep) * inv for ti, ec, ep in zip(t, e_cur, e_prev)]
            e_prev, e_cur, beta_prev = e_cur, e_next, beta
        return out


def _point_values(act: Activation, point: Point, z: list, prec: int) -> list:
    """``z^m phi(z)^p phi'(z)^q`` at the nodes (Arb; powers by multiplication, as arb's pow
    of a ball containing 0 is NaN)."""
    phi = arbmath.arb_function(act.expr, prec) if point.p else None
    dphi = arbmath.arb_function(act.derivative, prec) if point.q else None
    out = []
    for zi in z:
        factors = [zi] * point.m
        factors += [_as_arb(phi(zi))] * point.p if point.p else []
        factors += [_as_arb(dphi(zi))] * point.q if point.q else []
        val = arb(1)
        for x in factors:
            val *= x
        out.append(val)
    return out


def _as_arb(value) -> arb:
    """An arb from an arb or a number (a constant branch of ``phi`` evaluates to a number)."""
    return value if isinstance(value, arb) else arbmath.from_mpf(value)
