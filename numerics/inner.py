"""Inner integrals of the 2-D quadratures at many outer points at once (Arb matrix products).

For smooth ``phi`` the inner integral of a two-point sphere moment at an outer point ``i`` runs
along a line ``z_ij = a_i + b_i s_j`` (``s_j`` the inner rule's nodes, the same for every
row): the sphere route's ``z2 = sqrt(B-1) (rho sin d1 + sigma cos d1 sin d2)``, the Cartesian
route's chord ``z2 = c + h x``. Its columns are

    S_k(i) = sum_j w_j D_ij z_ij^m phi(z_ij)^p phi'(z_ij)^q,     (m, p, q) = points[k],

``D_ij >= 0`` an optional density at each node. The powers of ``z`` are taken out by the
binomial theorem, ``z^m = sum_e C(m, e) a^(m-e) b^e s^e``: then only ``phi^p phi'^q`` (times
``D``) is formed at each node, once per distinct ``(p, q)``, and the sums over ``j`` are one
``arb_mat`` product with the columns ``w_j s_j^e`` (in C, not in the interpreter), instead of
a multiply-and-add per node and column. The absolute columns
``A_k(i) = sum_e C(m, e) |a|^(m-e) |b|^e sum_j w_j |s_j|^e D_ij |phi^p phi'^q|`` bound
``sum_j w_j D_ij |z^m phi^p phi'^q|`` from above (``|a + b s| <= |a| + |b s|``): they serve
only as the size against which cancellation is measured, and are summed in float64
(balls where a term would leave its range).

Rounding: each ``S_k`` is a sum of at most ``m + 1`` terms each bounded by ``A_k``, so its
rounding error is a few units of ``2^-prec A_k``, as for the sum formed node by node.
"""

from __future__ import annotations

from math import comb

import numpy as np
from flint import arb, arb_mat


def line_sums(pair, points, shifts, scales, nodes, weights, use_dphi: bool = True,
              density=None, parity: int = 0) -> list:
    """Rows ``[S_1 .. S_P, A_1 .. A_P]`` (see the module docstring) for the lines
    ``z = shifts[i] + scales[i] * nodes[j]``; ``pair(z) -> (phi, phi')`` on arbs, ``points``
    the ``(m, p, q)`` of each column, ``weights`` the inner rule's (positive) weights.
    ``density(Z)``: given the row-major list of all ``z_ij``, the row-major list of
    ``D_ij >= 0`` (or None for ``D = 1``). ``parity``: ``phi(-z) = parity * phi(z)`` (1 even,
    -1 odd, 0 neither); on :func:`mirrored` lines ``phi`` is then evaluated at half the
    nodes (:func:`pair_values`)."""
    rows, n = len(shifts), len(nodes)
    if not rows:
        return []
    points = list(points)
    zero, one = arb(0), arb(1)
    Z = (arb_mat([[a, b] for a, b in zip(shifts, scales)])
         * arb_mat([[one] * n, list(nodes)])).entries()
    if parity and not mirrored(shifts, scales, nodes):
        parity = 0
    F, G = pair_values(pair, Z, use_dphi, parity)
    D = density(Z) if density is not None else None
    top = max(pt.m for pt in points)
    powers = [[one] * n]
    for _ in range(top):
        powers.append([p * s for p, s in zip(powers[-1], nodes)])
    cols = arb_mat([[w * powers[e][j] for e in range(top + 1)] for j, w in enumerate(weights)])
    cols_abs = None
    sums = {}
    for base in sorted({(pt.p, pt.q) for pt in points}):
        vals = _base_values(base, F, G, len(Z), one)
        if D is not None:
            vals = [d * v for d, v in zip(D, vals)]
        signed = arb_mat([vals[i * n:(i + 1) * n] for i in range(rows)]) * cols
        modulus = _modulus_sums(vals, rows, n, weights, powers)
        if modulus is None:  # outside float64's range: the same sums in balls
            if cols_abs is None:
                cols_abs = arb_mat([[w * abs(powers[e][j]) for e in range(top + 1)]
                                    for j, w in enumerate(weights)])
            mat_abs = arb_mat([[abs(v) for v in vals[i * n:(i + 1) * n]] for i in range(rows)])
            product = mat_abs * cols_abs
            modulus = [[product[i, e] for e in range(top + 1)] for i in range(rows)]
        sums[base] = (signed, modulus)
    out = []
    for i, (a, b) in enumerate(zip(shifts, scales)):
        a_abs, b_abs = abs(a), abs(b)
        vals, absl = [], []
        for pt in points:
            signed, modulus = sums[(pt.p, pt.q)]
            v = s = zero
            for e in range(pt.m + 1):
                c = comb(pt.m, e)
                v += c * _ipow(a, pt.m - e, one) * _ipow(b, e, one) * signed[i, e]
                s += c * _ipow(a_abs, pt.m - e, one) * _ipow(b_abs, e, one) * modulus[i][e]
            vals.append(v)
            absl.append(s)
        out.append(vals + absl)
    return out


