"""Sphere moments and the gradient rate by Gegenbauer expansion (Funk-Hecke; paper Thm 9).

The second, independent route to the BSB1 numbers (the first is the 2-D hyperspherical
quadrature of :mod:`.sphere`). Notation of :mod:`bnmft.derive.gegenbauer`: ``lambda = (B-3)/2``,
``z = sqrt(B-1) t`` with ``t`` distributed as ``w(t) ~ (1-t^2)^(lambda-1/2)``, orthonormal
Gegenbauer polynomials ``e_k``, ``r_k = C_k(rho)/C_k(1)``, ``rho = -1/(B-1)``, ``c_k = 1 - r_k``.

* One-point moments ``E[z^m phi^p phi'^q]``: one 1-D quadrature.
* Two-point moments, by Funk-Hecke: ``E[F(z1) G(z2)] = sum_k F_k G_k r_k`` with the
  coefficient vectors ``F_k = E_w[F e_k]`` of each point's function.
* Gradient rate, paper Thm 9: ``N / D`` with ``D = sum_{k>=1} c_k a_k^2`` and
  ``N = sum_{k>=1} k(k+2 lambda)/(2 lambda) c_k a_k^2``. The ``a_k`` of ``phi(sqrt(B-1) t)`` decay
  slowly at large ``B`` (like a Hermite series, ``exp(-d sqrt(2k))``) and only like ``k^-2``
  for kinked ``phi``, so the ``c_k = 1`` part of both sums is resummed exactly:

      sum_k a_k^2 = E[phi^2]                                (Parseval)
      sum_k k(k + 2 lambda) a_k^2 = E[(B-1-z^2) phi'(z)^2]   (Dirichlet form of the
                                                             Gegenbauer operator)

  (the second is ``int (1-t^2)^(lambda+1/2) f'^2 / N``, by parts with the Sturm-Liouville
  equation of ``C_k``). What is left, ``sum r_k a_k^2`` and ``sum k(k+2 lambda) r_k a_k^2``,
  converges as fast as ``r_k`` decays (``(k/B)^(k/2)`` for ``k << B``; ``k^-lambda`` beyond):
  ``N = (E[(B-1-z^2) phi'^2] - sum_{k>=1} k(k+2 lambda) r_k a_k^2) / (2 lambda)`` and
  ``D = Var(phi) - sum_{k>=1} r_k a_k^2``. This *split form* is the default; the truncated
  series itself is available (:func:`thm9_series`, :func:`gegenbauer_table`) and, for the
  homogeneous family, accelerated (:func:`thm9_accelerated_mp`).

Quadrature (float64 and mpmath): the angle ``t = sin d``, weight ``cos^{B-3} d``, on the window
where ``cos^{B-3} d >= 10^-36`` (float; ``10^-(2 dps + 12)`` in mpmath) -- not 1e-20: by
Cauchy-Schwarz ``|int_tail f e_k w| <= sqrt(int_tail f^2 w)`` whatever ``k``, while ``e_k`` itself
can be huge out there. Where that truncation is deep (``B >= 48`` in float64) the weight is
Gaussian-like at the window ends and the trapezoid rule converges geometrically with
``~2/pi`` of the Gauss-Legendre nodes; its ``2h`` and ``4h`` sub-rules (every 2nd / 4th node)
give the error estimate for free. Below that, Gauss-Legendre (composite beyond 64 nodes,
nodes from Newton's method at 40 digits: numpy's ``leggauss`` weights are only good to ~1e-14
there) on the window split at the kinks of ``phi`` (power substitution at singular kinks),
with a second rule of ``3n/4`` nodes for the estimate. Weights are normalised by their own
sum (no Gamma functions: nothing overflows at ``B = 10^6``); ``cos^{B-3} d`` is computed as
``exp((B-3) log1p(-2 sin^2(d/2)))``; ``e_k`` by the orthonormal three-term recurrence
``t e_k = beta_{k+1} e_{k+1} + beta_k e_{k-1}`` (stable on ``[-1, 1]``).

Error estimates (absolute, per moment and batch size) add: the spread of the quadrature
levels, the tail of each series extrapolated from the decay of its last terms, and rounding
(``~sqrt(N) eps``). ``K`` (terms) and the nodes grow until the first two are below the
tolerance or a cap is reached; a shortfall is reported in the error, never hidden. Batch
sizes are processed from the largest down, in chunks, so that ``K`` (small at large ``B``,
where ``r_k`` decays fastest) grows only where needed.

Positive-homogeneous ``phi`` (relu, leaky relu, alpha-relu, abs, linear) use the closed-form
coefficients of :mod:`bnmft.derive.gegenbauer` instead of quadrature, and their series are
summed to ``K <= 2^15`` (float) or ``2^14`` (mpmath) terms: with kinks they converge only
algebraically, which limits the digits at small ``B`` (reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import gegenbauer as dg
from bnmft.derive.activation import Activation
from bnmft.derive.moments import Point

from .precision import decimal_string, digits_from_error
from .rules import gauss_legendre_nodes, gauss_legendre_mp, tanh_sinh_float, tanh_sinh_mp

#: The function ``phi`` itself as a point factor.
PHI = Point(0, 1, 0)
#: Weight truncation: nodes where ``cos^{B-3} d < 10^-WINDOW_DIGITS`` are dropped (float route).
WINDOW_DIGITS = 36
_EPS = float(np.finfo(float).eps)


class GegenbauerError(ArithmeticError):
    """The Gegenbauer route cannot evaluate this quantity (message says why)."""


# -- recurrence coefficients -------------------------------------------------------------------


def recurrence_beta(k, lam):
    """``beta_k = sqrt(k (k + 2 lambda - 1) / (4 (k + lambda)(k + lambda - 1)))`` (``k >= 1``):
    ``t e_{k-1} = beta_k e_k + beta_{k-1} e_{k-2}``, derived in
    :func:`bnmft.derive.gegenbauer.recurrence_coefficient`. Works for floats, arrays, mpf."""
    if isinstance(lam, mpmath.mpf) or isinstance(k, mpmath.mpf):
        return mpmath.sqrt(k * (k + 2 * lam - 1) / (4 * (k + lam) * (k + lam - 1)))
    return np.sqrt(k * (k + 2 * lam - 1) / (4 * (k + lam) * (k + lam - 1)))


def r_coefficients(Bs, K: int) -> np.ndarray:
    """``r_k = C_k^lambda(rho) / C_k^lambda(1)``, ``k < K``, for each batch size (float64).

    Normalised three-term recurrence (divide the Gegenbauer recurrence
    ``(k+1) C_{k+1} = 2(k+lambda) t C_k - (k+2 lambda-1) C_{k-1}`` by ``C_{k+1}(1)``):
    ``R_{k+1} = (2(k+lambda) rho R_k - k R_{k-1}) / (k + 2 lambda)``, ``R_0 = 1``, ``R_1 = rho``.
    Forward recurrence is stable for ``|rho| < 1`` (no dominant solution inside the support).
    """
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    if len(Bs) == 1 and K > 64:
        # one batch size: a scalar loop is much faster than K tiny numpy operations
        lam1, rho1 = (float(Bs[0]) - 3) / 2, -1 / (float(Bs[0]) - 1)
        out = [1.0, rho1]
        for k in range(1, K - 1):
            out.append((2 * (k + lam1) * rho1 * out[k] - k * out[k - 1]) / (k + 2 * lam1))
        return np.array(out[:K])[None, :]
    lam = (Bs - 3) / 2
    rho = -1 / (Bs - 1)
    r = np.zeros((len(Bs), max(K, 2)))
    r[:, 0] = 1
    r[:, 1] = rho
    for k in range(1, K - 1):
        r[:, k + 1] = (2 * (k + lam) * rho * r[:, k] - k * r[:, k - 1]) / (k + 2 * lam)
    return r[:, :K]


def c_coefficients(Bs, K: int) -> np.ndarray:
    """``c_k = 1 - r_k`` (paper Thm 9)."""
    return 1 - r_coefficients(Bs, K)


def r_coefficients_mp(B, K: int) -> list:
    """:func:`r_coefficients` at the current mpmath precision for one batch size."""
    B = mpmath.mpf(B)
    lam = (B - 3) / 2
    rho = -1 / (B - 1)
    r = [mpmath.mpf(1), rho]
    for k in range(1, K - 1):
        r.append((2 * (k + lam) * rho * r[k] - k * r[k - 1]) / (k + 2 * lam))
    return r[:K]


# -- float64 quadrature grid --------------------------------------------------------------------


def window_angles(Bs, digits: float = WINDOW_DIGITS) -> np.ndarray:
    """Half-width ``W`` of the angle window: ``cos^{B-3} W = 10^-digits`` (``pi/2`` at most).

    ``acos`` of a number near 1 loses half the digits, so ``W = 2 asin(sqrt((1 - cos W)/2))``
    with ``1 - cos W = -expm1(-digits ln 10 / (B-3))``.
    """
    Bs = np.asarray(Bs, dtype=float)
    one_minus_cos = -np.expm1(-digits * math.log(10) / (Bs - 3))
    return np.minimum(2 * np.arcsin(np.sqrt(one_minus_cos / 2)), np.pi / 2)


def _cos_power(power, d):
    """``cos(d)^power`` as ``exp(power log(1 - 2 sin^2(d/2)))``: accurate for tiny ``d`` and huge
    ``power`` (``B = 10^6``), where ``cos d`` itself rounds to 1."""
    s = np.sin(d / 2)
    with np.errstate(divide="ignore"):
        return np.exp(power * np.log1p(-2 * s * s))


#: Largest Gauss-Legendre rule used as one panel; more nodes make a composite rule.
_GL_PANEL = 64


@lru_cache(maxsize=128)
def _gl_exact(m: int):
    """``m``-point Gauss-Legendre ``(nodes, weights, (1 - nodes)/2)`` on ``[-1, 1]``,
    correctly rounded (see :func:`.rules.gauss_legendre_nodes`)."""
    return gauss_legendre_nodes(m)


@lru_cache(maxsize=64)
def _gl(n: int):
    """Gauss-Legendre on ``[0, 1]`` as ``(u, 1-u, w)``: one rule up to :data:`_GL_PANEL` nodes,
    else equal panels of at most that many nodes (about ``n`` nodes in all)."""
    panels = max(1, -(-n // _GL_PANEL))
    m = -(-n // panels)
    t, w, v1 = _gl_exact(m)  # v1 = (1 - t)/2 without cancellation near t = 1
    u1 = (1 + t) / 2
    u = np.concatenate([(j + u1) / panels for j in range(panels)])
    v = np.concatenate([(panels - 1 - j + v1) / panels for j in range(panels)])
    return u, v, np.tile(w / (2 * panels), panels)


def _rule(n: int, kind: str):
    if kind == "gl":
        return _gl(n)
    level = max(1, int(round(math.log2(max(n, 8) / 8))))
    return tanh_sinh_float(level)


def _map_piece(a, b, rule, power: int, left_kink, right_kink):
    """Nodes and weights of ``rule`` (on [0, 1]) on pieces ``[a, b]`` (arrays ``(nb, P, 1)``).

    A kink end gets the substitution ``d = a + (b-a) s^power`` (then ``|z - k|^(r/power)`` is
    analytic in ``s``); pieces are halved first so that each half has at most one such end.
    Nodes near an end are measured from that end (no cancellation).
    """
    u, v, w = rule
    if power == 1:
        span = b - a
        return np.where(u < 0.5, a + span * u, b - span * v), span * w
    m = (a + b) / 2
    sl, sr = m - a, b - m
    dl = np.where(left_kink, a + sl * u**power, np.where(u < 0.5, a + sl * u, m - sl * v))
    wl = np.where(left_kink, power * sl * u ** (power - 1) * w, sl * w)
    dr = np.where(right_kink, b - sr * v**power, np.where(u < 0.5, m + sr * u, b - sr * v))
    wr = np.where(right_kink, power * sr * v ** (power - 1) * w, sr * w)
    return np.concatenate([dl, dr], axis=-1), np.concatenate([wl, wr], axis=-1)


@dataclass
class _Grid:
    """Quadrature nodes for a chunk of batch sizes (rows) in the angle ``d``.

    ``wt`` has a leading axis of rule levels sharing the nodes: one level for Gauss-Legendre,
    three nested trapezoid levels (steps ``h``, ``2h``, ``4h``; zero weight off the coarse
    nodes) for the trapezoid rule. Each level's weights sum to 1 along a row.
    """

    Bs: np.ndarray
    lam: np.ndarray
    root: np.ndarray
    t: np.ndarray  # sin d
    z: np.ndarray  # sqrt(B-1) sin d
    cos2: np.ndarray  # cos^2 d = 1 - t^2
    wt: np.ndarray  # (levels, nb, N)


def _finish_grid(Bs, root, d, w) -> _Grid:
    w = w * _cos_power((Bs - 3)[:, None], d)
    if w.ndim == 2:
        w = w[None]
    w = w / w.sum(axis=2, keepdims=True)
    t = np.sin(d)
    cd = np.cos(d)
    return _Grid(Bs, (Bs - 3) / 2, root, t, root[:, None] * t, cd * cd, w)


def _grid(act: Activation, Bs: np.ndarray, n: int,
          window_digits: float = WINDOW_DIGITS) -> _Grid:
    """Gauss-Legendre (tanh-sinh for irrational singular exponents) with ``n`` nodes per piece;
    the pieces are the window ``[-W, W]`` split at ``d = asin(kink/sqrt(B-1))``."""
    Bs = np.asarray(Bs, dtype=float)
    W = window_angles(Bs, window_digits)
    root = np.sqrt(Bs - 1)
    kinks = act.kink_floats
    power = act.kink_power or 1
    kind = "gl" if act.kink_power is not None else "ts"
    rule = _rule(n, kind)
    if not kinks:
        a, b = -W[:, None, None], W[:, None, None]
        d, w = _map_piece(a, b, rule, 1, False, False)
    else:
        rows = [-W]
        for k in kinks:
            s = np.clip(k / root, -1.0, 1.0)
            rows.append(np.clip(np.arcsin(s), -W, W))
        rows.append(W)
        brk = np.sort(np.stack(rows, axis=1), axis=1)
        a, b = brk[:, :-1, None], brk[:, 1:, None]
        Wc = W[:, None, None]
        d, w = _map_piece(a, b, rule, power, np.abs(a) < Wc, np.abs(b) < Wc)
    return _finish_grid(Bs, root, d.reshape(len(Bs), -1), w.reshape(len(Bs), -1))


#: Smallest ``B`` for the trapezoid rule (float64): there the weight ``cos^{B-3} d`` is
#: Gaussian-like at the window ends (value and all derivatives ~ 10^-36; ``cos W >= 0.15``,
#: see :func:`_use_trapezoid`), so the truncated integrand is "periodic to all orders" and
#: the trapezoid rule converges geometrically, with ~2/pi of the Gauss-Legendre nodes and
#: nested levels for free. Below it the weight ends like ``(pi/2 - d)^(B-3)``, whose
#: derivative jumps spoil the trapezoid rule; Gauss-Legendre is used.
TRAPEZOID_MIN_B = 48


def _trapezoid_grid(Bs: np.ndarray, M: int, window_digits: float = WINDOW_DIGITS) -> _Grid:
    """Trapezoid rule on ``[-W, W]`` with ``4M + 1`` nodes and its ``2h``, ``4h`` sub-rules."""
    Bs = np.asarray(Bs, dtype=float)
    W = window_angles(Bs, window_digits)
    root = np.sqrt(Bs - 1)
    N = 4 * M + 1
    s = np.linspace(-1.0, 1.0, N)
    d = W[:, None] * s[None, :]
    levels = []
    for step in (1, 2, 4):
        w = np.zeros(N)
        w[::step] = 1.0
        w[0] = w[-1] = 0.5
        levels.append(np.broadcast_to(w, d.shape))
    return _finish_grid(Bs, root, d, np.stack(levels))


class _Values:
    """``phi``, ``phi'`` at the nodes of a grid (each evaluated once, on demand)."""

    def __init__(self, act: Activation, z: np.ndarray):
        self.act, self.z = act, z
        self._f = self._g = None

    @property
    def f(self):
        if self._f is None:
            # times ones: a constant branch of a lambdified expression returns a scalar
            self._f = np.asarray(self.act.numpy(self.z), dtype=float) * np.ones_like(self.z)
        return self._f

    @property
    def g(self):
        if self._g is None:
            dphi = np.asarray(self.act.numpy_derivative(self.z), dtype=float)
            self._g = dphi * np.ones_like(self.z)
        return self._g

    def point(self, pt: Point):
        val = np.ones_like(self.z)
        if pt.m:
            val = val * self.z**pt.m
        if pt.p:
            val = val * self.f**pt.p
        if pt.q:
            val = val * self.g**pt.q
        return val


