"""Chebyshev interpolation in Arb ball arithmetic, for the inner integral of a 2-D quadrature.

For smooth ``phi`` the inner integral of a two-point sphere moment, ``F(v) = E[g(z2) | v]``
as a function of the outer variable ``v``, is analytic on the whole outer window and much
smoother than the outer integrand itself (it is an average of ``g`` over a chord; its
singularities lie where a chord *end* meets a singularity of ``g``, at a distance that grows
with ``B``). It is therefore evaluated at ``m`` Chebyshev-Lobatto points only and
interpolated at the outer quadrature nodes, instead of being integrated afresh at each of
them: the cost of the 2-D rule drops from ``n_outer x n_inner`` to ``m x n_inner`` integrand
points.

The interpolant on ``m = 2^j + 1`` Lobatto points ``x_k = cos(k pi/(m-1))`` is
``p(x) = sum_k c_k T_k(x)`` with the discrete Chebyshev transform
``c_k = 2/(m-1) sum_j'' f(x_j) cos(jk pi/(m-1))`` (double prime: first and last terms
halved; ``c_0``, ``c_{m-1}`` halved too; Trefethen, *Approximation Theory and Approximation
Practice*, ch. 3 and 8). The points are nested under doubling of ``m``, so the interpolant on
every other point (``(m+1)/2`` points) comes free and the difference of the two at the outer
nodes estimates the error of the coarser one; for an analytic ``F`` the error decays
geometrically in ``m`` (ATAP Thm 8.2), so the finer interpolant's error is far below it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from flint import arb, arb_mat

from . import arbmath
from .inner import antisymmetric


@lru_cache(maxsize=64)
def lobatto_cosines(m: int, bits: int) -> tuple:
    """``cos(k pi/(m-1))``, ``k = 0 .. m-1`` (arb at ``bits``), the Chebyshev-Lobatto points;
    exactly antisymmetric (``x_(m-1-k) = -x_k``, the middle one 0), as the points are."""
    with arbmath.precision(bits):
        pi = arb.pi()
        half = [(pi * k / (m - 1)).cos() for k in range(m // 2)]
        middle = [arb(0)] if m % 2 else []
        return tuple(half + middle + [-c for c in reversed(half)])


@lru_cache(maxsize=64)
def transform_matrix(m: int, bits: int) -> arb_mat:
    """The ``m x m`` matrix taking values at the Lobatto points to Chebyshev coefficients."""
    with arbmath.precision(bits):
        pi = arb.pi()
        # cos(jk pi/(m-1)) takes the 2(m-1) values cos(l pi/(m-1)), l = jk mod 2(m-1)
        scale = arb(2) / (m - 1)
        table = [(pi * l / (m - 1)).cos() * scale for l in range(2 * (m - 1))]
        halves = [table[l] / 2 for l in range(2 * (m - 1))]
        quarters = [table[l] / 4 for l in range(2 * (m - 1))]
        period = 2 * (m - 1)
        rows = []
        for k in range(m):
            edge_k = k in (0, m - 1)
            row = []
            for j in range(m):
                l = (j * k) % period
                halved = edge_k + (j in (0, m - 1))
                row.append(quarters[l] if halved == 2 else halves[l] if halved else table[l])
            rows.append(row)
        return arb_mat(rows)


def chebyshev_matrix(xs, m: int) -> arb_mat:
    """``T_k(x_i)``, ``k < m``, as an ``len(xs) x m`` arb matrix (:class:`ChebyshevRows`)."""
    return ChebyshevRows(xs).matrix(m)


class ChebyshevRows:
    """``T_k(x_i)`` at fixed points ``x_i``, extended to more ``k`` as needed; ``matrix(m)``
    is the ``len(xs) x m`` arb matrix of ``k < m`` (each built once).

    The recurrence ``T_{k+1} = 2x T_k - T_{k-1}`` runs on midpoints (exact balls, radius
    dropped at each step): it is stable on ``[-1, 1]`` in rounded arithmetic (error
    ``O(k^2 2^-prec)``), but ball arithmetic bounds its radius by the recurrence with
    ``|2x|``, which grows like ``(1 + sqrt 2)^k`` (``10^98`` at ``k = 256``), and ``arb_mat``
    products then evaluate such rows at a correspondingly reduced precision."""

    def __init__(self, xs):
        xs = list(xs)
        # symmetric points (x_(n-1-i) = -x_i exactly): T_k(-x) = (-1)^k T_k(x), and the
        # recurrence on -x gives exactly the negated values, so only half the rows are run
        self._mirror = antisymmetric(xs)
        self._n = len(xs)
        run = xs[:(len(xs) + 1) // 2] if self._mirror else xs
        self.rows = [[arb(1), x.mid()] for x in run]
        self._two_x = [2 * row[1] for row in self.rows]
        self._matrices: dict = {}
        self._angles = np.arccos(np.clip([float(x) for x in xs], -1, 1))
        self._floats: dict = {}

    def floats(self, m: int) -> np.ndarray:
        """``T_k(x_i) = cos(k acos x_i)``, ``k < m``, in float64 (for sizes and errors)."""
        if m not in self._floats:
            self._floats[m] = np.cos(np.outer(self._angles, np.arange(m)))
        return self._floats[m]

    def matrix(self, m: int) -> arb_mat:
        if m not in self._matrices:
            for row, two_x in zip(self.rows, self._two_x):
                while len(row) < m:
                    row.append((two_x * row[-1] - row[-2]).mid())
            rows = [row[:m] for row in self.rows]
            if self._mirror:
                rows += [[-v if k % 2 else v for k, v in enumerate(row)]
                         for row in rows[:self._n - len(rows)][::-1]]
            self._matrices[m] = arb_mat(rows)
        return self._matrices[m]


def _columns(mat: arb_mat, cols) -> arb_mat:
    cols = list(cols)
    return arb_mat([[mat[i, j] for j in cols] for i in range(mat.nrows())])


#: ``T_k(x_i)`` of outer rules that recur (the same Gauss-Legendre nodes in the standard
#: variable at every batch size), keyed by the caller's name for the rule and the precision.
_T_CACHE: dict = {}


def _cached_rows(key, xs, bits: int) -> ChebyshevRows:
    full = (key, bits)
    if full not in _T_CACHE:
        if len(_T_CACHE) > 16:
            _T_CACHE.clear()
        with arbmath.precision(bits):
            _T_CACHE[full] = ChebyshevRows(xs)
    return _T_CACHE[full]


class Interpolation:
    """Values ``F(v)`` (several columns) at nested Lobatto points of ``[-W, W]`` in ``v``.

    ``evaluate(cols)`` gives an ``n x P`` arb matrix of the current interpolant at the outer
    points ``xs`` (given in the standard variable ``v/W`` on ``[-1, 1]``) and the same for the
    interpolant on every other point; ``refine()`` doubles ``m``, evaluating ``F`` only at the
    new points. ``many(points)``, if given, evaluates ``F`` at a list of points in one call.
    """

    def __init__(self, func, half_width, xs, bits: int, m: int = 17, cache_key=None,
                 many=None):
        self.func, self.W, self.xs, self.bits = func, half_width, list(xs), bits
        self.many = many  # the values at a list of points in one call, if given
        self.cache_key = cache_key
        self._own_rows = None
        self.m = m
        self.values = self._at([self.W * c for c in lobatto_cosines(m, bits)])

    def _at(self, points) -> list:
        if self.many is not None:
            return self.many(points)
        return [self.func(v) for v in points]

    def refine(self) -> None:
        m = 2 * self.m - 1
        cos = lobatto_cosines(m, self.bits)
        new = self._at([self.W * cos[k] for k in range(1, m, 2)])
        values = []
        for j in range(self.m - 1):
            values += [self.values[j], new[j]]
        self.values = values + [self.values[-1]]
        self.m = m

    def _rows(self) -> ChebyshevRows:
        if self.cache_key is not None:
            return _cached_rows(self.cache_key, self.xs, self.bits)
        if self._own_rows is None:
            with arbmath.precision(self.bits):
                self._own_rows = ChebyshevRows(self.xs)
        return self._own_rows

    def weighted(self, left: arb_mat, P: int) -> tuple:
        """The interpolants at ``xs`` for values whose first ``P`` columns are signed and the
        others sizes, as the callers' outer sums need them:

        * ``signed``: ``left x fine`` (first ``P`` columns; arb), as ``(left x T) x C``
          (``T`` the ``n x m`` Chebyshev matrix, ``C`` the coefficients): ``n_left x m``
          products per column instead of ``n x m``;
        * ``spread``: ``|fine - coarse|`` at the nodes (first ``P`` columns), the
          interpolation's error estimate, and ``sizes``: ``|fine|`` (the other columns), in
          float64 from the coefficient differences and the sizes' coefficients scaled by a
          power of two per column (their range is any arb's), as ``(floats, exponents)``.
        """
        with arbmath.precision(self.bits):
            m, h = self.m, (self.m + 1) // 2
            C = transform_matrix(m, self.bits) * arb_mat([list(v) for v in self.values])
            Ch = transform_matrix(h, self.bits) * arb_mat([list(v) for v in self.values[::2]])
            ncols = C.ncols()
            signed = (left * self._rows().matrix(m)) * _columns(C, range(P))
            diff = [[C[k, j] - Ch[k, j] if k < h else C[k, j] for j in range(P)]
                    for k in range(m)]
            Tf = self._rows().floats(m)
            spread_f, spread_e = arbmath.scaled_columns(diff)
            sizes_f, sizes_e = arbmath.scaled_columns([[C[k, j] for j in range(P, ncols)]
                                                for k in range(m)])
            spread = np.abs(Tf @ spread_f)
            sizes = np.abs(Tf @ sizes_f)
        return signed, (spread, spread_e), (sizes, sizes_e)

    def evaluate(self) -> tuple[arb_mat, arb_mat]:
        """``(fine, coarse)``: the interpolants on ``m`` and on ``(m+1)/2`` points at ``xs``
        (the coarse one with the first ``(m+1)/2`` of the ``T_k`` only)."""
        with arbmath.precision(self.bits):
            m, h = self.m, (self.m + 1) // 2
            V = arb_mat([list(v) for v in self.values])
            C = transform_matrix(m, self.bits) * V
            Vh = arb_mat([list(v) for v in self.values[::2]])
            Ch = transform_matrix(h, self.bits) * Vh
            rows = self._rows()
            return rows.matrix(m) * C, rows.matrix(h) * Ch
