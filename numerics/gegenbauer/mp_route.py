"""The mpmath route: one batch size, resolution doubled until every output reaches the
requested digits (trapezoid levels or composite Gauss-Legendre, see :mod:`.mp_grid`)."""

from __future__ import annotations

import operator

import mpmath
import numpy as np

from bnmft.derive import Activation
from bnmft.progress import progress

from .. import arbmath
from ..arbmath import point_evaluator
from ._common import CANCELLATION_MAX, PHI, GegenbauerError
from .homogeneous import moments_homogeneous_mp, rate_homogeneous_mp
from .mp_grid import gauss_nodes_mp, trapezoid_nodes_mp, use_trapezoid, window_angle_mp
from .recurrence import recurrence_beta
from .tails import series_tail_mp


def _mp_pass(act, B, nodes, weight_levels, moments, want_rate, tol, K_cap):
    """All outputs for each weight level on a set of angle nodes (one batch size, mpmath).

    Returns a list (per level) of ``{key: (value, tail, scale)}``. The coefficients are
    accumulated term by term; the loop stops once ``4`` consecutive terms of every series
    (``F_k G_k r_k``, ``k(k+2 lambda) r_k a_k^2``, ``r_k a_k^2``) are below ``tol`` times
    their scale, or at ``K_cap``.
    """
    FIXED = mpmath.mp.prec + 40  # noqa: N806 (fractional bits of the fixed-point recurrence)
    Bm = mpmath.mpf(B)
    lam = (Bm - 3) / 2
    rho = -1 / (Bm - 1)
    use_g = want_rate or any(p.q for mo in moments for p in mo.points)
    one_pts = sorted({mo.points[0] for mo in moments if mo.arity == 1})
    coef_pts = sorted({pt for mo in moments if mo.arity == 2 for pt in mo.points}
                      | ({PHI} if want_rate else set()))
    all_pts = sorted(set(one_pts) | set(coef_pts))
    # the values at the nodes in Arb balls (midpoints used: rounded arithmetic at the
    # working precision, as mpmath's, several times faster per node)
    with arbmath.precision(mpmath.mp.prec):
        Ba = arbmath.arb(B)
        root = (Ba - 1).sqrt()
        d = [arbmath.from_mpf(x) for x in nodes]
        sc = [x.sin_cos() for x in d]
        t = [s for s, _ in sc]
        z = [root * ti for ti in t]
        cos2 = [c * c for _, c in sc]
        # cos^{B-3} d = exp((B-3) log1p(-2 sin^2(d/2))): relative accuracy independent of B
        minus_two, half = arbmath.arb(-2), arbmath.arb(1) / 2
        cw = [((Ba - 3) * (minus_two * h * h).log1p()).exp()
              for h in ((x * half).sin() for x in d)]
        f, g = _phi_values(act, z, use_g)
        evaluate = point_evaluator(all_pts)
        fvals = dict(zip(all_pts, zip(*(evaluate(zi, fi, gi) for zi, fi, gi in zip(z, f, g)))))
        levels = []
        for wl in weight_levels:
            idx = [i for i, w in enumerate(wl) if w != 0]
            wt = [arbmath.from_mpf(wl[i]) * cw[i] for i in idx]
            norm = sum(wt[1:], wt[0])
            wt = [w / norm for w in wt]
            lev = {"idx": idx, "wt": wt, "out": {}}
            for pt in one_pts:
                vals = [wi * fvals[pt][i] for wi, i in zip(wt, idx)]
                lev["out"][pt] = (_to_mpf(sum(vals, _ZERO)), mpmath.mpf(0),
                                  _to_mpf(sum(map(abs, vals), _ZERO)))
            if want_rate:
                fl = [f[i] for i in idx]
                mean = sum(map(operator.mul, wt, fl), _ZERO)
                dev = [fi - mean for fi in fl]  # squares by multiplication (balls about 0)
                lev["var"] = _to_mpf(sum((wi * u * u for wi, u in zip(wt, dev)), _ZERO))
                lev["dirichlet"] = (Bm - 1) * _to_mpf(
                    sum((wi * cos2[i] * g[i] * g[i] for wi, i in zip(wt, idx)), _ZERO))
            # weights x point values as fixed-point integers on the level's nodes: every
            # node, or (nested trapezoid levels) every stride-th one, whose e_k are then a
            # slice of the finest level's
            stride = idx[1] - idx[0] if len(idx) > 1 else 1
            if idx != list(range(idx[0], len(nodes), stride)) or idx[0] != 0:
                stride = None
            lev["stride"] = stride
            wf = {pt: [0] * len(nodes) for pt in coef_pts}
            for pt in coef_pts:
                row, vals = wf[pt], fvals[pt]
                for w, i in zip(wt, idx):
                    row[i] = _fixed_arb(w * vals[i], FIXED)
            lev["wf"] = {pt: np.array(wf[pt][::stride] if stride else wf[pt], dtype=object)
                         for pt in coef_pts}
            lev["coef"] = {pt: [] for pt in coef_pts}
            levels.append(lev)
        T = np.array([_fixed_arb(ti, FIXED) for ti in t], dtype=object)
    # symmetric nodes (t_(N-1-i) = -t_i exactly, as the rules are): e_k(-t) = (-1)^k e_k(t)
    # (e_k has the parity of k), so the recurrence runs on the first ceil(N/2) nodes and
    # each coefficient sums the folded weights x values, w_i f_i + (-1)^k w_(N-1-i) f_(N-1-i)
    # (a strided level's nodes must be symmetric too: the stride divides N - 1)
    half = (len(T) + 1) // 2 if len(T) > 1 and np.array_equal(T, -T[::-1]) and all(
        not lev["stride"] or (len(T) - 1) % lev["stride"] == 0 for lev in levels) else None
    if half is not None:
        T = T[:half]
        for lev in levels:
            lev["fold"] = {pt: _fold(arr) for pt, arr in lev["wf"].items()}
    r = [mpmath.mpf(1), rho]
    # The three-term recurrence of the orthonormal e_k at all nodes at once, in fixed point
    # (Python integers scaled by 2^FIXED in numpy object arrays): absolute error ~ k 2^-FIXED
    # per value, far below the ``tol`` the coefficients are summed to.
    e_prev = np.array([0] * len(T), dtype=object)
    e_cur = np.array([1 << FIXED] * len(T), dtype=object)
    beta_prev = 0
    quiet = 0
    k = 0
    two = [mo for mo in moments if mo.arity == 2]
    norms = {pt: mpmath.mpf(0) for pt in coef_pts}
    for _ in progress(range(K_cap if coef_pts else 0), f"Gegenbauer terms, {len(nodes)} nodes",
                      K_cap):
        if k >= 2:
            r.append((2 * (k - 1 + lam) * rho * r[k - 1] - (k - 1) * r[k - 2]) / (k - 1 + 2 * lam))
        for lev in levels:
            for pt in coef_pts:
                e = e_cur[::lev["stride"]] if lev["stride"] else e_cur
                wf = lev["wf"][pt] if half is None else lev["fold"][pt][k % 2]
                lev["coef"][pt].append(mpmath.mpf((int(np.dot(wf, e)),
                                                   -2 * FIXED)))
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
        # e_{k+1} = (t e_k - beta_k e_{k-1}) / beta_{k+1}
        step = (T * e_cur) >> FIXED
        if beta_prev:
            step = step - ((beta_prev * e_prev) >> FIXED)
        e_next = (step * _fixed(1 / beta, FIXED)) >> FIXED
        e_prev, e_cur, beta_prev = e_cur, e_next, _fixed(beta, FIXED)
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
            res[mo] = (mpmath.fsum(terms), series_tail_mp(terms) if quiet < 4 else 2 * sum(
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
                tl = series_tail_mp(tnum) / abs(num) + series_tail_mp(ra2) / abs(den)
            res["rate"] = (rate, abs(rate) * tl, abs(rate))
            res["_num"], res["_den"] = num, den
        res["_K"] = K
        out.append(res)
    return out


def _fold(values: np.ndarray) -> tuple:
    """``(even, odd)``: ``v_i + v_(n-1-i)`` and ``v_i - v_(n-1-i)`` for ``i < n/2``, then the
    middle value (odd ``n``, a node at ``t = 0``, where every odd ``e_k`` is exactly 0) in
    both: the sums of ``v e_k`` over symmetric nodes are those of the even (``k`` even) or
    odd (``k`` odd) one with ``e_k`` on the first half of the nodes."""
    n = len(values)
    head, tail = values[:n // 2], values[::-1][:n // 2]
    middle = list(values[n // 2:n // 2 + 1]) if n % 2 else []
    even = np.array(list(head + tail) + middle, dtype=object)
    odd = np.array(list(head - tail) + middle, dtype=object)
    return even, odd


def _fixed(x, bits: int) -> int:
    """``x`` (mpmath) as the integer nearest ``x 2^bits``."""
    return int(mpmath.nint(mpmath.ldexp(x, bits)))


def _fixed_arb(x, bits: int) -> int:
    """The midpoint of the ball ``x`` as the integer nearest ``x 2^bits`` (ties away from 0)."""
    man, exp = x.mid().man_exp()
    man, shift = int(man), int(exp) + bits
    if shift >= 0:
        return man << shift
    half = 1 << (-shift - 1)
    return (man + half) >> -shift if man >= 0 else -((-man + half) >> -shift)


_ZERO = arbmath.arb(0)


def _to_mpf(x) -> mpmath.mpf:
    """An Arb midpoint rounded to the current mpmath precision."""
    return +arbmath.to_mpf(x)


def _phi_values(act: Activation, z: list, use_g: bool) -> tuple[list, list]:
    """``phi`` and (if ``use_g``) ``phi'`` at the balls ``z``: Arb for ``phi`` without kinks,
    mpmath (``Piecewise`` branches) with kinks."""
    prec = mpmath.mp.prec
    if not act.kinks:
        pair = arbmath.arb_function_pair(act.expr, act.derivative, prec)
        if use_g:
            f, g = zip(*(pair(zi) for zi in z)) if z else ((), ())
            return [_as_arb(v) for v in f], [_as_arb(v) for v in g]
        phi = arbmath.arb_function(act.expr, prec)
        return [_as_arb(phi(zi)) for zi in z], [_ZERO] * len(z)
    zm = [arbmath.to_mpf(zi) for zi in z]
    f = [arbmath.from_mpf(act.mpmath(zi)) for zi in zm]
    g = [arbmath.from_mpf(act.mpmath_derivative(zi)) for zi in zm] if use_g else [_ZERO] * len(z)
    return f, g


def _as_arb(value):
    """An arb from an arb or a number (a constant branch of ``phi`` gives a number)."""
    return value if isinstance(value, arbmath.arb) else arbmath.from_mpf(value)


def _mp_level_error(history, key):
    """Error of the newest value from a sequence of resolutions (``history[i][key][0]``,
    oldest first), as :func:`.float_route._quadrature_error`: with ``e1``, ``e2`` the last two
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


def _cancellation(vals, errs, scales) -> int:
    """Digits by which outputs lie below their scales (``||F|| ||G||`` for a two-point moment:
    the terms ``F_k G_k r_k`` of its Funk-Hecke sum are that large). A value still at the
    noise level counts as large as its error, so this may take a second look."""
    worst = 0
    for key, value in vals.items():
        size = max(abs(value), errs[key])
        if size and scales[key] > size:
            worst = max(worst, int(mpmath.ceil(mpmath.log10(scales[key] / size))))
    return min(worst, CANCELLATION_MAX)


def _mp_run(act: Activation, B, moments, want_rate: bool, dps: int, max_nodes: int | None = None):
    """Values and absolute errors of ``moments`` (and ``"rate"``) at one batch size, mpmath,
    to ``dps`` digits *relative to each output's magnitude*: ``((values, errors, K, nodes),
    done)``.

    :func:`_mp_run_at` controls errors relative to each output's scale; a two-point moment far
    below its Cauchy-Schwarz scale (``tanh(x)^1000`` at ``B = 8``: ``4e-39`` against ``2e-14``)
    would then keep no digit, so the run is repeated with the working digits raised by that
    cancellation (at most :data:`CANCELLATION_MAX`).
    """
    # the coarsest resolution's values (their errors aside) already show the cancellation:
    # the run starts at the digits it needs instead of being repeated (the loop below
    # still repeats it if the converged values cancel further)
    (vals, _, scales, _, _), _ = _mp_run_at(act, B, moments, want_rate, dps, max_nodes,
                                            max_steps=1)
    extra = _cancellation(vals, {key: 0 for key in vals}, scales)
    for _ in range(3):
        (vals, errs, scales, K, npts), done = _mp_run_at(act, B, moments, want_rate,
                                                         dps + extra, max_nodes)
        need = _cancellation(vals, errs, scales)
        if need <= extra:
            break
        extra = need
    floor = mpmath.mpf(10) ** -CANCELLATION_MAX
    done = done and all(errs[key] <= mpmath.mpf(10) ** (-dps - 2) * max(
        abs(vals[key]), floor * scales[key]) for key in vals)
    return (vals, errs, K, npts), done


def _mp_run_at(act: Activation, B, moments, want_rate: bool, dps: int,
               max_nodes: int | None = None, max_steps: int | None = None):
    """Values, absolute errors and scales of ``moments`` (and ``"rate"``) at one batch size,
    mpmath: ``((values, errors, scales, K, nodes), done)``; ``max_steps``: stop after that
    many resolutions (a probe of the values' sizes).

    Resolution doubles until every output's quadrature error (level spread, extrapolated)
    plus series tail is below ``10^-dps`` of its scale; ``done`` is False if ``max_nodes``
    (default 6000; 1600 for kinked ``phi``) is reached first. Kinked ``phi``
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
        W = window_angle_mp(B, wdigits)
        root = mpmath.sqrt(mpmath.mpf(B) - 1)
        trap = not act.kinks and use_trapezoid(B, wdigits)
        history = []
        res = None
        K_cap = 4096
        step = 0
        while True:
            if trap:
                M = 16 * 2**step
                nodes, wls = trapezoid_nodes_mp(W, M)
            else:
                nodes, wls = gauss_nodes_mp(act, W, root, 2**step, prec)
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
                   {key: +cur[key][2] for key in keys}, cur["_K"] if "_K" in cur else 0, npts)
            step += 1
            if done or npts >= max_nodes or step == max_steps:
                return res, done


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
        vals, errs, scales, K = moments_homogeneous_mp(act, moments, B, dps)
        floor = mpmath.mpf(10) ** -CANCELLATION_MAX
        done, npts = all(errs[mo] <= mpmath.mpf(10) ** (-dps) * max(abs(vals[mo]),
                                                                    floor * scales[mo])
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
        value, err, K = rate_homogeneous_mp(act, B, dps)
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
