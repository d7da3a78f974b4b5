"""Gaussian moments of a vanilla layer by quadrature, in float64 and in Arb ball arithmetic.

A one-point moment ``E[z^m phi(u)^p phi'(u)^r]`` has ``u = sigma z`` with ``z ~ N(0, 1)`` and
``sigma = sqrt(q)``; a two-point moment has ``u1 = sigma z1`` and
``u2 = sigma (c z1 + s z2)``, ``s = sqrt(1 - c^2)`` (``c = 1`` is the one-point moment of the
product). Each standard normal is integrated over ``[-Z, Z]`` (:func:`window`: the tails,
weighted by the integrand's growth, are below the target) with Gauss-Legendre on pieces:

* pieces of length :data:`Z_PIECE` in ``z`` (the Gaussian's own scale);
* in ``u``: breakpoints at ``0, +-1, +-2, +-4, ...`` (the scale of ``phi``'s features, which
  sit near the origin for the activations in use: poles of ``tanh`` on the imaginary axis,
  the bend of ``softplus``), so that a wide Gaussian (large ``q``) still resolves ``phi``;
* kinks of ``phi`` (for the inner variable: the kink lines ``u2 = k``, which move with
  ``z1``), with the power substitution of :mod:`.sphere` at algebraic kinks.

Moments are self-normalised (divided by the same rule applied to the Gaussian weight alone,
per outer node for the inner integral). Errors: float64 compares two rule levels; Arb raises
the level until the extrapolated error (:func:`.sphere._extrapolated_error`, three levels) is
below the target.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from sympy import N as sp_N

from . import arbmath
from .rules import rule_float
from .sphere import QuadratureError, _extrapolated_error, _inner_nodes, _piece_nodes, _pieces
from .sphere import _rule_arb, _rule_kind

#: Largest rule level (6 * 2^(level-1) nodes per piece).
MAX_LEVEL_MP = 7
MAX_LEVEL_FLOAT = 6
#: Smallest trapezoid step 2^-(level-1) for analytic phi.
MAX_LEVEL_TRAPEZOID = 9
#: Relative error the float64 route aims for (and claims at best about that).
FLOAT_RTOL = 1e-14
#: Outer nodes per chunk of the vectorised two-point float64 quadrature (bounds memory).
_CHUNK = 256


def window(act, spread, digits) -> mpmath.mpf:
    """Half-width ``Z`` of the standard-normal range: ``exp(-Z^2/2)`` times the growth of
    ``1 + phi^2 + phi'^2`` between ``|u| = spread`` and ``|u| = spread Z`` (and a ``(1+Z^2)^2``
    allowance for powers of ``z``) is below ``10^-digits``."""
    phi, dphi = act.mpmath, act.mpmath_derivative
    with mpmath.workdps(20):
        def size(u):
            try:
                return 1 + abs(phi(u)) ** 2 + abs(dphi(u)) ** 2
            except (ArithmeticError, ValueError, TypeError):
                return mpmath.mpf(1)

        spread = mpmath.mpf(spread)
        ref = max(size(spread), size(-spread))
        base = 2 * mpmath.log(10) * digits
        Z = mpmath.sqrt(base)
        for _ in range(8):
            env = max(size(spread * Z), size(-spread * Z)) / ref * (1 + Z * Z) ** 2
            new = mpmath.sqrt(base + 2 * mpmath.log(max(env, 1)))
            if abs(new - Z) < mpmath.mpf("0.01"):
                return new
            Z = new
        return Z


def _feature_points(lo, hi) -> list:
    """``0, +-1, +-2, +-4, ...`` inside ``(lo, hi)`` (the scale of phi's features)."""
    out = []
    extent = max(abs(lo), abs(hi))
    if lo < 0 < hi:
        out.append(0)
    k = 1
    while k < extent:
        out.extend(v for v in (k, -k) if lo < v < hi)
        k *= 2
    return out


#: Spacing of the breakpoints in ``z``: on a piece of this length the Gaussian factor is
#: resolved to 1e-25 by 24 Gauss-Legendre nodes (its Taylor terms (3/2)^(2k)/(2^k k!) are
#: below that from 2k = 48 on).
Z_PIECE = 3


def breakpoints(mu, tau, Z, kinks, power: int) -> dict:
    """``{z: power}`` on ``[-Z, Z]`` for ``u = mu + tau z``: the window ends, pieces of
    :data:`Z_PIECE` in ``z``, the feature points and kinks of ``u`` (kinks carry the
    substitution power)."""
    pts = {-Z: 1, Z: 1}
    for j in range(-int(Z), int(Z) + 1, Z_PIECE):
        if -Z < j < Z:
            pts.setdefault(j, 1)
    if tau > 0:
        lo, hi = mu - tau * Z, mu + tau * Z
        for u in _feature_points(lo, hi):
            pts.setdefault((u - mu) / tau, 1)
        for k in kinks:
            if lo < k < hi:
                pts[(k - mu) / tau] = power
    return pts


def _pieces_of(pts: dict) -> list[tuple]:
    keys = sorted(pts)
    return [(a, b, pts[a], pts[b]) for a, b in zip(keys[:-1], keys[1:]) if b > a]


def _split(moments):
    one = [mo for mo in moments if mo.arity == 1]
    two = [mo for mo in moments if mo.arity == 2]
    return one, two


def _factor(pt, z, f, g):
    val = 1
    for base, power in ((z, pt.m), (f, pt.p), (g, pt.q)):
        for _ in range(power):
            val = val * base
    return val


# -- float64 --------------------------------------------------------------------------------


def _float_pass(act, moments, sigma: float, corr, Z: float, level: int) -> dict:
    kind, power = _rule_kind(act)
    rule = rule_float(kind, level)
    kinks = list(act.kink_floats)
    phi, dphi = act.numpy, act.numpy_derivative
    one, two = _split(moments)
    out = {}
    z1, w1 = _piece_nodes(_pieces_of(breakpoints(0.0, sigma, Z, kinks, power)), rule)
    w1 = w1 * np.exp(-z1 * z1 / 2)
    u1 = sigma * z1
    f1, g1 = phi(u1), dphi(u1)
    norm1 = w1.sum()
    for mo in one:
        out[mo] = float(np.dot(w1, _factor(mo.points[0], z1, f1, g1)) / norm1)
    if not two:
        return out
    if corr == 1:
        for mo in two:
            a, b = mo.points
            out[mo] = float(np.dot(w1, _factor(a, 0, f1, g1) * _factor(b, 0, f1, g1)) / norm1)
        return out
    s = math.sqrt((1 - corr) * (1 + corr))
    tau = sigma * s
    sums = {mo: 0.0 for mo in two}
    for start in range(0, len(z1), _CHUNK):
        sl = slice(start, start + _CHUNK)
        mu = sigma * corr * z1[sl]
        brk = _inner_breaks(mu, tau, Z, kinks)
        d2, w2 = _inner_nodes(brk, rule, power, Z)
        w2 = w2 * np.exp(-d2 * d2 / 2)
        u2 = mu[:, None, None] + tau * d2
        f2, g2 = phi(u2), dphi(u2)
        inner_norm = w2.sum(axis=(1, 2))
        for mo in two:
            a, b = mo.points
            inner = (w2 * _factor(b, 0, f2, g2)).sum(axis=(1, 2)) / inner_norm
            sums[mo] += float(np.dot(w1[sl] * _factor(a, 0, f1[sl], g1[sl]), inner))
    for mo in two:
        out[mo] = sums[mo] / norm1
    return out


def _inner_breaks(mu: np.ndarray, tau: float, Z: float, kinks) -> np.ndarray:
    """Inner breakpoints, one sorted row per outer node (fixed count; candidates outside the
    window are clipped to its ends and give empty pieces)."""
    n = len(mu)
    cols = [np.full(n, -Z), np.full(n, Z)]
    cols += [np.full(n, float(j)) for j in range(-int(Z), int(Z) + 1, Z_PIECE) if -Z < j < Z]
    extent = float(np.max(np.abs(mu))) + tau * Z if n else 0.0
    feats = [0.0]
    k = 1.0
    while k < extent:
        feats += [k, -k]
        k *= 2
    for u in feats + list(kinks):
        cols.append(np.clip((u - mu) / tau, -Z, Z))
    return np.sort(np.stack(cols, axis=1), axis=1)


def moments_float(act, moments, q: float, corr=None) -> tuple[dict, dict]:
    """``(values, abs errors)`` in float64; levels are raised until two agree to
    :data:`FLOAT_RTOL` (the error is their difference plus rounding)."""
    moments = list(moments)
    sigma = math.sqrt(q)
    _, two = _split(moments)
    Z = float(window(act, sigma * (math.sqrt(2) if two else 1), 17))
    prev = _float_pass(act, moments, sigma, corr, Z, 3)
    for level in range(4, MAX_LEVEL_FLOAT + 1):
        cur = _float_pass(act, moments, sigma, corr, Z, level)
        errs = {mo: abs(cur[mo] - prev[mo]) + 8e-16 * abs(cur[mo]) for mo in moments}
        if all(errs[mo] <= FLOAT_RTOL * max(abs(cur[mo]), 1e-300) for mo in moments):
            return cur, errs
        prev = cur
    return cur, errs


# -- Arb ------------------------------------------------------------------------------------


def _arb_pass(act, moments, sigma, corr, Z, level: int, prec: int) -> dict:
    one, two = _split(moments)
    with arbmath.precision(prec):
        phi = arbmath.arb_function(act.expr, prec)
        dphi = arbmath.arb_function(act.derivative, prec)
        kinks = [mpmath.mpf(sp_N(k, mpmath.mp.dps + 5)) for k in act.kinks]
        kind, power = _rule_kind(act)
        rule = _rule_arb(kind, level, prec)
        A = arbmath.from_mpf
        zero = arbmath.arb(0)
        sig = A(sigma)
        sums = {mo: zero for mo in moments}
        norm1 = zero
        norm2 = zero
        exact_one = corr is not None and corr == 1
        if two and not exact_one:
            c_ = A(corr)
            s_mp = mpmath.sqrt((1 - corr) * (1 + corr))
            tau_mp = sigma * s_mp
            tau = A(tau_mp)
        outer = _pieces_of(breakpoints(mpmath.mpf(0), sigma, Z, kinks, power))
        for z1, w1 in _pieces(_arb_pieces(outer), rule):
            wt1 = w1 * (-(z1 * z1) / 2).exp()
            u1 = sig * z1
            f1, g1 = phi(u1), dphi(u1)
            norm1 += wt1
            for mo in one:
                sums[mo] += wt1 * _factor(mo.points[0], z1, f1, g1)
            if not two:
                continue
            if exact_one:
                for mo in two:
                    a, b = mo.points
                    sums[mo] += wt1 * _factor(a, 0, f1, g1) * _factor(b, 0, f1, g1)
                continue
            mu_mp = sigma * corr * arbmath.to_mpf(z1)
            mu = sig * c_ * z1
            inner_pieces = _pieces_of(breakpoints(mu_mp, tau_mp, Z, kinks, power))
            inner = {mo: zero for mo in two}
            inner_norm = zero
            for z2, w2 in _pieces(_arb_pieces(inner_pieces), rule):
                wt2 = w2 * (-(z2 * z2) / 2).exp()
                u2 = mu + tau * z2
                f2, g2 = phi(u2), dphi(u2)
                inner_norm += wt2
                for mo in two:
                    inner[mo] += wt2 * _factor(mo.points[1], 0, f2, g2)
            norm2 += wt1
            for mo in two:
                sums[mo] += wt1 * _factor(mo.points[0], 0, f1, g1) * inner[mo] / inner_norm
        out = {}
        for mo in moments:
            norm = norm2 if (mo.arity == 2 and not exact_one) else norm1
            out[mo] = arbmath.to_mpf(sums[mo] / norm)
        return out


def _arb_pieces(pieces):
    return [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb) for a, b, pa, pb in pieces]


