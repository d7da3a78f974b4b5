"""Closed-form sphere moments for positive-homogeneous activations.

A positive-homogeneous ``phi`` of degree ``alpha`` is ``A z^alpha`` for ``z > 0`` and
``C (-z)^alpha`` for ``z < 0`` (relu: ``A=1, C=0``; linear: ``C=-1``; abs: ``C=1``; leaky
relu with slope ``a``: ``C=-a``; step: ``alpha=0``).

Decoupling (the Laplace method of paper Thm 2 at the BSB1 point): for ``g ~ N(0, G)``,
``g = r u`` with ``r^2 ~ chi^2_{B-1}`` independent of ``u``. A function ``F`` of degree ``d``
then has ``E_gauss[F(g)] = E[(r^2/B)^{d/2}] E_sphere[F(sqrt(B) u)]``, so every sphere moment
is a Gaussian moment divided by a chi moment. The Gaussian side is a half moment (one
coordinate) or an orthant moment (two coordinates, correlation ``-1/(B-1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .gaussian import chi_square_moment, half_moment, orthant_moment
from .moments import Point, SphereMoment
from .symbols import B, RHO, c


@dataclass(frozen=True)
class Homogeneous:
    """``phi(z) = A z^alpha (z > 0),  C (-z)^alpha (z < 0)``."""

    alpha: sp.Expr
    A: sp.Expr
    C: sp.Expr

    def point_power(self, pt: Point) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        """``z^m phi^p phi'^q`` as ``(d, P, N)``: ``P |z|^d`` for ``z > 0``, ``N |z|^d`` for
        ``z < 0``."""
        a, A, C = self.alpha, self.A, self.C
        if pt.q and a.is_zero:
            raise DivergentMoment("phi' of a step activation is a Dirac delta")
        d = pt.m + pt.p * a + pt.q * (a - 1)
        P = A**pt.p * (a * A) ** pt.q
        N = (-1) ** pt.m * C**pt.p * (-a * C) ** pt.q
        return sp.nsimplify(d), sp.expand(P), sp.expand(N)


class DivergentMoment(ArithmeticError):
    """A sphere moment whose integral diverges (e.g. ``E[phi'(z)^2]`` for ``alpha <= 1/2``)."""


def _decoupling(d) -> sp.Expr:
    """``E[(r^2/B)^{d/2}]`` for ``r^2 ~ chi^2_{B-1}``."""
    return sp.expand_func(chi_square_moment(B - 1, d / 2) / B ** (d / 2))


def _integer_or_none(d):
    d = sp.nsimplify(d)
    return int(d) if d.is_integer else None


def _orthant(a, b, corr) -> sp.Expr:
    ia, ib = _integer_or_none(a), _integer_or_none(b)
    if ia is None or ib is None:
        from .gaussian import orthant_moment_hyper

        return orthant_moment_hyper(a, b, corr)
    return orthant_moment(ia, ib).subs(c, corr)


def dual_kernel(hom: Homogeneous, corr=c) -> sp.Expr:
    """``E[phi(u) phi(v)]`` for unit Gaussians with correlation ``corr`` (the vanilla dual kernel).

    Quadrants: ``A^2 M(a,a;c) + C^2 M(a,a;c) + 2 A C M(a,a;-c)`` with the orthant moment ``M``
    (the mixed quadrants see the correlation of ``u`` and ``-v``). For relu this is
    ``J(c)/2``; in general ``V_phi(S)_ij = (S_ii S_jj)^{alpha/2} K(S_ij / sqrt(S_ii S_jj))``.
    """
    a, A, C = hom.alpha, hom.A, hom.C
    same = (A**2 + C**2) * _orthant(a, a, corr) if (A**2 + C**2) != 0 else 0
    mixed = 2 * A * C * _orthant(a, a, -corr) if A * C != 0 else 0
    return sp.expand(same + mixed)


def convergence_condition(mo: SphereMoment, hom: Homogeneous) -> sp.Basic:
    """Where the moment's integral converges: ``d > -1`` for each coordinate's ``|z|^d``.

    ``True`` or ``False`` for numeric degrees; a relation such as ``alpha > 1/2`` for a
    symbolic degree (it becomes part of the quantity's validity domain).
    """
    conds = []
    for pt in mo.points:
        d, P, N = hom.point_power(pt)
        if P == 0 and N == 0:
            return sp.true
        conds.append(sp.Gt(d, -1))
    return sp.And(*conds)


def unit_gaussian_moment(points, hom: Homogeneous, corr=c) -> sp.Expr:
    """``E[prod_k g_k^m phi(g_k)^p phi'(g_k)^q]`` for unit Gaussians ``g`` (two points: of
    correlation ``corr``), one factor ``(m, p, q)`` per :class:`Point`.

    One point: ``(P + N) E[g^d 1{g > 0}]`` (half moment); two points: the four sign
    quadrants, ``sum P_or_N P_or_N M(d1, d2; +-corr)`` with the orthant moment ``M`` (a mixed
    quadrant sees the correlation of ``g_1`` and ``-g_2``). Raises :class:`DivergentMoment`
    where the integral diverges.
    """
    mo = SphereMoment(tuple(points))
    if mo.arity == 1:
        d, P, N = hom.point_power(mo.points[0])
        if P == 0 and N == 0:
            return sp.Integer(0)
        if convergence_condition(mo, hom) is sp.false:
            raise DivergentMoment(f"{mo.name} diverges (|z|^{d} near 0)")
        return (P + N) * half_moment(d)
    (d1, P1, N1), (d2, P2, N2) = (hom.point_power(p) for p in mo.points)
    if (P1 == 0 and N1 == 0) or (P2 == 0 and N2 == 0):
        return sp.Integer(0)
    if convergence_condition(mo, hom) is sp.false:
        raise DivergentMoment(f"{mo.name} diverges")
    total = sp.Integer(0)
    for s1, c1 in ((1, P1), (-1, N1)):
        for s2, c2 in ((1, P2), (-1, N2)):
            if c1 != 0 and c2 != 0:
                total += c1 * c2 * _orthant(d1, d2, s1 * s2 * corr)
    return total


def sphere_moment(mo: SphereMoment, hom: Homogeneous, corr=RHO) -> sp.Expr:
    """Closed form of a sphere moment of a homogeneous activation, as a function of ``B``.

    ``corr`` is the correlation of two coordinates of ``g ~ N(0, G)``, ``-1/(B-1)``; pass
    the symbol ``c`` to keep it symbolic (for presentation in terms of dual kernels).
    Decoupling: the Gaussian moment of ``g ~ N(0, G)`` (unit moment times ``sigma^d``,
    ``sigma^2 = (B-1)/B``) divided by the chi moment ``E[(r^2/B)^{d/2}]``.
    """
    gauss = unit_gaussian_moment(mo.points, hom, corr)
    if gauss == 0:
        return sp.Integer(0)
    sig2 = (B - 1) / B  # variance of one coordinate of g ~ N(0, G)
    degree = sum(hom.point_power(p)[0] for p in mo.points)
    return gauss * sig2 ** (degree / 2) / _decoupling(degree)


def input_scale(form: sp.Expr, alpha: sp.Expr, gamma: sp.Symbol, allowed=()) -> sp.Expr:
    """The factor by which a BSB1 quantity with moment form ``form`` changes when ``phi(x)``
    is replaced by ``phi(gamma x)``, ``gamma > 0``, for ``phi`` positive-homogeneous of degree
    ``alpha``: ``phi(gamma z) = gamma^alpha phi(z)`` and ``d/dz phi(gamma z) = gamma^alpha
    phi'(z)``, so a sphere moment with ``sum (p + q) = d`` over its points scales by
    ``gamma^(alpha d)``; the factor is the scaled form over the form (``gamma^(2 alpha)`` for
    ``q*``, 1 for the scale-free ratios). Raises ``ValueError`` if it depends on more than
    ``gamma`` and the symbols ``allowed`` (a symbolic degree)."""
    from .moments import moments_in

    if form == 0:
        return sp.Integer(1)
    subs = {mo.symbol: gamma ** (alpha * sum(pt.p + pt.q for pt in mo.points)) * mo.symbol
            for mo in moments_in(form)}
    ratio = sp.powsimp(sp.simplify(form.xreplace(subs) / form), force=True)
    if ratio.free_symbols - {gamma, *allowed}:
        raise ValueError(f"the scaling of {form} by phi(gamma x) is not a function of gamma")
    return ratio
