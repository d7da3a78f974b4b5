"""Sphere moments as certified enclosures: rigorous quadrature with ``acb.integral`` (Arb).

The moments are those of THEORY.md, "The sphere picture": ``z = sqrt(B) u``, ``u`` uniform
on the unit sphere of the zero-sum hyperplane.

* One coordinate: ``z = sqrt(B-1) x``, ``x`` of density ``prop. (1 - x^2)^((B-4)/2)`` on
  ``[-1, 1]``; with ``x = cos t`` the weight is ``sin^(B-3) t`` on ``[0, pi]``, normalised
  by ``Gamma((B-1)/2) / (Gamma((B-2)/2) sqrt(pi))`` (paper Thm 4, eq 13).
* Two coordinates: density ``prop. Z^((B-5)/2)``, ``Z = B(B-2) - B(z1^2 + z2^2) +
  (z1 - z2)^2`` on the ellipse ``Z > 0`` (THEORY.md, Thm 7). In polar coordinates
  ``z = r (cos theta, sin theta)``, ``Z = B(B-2) - r^2 (B - 1 + sin 2 theta)``, so the ellipse
  is ``r <= R(theta) = sqrt(B(B-2) / (B - 1 + sin 2 theta))``; with ``r = R sin psi``,
  ``psi in [0, pi/2]``, the weight becomes ``sin psi cos^(B-4) psi`` (no endpoint
  singularity, even at ``B = 4``) and

      E[F] = (B-3) sqrt(B(B-2)) / (2 pi) Int_0^{2 pi} dtheta / (B - 1 + sin 2 theta)
                 Int_0^{pi/2} dpsi sin psi cos^(B-4) psi F(R sin psi cos theta, R sin psi sin theta)

  (the constant is the integral of ``Z^((B-5)/2)``, ``2 pi (B(B-2))^((B-4)/2) / (B-3)``).

Positive-homogeneous ``phi`` (``phi(z) = A z^a`` for ``z > 0``, ``C (-z)^a`` for ``z < 0``):
the kinks are at ``z = 0``, so the one-coordinate integral is split at ``t = pi/2`` and the
polar one at the quadrant lines, where ``z1^m phi^p phi'^q (z1) ... = P r^d |cos|^d1 |sin|^d2``
is analytic (``|cos theta|`` written as ``+-cos theta`` on its piece); the radial factor
``r^d`` then separates, leaving one ``theta`` and one ``psi`` integral per quadrant.
Non-integer powers are evaluated with Arb's ``analytic`` flag, so a piece that ends at a
branch point (``z^(3/2)`` at ``z = 0``) is handled by Arb's subdivision towards it.

Smooth ``phi`` (no kinks: tanh, erf): the polar integral is computed as a nested integral
(the inner ``psi`` integral at each ``theta`` node), and a second, independent route uses
the hyperspherical angles of paper Thm 4 (``z1 = -sqrt(B-1) cos t1``, ``z2 = (cos t1 -
sqrt(B(B-2)) sin t1 cos t2) / sqrt(B-1)``, weights ``sin^(B-3) t1 sin^(B-4) t2``) for two
coordinates and the ``x`` form above for one, each normalised by the quadrature of its own
weight. Two moments share one complex integral (real and imaginary part). Nested quadrature in
Arb: the outer integrator evaluates its integrand at nodes
(point balls: the inner integral is computed by ``acb.integral`` to full accuracy) and on
complex balls around sub-intervals for its error bound; there the inner integral is
enclosed by ``sum width_k * F(theta, psi-ball_k)`` over a fixed partition of the inner
interval, which is a valid enclosure, and holomorphy in ``theta`` is checked by passing
the outer ``analytic`` flag to every branch function (of the geometry and of phi) on the
whole ``(theta, psi)`` ball.

Every number here is a ball that contains the exact moment (Arb's quadrature error bounds
and ball arithmetic); a moment whose ball is not finite raises :class:`RigorousFailure`.
"""

from __future__ import annotations

import sympy as sp
from flint import acb, arb, ctx

from bnmft.derive import Activation, x
from bnmft.derive.moments import Point, SphereMoment

