"""Sphere moments of a kinked phi at many batch sizes: interpolation in ``1/B``.

A sphere moment ``E_B[F]`` is an integral against the one- or two-point density,
``(1 - z^2/(B-1))^((B-4)/2)`` or ``(1 - Q)^((B-5)/2)`` normalised (THEORY.md, the sphere
picture); both are analytic in ``B`` wherever they are integrable (``B > 3``), for every
``F`` with finite moments, kinked or not. As a function of ``eps = 1/B`` a moment is
therefore analytic on a neighbourhood of ``[1/B_max, 1/MIN_B]`` (the nearest singularity is
at ``eps >= 1/4``), and Chebyshev-Lobatto interpolation in ``eps`` converges geometrically:
for elu, 17 nodes on ``[10^-6, 1/16]`` (or ``1/8``) reproduce the per-B quadrature at
integer B to 2e-15. Node values are the float64 sphere quadrature at real ``B`` (the formulas
hold for real ``B``): :func:`.sphere.moments_float_arrays`, all nodes in one vectorised pass,
with errors that include a rounding allowance relative to the
integrand's modulus.

Error estimate: the node errors carried through the interpolant (``sum_j |l_j(eps)| err_j``)
plus its truncation error, estimated (:func:`truncation_estimate`) from the nested
interpolants on every other and every fourth node by geometric convergence. Elu on
``[10^-6, 1/12]``: on 5, 9, 17 nodes the sup-norm distances to the 33-node interpolant are
about 1e-7, 1e-13, 1e-15 (node rounding) of the moments, so 17 nodes suffice and the
estimate is dominated by the node errors. Node sets double (17, 33) until all but fewer batch
sizes than the next set would add nodes pass ``rtol`` (or the rounding level the per-B
quadrature itself would claim, :data:`ROUNDING_MARGIN`); those are left to the caller
(``ok`` False).
"""

from __future__ import annotations

import numpy as np

from . import sphere

#: Smallest batch size interpolated (below, the per-B quadrature; the moments are analytic in
#: 1/B well past it, the convergence is faster away from B = 4).
MIN_B = 12
#: Node counts tried, each set containing the previous one.
NODE_COUNTS = (17, 33)
#: Interpolated errors up to this multiple of the nodes' rounding allowance (carried through
#: the interpolant) pass, however small the moment: the per-B quadrature claims no less.
ROUNDING_MARGIN = 4
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


def truncation_estimate(x, fx, grid) -> np.ndarray:
    """Estimated sup-norm error (per moment) of the interpolant on the Chebyshev-Lobatto points
    ``x`` (``n = 4m + 1``) of the values ``fx`` (``(n, moments)``), from the nested interpolants
    on ``2m + 1`` and ``m + 1`` of the points: with the sup-norm distances ``D2``, ``D4`` of
    theirs to the full one on ``grid``, geometric convergence (error ``~ rho^-n``, ``D4/D2 =
    rho^m``) gives ``D2 (D2/D4)^2`` for the full interpolant, never taken below
    ``D2^1.5`` relative to the moment's size (the squaring may be incomplete); without
    convergence (``D2 >= D4``) the larger distance."""
    full = lagrange_basis(x, grid) @ fx
    d2 = np.abs(lagrange_basis(x[::2], grid) @ fx[::2] - full).max(axis=0)
    d4 = np.abs(lagrange_basis(x[::4], grid) @ fx[::4] - full).max(axis=0)
    size = np.maximum(np.abs(full).max(axis=0), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        model = np.where(d4 > 0, d2 * (d2 / d4) ** 2, 0.0)
    floor = size * (d2 / size) ** 1.5
    return np.where(d2 < d4, np.maximum(model, floor), np.maximum(d2, d4))


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
            x[::2] = previous  # the nested points exactly (no re-evaluation by rounding)
        new = [xi for xi in x if xi not in known]
        if new:
            vals, errs, absolute = sphere.moments_float_arrays(act, moments, 1.0 / np.array(new))
            for j, xi in enumerate(new):
                known[xi] = (vals[:, j], errs[:, j], absolute[:, j])
        fx = np.array([known[xi][0] for xi in x])
        basis = lagrange_basis(x, eps)
        got = basis @ fx
        # the sup norms over the batch sizes and a grid of the interval
        grid = np.concatenate([eps, lobatto(4 * n, lo, hi)])
        trunc = truncation_estimate(x, fx, grid)
        # the node errors carried through the interpolant: sum_j |l_j(eps)| err_j
        node_err = np.abs(basis) @ np.array([known[xi][1] for xi in x])
        err = trunc + node_err
        scale = np.maximum(np.abs(got), 1e-3 * np.abs(got).max(axis=1, keepdims=True))
        # the rounding level the per-B quadrature itself claims (moments that cancel)
        rounding = np.abs(basis) @ (sphere.ROUNDING_VALUE * np.abs(fx)
                                    + sphere.ROUNDING * np.array([known[xi][2] for xi in x]))
        ok = np.all(err <= np.maximum(rtol * np.maximum(scale, 1e-300), ROUNDING_MARGIN * rounding),
                    axis=1)
        # the next set costs n - 1 new nodes: cheaper to leave fewer failures per B
        if np.count_nonzero(~ok) < n - 1 or n == NODE_COUNTS[-1]:
            values = {mo: got[:, i] for i, mo in enumerate(moments)}
            errors = {mo: err[:, i] for i, mo in enumerate(moments)}
            return values, errors, ok
        previous = x
    raise AssertionError("unreachable")
