"""float64 quadrature in the angle ``t = sin d`` and projection onto the Gegenbauer basis.

Window where ``cos^{B-3} d >= 10^-36``; Gauss-Legendre split at the kinks of ``phi`` (power
substitution at singular kinks) or, where the truncation is deep, the trapezoid rule with
nested ``2h``, ``4h`` sub-rules (see the package docstring). Weights are normalised by
their own sum; ``e_k`` at the nodes by the orthonormal recurrence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bnmft.derive import Activation
from bnmft.derive import Point

from ..rules import gauss_legendre_nodes, tanh_sinh_float
from .recurrence import recurrence_beta

#: Weight truncation: nodes where ``cos^{B-3} d < 10^-WINDOW_DIGITS`` are dropped (float route).
WINDOW_DIGITS = 36


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
    correctly rounded (see :func:`bnmft.numerics.rules.gauss_legendre_nodes`)."""
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
class Grid:
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


def _finish_grid(Bs, root, d, w) -> Grid:
    w = w * _cos_power((Bs - 3)[:, None], d)
    if w.ndim == 2:
        w = w[None]
    w = w / w.sum(axis=2, keepdims=True)
    t = np.sin(d)
    cd = np.cos(d)
    return Grid(Bs, (Bs - 3) / 2, root, t, root[:, None] * t, cd * cd, w)


def gauss_grid(act: Activation, Bs: np.ndarray, n: int,
          window_digits: float = WINDOW_DIGITS) -> Grid:
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
#: see :func:`.mp_grid.use_trapezoid`), so the truncated integrand is "periodic to all orders" and
#: the trapezoid rule converges geometrically, with ~2/pi of the Gauss-Legendre nodes and
#: nested levels for free. Below it the weight ends like ``(pi/2 - d)^(B-3)``, whose
#: derivative jumps spoil the trapezoid rule; Gauss-Legendre is used.
TRAPEZOID_MIN_B = 48


def trapezoid_grid(Bs: np.ndarray, M: int, window_digits: float = WINDOW_DIGITS) -> Grid:
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


class Values:
    """``phi``, ``phi'`` at the nodes of a grid (each evaluated once, on demand)."""

    def __init__(self, act: Activation, z: np.ndarray):
        self.act, self.z = act, z
        self._f = self._g = None
        self._points = {}

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
        """``z^m phi^p phi'^q`` at the nodes (cached)."""
        if pt in self._points:
            return self._points[pt]
        val = None
        for power, base in ((pt.m, "z"), (pt.p, "f"), (pt.q, "g")):
            if power:
                x = getattr(self, base)
                factor = x if power == 1 else x**power
                val = factor if val is None else val * factor
        if val is None:
            val = np.ones_like(self.z)
        self._points[pt] = val
        return val


def project(grid: Grid, funcs: np.ndarray, K: int) -> np.ndarray:
    """``F_{k,j} = sum_i wt_i e_k(t_i) funcs_{i,j}`` for ``k < K``: array ``(levels, nb, K, J)``.

    The ``e_k`` at the nodes come from the orthonormal recurrence
    ``e_{k+1} = (t e_k - beta_k e_{k-1}) / beta_{k+1}`` (all ``beta`` computed at once), stored
    ``k``-major, and are contracted with the weighted functions of all levels in one batched
    matrix product.
    """
    nb, N = grid.t.shape
    L, J = grid.wt.shape[0], funcs.shape[2]
    # all levels at once, (nb, N, L, J) written directly in that layout
    wf = np.empty((nb, N, L, J))
    np.multiply(grid.wt.transpose(1, 2, 0)[:, :, :, None], funcs[:, :, None, :], out=wf)
    beta = recurrence_beta(np.arange(1, K + 1, dtype=float)[:, None, None],
                           grid.lam[None, :, None])  # (K, nb, 1)
    E = np.empty((K, nb, N))
    E[0] = 1.0
    t = grid.t
    if K > 1:
        np.divide(t, beta[0], out=E[1])
    scratch = np.empty((nb, N))
    for k in range(1, K - 1):
        np.multiply(t, E[k], out=E[k + 1])
        np.multiply(beta[k - 1], E[k - 1], out=scratch)
        E[k + 1] -= scratch
        E[k + 1] /= beta[k]
    out = np.matmul(E.transpose(1, 0, 2), wf.reshape(nb, N, L * J))  # (nb, K, L*J)
    return out.reshape(nb, K, L, J).transpose(2, 0, 1, 3)