from .arbprinter import ball_function


class RigorousFailure(ArithmeticError):
    """A rigorous quadrature did not give a finite enclosure."""


_UNIT = arb(0, 1)  # the ball [-1, 1]

#: Pieces of the inner interval for the enclosure of an inner integral on a complex ball.
_ENCLOSURE_PIECES = 24


def _tolerances(bits: int):
    tol = arb(2) ** (-bits)
    return dict(rel_tol=tol, abs_tol=tol)


def _integral(fn, a, b, bits: int, what: str, complex_value: bool = False):
    """``acb.integral`` to ``2^-bits`` (relative and absolute); the real part, or the
    complex ball if ``complex_value``."""
    value = acb.integral(fn, a, b, **_tolerances(bits))
    if not value.is_finite():
        raise RigorousFailure(f"the rigorous quadrature of {what} gave no finite enclosure")
    return value if complex_value else value.real


def _power(z, e: sp.Rational, analytic: bool):
    """``z^e`` for a rational ``e``: integer powers exactly, half-integers through ``sqrt``,
    else ``acb.pow``; non-integer powers respect the ``analytic`` flag (branch cut)."""
    if e.is_Integer:
        return z ** int(e)
    if e.q == 2:
        return z.sqrt(analytic=analytic) ** int(e.p)
    if e.p > 0:
        # principal q-th root (exact exponent, unlike exp(e log z)); analytic off (-oo, 0]
        if not (z.real > 0 or z.imag > 0 or z.imag < 0):
            if analytic:
                return acb("nan")
            # a ball around the branch point z = 0 (Arb's root gives NaN there):
            # |z^e| <= |z|_max^e encloses every value
            top = abs(z).upper()
            if top == 0:
                return acb(0)
            bound = (arb(top) ** (arb(int(e.p)) / int(e.q))).upper()
            return acb(arb(0, bound), arb(0, bound))
        return z.root(int(e.q)) ** int(e.p)
    return z.pow(acb(int(e.p)) / int(e.q), analytic=analytic)


