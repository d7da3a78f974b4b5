"""Angle nodes at mpmath precision: the truncated window, nested trapezoid levels where the
truncation is deep, composite Gauss-Legendre split at the kinks otherwise."""

from __future__ import annotations

import math

import mpmath
import sympy as sp

from bnmft.derive import Activation

from ..rules import gauss_legendre_mp, tanh_sinh_mp


def window_angle_mp(B, digits):
    """Half-width of the angle window where ``cos^{B-3} d >= 10^-digits`` (mpmath)."""
    Bm = mpmath.mpf(B)
    one_minus_cos = -mpmath.expm1(-digits * mpmath.log(10) / (Bm - 3))
    return min(2 * mpmath.asin(mpmath.sqrt(one_minus_cos / 2)), mpmath.pi / 2)


def _mp_number(value: sp.Expr):
    """An exact SymPy real (a kink) at the current mpmath precision."""
    if value.is_Rational:
        return mpmath.mpf(value.p) / value.q
    return mpmath.mpf(str(sp.N(value, mpmath.mp.dps + 5)))


def use_trapezoid(B, digits) -> bool:
    """Trapezoid rule only where the truncation is deep (``cos W >= 0.15``): the weight is then
    Gaussian-like at the window ends (see :data:`.grid.TRAPEZOID_MIN_B`)."""
    return mpmath.mpf(10) ** (-mpmath.mpf(digits) / (mpmath.mpf(B) - 3)) >= mpmath.mpf("0.15")


#: Panel rule of the mpmath Gauss-Legendre route: mpmath's degree-6 rule (96 nodes); finer
#: resolutions are composite (2, 4, 8... panels per piece), so the expensive high-degree
#: node computation of mpmath is never needed.
PANEL_LEVEL_MP = 5


def gauss_nodes_mp(act: Activation, W, root, panels: int, prec: int):
    """Composite Gauss-Legendre (tanh-sinh for irrational exponents) nodes ``(d, [w])`` on
    ``[-W, W]`` split at the kinks, ``panels`` panels per piece, with the power substitution
    at kink ends (as :func:`.grid._map_piece`)."""
    if act.kink_power is None:
        level = 3 + int(round(math.log2(panels)))
        rule, power, panels = tanh_sinh_mp(level, prec), 1, 1
    else:
        rule, power = gauss_legendre_mp(PANEL_LEVEL_MP, prec), act.kink_power
    if panels > 1:
        rule = [((j + u) / panels, (panels - 1 - j + v) / panels, w / panels)
                for j in range(panels) for u, v, w in rule]
    brk = {-W: False, W: False}
    for k in act.kinks:
        kap = _mp_number(k) / root
        if abs(kap) < 1:
            dk = mpmath.asin(kap)
            if -W < dk < W:
                brk[dk] = True
    keys = sorted(brk)
    pieces = []
    for a, b in zip(keys[:-1], keys[1:]):
        ka, kb = brk[a] and power > 1, brk[b] and power > 1
        if ka and kb:
            m = (a + b) / 2
            pieces += [(a, m, True, False), (m, b, False, True)]
        else:
            pieces.append((a, b, ka, kb))
    nodes, weights = [], []
    for a, b, ka, kb in pieces:
        span = b - a
        for u, v, w in rule:
            if ka:
                nodes.append(a + span * u**power)
                weights.append(power * span * u ** (power - 1) * w)
            elif kb:
                nodes.append(b - span * v**power)
                weights.append(power * span * v ** (power - 1) * w)
            else:
                nodes.append(a + span * u if u < 0.5 else b - span * v)
                weights.append(span * w)
    return nodes, [weights]


def trapezoid_nodes_mp(W, M: int):
    """Trapezoid nodes on ``[-W, W]`` (``4M + 1``) and the weights of the ``h, 2h, 4h`` rules."""
    N = 4 * M + 1
    nodes = [W * (mpmath.mpf(2 * i - (N - 1)) / (N - 1)) for i in range(N)]
    levels = []
    for step in (1, 2, 4):
        w = [mpmath.mpf(1) if i % step == 0 else mpmath.mpf(0) for i in range(N)]
        w[0] = w[-1] = mpmath.mpf(1) / 2
        levels.append(w)
    return nodes, levels
