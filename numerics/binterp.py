"""Sphere moments of a kinked phi at many batch sizes: interpolation in ``1/B``.

A sphere moment ``E_B[F]`` is an integral against the one- or two-point density,
``(1 - z^2/(B-1))^((B-4)/2)`` or ``(1 - Q)^((B-5)/2)`` normalised (THEORY.md, the sphere
picture); both are analytic in ``B`` wherever they are integrable (``B > 3``), for every
``F`` with finite moments, kinked or not. As a function of ``eps = 1/B`` a moment is
therefore analytic on a neighbourhood of ``[1/B_max, 1/MIN_B]`` (the nearest singularity is
at ``eps >= 1/4``), and Chebyshev-Lobatto interpolation in ``eps`` converges geometrically:
for elu, 17 nodes on ``[10^-6, 1/16]`` (or ``1/8``) reproduce the per-B quadrature at
integer B to 2e-15. Node values are the float64 sphere quadrature at real ``B``
(:func:`.sphere.moments_float_estimated`, the formulas hold for real ``B``).

Error estimate: the interpolant on ``n`` nodes is compared with the one on the nested
``(n + 1)/2`` nodes (every other node, an independent second evaluation); its difference,
plus the node errors carried through the interpolant (``sum_j |l_j(eps)| err_j``, at most
the Lebesgue constant times the largest), is the error claimed. Node sets double (9, 17,
33) until that meets ``rtol`` at all but fewer batch sizes than the next set would add
nodes; those are left to the caller (``ok`` False). Elu: 33 nodes, the interpolants differ by about 1e-15, and all but B = 26 ... 28
pass; there the node errors carried through reach 1e-13 of the two-point moments (the per-B
route claims up to 1e-14 of the larger moments at nearby nodes, a conservative bound: the
difference of its last two levels).
"""

from __future__ import annotations

import numpy as np

from . import sphere

#: Smallest batch size interpolated (below, the per-B quadrature; the moments are analytic in
#: 1/B well past it, the convergence is faster away from B = 4).
MIN_B = 12
#: Node counts tried, each set containing the previous one.
NODE_COUNTS = (9, 17, 33)
#: Fewest batch sizes for which interpolating is cheaper than the per-B quadrature.
MIN_COUNT = 48


def lobatto(n: int, lo: float, hi: float) -> np.ndarray:
    """Chebyshev-Lobatto points on ``[lo, hi]``, ascending (``n = 2m + 1``: the points of
    ``m + 1`` are every other one)."""
    theta = np.pi * np.arange(n) / (n - 1)
    return lo + (hi - lo) * (1 - np.cos(theta)) / 2


def lagrange_basis(x: np.ndarray, xe: np.ndarray) -> np.ndarray:
    """``L[i, j] = l_j(xe[i])``, the Lagrange basis of the Chebyshev-Lobatto points ``x`` at
    ``xe``, from the second barycentric formula (weights ``(-1)^j``, halved at the ends:
    Berrut and Trefethen, SIAM Review 46 (2004), eq. 5.2)."""
    n = len(x)
    w = (-1.0) ** np.arange(n)
    w[0] *= 0.5
    w[-1] *= 0.5
    diff = xe[:, None] - x[None, :]
    exact = diff == 0
    diff[exact] = 1.0
    t = w / diff
    basis = t / t.sum(axis=1)[:, None]
    rows, cols = np.nonzero(exact)
    basis[rows] = 0.0
    basis[rows, cols] = 1.0
    return basis


def moments_interpolated(act, moments, Bs, rtol: float = 3e-14):
    """``(values, errors, ok)`` for the batch sizes ``Bs`` (all ``>= MIN_B``): ``values`` and
    ``errors`` ``{moment: array over Bs}`` (absolute errors), ``ok`` a boolean array, False
    where the estimated error exceeds ``rtol`` of the moment (floored at 1e-3 of the largest
    moment of its kind at that B, as :func:`.sphere.moments_float_estimated`)."""
    moments = list(moments)
    Bs = np.asarray(Bs, dtype=float)
    lo, hi = 1.0 / Bs.max(), 1.0 / MIN_B
    eps = 1.0 / Bs
    known: dict = {}  # node eps -> (values, errors)
    previous = None
    for n in NODE_COUNTS:
        x = lobatto(n, lo, hi)
        if previous is not None:
            x[::2] = previous[0]  # the nested points exactly (no re-evaluation by rounding)
        for xi in x:
            if xi not in known:
                vals, errs = sphere.moments_float_estimated(act, moments, 1.0 / xi)
                known[xi] = ([vals[mo] for mo in moments], [errs[mo] for mo in moments])
        fx = np.array([known[xi][0] for xi in x])
        basis = lagrange_basis(x, eps)
        got = basis @ fx
        if previous is not None:
            coarse = lagrange_basis(previous[0], eps) @ previous[1]
            # the node errors carried through the interpolant: sum_j |l_j(eps)| err_j
            node_err = np.abs(basis) @ np.array([known[xi][1] for xi in x])
            err = np.abs(got - coarse) + node_err
            scale = np.maximum(np.abs(got), 1e-3 * np.abs(got).max(axis=1, keepdims=True))
            ok = np.all(err <= rtol * np.maximum(scale, 1e-300), axis=1)
            # the next set costs n - 1 new nodes: cheaper to leave fewer failures per B
            if np.count_nonzero(~ok) < n - 1 or n == NODE_COUNTS[-1]:
                values = {mo: got[:, i] for i, mo in enumerate(moments)}
                errors = {mo: err[:, i] for i, mo in enumerate(moments)}
                return values, errors, ok
        previous = (x, fx)
    raise AssertionError("unreachable")
