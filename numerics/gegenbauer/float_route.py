"""The float64 route: many batch sizes at once, terms and nodes grown until the estimated
errors meet the tolerance (see the package docstring)."""

from __future__ import annotations

import math

import numpy as np

from bnmft.derive import Activation
from bnmft.derive import Point

from ._common import EPS, PHI, GegenbauerError, Plan, check_batch_sizes
from .funk_hecke import Assembled, assemble, assemble_levels, rule_passes
from .grid import TRAPEZOID_MIN_B, gauss_grid, trapezoid_grid
from .homogeneous import run_homogeneous
from .recurrence import c_coefficients, r_coefficients

_K_MAX_SMOOTH = 1024
#: Kinked, non-homogeneous ``phi`` (coefficients by quadrature): the series converge only
#: algebraically, so the terms are capped and the tail is reported in the error.
_K_MAX_KINKED = 768
_N_MAX = 4096


#: Batch sizes per chunk (the terms ``K`` adapt chunk by chunk).
_CHUNK = 64


def _quadrature_error(levels: list[Assembled], key) -> np.ndarray:
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


#: A chunk whose largest series tail is above this fraction of its bound (``rtol/10`` of the
#: scale) hands the next, smaller batch sizes more terms to start with.
_TAIL_GROW_AHEAD = 1e-3

#: The first chunk of a rule, if larger than this, is first solved on three of its rows.
_PROBE_MIN = 8