def _trapezoid_levels(act, moments, sigma, corr, Z, prec: int):
    """Nested trapezoid rules in ``z`` (steps ``1, 1/2, 1/4, ...``) for ``phi`` analytic on
    the real line; yields ``{moment: value}`` per level.

    For an integrand analytic in a strip ``|Im z| < d`` the error of step ``h`` is about
    ``exp(-2 pi d / h)``, so halving ``h`` squares it (the same geometric regime as doubling
    Gauss-Legendre nodes), and each level only adds the new nodes: the odd multiples of the
    new step, in two dimensions every pair with an odd index.
    """
    one, two = _split(moments)
    exact_one = corr is not None and corr == 1
    with arbmath.precision(prec):
        A = arbmath.from_mpf
        phi = arbmath.arb_function(act.expr, prec)
        dphi = arbmath.arb_function(act.derivative, prec)
        zero = arbmath.arb(0)
        sig = A(sigma)
        if two and not exact_one:
            cz = sig * A(corr)
            tau = sig * A(mpmath.sqrt((1 - corr) * (1 + corr)))
        nodes: list = []  # (z, weight, f, g) on the current grid, index k -> z = k h
        inner: list = []  # per outer node: {moment: inner sum} on the current inner grid
        norm = zero
        sums = {mo: zero for mo in one}
        level = 0
        h = mpmath.mpf(1)
        while True:
            level += 1
            K = int(mpmath.floor(Z / h))
            new_idx = range(-K, K + 1) if level == 1 else range(-K | 1, K + 1, 2)
            grid: dict = {2 * k: v for k, v in nodes}  # the previous nodes at step h
            hh = A(h)
            for k in new_idx:
                z = hh * k
                w = (-(z * z) / 2).exp()
                u = sig * z
                grid[k] = (z, w, phi(u), dphi(u))
                norm += w
                for mo in one:
                    sums[mo] += w * _factor(mo.points[0], z, grid[k][2], grid[k][3])
            keys = sorted(grid)
            out = {mo: arbmath.to_mpf(sums[mo] / norm) for mo in one}
            if two and exact_one:
                for mo in two:
                    a, b = mo.points
                    tot = sum((w * _factor(a, 0, f, g) * _factor(b, 0, f, g)
                               for z, w, f, g in grid.values()), zero)
                    out[mo] = arbmath.to_mpf(tot / norm)
            elif two:
                new_set = set(new_idx)
                old_inner = {2 * k: v for k, v in inner} if level > 1 else {}
                inner = []
                total = {mo: zero for mo in two}
                inner_norm = norm  # the inner grid is the outer grid (same steps, window)
                for k1 in keys:
                    z1, w1, f1, g1 = grid[k1]
                    acc = dict(old_inner.get(k1, {mo: zero for mo in two}))
                    mu = cz * z1
                    fresh = keys if k1 in new_set else new_idx
                    for k2 in fresh:
                        z2, w2 = grid[k2][0], grid[k2][1]
                        u2 = mu + tau * z2
                        f2, g2 = phi(u2), dphi(u2)
                        for mo in two:
                            acc[mo] += w2 * _factor(mo.points[1], 0, f2, g2)
                    inner.append((k1, acc))
                    for mo in two:
                        total[mo] += w1 * _factor(mo.points[0], 0, f1, g1) * acc[mo]
                for mo in two:
                    out[mo] = arbmath.to_mpf(total[mo] / (norm * inner_norm))
            nodes = [(k, grid[k]) for k in keys]
            yield out
            h /= 2