def _nested(outer, inner, a, b, c, d, bits: int, what: str) -> acb:
    """``Int_a^b Int_c^d`` with ``outer(theta, analytic) -> (factor, state)`` and
    ``inner(state, psi, analytic)``: the integrand is ``factor * inner``."""
    threshold = arb(2) ** (-(bits // 2))
    width = (arb(d) - arb(c)) / _ENCLOSURE_PIECES
    tols = _tolerances(bits + 8)

    def f(theta, analytic):
        factor, state = outer(theta, analytic)
        if theta.rad() < threshold:  # a quadrature node: the inner integral itself
            val = acb.integral(lambda p, an: inner(state, p, an), c, d, **tols)
        else:  # a ball for the error bound: a coarse but valid enclosure of the integral
            val = acb(0)
            for k in range(_ENCLOSURE_PIECES):
                # the ball mid +- width/2 covers the k-th piece (outward rounding)
                ball = arb(c) + width * (2 * k + 1) / 2 + _UNIT * (width / 2)
                # the outer flag: a branch function of phi must be holomorphic on the
                # whole (theta, psi) ball, which implies holomorphy in theta
                val += width * inner(state, acb(ball), analytic)
        return factor * val

    return _integral(f, a, b, bits, what, complex_value=True)


# -- positive-homogeneous phi: pieces at the kinks, radius separated -----------------------


def _bounded(d, what: str) -> None:
    if d < 0:
        raise RigorousFailure(f"{what}: the integrand behaves like |z|^({d}) at the kink z = 0, "
                              f"unbounded; Arb's quadrature cannot enclose it")


def _one_point_homogeneous(act: Activation, pt: Point, B: int, bits: int) -> arb:
    d, P, N = act.homogeneous.point_power(pt)
    _bounded(d, f"E[{pt.text('z')}]")
    pi = arb.pi()
    total = arb(0)
    for coeff, lo, hi, sign in ((P, 0, pi / 2, 1), (N, pi / 2, pi, -1)):
        if coeff == 0:
            continue
        c = _real(coeff)

        def f(t, an, sign=sign):
            return t.sin() ** (B - 3) * _power(sign * t.cos(), d, an)

        total += c * _integral(f, lo, hi, bits, f"E[{pt.text('z')}]")
    norm = arb((B - 1) / arb(2)).gamma() / (arb((B - 2) / arb(2)).gamma() * pi.sqrt())
    return norm * _power(acb(B - 1), d / 2, False).real * total


def _two_point_homogeneous(act: Activation, mo: SphereMoment, B: int, bits: int) -> arb:
    (d1, P1, N1), (d2, P2, N2) = (act.homogeneous.point_power(p) for p in mo.points)
    _bounded(min(d1, d2), mo.name)
    d = sp.nsimplify(d1 + d2)
    pi = arb.pi()
    quadrants = (  # (sign of z1, sign of z2, coefficient, theta range)
        (1, 1, P1 * P2, 0, pi / 2), (-1, 1, N1 * P2, pi / 2, pi),
        (-1, -1, N1 * N2, pi, 3 * pi / 2), (1, -1, P1 * N2, 3 * pi / 2, 2 * pi),
    )
    angular = arb(0)
    for s1, s2, coeff, lo, hi in quadrants:
        coeff = sp.expand(coeff)
        if coeff == 0:
            continue

        def f(th, an, s1=s1, s2=s2):
            den = B - 1 + (2 * th).sin()
            return (_power(s1 * th.cos(), d1, an) * _power(s2 * th.sin(), d2, an)
                    / _power(den, 1 + d / 2, an))

        angular += _real(coeff) * _integral(f, lo, hi, bits, f"the angular part of {mo.name}")
    if angular == 0:
        return arb(0)

    def radial(psi, an):
        return _power(psi.sin(), 1 + d, an) * psi.cos() ** (B - 4)

    rad = _integral(radial, 0, pi / 2, bits, f"the radial part of {mo.name}")
    BB = arb(B * (B - 2))
    scale = _power(acb(BB), d / 2, False).real
    return (B - 3) * BB.sqrt() / (2 * pi) * scale * angular * rad


def _real(value: sp.Expr) -> arb:
    from .arbprinter import evaluate

    return evaluate(value)


# -- smooth phi: nested polar (route A) and Thm 4 angles (route B) ---------------------------


def _point_function(act: Activation, pt: Point):
    expr = x**pt.m * act.expr**pt.p * act.derivative**pt.q
    return ball_function(expr, (x,), complex_mode=True)


def _one_point_t(act: Activation, pt: Point, B: int, bits: int) -> arb:
    fn = _point_function(act, pt)
    root = arb(B - 1).sqrt()
    pi = arb.pi()

    def f(t, an):
        return t.sin() ** (B - 3) * fn(root * t.cos(), analytic=an)

    norm = arb((B - 1) / arb(2)).gamma() / (arb((B - 2) / arb(2)).gamma() * pi.sqrt())
    return norm * _integral(f, 0, pi, bits, f"E[{pt.text('z')}]")


def _one_point_x(act: Activation, pt: Point, B: int, bits: int) -> arb:
    fn = _point_function(act, pt)
    root = arb(B - 1).sqrt()
    e = sp.Rational(B - 4, 2)

    def weight(u, an):
        return _power(1 - u * u, e, an)

    mass = _integral(weight, -1, 1, bits, "the mass of the one-coordinate law")
    value = _integral(lambda u, an: weight(u, an) * fn(root * u, analytic=an), -1, 1, bits,
                      f"E[{pt.text('z')}] (x form)")
    return value / mass


def _packed(functions):
    """``[(f1, f2), ...]`` (at most two pairs) as one complex integrand: pair ``k`` is
    multiplied by ``i^k``. On the real line each product is real, so the real and imaginary
    parts of the integral are the two moments; the sum is holomorphic wherever each
    product is, so Arb's error bound for the complex integral covers both parts."""
    unit = (acb(1), acb(0, 1))

    def combine(z1, z2, an):
        total = acb(0)
        for k, (f1, f2) in enumerate(functions):
            total += unit[k] * f1(z1, analytic=an) * f2(z2, analytic=an)
        return total
    return combine


def _unpack(value: acb, count: int) -> list[arb]:
    return [value.real, value.imag][:count]


def _two_point_polar(act: Activation, mos, B: int, bits: int) -> list[arb]:
    """Two moments at once (real and imaginary part), nested polar quadrature."""
    F = _packed([tuple(_point_function(act, p) for p in mo.points) for mo in mos])
    pi = arb.pi()
    BB = arb(B * (B - 2))

    def outer(th, an):
        den = B - 1 + (2 * th).sin()
        R = (BB / den).sqrt(analytic=an)
        return 1 / den, (R * th.cos(), R * th.sin())

    def inner(state, psi, an):
        rc, rs = state
        s = psi.sin()
        return s * psi.cos() ** (B - 4) * F(rc * s, rs * s, an)

    names = " and ".join(mo.name for mo in mos)
    total = _nested(outer, inner, 0, 2 * pi, 0, pi / 2, bits, names)
    return [v * (B - 3) * BB.sqrt() / (2 * pi) for v in _unpack(total, len(mos))]


def _two_point_angles(act: Activation, mos, B: int, bits: int) -> list[arb]:
    """Two moments at once, nested quadrature in the Thm 4 angles ``t1``, ``t2``."""
    F = _packed([tuple(_point_function(act, p) for p in mo.points) for mo in mos])
    pi = arb.pi()
    root = arb(B - 1).sqrt()
    spread = arb(B * (B - 2)).sqrt() / root

    def outer(t1, an):
        c1 = t1.cos()
        return t1.sin() ** (B - 3), (-root * c1, c1 / root, spread * t1.sin())

    def inner(state, t2, an):
        z1, a, b = state
        return t2.sin() ** (B - 4) * F(z1, a - b * t2.cos(), an)

    names = " and ".join(mo.name for mo in mos)
    total = _nested(outer, inner, 0, pi, 0, pi, bits, f"{names} (Thm 4 angles)")
    m1 = _integral(lambda t, an: t.sin() ** (B - 3), 0, pi, bits, "the weight sin^(B-3)")
    m2 = _integral(lambda t, an: t.sin() ** (B - 4), 0, pi, bits, "the weight sin^(B-4)")
    return [v / (m1 * m2) for v in _unpack(total, len(mos))]


# -- entry points --------------------------------------------------------------------------

#: Routes: name -> (one-point, two-point) moment functions and a description.
ROUTES = {
    "polar": "rigorous quadrature: t-angle (one coordinate) and polar (theta, psi) "
             "sphere integrals",
    "angles": "rigorous quadrature: x form (one coordinate) and Thm 4 angles (t1, t2)",
}


def sphere_moments(act: Activation, moments, B: int, bits: int, route: str = "polar") -> dict:
    """``{SphereMoment: arb}`` at batch size ``B``: each ball contains the exact moment.

    ``route``: ``"polar"`` (both kinds of phi; pieces and separated radius for
    positive-homogeneous phi, nested quadrature for smooth phi) or ``"angles"`` (smooth phi
    only). ``bits``: the tolerance ``2^-bits`` asked of each quadrature.
    """
    old = ctx.prec
    ctx.prec = bits + 20
    try:
        out = {}
        if act.homogeneous is not None:
            if route != "polar":
                raise ValueError("positive-homogeneous phi: only the polar route")
            for mo in moments:
                out[mo] = (_one_point_homogeneous(act, mo.points[0], B, bits) if mo.arity == 1
                           else _two_point_homogeneous(act, mo, B, bits))
            return out
        one, two = ((_one_point_t, _two_point_polar) if route == "polar"
                    else (_one_point_x, _two_point_angles))
        pairs = [mo for mo in moments if mo.arity == 2]
        for mo in moments:
            if mo.arity == 1:
                out[mo] = one(act, mo.points[0], B, bits)
        for k in range(0, len(pairs), 2):  # two moments per complex integral
            group = pairs[k:k + 2]
            out.update(zip(group, two(act, group, B, bits)))
        return {mo: out[mo] for mo in moments}
    finally:
        ctx.prec = old