def _project(grid: _Grid, funcs: np.ndarray, K: int, block: int = 24) -> np.ndarray:
    """``F_{k,j} = sum_i wt_i e_k(t_i) funcs_{i,j}`` for ``k < K``: array ``(levels, nb, K, J)``.

    The ``e_k`` are generated by the orthonormal recurrence, a block of ``k`` at a time, and
    contracted with one batched matrix product per block.
    """
    nb, N = grid.t.shape
    L, J = grid.wt.shape[0], funcs.shape[2]
    lam = grid.lam[:, None]
    # all levels at once: (nb, N, L*J)
    wf = (grid.wt[:, :, :, None] * funcs[None]).transpose(1, 2, 0, 3).reshape(nb, N, L * J)
    out = np.empty((nb, K, L * J))
    e_prev = np.zeros_like(grid.t)
    e_cur = np.ones_like(grid.t)
    beta_prev = np.zeros((nb, 1))
    buf = np.empty((nb, min(block, K), N))
    k = 0
    while k < K:
        kb = min(block, K - k)
        for j in range(kb):
            buf[:, j, :] = e_cur
            kk = k + j + 1
            beta = recurrence_beta(kk, lam)
            e_next = (grid.t * e_cur - beta_prev * e_prev) / beta
            e_prev, e_cur, beta_prev = e_cur, e_next, beta
        out[:, k : k + kb, :] = np.matmul(buf[:, :kb, :], wf)
        k += kb
    return out.reshape(nb, K, L, J).transpose(2, 0, 1, 3)


# -- series tails and assembly ---------------------------------------------------------------


def _tail(terms: np.ndarray) -> np.ndarray:
    """Estimate of ``|sum_{k>=K} t_k|`` from the decay of ``|t_k|``, ``k < K`` (rows: batch sizes).

    With ``m1``, ``m2`` the largest ``|t_k|`` in the third and the last quarter, the blocks are
    assumed to keep shrinking by ``q = m2/m1`` (geometric or power-law decay both give such a
    bound up to a modest factor): tail ``= (K/4) m2 q / (1 - q)``; ``K m2`` if there is no
    decay. Block maxima make it insensitive to parity zeros.
    """
    a = np.abs(terms)
    K = a.shape[1]
    if K < 8:
        return a.sum(axis=1)
    q1, q2 = K // 2, (3 * K) // 4
    m1 = a[:, q1:q2].max(axis=1)
    m2 = a[:, q2:].max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(m1 > 0, m2 / m1, 1.0)
    blk = K - q2
    geometric = blk * m2 * q / np.maximum(1 - q, 1e-300)
    return np.where(q < 0.9, geometric, K * m2)


@dataclass
class _Pass:
    """Everything one quadrature rule level gives for a chunk of batch sizes."""

    one: dict  # Point -> (nb,)
    one_abs: dict  # Point -> sum of |integrand| (rounding scale)
    coef: np.ndarray | None  # (nb, K, J)
    index: dict  # Point -> column of coef
    var: np.ndarray | None = None
    dirichlet: np.ndarray | None = None