def antisymmetric(values) -> bool:
    """``values[-1-i]`` is ``-values[i]`` exactly as balls (midpoint and radius; the sum of
    two midpoints is 0 only if it is exactly 0: rounding never makes a nonzero sum 0)."""
    k = len(values)
    return all((values[i].mid() + values[k - 1 - i].mid()) == 0
               and values[i].rad() == values[k - 1 - i].rad() for i in range((k + 1) // 2))


def symmetric(values) -> bool:
    """``values[-1-i]`` is ``values[i]`` exactly as balls."""
    k = len(values)
    return all((values[i].mid() - values[k - 1 - i].mid()) == 0
               and values[i].rad() == values[k - 1 - i].rad() for i in range(k // 2))


def mirrored(shifts, scales, nodes) -> bool:
    """Whether the lines ``z_ij = a_i + b_i s_j`` are symmetric under ``z -> -z`` with the
    order reversed: ``a`` and ``s`` antisymmetric, ``b`` symmetric (as balls, so the layout
    is the symmetric one: the true points of a symmetric rule satisfy
    ``z_(r-1-i)(n-1-j) = -z_ij`` exactly). The row-major list of ``z_ij`` read backwards is
    then its negation."""
    return antisymmetric(shifts) and symmetric(scales) and antisymmetric(nodes)


def pair_values(pair, Z, use_dphi: bool, parity: int = 0) -> tuple:
    """``(F, G)``: ``phi`` and ``phi'`` (None unless ``use_dphi``) at every point of ``Z``.

    ``parity`` (1: ``phi`` even, -1: odd; 0: neither) says that ``Z`` read backwards is its
    own negation (the caller's layout, :func:`mirrored`): ``phi`` is then evaluated at the
    first ``ceil(N/2)`` points only and ``phi(z_(N-1-k)) = parity * phi(z_k)``,
    ``phi'(z_(N-1-k)) = -parity * phi'(z_k)``; the balls stay enclosures, since ``-Z_k``
    contains the true point ``z_(N-1-k)``."""
    N = len(Z)
    h = (N + 1) // 2 if parity else N
    if use_dphi:
        fg = [pair(Z[k]) for k in range(h)]
        F = [v[0] for v in fg]
        G = [v[1] for v in fg]
    else:
        F = [pair(Z[k])[0] for k in range(h)]
        G = None
    if parity:
        rest = N - h
        F += _reflected(F, rest, parity)
        if G is not None:
            G += _reflected(G, rest, -parity)
    return F, G


def _reflected(values, count: int, sign: int) -> list:
    """``sign * values[count-1], ..., sign * values[0]``."""
    head = values[:count][::-1]
    return head if sign > 0 else [-v for v in head]


#: Largest modulus for which the absolute columns are summed in float64.
_FLOAT_LIMIT = 1e280


def _modulus_sums(vals, rows: int, n: int, weights, powers):
    """``sum_j w_j |s_j|^e |vals_ij|`` for every row and power, in float64 (they are sizes,
    not values: 16 digits are plenty; an underflowing term only makes the size smaller,
    which makes every use of it stricter), as exact balls; None if a term may overflow."""
    mods = np.abs(np.array([float(v) for v in vals]).reshape(rows, n))
    if not np.all(mods < _FLOAT_LIMIT):  # also NaN
        return None
    w = np.array([float(v) for v in weights])
    cols = np.stack([w * np.abs(np.array([float(p) for p in power])) for power in powers],
                    axis=1)
    sums = mods @ cols
    return [[arb(float(v)) for v in row] for row in sums]


def _base_values(base, F, G, size: int, one) -> list:
    """``phi^p phi'^q`` at every node (products, as arb's pow is NaN on balls about 0)."""
    p, q = base
    vals = None
    for col, times in ((F, p), (G, q)):
        for _ in range(times):
            vals = list(col) if vals is None else [v * c for v, c in zip(vals, col)]
    return [one] * size if vals is None else vals


def _ipow(x, n: int, one):
    out = one
    for _ in range(n):
        out = out * x
    return out
