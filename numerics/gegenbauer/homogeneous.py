"""Positive-homogeneous ``phi`` (relu, leaky relu, alpha-relu, abs, linear): closed-form
coefficients of :mod:`bnmft.derive.gegenbauer` instead of quadrature, exact one-point
moments and Dirichlet form, series summed to their tails (float64 and mpmath).

With kinks the series converge only algebraically, so they are summed to ``K <= 2^15``
(float) or ``2^14`` (mpmath) terms, which limits the digits at small ``B`` (reported).
"""

from __future__ import annotations

import math
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import gegenbauer as dg
from bnmft.derive import Activation
from bnmft.derive import Point
from bnmft.progress import progress

from ._common import (
    CANCELLATION_MAX,
    EPS,
    PHI,
    GegenbauerError,
    Plan,
    check_batch_sizes,
)
from .recurrence import r_coefficients, r_coefficients_mp
from .tails import series_tail, series_tail_mp


@lru_cache(maxsize=8)
def _homogeneous_functions():
    """Lambdified (mpmath) closed forms from :mod:`bnmft.derive.gegenbauer`: the recurrence
    start ``a_0/(A+C)``, ``a_1/(A-C)`` in ``(alpha, lambda)`` and ``E_w[t_+^s (1-t^2)^nu]``
    in ``(s, nu, B)``."""
    from bnmft.derive import B as B_SYM

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
    Bs = check_batch_sizes(Bs)
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


def one_point_moment(act: Activation, pt: Point, B):
    """``E[z^m phi^p phi'^q] = (P + N) (B-1)^(d/2) E_w[t_+^d]`` (mpmath; ``inf`` if divergent)."""
    d, P, N = _point_homogeneous(act, pt)
    if P + N == 0:
        return mpmath.mpf(0)
    if d <= -1:
        return mpmath.inf
    _, half = _homogeneous_functions()
    Bm = mpmath.mpf(B)
    return mpmath.mpf(P + N) * (Bm - 1) ** (mpmath.mpf(d) / 2) * half(mpmath.mpf(d), 0, Bm)


def dirichlet_form(act: Activation, B):
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


def run_homogeneous(act, Bs, moments, want_rate, rtol, info):
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
                vals = [one_point_moment(act, mo.points[0], Bv) for Bv in Bs]
                out_v[mo][:] = [float(v) for v in vals]
                out_e[mo][:] = 4 * EPS * np.abs(out_v[mo])
        if want_rate:
            dirichlet = np.array([float(dirichlet_form(act, Bv)) for Bv in Bs])
            phi2 = np.array([float(one_point_moment(act, Point(0, 2, 0), Bv)) for Bv in Bs])
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
                tail = float(series_tail(terms[None])[0])
                res[mo] = (float(terms.sum()), tail + 8 * EPS * (np.abs(terms).sum() + scale))
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
                tails = (float(series_tail(t_num[None])[0]) / abs(num)
                         + float(series_tail(ra2[None])[0]) / abs(den))
                rnd = 8 * EPS * (np.abs(t_num).sum() / abs(num) + phi2[i] / abs(den))
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


# -- mpmath precision ------------------------------------------------------------------------


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
    for k in progress(range(K - 2), "closed-form a_k", K - 2):
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


def moments_homogeneous_mp(act, moments, B, dps):
    """Moments at ``dps`` digits from the closed-form coefficients: ``(values, errors, scales,
    K)``; two-point series summed until the tail is below ``10^-(dps+2)`` of the moment
    (floored at ``10^-(dps+2+CANCELLATION_MAX)`` of its Cauchy-Schwarz scale ``||F|| ||G||``)
    or ``K`` reaches ``K_max``."""
    tol = mpmath.mpf(10) ** (-dps - 2)
    with mpmath.workdps(dps + 15):
        vals, errs, scales = {}, {}, {}
        for mo in moments:
            if mo.arity == 1:
                vals[mo] = one_point_moment(act, mo.points[0], B)
                errs[mo] = mpmath.mpf(10) ** (-dps - 10) * abs(vals[mo])
                scales[mo] = abs(vals[mo])
        two = [mo for mo in moments if mo.arity == 2]
        pts = sorted({pt for mo in two for pt in mo.points})
        floor = mpmath.mpf(10) ** -CANCELLATION_MAX

        def want(coef, r, K):
            ok, out = True, {}
            for mo in two:
                F, G = coef[mo.points[0]], coef[mo.points[1]]
                terms = [F[j] * G[j] * r[j] for j in range(K)]
                scale = mpmath.sqrt(mpmath.fsum(x * x for x in F) * mpmath.fsum(x * x for x in G))
                tail = series_tail_mp(terms)
                value = mpmath.fsum(terms)
                out[mo] = (value, tail + scale * mpmath.mpf(10) ** (-dps - 10), scale)
                ok &= tail <= tol * max(abs(value), floor * scale)
            return ok, out

        K = 0
        if two:
            out, K = _homogeneous_series_mp(act, B, dps, pts, want)
            for mo, (v, e, s) in out.items():
                vals[mo], errs[mo], scales[mo] = v, e, s
        return ({k: +v for k, v in vals.items()}, {k: +v for k, v in errs.items()},
                {k: +v for k, v in scales.items()}, K)


def rate_homogeneous_mp(act, B, dps):
    """Split form of Thm 9 with exact ``E[phi^2]``, ``a_0`` and ``E[(B-1-z^2) phi'^2]``."""
    tol = mpmath.mpf(10) ** (-dps - 2)
    with mpmath.workdps(dps + 15):
        Bm = mpmath.mpf(B)
        lam = (Bm - 3) / 2
        dirichlet = dirichlet_form(act, B)
        phi2 = one_point_moment(act, Point(0, 2, 0), B)
        if mpmath.isinf(dirichlet):
            return mpmath.inf, mpmath.mpf(0), 0

        def want(coef, r, K):
            a = coef[PHI]
            ra2 = [mpmath.mpf(0)] + [r[j] * a[j] ** 2 for j in range(1, K)]
            tnum = [j * (j + 2 * lam) * ra2[j] for j in range(K)]
            num = dirichlet - mpmath.fsum(tnum)
            den = phi2 - a[0] ** 2 - mpmath.fsum(ra2)
            rate = num / (2 * lam * den)
            rel = series_tail_mp(tnum) / abs(num) + series_tail_mp(ra2) / abs(den)
            return rel <= tol, (rate, abs(rate) * (rel + mpmath.mpf(10) ** (-dps - 10)))

        (rate, err), K = _homogeneous_series_mp(act, B, dps, [PHI], want)
        return +rate, +err, K
