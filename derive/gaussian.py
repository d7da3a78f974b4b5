"""Gaussian building blocks, derived by SymPy: chi moments, half moments, orthant moments,
and the arccosine kernels ``J_n`` (Cho & Saul 2009) from Price's theorem.

Normalisation follows THEORY.md: for unit-variance Gaussians ``(u, v)`` with correlation
``c``, ``E[relu(u)^n relu(v)^n] = E[relu(u)^{2n}] J_n(c)`` with ``J_n(1) = 1``; ``J = J_1``.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from .symbols import c

_k = sp.Symbol("k", positive=True)
_p = sp.Symbol("p", real=True)
_X = sp.Symbol("X", positive=True)
_d = sp.Symbol("d", positive=True)


@cache
def _chi_square_moment_general() -> sp.Expr:
    # E[X^p] = int_0^oo X^(s-1) e^(-X/2) dX / (2^(k/2) Gamma(k/2)) with s = k/2 + p; the
    # substitution X = 2Y gives 2^s times Euler's integral, which SymPy evaluates directly
    # (the Meijer-G route for the scaled integrand costs ten times more).
    s = sp.Symbol("s", positive=True)
    Y = sp.Symbol("Y", positive=True)
    euler = sp.integrate(Y ** (s - 1) * sp.exp(-Y), (Y, 0, sp.oo), conds="none")
    moment = (2**s * euler).subs(s, _k / 2 + _p) / (2 ** (_k / 2) * sp.gamma(_k / 2))
    return sp.powsimp(moment, force=True, combine="exp")


def chi_square_moment(k, p) -> sp.Expr:
    """``E[X^p]`` for ``X ~ chi^2_k`` (finite for ``k/2 + p > 0``):
    ``2^p Gamma(k/2+p)/Gamma(k/2)``."""
    return _chi_square_moment_general().subs({_k: k, _p: p})


@cache
def _half_moment_general() -> sp.Expr:
    moment = sp.integrate(_X**_d * sp.exp(-(_X**2) / 2), (_X, 0, sp.oo), conds="none")
    return sp.powsimp(moment / sp.sqrt(2 * sp.pi), force=True)


def half_moment(d) -> sp.Expr:
    """``E[g^d 1{g > 0}]`` for ``g ~ N(0, 1)`` (finite for ``d > -1``)."""
    return _half_moment_general().subs(_d, d)


def angular_integral(a: int, b: int) -> sp.Expr:
    """``I(a, b) = int_{theta - pi/2}^{pi/2} cos^a(t) cos^b(t - theta) dt`` with ``cos theta = c``.

    The polar-coordinate form of the Gaussian orthant integral. Computed exactly by
    expanding ``cos^a t sin^j t`` in powers of ``w = e^{it}`` (a Laurent polynomial whose
    antiderivative is termwise), evaluated at ``w = i`` and ``w = sin theta - i cos theta``.
    Returns an expression in ``c``, ``sqrt(1 - c^2)`` and ``acos(c)``.
    """
    if a < 0 or b < 0:
        raise ValueError("angular_integral needs non-negative integer exponents")
    w = sp.Symbol("w")
    s = sp.Symbol("s", real=True)  # sin(theta)
    theta = sp.Symbol("theta", real=True)  # acos(c), real on |c| <= 1
    cos_t = (w + 1 / w) / 2
    sin_t = (w - 1 / w) / (2 * sp.I)
    # cos(t - theta) = c cos t + s sin t, s = sin(theta)
    integrand = sp.expand(cos_t**a * (c * cos_t + s * sin_t) ** b)
    laurent = sp.Poly(sp.expand(integrand * w ** (a + b)), w)
    lo_w = s - sp.I * c  # e^{i(theta - pi/2)}
    lo_w_inv = s + sp.I * c  # its inverse, the conjugate, since s^2 + c^2 = 1
    total = sp.Integer(0)
    for (power,), coeff in laurent.terms():
        k = power - (a + b)
        if k == 0:
            total += coeff * (sp.pi - theta)
        else:
            lo = lo_w**k if k > 0 else lo_w_inv ** (-k)
            total += coeff * (sp.I**k - lo) / (sp.I * k)
    total = sp.expand(total)
    # reduce with s^2 = 1 - c^2; the imaginary part must vanish identically
    reduced = sp.Poly(total, s).rem(sp.Poly(s**2 - 1 + c**2, s)).as_expr()
    reduced = sp.expand(reduced)
    re, im = reduced.as_real_imag()
    if sp.simplify(im) != 0:
        raise ArithmeticError("angular integral is not real: derivation error")
    return sp.expand(re.subs({s: sp.sqrt(1 - c**2), theta: sp.acos(c)}))


def radial_moment_2d(n) -> sp.Expr:
    """``E[r^n]`` for the radius of a standard 2-D Gaussian (``r^2 ~ chi^2_2``)."""
    return sp.gammasimp(chi_square_moment(2, sp.Rational(n, 2) if isinstance(n, int) else n / 2))


@cache
def orthant_moment(a: int, b: int) -> sp.Expr:
    """``M(a, b; c) = E[u^a v^b 1{u>0, v>0}]``, ``(u, v)`` unit Gaussians with correlation ``c``.

    Polar coordinates ``u = r cos t``, ``v = r cos(t - theta)``: the positive quadrant is
    ``t in (theta - pi/2, pi/2)``, so ``M = E[r^{a+b}] I(a, b) / (2 pi)``.
    """
    return sp.expand(radial_moment_2d(a + b) * angular_integral(a, b) / (2 * sp.pi))


@cache
def arccos_kernel(n: int) -> sp.Expr:
    """Normalised arccosine kernel ``J_n(c)`` derived from Price's theorem.

    ``K_n(c) = E[relu(u)^n relu(v)^n]`` satisfies ``dK_n/dc = n^2 K_{n-1}`` (Price) with
    ``K_n(-1) = 0``, and ``dK_0/dc`` is the Gaussian density at the origin,
    ``1/(2 pi sqrt(1 - c^2))``. ``J_n = K_n / K_n(1)``.
    """
    t = sp.Symbol("t", real=True)
    K = sp.integrate(1 / (2 * sp.pi * sp.sqrt(1 - t**2)), (t, -1, c))
    for m in range(1, n + 1):
        K = m**2 * sp.integrate(K.subs(c, t), (t, -1, c))
    K = sp.simplify(K)
    return sp.simplify(K / K.subs(c, 1))


def _hypergeometric(term: sp.Expr, j: sp.Symbol, z: sp.Expr) -> sp.Expr:
    """``sum_{j>=0} term(j)`` as ``term(0) pFq(a; b; z)``, reading ``a``, ``b`` off the term ratio.

    ``term(j+1)/term(j)`` must be ``C (j+a_1)...(j+a_p) / ((j+1)(j+b_1)...(j+b_q))`` with
    ``C`` equal to the argument ``z`` (SymPy's ``hypersimp`` computes the ratio).
    """
    ratio = sp.factor(sp.hypersimp(term, j))
    num, den = sp.fraction(ratio)
    top, bottom = [], []
    const = sp.Integer(1)
    for factors, into, sign in ((sp.factor_list(num), top, 1), (sp.factor_list(den), bottom, -1)):
        const *= factors[0] ** sign
        for fac, mult in factors[1]:
            poly = sp.Poly(fac, j)
            if not fac.has(j):
                const *= fac ** (sign * mult)
                continue
            if poly.degree() != 1:
                raise ArithmeticError("term ratio is not hypergeometric")
            lead, root = poly.all_coeffs()
            const *= lead ** (sign * mult)
            into.extend([root / lead] * mult)
    if sp.Integer(1) in bottom:
        bottom.remove(sp.Integer(1))
    else:
        top.append(sp.Integer(1))
    if sp.simplify(const - z) != 0:
        raise ArithmeticError("term ratio does not match the series argument")
    return sp.simplify(term.subs(j, 0)) * sp.hyper(top, bottom, z)


@cache
def orthant_moment_hyper(a, b, corr) -> sp.Expr:
    """``M(a, b; c)`` for real exponents ``a, b > -1`` as hypergeometric functions of ``c^2``.

    Mehler's expansion ``E[F(u) G(v)] = sum_k c^k/k! E[F He_k] E[G He_k]`` with
    ``E[g^a 1{g>0} He_k(g)] = a(a-1)...(a-k+1) E[g^{a-k} 1{g>0}]`` (Rodrigues' formula and
    ``k`` integrations by parts, continued analytically in ``a``). Even and odd ``k`` give
    one ``2F1`` each.
    """
    a, b = (e if isinstance(e, sp.Symbol) else sp.nsimplify(e) for e in (a, b))
    if any(e.is_number and not e.is_Rational for e in (a, b)):
        # irrational exponents (sqrt(2)): factoring the term ratio over Q does not split it
        # into linear factors in j; the series with symbolic exponents does
        ea, eb = sp.Dummy("a", real=True), sp.Dummy("b", real=True)
        return orthant_moment_hyper(ea, eb, corr).subs({ea: a, eb: b})
    j = sp.Symbol("j", integer=True, nonnegative=True)
    zz = sp.Symbol("zz", positive=True)

    def coefficient(e, k):
        return sp.gamma(e + 1) / sp.gamma(e - k + 1) * half_moment(e - k)

    total = sp.Integer(0)
    for parity in (0, 1):
        k = 2 * j + parity
        term = zz**j * coefficient(a, k) * coefficient(b, k) / sp.factorial(k)
        term = sp.gammasimp(sp.combsimp(term))
        total += zz**0 * _hypergeometric(term, j, zz) * (sp.Symbol("cc") ** parity)
    return total.subs({zz: corr**2, sp.Symbol("cc"): corr})