def moments_arb(act, moments, q, corr, dps: int) -> dict:
    """``{moment: (value, abs error)}`` to ``dps`` digits (Arb integrands, mpmath geometry);
    raises :class:`~.sphere.QuadratureError` if :data:`MAX_LEVEL_MP` does not reach them.
    Call inside ``mpmath.workdps`` (at least ``dps + 10``)."""
    moments = list(moments)
    q = mpmath.mpf(q)
    sigma = mpmath.sqrt(q)
    _, two = _split(moments)
    Z = window(act, sigma * (mpmath.sqrt(2) if two else 1), dps + 5)
    corr = None if corr is None else mpmath.mpf(corr)
    prec = mpmath.mp.prec + 20
    tol = mpmath.mpf(10) ** (-dps - 1)
    history: dict = {mo: [] for mo in moments}
    if not act.kinks and not act.singular:
        passes = _trapezoid_levels(act, moments, sigma, corr, Z, prec)
        max_level = MAX_LEVEL_TRAPEZOID
    else:
        passes = (_arb_pass(act, moments, sigma, corr, Z, level, prec)
                  for level in range(1, MAX_LEVEL_MP + 1))
        max_level = MAX_LEVEL_MP
    for level, cur in zip(range(1, max_level + 1), passes):
        for mo in moments:
            history[mo].append(cur[mo])
        if level < 3:
            continue
        errs = {mo: _extrapolated_error(history[mo], cur[mo]) for mo in moments}
        if all(e <= tol for e in errs.values()):
            floor = mpmath.mpf(10) ** (-dps - 5)
            return {mo: (+cur[mo], errs[mo] * abs(cur[mo]) + floor * abs(cur[mo]))
                    for mo in moments}
    raise QuadratureError(f"Gaussian quadrature at q = {mpmath.nstr(q, 8)} did not reach "
                          f"{dps} digits")