class _ChunkSolver:
    """Grow ``K`` and the nodes for one chunk until its checks pass (or the caps are reached).

    ``state`` (``K``, ``trap``, ``gl``: the trapezoid and Gauss-Legendre node counts) is
    updated in place, so later chunks start from it (the trapezoid count shrinks only by the
    bisection of a probe, to the smallest count that passed).
    """

    def __init__(self, act, moments, want_rate, rtol, one_pts, coef_pts, keys, K_max):
        self.act, self.moments, self.want_rate, self.rtol = act, moments, want_rate, rtol
        self.one_pts, self.coef_pts, self.keys, self.K_max = one_pts, coef_pts, keys, K_max

    def _evaluate(self, Bc, trap: bool, K: int, n: int):
        """One pass at ``K`` terms and ``n`` nodes: ``(hi, quad, nodes, tail_bad, quad_bad)``."""
        act, moments, want_rate, rtol = self.act, self.moments, self.want_rate, self.rtol
        one_pts, coef_pts, keys = self.one_pts, self.coef_pts, self.keys
        r = r_coefficients(Bc, K) if coef_pts else None
        if trap:
            M = (n + 3) // 4
            grid = trapezoid_grid(Bc, M)
            nodes = 4 * M + 1
            levels = assemble_levels(rule_passes(act, grid, one_pts, coef_pts, K, want_rate),
                                     Bc, moments, want_rate, K, nodes, r)
        else:
            m = max(16, (3 * n) // 4)
            grids = [gauss_grid(act, Bc, nn) for nn in (n, m)]
            levels = [
                assemble(rule_passes(act, gr, one_pts, coef_pts, K, want_rate)[0],
                          Bc, moments, want_rate, K, gr.t.shape[1], r)
                for gr in grids
            ]
            nodes = n
        hi = levels[0]
        quad = {key: _quadrature_error(levels, key) for key in keys}
        tail_bad = any(np.any(hi.tails[key] > 0.1 * rtol * hi.scales[key]) for key in keys)
        # rounding noise differs between the rules too: do not chase it with more nodes
        quad_bad = any(np.any(quad[key] > rtol * hi.scales[key] + 2 * hi.rounding[key])
                       for key in keys)
        return hi, quad, nodes, tail_bad, quad_bad

    def _floor(self, trap: bool, K: int, state: dict) -> int:
        kind = "trap" if trap else "gl"
        # the coarser Gauss-Legendre rule must resolve e_k up to K too, or it only measures
        # aliasing; the trapezoid rule needs more nodes than terms
        state[kind] = max(state[kind], K + 16 if trap else (4 * (K + 24)) // 3)
        return state[kind]

    def __call__(self, Bc, trap: bool, state: dict, refine: bool = False):
        """Solve the chunk ``Bc``; ``refine`` (trapezoid rule): afterwards bisect the node count
        between the last failing and the passing one (for a probe: the next solve starts
        from it)."""
        kind = "trap" if trap else "gl"
        failed = None  # the node count of the last pass that failed on quadrature alone
        while True:
            K = state["K"]
            n = self._floor(trap, K, state)
            hi, quad, nodes, tail_bad, quad_bad = self._evaluate(Bc, trap, K, n)
            if tail_bad and K < self.K_max and self.coef_pts:
                state["K"] = min(self.K_max, int(K * 1.5) + 1)
                failed = None
                continue
            if quad_bad and nodes < _N_MAX:
                failed = n
                state[kind] = int(n * 1.4)
                continue
            break
        # trapezoid only: each new Gauss-Legendre size costs a 40-digit Newton solve
        if refine and trap and failed is not None and not (tail_bad or quad_bad):
            lo, good = failed, n
            while good - lo > 8:
                mid = (lo + good) // 2
                *_, t_bad, q_bad = self._evaluate(Bc, trap, K, mid)
                lo, good = (mid, good) if (t_bad or q_bad) else (lo, mid)
            state[kind] = good
        bound = {key: 0.1 * self.rtol * hi.scales[key] for key in self.keys}
        state["tail_ratio"] = max(
            (float(np.max(np.divide(hi.tails[key], bound[key], where=bound[key] > 0,
                                    out=np.zeros_like(bound[key])), initial=0.0))
             for key in self.keys), default=0.0)
        return hi, quad, nodes


def _run(act: Activation, Bs, moments, want_rate: bool, rtol: float, info: dict | None,
         K0: int = 12, n0: int = 48, K_max: int | None = None):
    """Values and absolute error estimates of ``moments`` (and the Thm 9 rate) for each ``B``.

    Batch sizes are processed in decreasing order in chunks; each chunk starts from the
    ``K`` of the previous one and grows ``K`` and the nodes until the series tails are below
    ``rtol/10`` and the quadrature levels agree to ``rtol`` (relative to each moment's
    scale), or the caps are reached (the estimate then says so).
    """
    Bs = check_batch_sizes(Bs)
    moments = list(moments)
    if act.homogeneous is not None:
        uses_dphi = want_rate or any(p.q for mo in moments for p in mo.points)
        if act.homogeneous.alpha == 0 and uses_dphi:
            raise GegenbauerError("phi' of a step activation is a Dirac mass: moments with phi' "
                                  "are infinite")
        return run_homogeneous(act, Bs, moments, want_rate, rtol, info)
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
    state = {"K": K0, "trap": n0, "gl": n0}
    solve = _ChunkSolver(act, moments, want_rate, rtol, one_pts, coef_pts, keys, K_max)
    start = 0
    probed = set()
    while start < len(order):
        trap = smooth and Bs[order[start]] >= TRAPEZOID_MIN_B
        idx = [i for i in order[start : start + _CHUNK]
               if (smooth and Bs[i] >= TRAPEZOID_MIN_B) == trap]
        start += len(idx)
        Bc = Bs[idx]
        if len(idx) > _PROBE_MIN and trap not in probed:
            # the first chunk of each rule grows the nodes from n0 (several passes): do that on
            # a few rows (largest, middle, smallest B) first; the full chunk is then checked as
            # is. Later chunks start from converged counts and mostly pass at once.
            probed.add(trap)
            solve(Bc[[0, len(idx) // 2, len(idx) - 1]], trap, state, refine=True)
        hi, quad, nodes = solve(Bc, trap, state)
        for key in keys:
            out_v[key][idx] = hi.values[key]
            out_e[key][idx] = quad[key] + hi.tails[key] + hi.rounding[key]
        used_K[idx] = state["K"] if coef_pts else 0
        used_n[idx] = nodes
        if coef_pts and state["tail_ratio"] > _TAIL_GROW_AHEAD and state["K"] < K_max:
            # the tails grow fast towards smaller B (r_k ~ (k/B)^(k/2)): the next chunk would
            # most likely fail at this K, so it starts with more terms (it is checked all the same)
            state["K"] = min(K_max, int(state["K"] * 1.5) + 1)
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
    p = rule_passes(act, gauss_grid(act, Bs, n), [], [point], K, False)[0]
    a = p.coef[:, :, 0]
    if not with_error:
        return a
    q = rule_passes(act, gauss_grid(act, Bs, (3 * n) // 4), [], [point], K, False)[0]
    rnd = 4 * EPS * math.sqrt(n) * np.sqrt((a * a).sum(axis=1, keepdims=True))
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