def _compute(act, grid: _Grid, one_pts, coef_pts, K, need_rate) -> list[_Pass]:
    """One :class:`_Pass` per rule level of ``grid``."""
    vals = _Values(act, grid.z)
    index = {pt: j for j, pt in enumerate(coef_pts)}
    coef = None
    if coef_pts:
        funcs = np.stack([vals.point(pt) for pt in coef_pts], axis=2)
        coef = _project(grid, funcs, K)
    out = []
    for lev, wt in enumerate(grid.wt):
        one, one_abs = {}, {}
        for pt in one_pts:
            g = vals.point(pt)
            one[pt] = np.einsum("bn,bn->b", wt, g)
            one_abs[pt] = np.einsum("bn,bn->b", wt, np.abs(g))
        res = _Pass(one, one_abs, None if coef is None else coef[lev], index)
        if need_rate:
            f = vals.f
            mean = np.einsum("bn,bn->b", wt, f)
            dev = f - mean[:, None]
            # Var(phi) from centred values: q* - a_0^2 would cancel when |E phi| >> std(phi)
            res.var = np.einsum("bn,bn->b", wt, dev * dev)
            # E[(B-1-z^2) phi'^2] = (B-1) E[cos^2 d phi'^2]: no cancellation at the support edge
            res.dirichlet = (grid.Bs - 1) * np.einsum("bn,bn->b", wt, grid.cos2 * vals.g**2)
        out.append(res)
    return out


@dataclass
class _Assembled:
    values: dict  # key -> (nb,)
    tails: dict  # key -> (nb,)
    scales: dict  # key -> (nb,) magnitude for relative tolerances
    rounding: dict  # key -> (nb,)


def _assemble(p: _Pass, Bs: np.ndarray, moments, want_rate: bool, K: int,
              nodes: int) -> _Assembled:
    """Two-point sums, the split Thm 9 rate, tails and rounding estimates for one rule level.

    Rounding: sums of ``N`` terms in float64 err by about ``sqrt(N) eps`` of the sum of
    absolute values (random-walk accumulation; the weights ``cos^{B-3} d`` themselves carry
    a few ulps), so ``4 sqrt(N) eps`` is charged for quadratures (for a coefficient ``F_k``:
    times ``||F||``, by Cauchy-Schwarz) and ``4 sqrt(K) eps`` for the series.
    """
    vals, tails, scales, rnd = {}, {}, {}, {}
    qround = 4 * _EPS * math.sqrt(nodes)
    sround = 4 * _EPS * math.sqrt(max(K, 1))
    r = r_coefficients(Bs, K) if p.coef is not None else None
    for mo in moments:
        if mo.arity == 1:
            pt = mo.points[0]
            vals[mo] = p.one[pt]
            tails[mo] = np.zeros_like(p.one[pt])
            scales[mo] = p.one_abs[pt]
            rnd[mo] = qround * p.one_abs[pt]
            continue
        F = p.coef[:, :, p.index[mo.points[0]]]
        G = p.coef[:, :, p.index[mo.points[1]]]
        terms = F * G * r
        vals[mo] = terms.sum(axis=1)
        tails[mo] = _tail(terms)
        scales[mo] = np.sqrt((F * F).sum(axis=1) * (G * G).sum(axis=1))
        # coefficient noise is ~qround ||F|| per k (Cauchy-Schwarz on the quadrature sum);
        # weighted by |r_k| it is small relative to the sum even where the sum itself is
        # small (E[phi(z1) phi(z2)] ~ -1/B for odd phi), so do not charge qround * scale
        nF, nG = np.sqrt((F * F).sum(axis=1)), np.sqrt((G * G).sum(axis=1))
        rnd[mo] = sround * np.abs(terms).sum(axis=1) + qround * (
            nG * np.abs(r * F).sum(axis=1) + nF * np.abs(r * G).sum(axis=1))
    if want_rate:
        lam = (Bs - 3) / 2
        a = p.coef[:, :, p.index[PHI]]
        k = np.arange(K)
        ra2 = r * a * a
        ra2[:, 0] = 0
        t_num = k * (k + 2 * lam[:, None]) * ra2
        num = p.dirichlet - t_num.sum(axis=1)
        den = p.var - ra2.sum(axis=1)
        r_num = sround * np.abs(t_num).sum(axis=1) + qround * np.abs(p.dirichlet)
        r_den = sround * np.abs(ra2).sum(axis=1) + qround * np.abs(p.var)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = num / (2 * lam * den)
            tail_rel = _tail(t_num) / np.abs(num) + _tail(ra2) / np.abs(den)
            rnd_rel = r_num / np.abs(num) + r_den / np.abs(den)
        vals["rate"] = rate
        tails["rate"] = np.abs(rate) * tail_rel
        scales["rate"] = np.abs(rate)
        rnd["rate"] = np.abs(rate) * rnd_rel
    return _Assembled(vals, tails, scales, rnd)


# -- adaptive driver --------------------------------------------------------------------------


@dataclass
class Plan:
    """What the float route used for each batch size (diagnostics)."""

    K: np.ndarray
    nodes: np.ndarray


_K_MAX_SMOOTH = 1024
#: Kinked, non-homogeneous ``phi`` (coefficients by quadrature): the series converge only
#: algebraically, so the terms are capped and the tail is reported in the error.
_K_MAX_KINKED = 768
_N_MAX = 4096


def _check_batch_sizes(Bs) -> np.ndarray:
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    if np.any(~np.isfinite(Bs)) or np.any(Bs < 4) or np.any(Bs != np.round(Bs)):
        raise GegenbauerError("batch sizes must be finite integers >= 4 (B = oo: see "
                              "moments_gaussian_limit)")
    return Bs


#: Batch sizes per chunk (the terms ``K`` adapt chunk by chunk).
_CHUNK = 64


