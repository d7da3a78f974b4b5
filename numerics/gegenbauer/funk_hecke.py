"""One rule level of the float route: moments by quadrature, two-point moments by
Funk-Hecke (``E[F(z1) G(z2)] = sum_k F_k G_k r_k``) and the split form of Thm 9, with
tail and rounding estimates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._common import EPS, PHI
from .grid import Grid, Values, project
from .recurrence import r_coefficients
from .tails import series_tail


@dataclass
class RulePass:
    """Everything one quadrature rule level gives for a chunk of batch sizes."""

    one: dict  # Point -> (nb,)
    one_abs: dict  # Point -> sum of |integrand| (rounding scale)
    coef: np.ndarray | None  # (nb, K, J)
    index: dict  # Point -> column of coef
    var: np.ndarray | None = None
    dirichlet: np.ndarray | None = None


def rule_passes(act, grid: Grid, one_pts, coef_pts, K, need_rate) -> list[RulePass]:
    """One :class:`RulePass` per rule level of ``grid``.

    One-point moments ``E[F] = sum_i wt_i F(z_i)`` (and ``sum_i wt_i |F(z_i)|``) for all
    points and levels in one batched matrix product.
    """
    vals = Values(act, grid.z)
    index = {pt: j for j, pt in enumerate(coef_pts)}
    coef = None
    if coef_pts:
        funcs = np.stack([vals.point(pt) for pt in coef_pts], axis=2)
        coef = project(grid, funcs, K)
    wt_rows = grid.wt.transpose(1, 0, 2)  # (nb, L, N)
    sums = None
    if one_pts:
        g = np.stack([vals.point(pt) for pt in one_pts], axis=2)
        sums = np.matmul(wt_rows, np.concatenate([g, np.abs(g)], axis=2))  # (nb, L, 2P)
    if need_rate:
        f = vals.f
        dirichlet = (grid.Bs - 1)[:, None] * np.matmul(
            wt_rows, (grid.cos2 * vals.g**2)[:, :, None])[:, :, 0]
        mean = np.matmul(wt_rows, f[:, :, None])  # (nb, L, 1)
    P = len(one_pts)
    out = []
    for lev, wt in enumerate(grid.wt):
        one = {pt: sums[:, lev, j] for j, pt in enumerate(one_pts)}
        one_abs = {pt: sums[:, lev, P + j] for j, pt in enumerate(one_pts)}
        res = RulePass(one, one_abs, None if coef is None else coef[lev], index)
        if need_rate:
            dev = f - mean[:, lev]
            # Var(phi) from centred values: q* - a_0^2 would cancel when |E phi| >> std(phi)
            res.var = np.einsum("bn,bn->b", wt, dev * dev)
            # E[(B-1-z^2) phi'^2] = (B-1) E[cos^2 d phi'^2]: no cancellation at the support edge
            res.dirichlet = dirichlet[:, lev]
        out.append(res)
    return out


@dataclass
class Assembled:
    values: dict  # key -> (nb,)
    tails: dict  # key -> (nb,)
    scales: dict  # key -> (nb,) magnitude for relative tolerances
    rounding: dict  # key -> (nb,)


def assemble(p: RulePass, Bs: np.ndarray, moments, want_rate: bool, K: int,
              nodes: int, r: np.ndarray | None = None) -> Assembled:
    """Two-point sums, the split Thm 9 rate, tails and rounding estimates for one rule level.

    Rounding: sums of ``N`` terms in float64 err by about ``sqrt(N) eps`` of the sum of
    absolute values (random-walk accumulation; the weights ``cos^{B-3} d`` themselves carry
    a few ulps), so ``4 sqrt(N) eps`` is charged for quadratures (for a coefficient ``F_k``:
    times ``||F||``, by Cauchy-Schwarz) and ``4 sqrt(K) eps`` for the series. ``r``: the
    ``r_k`` of ``Bs`` (computed if not given). The two-point moments are summed all at once.
    """
    vals, tails, scales, rnd = {}, {}, {}, {}
    qround = 4 * EPS * math.sqrt(nodes)
    sround = 4 * EPS * math.sqrt(max(K, 1))
    if p.coef is not None and r is None:
        r = r_coefficients(Bs, K)
    for mo in moments:
        if mo.arity == 1:
            pt = mo.points[0]
            vals[mo] = p.one[pt]
            tails[mo] = np.zeros_like(p.one[pt])
            scales[mo] = p.one_abs[pt]
            rnd[mo] = qround * p.one_abs[pt]
    two = [mo for mo in moments if mo.arity == 2]
    if two:
        # coefficient vectors as (nb, moments, K): k last, contiguous for the sums
        cT = p.coef.transpose(0, 2, 1)
        F = cT[:, [p.index[mo.points[0]] for mo in two], :]
        G = cT[:, [p.index[mo.points[1]] for mo in two], :]
        rr = r[:, None, :]
        terms = F * G * rr
        total = terms.sum(axis=2)
        tail = series_tail(terms)
        nF, nG = np.sqrt((F * F).sum(axis=2)), np.sqrt((G * G).sum(axis=2))
        scale = nF * nG
        # coefficient noise is ~qround ||F|| per k (Cauchy-Schwarz on the quadrature sum);
        # weighted by |r_k| it is small relative to the sum even where the sum itself is
        # small (E[phi(z1) phi(z2)] ~ -1/B for odd phi), so do not charge qround * scale
        absr = np.abs(rr)
        rounding = sround * np.abs(terms).sum(axis=2) + qround * (
            nG * (absr * np.abs(F)).sum(axis=2) + nF * (absr * np.abs(G)).sum(axis=2))
        for j, mo in enumerate(two):
            vals[mo], tails[mo], scales[mo], rnd[mo] = (
                total[:, j], tail[:, j], scale[:, j], rounding[:, j])
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
            tail_rel = series_tail(t_num) / np.abs(num) + series_tail(ra2) / np.abs(den)
            rnd_rel = r_num / np.abs(num) + r_den / np.abs(den)
        vals["rate"] = rate
        tails["rate"] = np.abs(rate) * tail_rel
        scales["rate"] = np.abs(rate)
        rnd["rate"] = np.abs(rate) * rnd_rel
    return Assembled(vals, tails, scales, rnd)


def assemble_levels(passes: list[RulePass], Bs: np.ndarray, moments, want_rate: bool, K: int,
                    nodes: int, r: np.ndarray | None = None) -> list[Assembled]:
    """:func:`assemble` of every rule level, in one call on the levels stacked as rows."""
    L, nb = len(passes), len(Bs)
    if L == 1:
        return [assemble(passes[0], Bs, moments, want_rate, K, nodes, r)]

    def cat(xs):
        return None if xs[0] is None else np.concatenate(xs)

    first = passes[0]
    stacked = RulePass(
        {pt: cat([p.one[pt] for p in passes]) for pt in first.one},
        {pt: cat([p.one_abs[pt] for p in passes]) for pt in first.one_abs},
        cat([p.coef for p in passes]), first.index,
        cat([p.var for p in passes]), cat([p.dirichlet for p in passes]))
    rs = None if r is None else np.tile(r, (L, 1))
    both = assemble(stacked, np.tile(Bs, L), moments, want_rate, K, nodes, rs)

    def part(d, i):
        return {key: v[i * nb : (i + 1) * nb] for key, v in d.items()}

    return [Assembled(part(both.values, i), part(both.tails, i), part(both.scales, i),
                      part(both.rounding, i)) for i in range(L)]