def _quadrature_error(levels: list[_Assembled], key) -> np.ndarray:
    """Error of the finest level's value from the spread of the rule levels.

    Two Gauss-Legendre rules (``n``, ``3n/4``): the difference (bounds the coarser rule's
    error; pessimistic). Three nested trapezoid levels: with ``e1 = |I_h - I_2h|`` and
    ``e2 = |I_2h - I_4h|``, geometric convergence gives ``err(h) ~ e1^3/e2^2``; we take the
    weaker ``e1^2/e2`` (the fine rule gains over ``2h`` at least what ``2h`` gained over ``4h``),
    and ``e1`` itself when the levels do not converge.
    """
    v = [lev.values[key] for lev in levels]
    e1 = np.abs(v[0] - v[1])
    if len(v) == 2:
        return e1
    e2 = np.abs(v[1] - v[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        extrap = np.where(e2 > 0, e1 * e1 / e2, e1)
    return np.where(e1 < 0.5 * e2, extrap, e1)


def _run(act: Activation, Bs, moments, want_rate: bool, rtol: float, info: dict | None,
         K0: int = 12, n0: int = 48, K_max: int | None = None):
    """Values and absolute error estimates of ``moments`` (and the Thm 9 rate) for each ``B``.

    Batch sizes are processed in decreasing order in chunks; each chunk starts from the
    ``K`` of the previous one and grows ``K`` and the nodes until the series tails are below
    ``rtol/10`` and the quadrature levels agree to ``rtol`` (relative to each moment's
    scale), or the caps are reached (the estimate then says so).
    """
    Bs = _check_batch_sizes(Bs)
    moments = list(moments)
    if act.homogeneous is not None:
        uses_dphi = want_rate or any(p.q for mo in moments for p in mo.points)
        if act.homogeneous.alpha == 0 and uses_dphi:
            raise GegenbauerError("phi' of a step activation is a Dirac mass: moments with phi' "
                                  "are infinite")
        return _run_homogeneous(act, Bs, moments, want_rate, rtol, info)
    if K_max is None:
        K_max = _K_MAX_SMOOTH if not act.kink_floats else _K_MAX_KINKED
    one_pts = sorted({mo.points[0] for mo in moments if mo.arity == 1})
    coef_pts = sorted({pt for mo in moments if mo.arity == 2 for pt in mo.points}
                      | ({PHI} if want_rate else set()))
    keys = list(moments) + (["rate"] if want_rate else [])
    out_v = {key: np.empty(len(Bs)) for key in keys}
    out_e = {key: np.empty(len(Bs)) for key in keys}
    used_K = np.zeros(len(Bs), dtype=int)
    used_n = np.zeros(len(Bs), dtype=int)
    order = np.argsort(-Bs, kind="stable")
    smooth = not act.kink_floats
    K = K0
    n_trap, n_gl = n0, n0
    start = 0
    while start < len(order):
        trap = smooth and Bs[order[start]] >= TRAPEZOID_MIN_B
        idx = [i for i in order[start : start + _CHUNK]
               if (smooth and Bs[i] >= TRAPEZOID_MIN_B) == trap]
        start += len(idx)
        Bc = Bs[idx]
        while True:
            if trap:
                n_trap = max(n_trap, K + 16)
                M = (n_trap + 3) // 4
                grid = _trapezoid_grid(Bc, M)
                nodes = 4 * M + 1
                levels = [_assemble(p, Bc, moments, want_rate, K, nodes)
                          for p in _compute(act, grid, one_pts, coef_pts, K, want_rate)]
            else:
                # the coarser rule must resolve e_k up to K too, or it only measures aliasing
                n_gl = max(n_gl, (4 * (K + 24)) // 3)
                m = max(16, (3 * n_gl) // 4)
                grids = [_grid(act, Bc, nn) for nn in (n_gl, m)]
                levels = [
                    _assemble(_compute(act, gr, one_pts, coef_pts, K, want_rate)[0],
                              Bc, moments, want_rate, K, gr.t.shape[1])
                    for gr in grids
                ]
                nodes = n_gl
            hi = levels[0]
            quad = {key: _quadrature_error(levels, key) for key in keys}
            tail_bad = any(np.any(hi.tails[key] > 0.1 * rtol * hi.scales[key]) for key in keys)
            # rounding noise differs between the rules too: do not chase it with more nodes
            quad_bad = any(np.any(quad[key] > rtol * hi.scales[key] + 2 * hi.rounding[key])
                           for key in keys)
            if tail_bad and K < K_max and coef_pts:
                K = min(K_max, int(K * 1.5) + 1)
                continue
            if quad_bad and nodes < _N_MAX:
                if trap:
                    n_trap = int(n_trap * 1.4)
                else:
                    n_gl = int(n_gl * 1.4)
                continue
            break
        for key in keys:
            out_v[key][idx] = hi.values[key]
            out_e[key][idx] = quad[key] + hi.tails[key] + hi.rounding[key]
        used_K[idx] = K if coef_pts else 0
        used_n[idx] = nodes
    if info is not None:
        info["plan"] = Plan(used_K, used_n)
    return out_v, out_e


def moments_gegenbauer(act: Activation, moments, Bs, rtol: float = 1e-14,
                       info: dict | None = None):
    """Sphere moments for many batch sizes at once (float64): ``(values, errors)``.

    ``values[mo]`` and ``errors[mo]`` are arrays over ``Bs`` (absolute error estimates).
    One-point moments by 1-D quadrature; two-point moments by Funk-Hecke,
    ``E[F(z1) G(z2)] = sum_k F_k G_k r_k``. ``info`` (a dict), if given, receives the
    :class:`Plan` (terms ``K`` and nodes per piece used for each ``B``).
    """
    values, errors = _run(act, Bs, moments, False, rtol, info)
    return values, errors


def gradient_rate_thm9(act: Activation, Bs, rtol: float = 1e-14, info: dict | None = None):
    """Gradient rate ``lambda_max`` by paper Thm 9 in the split form (module docstring), for
    many batch sizes: ``(values, errors)`` arrays."""
    if act.derivative_has_delta:
        Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
        return np.full(len(Bs), np.inf), np.zeros(len(Bs))
    values, errors = _run(act, Bs, [], True, rtol, info)
    return values["rate"], errors["rate"]


def moments_and_rate(act: Activation, moments, Bs, rtol: float = 1e-14,
                     info: dict | None = None):
    """Moments and the Thm 9 rate in one pass: ``(values, errors)``, extra key ``"rate"``."""
    return _run(act, Bs, moments, True, rtol, info)


def coefficients(act: Activation, Bs, K: int, point: Point = PHI, n: int | None = None,
                 with_error: bool = False):
    """``a_k = E_w[F(sqrt(B-1) t) e_k(t)]``, ``k < K``, of ``F = z^m phi^p phi'^q`` (default
    ``phi``): array ``(len(Bs), K)`` (and absolute errors from two rules if ``with_error``).

    Quadrature split at the kinks, so the coefficients themselves are accurate (for
    ``k`` up to about the node count ``n``, default ``2K + 64`` per piece).
    """
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    n = n or 2 * K + 64
    p = _compute(act, _grid(act, Bs, n), [], [point], K, False)[0]
    a = p.coef[:, :, 0]
    if not with_error:
        return a
    q = _compute(act, _grid(act, Bs, (3 * n) // 4), [], [point], K, False)[0]
    rnd = 4 * _EPS * math.sqrt(n) * np.sqrt((a * a).sum(axis=1, keepdims=True))
    return a, np.abs(a - q.coef[:, :, 0]) + rnd


def thm9_series(act: Activation, Bs, K: int, n: int | None = None):
    """The literal Thm 9 series truncated after ``K`` terms: ``(rate_K, numerator partial
    sums, denominator partial sums)`` (arrays ``(nb,)``, ``(nb, K)``, ``(nb, K)``).

    Converges geometrically for ``phi`` analytic in a strip and small ``B``; like ``1/K`` for
    kinked ``phi``; slowly (Hermite-like) at large ``B``. For comparison with the split form.
    """
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    a = coefficients(act, Bs, K, n=n)
    lam = (Bs - 3) / 2
    c = c_coefficients(Bs, K)
    k = np.arange(K)
    den_terms = c * a * a
    den_terms[:, 0] = 0
    num_terms = k * (k + 2 * lam[:, None]) / (2 * lam[:, None]) * den_terms
    num, den = np.cumsum(num_terms, axis=1), np.cumsum(den_terms, axis=1)
    return num[:, -1] / den[:, -1], num, den


# -- positive-homogeneous phi: closed-form coefficients ------------------------------------------


@lru_cache(maxsize=8)
def _homogeneous_functions():
    """Lambdified (mpmath) closed forms from :mod:`bnmft.derive.gegenbauer`: the recurrence
    start ``a_0/(A+C)``, ``a_1/(A-C)`` in ``(alpha, lambda)`` and ``E_w[t_+^s (1-t^2)^nu]``
    in ``(s, nu, B)``."""
    from bnmft.derive.symbols import B as B_SYM

    g0, g1 = dg.homogeneous_start()
    s, nu = sp.Symbol("s", real=True), sp.Symbol("nu", real=True)
    start = sp.lambdify([dg.ALPHA, dg.LAM], [g0, g1], "mpmath")
    half = sp.lambdify([s, nu, B_SYM], dg.half_line_power_moment(s, nu), "mpmath")
    return start, half


def _point_homogeneous(act: Activation, pt: Point):
    """``z^m phi^p phi'^q = P |z|^d (z > 0), N |z|^d (z < 0)`` as floats/sympy (d, P, N)."""
    d, P, N = act.homogeneous.point_power(pt)
    return d, P, N


def _homogeneous_start_mp(alpha, B):
    """``a_0/(A+C)``, ``a_1/(A-C)`` at the current mpmath precision (Gamma functions; they
    include the factor ``(B-1)^(alpha/2)`` of ``z = sqrt(B-1) t``)."""
    start, _ = _homogeneous_functions()
    lam = (mpmath.mpf(B) - 3) / 2
    return [mpmath.mpf(v) for v in start(mpmath.mpf(alpha), lam)]


def homogeneous_coefficients(act: Activation, Bs, K: int, point: Point = PHI) -> np.ndarray:
    """Exact ``a_k`` (``k < K``) of ``z^m phi^p phi'^q`` for positive-homogeneous ``phi``, float64,
    array ``(len(Bs), K)``.

    Start values from the Gamma-function closed form (mpmath, lambdified from
    :func:`bnmft.derive.gegenbauer.homogeneous_start`), then the two-step ratio
    ``a_{k+2}/a_k = (alpha-k)/(alpha+k+2 lambda+2) sqrt(rational)`` (the expression of
    :func:`bnmft.derive.gegenbauer.homogeneous_ratio`, typed here for speed; the tests check
    that they agree): no Gamma function of a large argument is ever formed in float64.
    """
    if act.homogeneous is None:
        raise GegenbauerError(f"{act.name} is not positive-homogeneous")
    Bs = _check_batch_sizes(Bs)
    d, P, N = _point_homogeneous(act, point)
    alpha, P, N = float(d), float(P), float(N)
    if alpha <= -0.5:
        raise GegenbauerError(f"{point.text('z')} is not square-integrable (degree {alpha})")
    lam = (Bs - 3) / 2
    g = np.zeros((len(Bs), max(K, 2)))
    with mpmath.workdps(20):
        for i, Bv in enumerate(Bs):
            g[i, :2] = [float(v) for v in _homogeneous_start_mp(d, Bv)]
    k = np.arange(K - 2)[None, :]
    lm = lam[:, None]
    fac = (alpha - k) / (alpha + k + 2 * lm + 2) * np.sqrt(
        (k + lm + 2) * (k + 2 * lm) * (k + 2 * lm + 1) / ((k + lm) * (k + 1) * (k + 2))
    )
    # a_{k+2} = a_k * fac_k along each parity chain: cumulative products (rounding ~ K eps)
    g[:, 2::2] = g[:, :1] * np.cumprod(fac[:, 0::2], axis=1)
    g[:, 3::2] = g[:, 1:2] * np.cumprod(fac[:, 1::2], axis=1)
    sign = np.where(np.arange(K) % 2 == 0, P + N, P - N)
    return g[:, :K] * sign


def _homogeneous_one_point(act: Activation, pt: Point, B):
    """``E[z^m phi^p phi'^q] = (P + N) (B-1)^(d/2) E_w[t_+^d]`` (mpmath; ``inf`` if divergent)."""
    d, P, N = _point_homogeneous(act, pt)
    if P + N == 0:
        return mpmath.mpf(0)
    if d <= -1:
        return mpmath.inf
    _, half = _homogeneous_functions()
    Bm = mpmath.mpf(B)
    return mpmath.mpf(P + N) * (Bm - 1) ** (mpmath.mpf(d) / 2) * half(mpmath.mpf(d), 0, Bm)


def _homogeneous_dirichlet(act: Activation, B):
    """``E[(B-1-z^2) phi'(z)^2] = (B-1)^alpha alpha^2 (A^2+C^2) E_w[t_+^(2 alpha-2) (1-t^2)]``."""
    hom = act.homogeneous
    a = mpmath.mpf(hom.alpha)
    if a <= 0.5:
        return mpmath.inf
    _, half = _homogeneous_functions()
    Bm = mpmath.mpf(B)
    amp = mpmath.mpf(hom.A) ** 2 + mpmath.mpf(hom.C) ** 2
    return (Bm - 1) ** a * a * a * amp * half(2 * a - 2, 1, Bm)


_K_MAX_HOMOGENEOUS = 1 << 15


def _run_homogeneous(act, Bs, moments, want_rate, rtol, info):
    """Float route for homogeneous ``phi``: exact coefficients, exact one-point moments,
    series summed until the tail is below ``rtol/10`` of the scale or ``K`` reaches
    ``2^15`` (kinks make the two-point series converge only algebraically, like
    ``k^-(2 + lambda + ...)``; the remaining tail is in the error)."""
    keys = list(moments) + (["rate"] if want_rate else [])
    out_v = {key: np.empty(len(Bs)) for key in keys}
    out_e = {key: np.empty(len(Bs)) for key in keys}
    used_K = np.zeros(len(Bs), dtype=int)
    coef_pts = sorted({pt for mo in moments if mo.arity == 2 for pt in mo.points}
                      | ({PHI} if want_rate else set()))
    with mpmath.workdps(20):
        for mo in moments:
            if mo.arity == 1:
                vals = [_homogeneous_one_point(act, mo.points[0], Bv) for Bv in Bs]
                out_v[mo][:] = [float(v) for v in vals]
                out_e[mo][:] = 4 * _EPS * np.abs(out_v[mo])
        if want_rate:
            dirichlet = np.array([float(_homogeneous_dirichlet(act, Bv)) for Bv in Bs])
            phi2 = np.array([float(_homogeneous_one_point(act, Point(0, 2, 0), Bv)) for Bv in Bs])
    if not coef_pts:
        return out_v, out_e
    for i, Bv in enumerate(Bs):
        K = 256
        Bi = np.array([Bv])
        while True:
            coef = {pt: homogeneous_coefficients(act, Bi, K, pt)[0] for pt in coef_pts}
            r = r_coefficients(Bi, K)[0]
            res, ok = {}, True
            for mo in moments:
                if mo.arity != 2:
                    continue
                F, G = coef[mo.points[0]], coef[mo.points[1]]
                terms = F * G * r
                scale = math.sqrt(float((F * F).sum() * (G * G).sum()))
                tail = float(_tail(terms[None])[0])
                res[mo] = (float(terms.sum()), tail + 8 * _EPS * (np.abs(terms).sum() + scale))
                ok &= tail <= 0.1 * rtol * scale
            if want_rate:
                lam = (Bv - 3) / 2
                a = coef[PHI]
                k = np.arange(K)
                ra2 = r * a * a
                ra2[0] = 0
                t_num = k * (k + 2 * lam) * ra2
                num = dirichlet[i] - t_num.sum()
                den = phi2[i] - a[0] ** 2 - ra2.sum()
                rate = num / (2 * lam * den)
                tails = (float(_tail(t_num[None])[0]) / abs(num)
                         + float(_tail(ra2[None])[0]) / abs(den))
                rnd = 8 * _EPS * (np.abs(t_num).sum() / abs(num) + phi2[i] / abs(den))
                res["rate"] = (rate, abs(rate) * (tails + rnd))
                ok &= tails <= 0.1 * rtol
            if ok or K >= _K_MAX_HOMOGENEOUS:
                break
            K *= 2
        for key, (v, e) in res.items():
            out_v[key][i], out_e[key][i] = v, e
        used_K[i] = K
    if info is not None:
        info["plan"] = Plan(used_K, np.zeros(len(Bs), dtype=int))
    return out_v, out_e


# -- mpmath route ------------------------------------------------------------------------------


def _mp_window(B, digits):
    """Half-width of the angle window where ``cos^{B-3} d >= 10^-digits`` (mpmath)."""
    Bm = mpmath.mpf(B)
    one_minus_cos = -mpmath.expm1(-digits * mpmath.log(10) / (Bm - 3))
    return min(2 * mpmath.asin(mpmath.sqrt(one_minus_cos / 2)), mpmath.pi / 2)


def _mp_number(value: sp.Expr):
    """An exact SymPy real (a kink) at the current mpmath precision."""
    if value.is_Rational:
        return mpmath.mpf(value.p) / value.q
    return mpmath.mpf(str(sp.N(value, mpmath.mp.dps + 5)))


def _use_trapezoid(B, digits) -> bool:
    """Trapezoid rule only where the truncation is deep (``cos W >= 0.15``): the weight is then
    Gaussian-like at the window ends (see :data:`TRAPEZOID_MIN_B`)."""
    return mpmath.mpf(10) ** (-mpmath.mpf(digits) / (mpmath.mpf(B) - 3)) >= mpmath.mpf("0.15")


#: Panel rule of the mpmath Gauss-Legendre route: mpmath's degree-6 rule (96 nodes); finer
#: resolutions are composite (2, 4, 8... panels per piece), so the expensive high-degree
#: node computation of mpmath is never needed.
_MP_PANEL_LEVEL = 5


def _mp_gl_nodes(act: Activation, W, root, panels: int, prec: int):
    """Composite Gauss-Legendre (tanh-sinh for irrational exponents) nodes ``(d, [w])`` on
    ``[-W, W]`` split at the kinks, ``panels`` panels per piece, with the power substitution
    at kink ends (as :func:`_map_piece`)."""
    if act.kink_power is None:
        level = 3 + int(round(math.log2(panels)))
        rule, power, panels = tanh_sinh_mp(level, prec), 1, 1
    else:
        rule, power = gauss_legendre_mp(_MP_PANEL_LEVEL, prec), act.kink_power
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


def _mp_trapezoid_nodes(W, M: int):
    """Trapezoid nodes on ``[-W, W]`` (``4M + 1``) and the weights of the ``h, 2h, 4h`` rules."""
    N = 4 * M + 1
    nodes = [W * (mpmath.mpf(2 * i - (N - 1)) / (N - 1)) for i in range(N)]
    levels = []
    for step in (1, 2, 4):
        w = [mpmath.mpf(1) if i % step == 0 else mpmath.mpf(0) for i in range(N)]
        w[0] = w[-1] = mpmath.mpf(1) / 2
        levels.append(w)
    return nodes, levels


def _mp_point(pt: Point, z, f, g):
    val = mpmath.mpf(1)
    if pt.m:
        val *= z**pt.m
    if pt.p:
        val *= f**pt.p
    if pt.q:
        val *= g**pt.q
    return val


def _mp_tail(terms):
    """mpmath version of :func:`_tail` for one sequence."""
    a = [abs(t) for t in terms]
    K = len(a)
    if K < 8:
        return mpmath.fsum(a)
    q1, q2 = K // 2, (3 * K) // 4
    m1, m2 = max(a[q1:q2]), max(a[q2:])
    q = m2 / m1 if m1 > 0 else mpmath.mpf(1)
    if q < mpmath.mpf("0.9"):
        return (K - q2) * m2 * q / (1 - q)
    return K * m2


def _mp_pass(act, B, nodes, weight_levels, moments, want_rate, tol, K_cap):
    """All outputs for each weight level on a set of angle nodes (one batch size, mpmath).

    Returns a list (per level) of ``{key: (value, tail, scale)}``. The coefficients are
    accumulated term by term; the loop stops once ``4`` consecutive terms of every series
    (``F_k G_k r_k``, ``k(k+2 lambda) r_k a_k^2``, ``r_k a_k^2``) are below ``tol`` times
    their scale, or at ``K_cap``.
    """
    Bm = mpmath.mpf(B)
    lam = (Bm - 3) / 2
    rho = -1 / (Bm - 1)
    root = mpmath.sqrt(Bm - 1)
    phi, dphi = act.mpmath, act.mpmath_derivative
    t = [mpmath.sin(d) for d in nodes]
    z = [root * ti for ti in t]
    cos2 = [mpmath.cos(d) ** 2 for d in nodes]
    # cos^{B-3} d = exp((B-3) log1p(-2 sin^2(d/2))): relative accuracy independent of B
    cw = [mpmath.exp((Bm - 3) * mpmath.log1p(-2 * mpmath.sin(d / 2) ** 2)) for d in nodes]
    f = [phi(zi) for zi in z]
    use_g = want_rate or any(p.q for mo in moments for p in mo.points)
    g = [dphi(zi) for zi in z] if use_g else [0] * len(z)
    one_pts = sorted({mo.points[0] for mo in moments if mo.arity == 1})
    coef_pts = sorted({pt for mo in moments if mo.arity == 2 for pt in mo.points}
                      | ({PHI} if want_rate else set()))
    fvals = {pt: [_mp_point(pt, zi, fi, gi) for zi, fi, gi in zip(z, f, g)]
             for pt in set(one_pts) | set(coef_pts)}
    levels = []
    for wl in weight_levels:
        idx = [i for i, w in enumerate(wl) if w != 0]
        wt = [wl[i] * cw[i] for i in idx]
        norm = mpmath.fsum(wt)
        wt = [w / norm for w in wt]
        lev = {"idx": idx, "wt": wt, "out": {}}
        for pt in one_pts:
            vals = [fvals[pt][i] for i in idx]
            lev["out"][pt] = (mpmath.fdot(wt, vals), mpmath.mpf(0),
                              mpmath.fdot(wt, [abs(v) for v in vals]))
        if want_rate:
            fl = [f[i] for i in idx]
            mean = mpmath.fdot(wt, fl)
            lev["var"] = mpmath.fdot(wt, [(fi - mean) ** 2 for fi in fl])
            lev["dirichlet"] = (Bm - 1) * mpmath.fdot(wt, [cos2[i] * g[i] ** 2 for i in idx])
        lev["wf"] = {pt: [w * fvals[pt][i] for w, i in zip(wt, idx)] for pt in coef_pts}
        lev["coef"] = {pt: [] for pt in coef_pts}
        levels.append(lev)
    r = [mpmath.mpf(1), rho]
    e_prev = [mpmath.mpf(0)] * len(nodes)
    e_cur = [mpmath.mpf(1)] * len(nodes)
    beta_prev = mpmath.mpf(0)
    quiet = 0
    k = 0
    two = [mo for mo in moments if mo.arity == 2]
    norms = {pt: mpmath.mpf(0) for pt in coef_pts}
    while coef_pts and k < K_cap:
        if k >= 2:
            r.append((2 * (k - 1 + lam) * rho * r[k - 1] - (k - 1) * r[k - 2]) / (k - 1 + 2 * lam))
        for lev in levels:
            ek = [e_cur[i] for i in lev["idx"]]
            for pt in coef_pts:
                lev["coef"][pt].append(mpmath.fdot(lev["wf"][pt], ek))
        # stopping test on the finest level (running sums of squares give the scales)
        c = levels[0]["coef"]
        for pt in coef_pts:
            norms[pt] += c[pt][k] ** 2
        small = True
        for mo in two:
            F, G = c[mo.points[0]], c[mo.points[1]]
            scale = mpmath.sqrt(norms[mo.points[0]] * norms[mo.points[1]])
            small &= abs(F[k] * G[k] * r[k]) <= tol * scale
        if want_rate and k >= 1:
            a2 = c[PHI][k] ** 2
            small &= k * (k + 2 * lam) * abs(r[k]) * a2 <= tol * levels[0]["dirichlet"]
            small &= abs(r[k]) * a2 <= tol * levels[0]["var"]
        quiet = quiet + 1 if small else 0
        k += 1
        if quiet >= 4 and k >= 8:
            break
        beta = recurrence_beta(mpmath.mpf(k), lam)
        e_next = [(ti * ec - beta_prev * ep) / beta for ti, ec, ep in zip(t, e_cur, e_prev)]
        e_prev, e_cur, beta_prev = e_cur, e_next, beta
    K = k
    out = []
    for lev in levels:
        res = {}
        for mo in moments:
            if mo.arity == 1:
                res[mo] = lev["out"][mo.points[0]]
                continue
            F, G = lev["coef"][mo.points[0]], lev["coef"][mo.points[1]]
            terms = [F[j] * G[j] * r[j] for j in range(K)]
            scale = mpmath.sqrt(mpmath.fsum(x * x for x in F) * mpmath.fsum(x * x for x in G))
            res[mo] = (mpmath.fsum(terms), _mp_tail(terms) if quiet < 4 else 2 * sum(
                abs(x) for x in terms[-4:]), scale)
        if want_rate:
            a = lev["coef"][PHI]
            ra2 = [mpmath.mpf(0)] + [r[j] * a[j] ** 2 for j in range(1, K)]
            tnum = [j * (j + 2 * lam) * ra2[j] for j in range(K)]
            num = lev["dirichlet"] - mpmath.fsum(tnum)
            den = lev["var"] - mpmath.fsum(ra2)
            rate = num / (2 * lam * den)
            if quiet >= 4:
                tl = 2 * (sum(abs(x) for x in tnum[-4:]) / abs(num)
                          + sum(abs(x) for x in ra2[-4:]) / abs(den))
            else:
                tl = _mp_tail(tnum) / abs(num) + _mp_tail(ra2) / abs(den)
            res["rate"] = (rate, abs(rate) * tl, abs(rate))
            res["_num"], res["_den"] = num, den
        res["_K"] = K
        out.append(res)
    return out


def _mp_level_error(history, key):
    """Error of the newest value from a sequence of resolutions (``history[i][key][0]``,
    oldest first), as :func:`_quadrature_error`: with ``e1``, ``e2`` the last two
    differences, ``e1^2/e2`` when the sequence converges (the last refinement gains at least
    what the previous one did -- true for geometric and for composite-rule convergence),
    else ``e1``; just ``e1`` with two values."""
    vals = [h[key][0] for h in history]
    e1 = abs(vals[-1] - vals[-2])
    if len(vals) < 3 or e1 == 0:
        return e1
    e2 = abs(vals[-2] - vals[-3])
    if e1 < e2 / 2:
        return e1 * e1 / e2
    return e1


def _mp_run(act: Activation, B, moments, want_rate: bool, dps: int, max_nodes: int | None = None):
    """Values and absolute errors of ``moments`` (and ``"rate"``) at one batch size, mpmath.

    Resolution doubles until every output's quadrature error (level spread, extrapolated)
    plus series tail is below ``10^-dps`` of its scale; :class:`GegenbauerError` if
    ``max_nodes`` (default 6000; 1600 for kinked ``phi``) is reached first. Kinked ``phi``
    with non-homogeneous coefficients usually ends there, as its series converge only
    algebraically: use the result with its error via ``strict=False``.
    """
    B = int(B)
    if B < 4:
        raise GegenbauerError("batch sizes must be integers >= 4")
    if max_nodes is None:
        # kinked phi: the series converge algebraically, more nodes (and terms) buy little
        max_nodes = 1600 if act.kinks else 6000
    moments = list(moments)
    keys = list(moments) + (["rate"] if want_rate else [])
    with mpmath.workdps(dps + 15):
        prec = mpmath.mp.prec
        wdigits = 2 * dps + 12  # Cauchy-Schwarz: the truncation error of a_k is sqrt(tail)
        tol = mpmath.mpf(10) ** (-dps - 3)
        W = _mp_window(B, wdigits)
        root = mpmath.sqrt(mpmath.mpf(B) - 1)
        trap = not act.kinks and _use_trapezoid(B, wdigits)
        history = []
        res = None
        K_cap = 4096
        step = 0
        while True:
            if trap:
                M = 16 * 2**step
                nodes, wls = _mp_trapezoid_nodes(W, M)
            else:
                nodes, wls = _mp_gl_nodes(act, W, root, 2**step, prec)
            npts = len(nodes)
            K_cap = max(16, npts // (2 if trap else 3) // max(1, 1 + len(act.kinks)))
            passes = _mp_pass(act, B, nodes, wls, moments, want_rate, tol, K_cap)
            if trap:
                # nested levels: the spread of h, 2h, 4h in one pass
                cur = passes[0]
                errs = {key: _mp_level_error([passes[2], passes[1], passes[0]], key)
                        for key in keys}
            else:
                history.append(passes[0])
                cur = passes[0]
                errs = {key: (_mp_level_error(history, key) if len(history) > 1
                              else abs(cur[key][0]) + cur[key][2]) for key in keys}
            total = {key: errs[key] + cur[key][1] + cur[key][2] * tol / 100 for key in keys}
            done = all(total[key] <= tol * 10 * max(cur[key][2], abs(cur[key][0])) for key in keys)
            res = ({key: +cur[key][0] for key in keys}, {key: +total[key] for key in keys},
                   cur["_K"] if "_K" in cur else 0, npts)
            if done or npts >= max_nodes:
                return res, done
            step += 1


def _settle(info: dict | None, K, nodes, done: bool, strict: bool, failure: str) -> None:
    """Record ``K``, nodes and convergence in ``info``; raise ``failure`` if strict and not done."""
    if info is not None:
        info.update(K=K, nodes=nodes, converged=done)
    if strict and not done:
        raise GegenbauerError(failure)


def moments_gegenbauer_mp(act: Activation, moments, B: int, dps: int, strict: bool = True,
                          info: dict | None = None):
    """Sphere moments at ``dps`` digits for one batch size: ``{moment: (value, abs_error)}``
    (the format of :func:`bnmft.numerics.sphere.moments_mp`).

    One-point moments by 1-D quadrature, two-point moments by Funk-Hecke. Trapezoid rule
    (nested levels) where the window truncation is deep, Gauss-Legendre split at the kinks
    otherwise. Raises :class:`GegenbauerError` if ``dps`` digits are not reached and
    ``strict``; otherwise returns the values with their (larger) error estimates.
    """
    moments = list(moments)
    if act.homogeneous is not None:
        vals, errs, K = _homogeneous_moments_mp(act, moments, B, dps)
        done, npts = all(errs[mo] <= mpmath.mpf(10) ** (-dps) * max(abs(vals[mo]), 1)
                         for mo in moments), 0
    else:
        (vals, errs, K, npts), done = _mp_run(act, B, moments, False, dps)
    _settle(info, K, npts, done, strict, f"Gegenbauer route at B={B} did not reach {dps} digits")
    return {mo: (vals[mo], errs[mo]) for mo in moments}


def gradient_rate_thm9_mp(act: Activation, B: int, dps: int, strict: bool = True,
                          info: dict | None = None):
    """Gradient rate (paper Thm 9, split form) at ``dps`` digits: ``(value, abs_error)``.

    Homogeneous ``phi``: exact coefficients and one-point moments, ``r``-series summed to
    its tail (algebraic for kinks: the digits are limited by ``K``, reported in the error).
    """
    if act.derivative_has_delta:
        return mpmath.inf, mpmath.mpf(0)
    if act.homogeneous is not None:
        value, err, K = _homogeneous_rate_mp(act, B, dps)
        done, npts = err <= mpmath.mpf(10) ** (-dps) * abs(value), 0
    else:
        (vals, errs, K, npts), done = _mp_run(act, B, [], True, dps)
        value, err = vals["rate"], errs["rate"]
    _settle(info, K, npts, done, strict, f"Thm 9 rate at B={B} did not reach {dps} digits")
    return value, err


def moments_and_rate_mp(act: Activation, moments, B: int, dps: int, strict: bool = True,
                        info: dict | None = None):
    """Moments and the Thm 9 rate in one mpmath pass: ``{key: (value, abs_error)}`` with the
    extra key ``"rate"`` (non-homogeneous ``phi``; homogeneous ``phi`` falls back to
    :func:`moments_gegenbauer_mp` and :func:`gradient_rate_thm9_mp`)."""
    moments = list(moments)
    if act.homogeneous is not None or act.derivative_has_delta:
        out = dict(moments_gegenbauer_mp(act, moments, B, dps, strict, info))
        out["rate"] = gradient_rate_thm9_mp(act, B, dps, strict)
        return out
    (vals, errs, K, npts), done = _mp_run(act, B, moments, True, dps)
    _settle(info, K, npts, done, strict, f"Gegenbauer route at B={B} did not reach {dps} digits")
    return {key: (vals[key], errs[key]) for key in vals}


# -- homogeneous phi at mpmath precision -----------------------------------------------------


def homogeneous_coefficients_mp(act: Activation, B, K: int, point: Point = PHI) -> list:
    """Exact ``a_k``, ``k < K``, of ``z^m phi^p phi'^q`` (homogeneous ``phi``) at the current
    mpmath precision: Gamma-function start values and the ratio ``a_{k+2}/a_k`` (as
    :func:`homogeneous_coefficients`)."""
    d, P, N = _point_homogeneous(act, point)
    if d <= -sp.Rational(1, 2):
        raise GegenbauerError(f"{point.text('z')} is not square-integrable (degree {d})")
    alpha = mpmath.mpf(d)
    lam = (mpmath.mpf(B) - 3) / 2
    g = _homogeneous_start_mp(d, B)
    for k in range(K - 2):
        fac = (alpha - k) / (alpha + k + 2 * lam + 2) * mpmath.sqrt(
            (k + lam + 2) * (k + 2 * lam) * (k + 2 * lam + 1) / ((k + lam) * (k + 1) * (k + 2))
        )
        g.append(g[k] * fac)
    P, N = mpmath.mpf(P), mpmath.mpf(N)
    return [g[k] * (P + N if k % 2 == 0 else P - N) for k in range(K)]


def _homogeneous_series_mp(act, B, dps, pts, want, K_max=1 << 14):
    """Coefficients of ``pts`` and ``r_k`` for ``K`` terms, ``K`` doubling from 128 until the
    callback ``want(coef, r, K)`` reports every tail below ``10^-dps`` (or ``K_max``)."""
    K = 128
    while True:
        coef = {pt: homogeneous_coefficients_mp(act, B, K, pt) for pt in pts}
        r = r_coefficients_mp(B, K)
        ok, out = want(coef, r, K)
        if ok or K >= K_max:
            return out, K
        K *= 2


def _homogeneous_moments_mp(act, moments, B, dps):
    tol = mpmath.mpf(10) ** (-dps - 2)
    with mpmath.workdps(dps + 15):
        vals, errs = {}, {}
        for mo in moments:
            if mo.arity == 1:
                vals[mo] = _homogeneous_one_point(act, mo.points[0], B)
                errs[mo] = mpmath.mpf(10) ** (-dps - 10) * abs(vals[mo])
        two = [mo for mo in moments if mo.arity == 2]
        pts = sorted({pt for mo in two for pt in mo.points})

        def want(coef, r, K):
            ok, out = True, {}
            for mo in two:
                F, G = coef[mo.points[0]], coef[mo.points[1]]
                terms = [F[j] * G[j] * r[j] for j in range(K)]
                scale = mpmath.sqrt(mpmath.fsum(x * x for x in F) * mpmath.fsum(x * x for x in G))
                tail = _mp_tail(terms)
                out[mo] = (mpmath.fsum(terms), tail + scale * mpmath.mpf(10) ** (-dps - 10))
                ok &= tail <= tol * scale
            return ok, out

        K = 0
        if two:
            out, K = _homogeneous_series_mp(act, B, dps, pts, want)
            for mo, (v, e) in out.items():
                vals[mo], errs[mo] = v, e
        return {k: +v for k, v in vals.items()}, {k: +v for k, v in errs.items()}, K


def _homogeneous_rate_mp(act, B, dps):
    """Split form of Thm 9 with exact ``E[phi^2]``, ``a_0`` and ``E[(B-1-z^2) phi'^2]``."""
    tol = mpmath.mpf(10) ** (-dps - 2)
    with mpmath.workdps(dps + 15):
        Bm = mpmath.mpf(B)
        lam = (Bm - 3) / 2
        dirichlet = _homogeneous_dirichlet(act, B)
        phi2 = _homogeneous_one_point(act, Point(0, 2, 0), B)
        if mpmath.isinf(dirichlet):
            return mpmath.inf, mpmath.mpf(0), 0

        def want(coef, r, K):
            a = coef[PHI]
            ra2 = [mpmath.mpf(0)] + [r[j] * a[j] ** 2 for j in range(1, K)]
            tnum = [j * (j + 2 * lam) * ra2[j] for j in range(K)]
            num = dirichlet - mpmath.fsum(tnum)
            den = phi2 - a[0] ** 2 - mpmath.fsum(ra2)
            rate = num / (2 * lam * den)
            rel = _mp_tail(tnum) / abs(num) + _mp_tail(ra2) / abs(den)
            return rel <= tol, (rate, abs(rate) * (rel + mpmath.mpf(10) ** (-dps - 10)))

        (rate, err), K = _homogeneous_series_mp(act, B, dps, [PHI], want)
        return +rate, +err, K


def _richardson(ns, values, p0, order: int | None = None):
    """Limit of ``S(n) = S + sum_{i < J-1} c_i n^-(p0 + i)`` from ``J`` values ``S(n_j)``
    (generalised Richardson extrapolation with known leading exponent ``p0``; an exact
    linear solve at the current precision)."""
    J = len(ns) if order is None else order
    ns, values = ns[-J:], values[-J:]
    A = mpmath.matrix(J, J)
    for row, n in enumerate(ns):
        A[row, 0] = 1
        for i in range(1, J):
            A[row, i] = mpmath.mpf(n) ** (-(p0 + i - 1))
    sol = mpmath.lu_solve(A, mpmath.matrix(values))
    return sol[0]


@dataclass
class Thm9Acceleration:
    """Result of :func:`thm9_accelerated_mp` (all numbers mpmath)."""

    rate: object
    digits: float
    K: int
    partial_rate: object  # the plain truncated series at K terms
    numerator: object
    denominator: object
    numerator_check: object  # E[(B-1-z^2) phi'^2]/(B-3): what the smooth part must sum to
    details: dict = field(default_factory=dict)


def thm9_accelerated_mp(act: Activation, B: int, dps: int = 30, K: int = 4096, J: int = 10):
    """Paper Thm 9 for positive-homogeneous (kinked) ``phi`` from its terms alone, accelerated.

    Terms ``t_k = w_k c_k a_k^2`` (``w_k = k(k+2 lambda)/(2 lambda)`` or 1) with exact ``a_k``
    (closed form). Split ``c_k = 1 - r_k``:

    * the smooth part ``sum w_k a_k^2``: ``a_k^2 ~ k^-(2 alpha + 2) (1 + O(1/k))`` on each
      parity (from the ratio ``a_{k+2}/a_k``), so its partial sums have an error expansion in
      ``n^-(p0 + i)`` with ``p0 = 2 alpha - 1`` (numerator) or ``2 alpha + 1`` (denominator):
      generalised Richardson extrapolation on ``J`` partial sums at ``n = jK/J``;
    * the oscillating part ``sum w_k r_k a_k^2`` (``r_k ~ k^-lambda cos(k theta + ...)``)
      converges absolutely and is summed directly to ``K`` with a tail bound.

    The digits are those on which the extrapolations of orders ``J`` and ``J - 2`` and the
    tail bound agree (an honest spread, not a proof). Returns :class:`Thm9Acceleration`.
    """
    if act.homogeneous is None:
        raise GegenbauerError("closed-form coefficients need a positive-homogeneous phi")
    alpha = mpmath.mpf(act.homogeneous.alpha)
    if act.derivative_has_delta or alpha <= mpmath.mpf(1) / 2:
        raise GegenbauerError("the Thm 9 numerator diverges (E[phi'^2] is infinite)")
    K = 2 * (K // 2)
    with mpmath.workdps(dps + 20):
        Bm = mpmath.mpf(B)
        lam = (Bm - 3) / 2
        a = homogeneous_coefficients_mp(act, B, K + 1)
        r = r_coefficients_mp(B, K + 1)
        w = [k * (k + 2 * lam) / (2 * lam) for k in range(K + 1)]
        sn = [mpmath.mpf(0)] + [w[k] * a[k] ** 2 for k in range(1, K + 1)]
        sd = [mpmath.mpf(0)] + [a[k] ** 2 for k in range(1, K + 1)]
        on = [sn[k] * r[k] for k in range(K + 1)]
        od = [sd[k] * r[k] for k in range(K + 1)]
        # partial sums at n_j = j K / J (even n: both parities complete)
        step = 2 * max(1, K // (2 * J))
        ns = [j * step for j in range(1, J + 1)]
        cum_n, cum_d = [], []
        acc_n = acc_d = mpmath.mpf(0)
        for k in range(1, ns[-1] + 1):
            acc_n += sn[k]
            acc_d += sd[k]
            if k in ns:
                cum_n.append(acc_n)
                cum_d.append(acc_d)
        SN = _richardson(ns, cum_n, 2 * alpha - 1)
        SD = _richardson(ns, cum_d, 2 * alpha + 1)
        SN2 = _richardson(ns, cum_n, 2 * alpha - 1, order=J - 2)
        SD2 = _richardson(ns, cum_d, 2 * alpha + 1, order=J - 2)
        ON, OD = mpmath.fsum(on[1 : ns[-1] + 1]), mpmath.fsum(od[1 : ns[-1] + 1])
        tail_n, tail_d = _mp_tail(on[1 : ns[-1] + 1]), _mp_tail(od[1 : ns[-1] + 1])
        num, den = SN - ON, SD - OD
        rate = num / den
        alt = (SN2 - ON) / (SD2 - OD)
        spread = abs(rate - alt) + abs(rate) * (tail_n / abs(num) + tail_d / abs(den))
        digits = float(-mpmath.log10(spread / abs(rate))) if spread else float(dps)
        partial = (cum_n[-1] - ON) / (cum_d[-1] - OD)
        check = _homogeneous_dirichlet(act, B) / (2 * lam)
        return Thm9Acceleration(
            rate=+rate, digits=min(digits, dps), K=ns[-1], partial_rate=+partial,
            numerator=+num, denominator=+den, numerator_check=+check,
            details={"smooth_numerator": +SN, "smooth_denominator": +SD,
                     "oscillating_numerator": +ON, "oscillating_denominator": +OD,
                     "tail_bounds": (+tail_n, +tail_d)},
        )


# -- B = infinity ------------------------------------------------------------------------------


def _gaussian_expectation(act: Activation, pt: Point, dps: int):
    """``E[g^m phi(g)^p phi'(g)^q]``, ``g ~ N(0, 1)``: tanh-sinh on ``[-Z, Z]`` split at the kinks
    (``Z`` where the density is below ``10^-(dps+20)``). Returns ``(value, abs_error)``."""
    phi, dphi = act.mpmath, act.mpmath_derivative
    with mpmath.workdps(dps + 15):
        Z = mpmath.sqrt(2 * (dps + 20) * mpmath.log(10))
        pts = [-Z]
        for k in act.kinks:
            kv = _mp_number(k)
            if -Z < kv < Z:
                pts.append(kv)
        pts.append(Z)

        def integrand(g):
            val = _mp_point(pt, g, phi(g) if pt.p else 0, dphi(g) if pt.q else 0)
            return val * mpmath.exp(-g * g / 2)

        value, err = mpmath.quad(integrand, pts, error=True, maxdegree=10)
        norm = mpmath.sqrt(2 * mpmath.pi)
        return value / norm, abs(err) / norm + mpmath.mpf(10) ** (-dps - 8) * abs(value / norm)


def moments_gaussian_limit(act: Activation, moments, dps: int = 30):
    """Sphere moments at ``B = oo``: ``z -> g ~ N(0, 1)``, ``r_k -> 0`` for ``k >= 1`` so that
    two-point moments factorise, ``E[F(z1) G(z2)] -> E[F(g)] E[G(g)]`` (Funk-Hecke keeps only
    ``k = 0``). Returns ``{moment: (value, abs_error)}``."""
    cache: dict = {}

    def one(pt):
        if pt not in cache:
            cache[pt] = _gaussian_expectation(act, pt, dps)
        return cache[pt]

    out = {}
    for mo in moments:
        if mo.arity == 1:
            out[mo] = one(mo.points[0])
        else:
            (x1, e1), (x2, e2) = one(mo.points[0]), one(mo.points[1])
            out[mo] = (x1 * x2, abs(x1) * e2 + abs(x2) * e1)
    return out


def gradient_rate_limit(act: Activation, dps: int = 30):
    """``lim_{B -> oo}`` of Thm 9: ``sum k a_k^2 / sum_{k>=1} a_k^2 = E[phi'(g)^2] / Var(phi(g))``
    (Hermite: ``sum_k k a_k^2 = E[phi'(g)^2]``). Returns ``(value, abs_error)``."""
    if act.derivative_has_delta:
        return mpmath.inf, mpmath.mpf(0)
    (m1, e1) = _gaussian_expectation(act, Point(0, 1, 0), dps)
    (m2, e2) = _gaussian_expectation(act, Point(0, 2, 0), dps)
    (d2, ed) = _gaussian_expectation(act, Point(0, 0, 2), dps)
    with mpmath.workdps(dps + 10):
        var = m2 - m1 * m1
        evar = e2 + 2 * abs(m1) * e1
        rate = d2 / var
        return +rate, abs(rate) * (ed / abs(d2) + evar / abs(var))


# -- coefficients at mpmath precision (any phi) ----------------------------------------------------


def coefficients_mp(act: Activation, B: int, K: int, dps: int = 20, point: Point = PHI):
    """``a_k``, ``k < K``, of ``z^m phi^p phi'^q`` at ``dps`` digits: ``(values, abs_errors)``.

    Homogeneous ``phi``: closed form (errors ~ rounding). Otherwise quadrature (trapezoid or
    Gauss-Legendre split at kinks, as :func:`moments_gegenbauer_mp`) at two resolutions with
    at least ``2K`` nodes; the error is their difference (the coarser rule's error).
    """
    if act.homogeneous is not None:
        with mpmath.workdps(dps + 15):
            vals = homogeneous_coefficients_mp(act, B, K, point)
            return [+v for v in vals], [abs(v) * mpmath.mpf(10) ** (-dps - 5) for v in vals]
    with mpmath.workdps(dps + 15):
        prec = mpmath.mp.prec
        wdigits = 2 * dps + 12
        W = _mp_window(B, wdigits)
        root = mpmath.sqrt(mpmath.mpf(B) - 1)
        trap = not act.kinks and _use_trapezoid(B, wdigits)
        tol = mpmath.mpf(10) ** (-dps - 2)
        results = []
        step = 0
        panels0 = 1
        while 6 * 2 ** (_MP_PANEL_LEVEL - 1) * panels0 < 2 * K + 32:
            panels0 *= 2
        while True:
            if trap:
                nodes, wls = _mp_trapezoid_nodes(W, max(32, (K + 32) // 2) * 2**step)
            else:
                nodes, wls = _mp_gl_nodes(act, W, root, panels0 * 2**step, prec)
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
    wf = [c / norm * _mp_point(point, zi, phi(zi) if point.p else 0, dphi(zi) if point.q else 0)
          for c, zi in zip(cw, z)]
    out = []
    e_prev, e_cur, beta_prev = [mpmath.mpf(0)] * len(t), [mpmath.mpf(1)] * len(t), mpmath.mpf(0)
    for k in range(K):
        out.append(mpmath.fdot(wf, e_cur))
        beta = recurrence_beta(mpmath.mpf(k + 1), lam)
        e_next = [(ti * ec - beta_prev * ep) / beta for ti, ec, ep in zip(t, e_cur, e_prev)]
        e_prev, e_cur, beta_prev = e_cur, e_next, beta
    return out


# -- the table of the CLI ------------------------------------------------------------------------


@dataclass
class GegenbauerTable:
    """Coefficients ``a_k`` of ``phi`` at one batch size and the Thm 9 sums they give.

    ``rows[k]``: ``k``, ``a_k`` (decimal string), ``a_k_exact`` (SymPy string or None),
    ``c_k``, ``c_ak2`` (term of ``sum c_k a_k^2``), ``thm9_term`` (term of the Thm 9
    numerator), ``partial_denominator``, ``partial_numerator`` (running sums). ``partial``:
    the sums truncated at ``K`` (``q*`` by Parseval, ``q* c*`` by Funk-Hecke, the rate);
    ``total``: the rate to the digits achieved, and how.
    """

    activation: str
    B: int
    K: int
    dps: int
    rows: list
    partial: dict
    total: dict

    def summary_lines(self) -> list[tuple[str, str]]:
        lines = [(f"partial sums, K = {self.K}", "")]
        lines += [(f"  {k}", v) for k, v in self.partial.items()]
        lines.append(("gradient rate (Thm 9)", f"{self.total['rate']}  "
                      f"[{self.total['digits']:.1f} digits; {self.total['method']}]"))
        return lines

    def to_json(self) -> dict:
        return {"activation": self.activation, "batch_size": self.B, "terms": self.K,
                "dps": self.dps, "rows": self.rows, "partial": self.partial, "total": self.total}

    def to_text(self) -> str:
        return dg.table_text(self)

    def to_latex(self) -> str:
        return dg.table_latex(self)


_EXACT_MAX_CHARS = 160


def _exact_strings(act: Activation, B: int, K: int, limit: int):
    """Exact ``a_k`` as SymPy strings for ``k < min(K, limit)`` (polynomial: every ``k``)."""
    poly = dg.polynomial_coefficients(act.expr) if act.homogeneous is None else None
    out = []
    for k in range(K):
        if poly is not None:
            val = poly[k].subs(dg.B, B) if k < len(poly) else sp.Integer(0)
            text = str(sp.nsimplify(sp.simplify(val)))
            out.append(text if len(text) <= _EXACT_MAX_CHARS else None)
        elif act.homogeneous is not None and k < limit:
            text = str(dg.exact_coefficient(act, k, B))
            # at large B the exact value is a ratio of huge integers: not worth printing
            out.append(text if len(text) <= _EXACT_MAX_CHARS else None)
        else:
            out.append(None)
    return out


def gegenbauer_table(act: Activation, B: int, K: int, dps: int = 20, exact_terms: int = 16):
    """Rows ``k = 0..K-1`` for ``bnmft gegenbauer ACT --batch-size B --terms K``.

    Coefficients: closed form (homogeneous ``phi``, exact strings for ``k < exact_terms``),
    exact (polynomial ``phi``), or quadrature at ``dps`` digits. The total rate is the split
    form (exact resummation of the ``c_k = 1`` part) and, for homogeneous ``phi``, also the
    Richardson-accelerated series (:func:`thm9_accelerated_mp`); the better-converged one is
    reported with its digits.
    """
    B = int(B)
    with mpmath.workdps(dps + 15):
        a, aerr = coefficients_mp(act, B, K, dps)
        r = r_coefficients_mp(B, K)
        lam = (mpmath.mpf(B) - 3) / 2
        exact = _exact_strings(act, B, K, exact_terms)
        rows = []
        cum_d = cum_n = mpmath.mpf(0)
        parseval = funk = mpmath.mpf(0)
        for k in range(K):
            c = 1 - r[k]
            cd = c * a[k] ** 2 if k else mpmath.mpf(0)
            cn = k * (k + 2 * lam) / (2 * lam) * cd
            cum_d += cd
            cum_n += cn
            parseval += a[k] ** 2
            funk += r[k] * a[k] ** 2
            dig = max(1, min(dps, int(digits_from_error(a[k], aerr[k])))) if a[k] else dps
            rows.append({
                "k": k, "a_k": decimal_string(a[k], dig), "a_k_exact": exact[k],
                "c_k": decimal_string(c, dps), "c_ak2": decimal_string(cd, dps),
                "thm9_term": decimal_string(cn, dps),
                "partial_denominator": decimal_string(cum_d, dps),
                "partial_numerator": decimal_string(cum_n, dps),
            })
        partial = {
            "q_star (sum a_k^2)": decimal_string(parseval, dps),
            "q_star c_star (sum r_k a_k^2)": decimal_string(funk, dps),
            "sum c_k a_k^2": decimal_string(cum_d, dps),
            "Thm 9 numerator": decimal_string(cum_n, dps),
            "rate": decimal_string(cum_n / cum_d, dps) if cum_d else "nan",
        }
    total = _table_total(act, B, dps)
    return GegenbauerTable(act.name, B, K, dps, rows, partial, total)


def _table_total(act: Activation, B: int, dps: int) -> dict:
    """The best-converged Thm 9 total: split form (mpmath; float64 for kinked non-homogeneous
    ``phi``, whose series converge too slowly for mpmath to add digits) and, for homogeneous
    ``phi``, the accelerated series."""
    if act.derivative_has_delta:
        return {"rate": "inf", "digits": math.inf, "method": "phi' has a Dirac mass"}
    split = "split form: c_k = 1 part resummed exactly (Parseval, Dirichlet form)"
    candidates = []
    if act.kinks and act.homogeneous is None:
        value, err = gradient_rate_thm9(act, [B])
        candidates.append((digits_from_error(value[0], err[0]), mpmath.mpf(value[0]),
                           split + ", float64"))
    else:
        value, err = gradient_rate_thm9_mp(act, B, dps, strict=False)
        candidates.append((digits_from_error(value, err), value, split))
    if act.homogeneous is not None:
        acc = thm9_accelerated_mp(act, B, dps)
        candidates.append((acc.digits, acc.rate,
                           f"Richardson-accelerated series, K = {acc.K} closed-form terms"))
    digits, value, method = max(candidates, key=lambda c: c[0])
    shown = max(1, min(dps, int(digits))) if math.isfinite(digits) else dps
    return {"rate": decimal_string(value, shown), "digits": min(float(digits), float(dps)),
            "method": method}
