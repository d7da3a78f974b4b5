"""Vanilla networks (no batchnorm): the length and correlation maps and their slopes, derived
by SymPy (Poole et al. 2016; Schoenholz et al. 2016; THEORY.md, "Vanilla networks").

The definitions are the only input. Weights ``N(0, sigma_w^2/N)``, biases ``N(0, sigma_b^2)``:

* length map ``L(q) = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``, ``z ~ N(0, 1)``;
* covariance map ``K(C) = sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2``, ``(u1, u2)`` Gaussian
  with variances ``q`` and covariance ``C``; correlation map ``R(c) = K(q c) / q``.

Derived here (nothing typed in from a paper):

* ``chi_q = dL/dq``: differentiation under the integral sign gives
  ``sigma_w^2 E[z phi(u) phi'(u)] / sqrt(q)`` (``u = sqrt(q) z``, the form numerics uses: it
  needs no ``phi''``), and Gaussian integration by parts (Stein: ``z N(z) = -N'(z)``) turns it
  into Schoenholz et al.'s ``sigma_w^2 E[phi'(u)^2 + phi(u) phi''(u)]``;
* ``chi_c = dR/dc``: Price's theorem. SymPy checks that the bivariate density solves
  ``dp/dC = d^2 p/(du1 du2)``; two integrations by parts then move the derivatives onto
  ``phi``, ``dK/dC = sigma_w^2 E[phi'(u1) phi'(u2)]``, and the chain rule through ``C = q c``
  gives ``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]``;
* ``chi_1 = chi_c`` at ``c = 1`` (then ``u2 = u1``): ``sigma_w^2 E[phi'(u)^2]``.

Expectations are reduced to :class:`GaussianMoment` symbols (one point at variance ``q``, or
two points at variance ``q`` and correlation ``c``). For positive-homogeneous ``phi`` every
moment has a closed form through the dual kernels (half and orthant moments of
:mod:`.gaussian`, :func:`.homogeneous.unit_gaussian_moment`); then the maps are closed in
``q`` and ``c``, their slopes are their SymPy derivatives, and an affine length map is solved
for ``q*`` in closed form. The depth scales are relations: ``xi_q = -1/log|chi_q|``,
``xi_c = -1/log(chi_c)`` (Schoenholz et al.: perturbations of ``q*`` and ``c*`` decay like
``|chi|^l = exp(-l/xi)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType

import sympy as sp
from sympy.core.function import AppliedUndef

from .activation import Activation
from .homogeneous import DivergentMoment, unit_gaussian_moment
from .moments import Point
from .parse import ParseError, parse_expression
from .symbols import c, x
from .errors import InvalidInput

#: Variance of the pre-activations (the length ``q`` of Poole et al.).
q = sp.Symbol("q", positive=True)
#: ``sigma_w^2`` and ``sigma_b^2`` (the squares of the standard deviations).
SIGMA_W2 = sp.Symbol("sigma_w2", positive=True)
SIGMA_B2 = sp.Symbol("sigma_b2", nonnegative=True)

#: The symbols every vanilla form is written in besides the moments, in argument order.
SYMBOLS = (q, c, SIGMA_W2, SIGMA_B2)

#: Reported quantities, in output order.
QUANTITIES = ("q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c")

#: Depth scales as relations in the slopes (Schoenholz et al. 2016, eqs. for xi_q, xi_c).
CHI_Q = sp.Symbol("chi_q", real=True)
CHI_C = sp.Symbol("chi_c", positive=True)
RELATIONS = {
    "xi_q": -1 / sp.log(sp.Abs(CHI_Q)),
    "xi_c": -1 / sp.log(CHI_C),
}

# integration variables
_z, _z1, _z2 = sp.symbols("z z1 z2", real=True)
_u1, _u2 = sp.symbols("u1 u2", real=True)
_C = sp.Symbol("C", real=True)  # covariance of (u1, u2)
#: A generic activation: the derivation holds for any phi, which is substituted last.
phi = sp.Function("phi")


class ParameterError(InvalidInput):
    """A bad ``sigma_w`` / ``sigma_b``; the message is one line (an :class:`InvalidInput`)."""


def parameter(text, name: str, positive: bool) -> sp.Expr:
    """``sigma_w`` or ``sigma_b`` as an exact real number (``"1.5"`` is 3/2, ``"sqrt(2)"``
    stays exact). ``sigma_w`` must be positive, ``sigma_b`` non-negative; both finite."""
    shown = str(text).strip()
    if shown.lower().lstrip("+-") in ("inf", "infinity", "oo", "nan"):
        raise ParameterError(f"{name} must be a finite number (got '{shown}')")
    try:
        value = parse_expression(shown)
    except ParseError as err:
        raise ParameterError(f"bad {name} '{shown}': {err}") from None
    if value.free_symbols or not value.is_real or not value.is_finite:
        raise ParameterError(f"{name} must be a finite real number (got '{shown}')")
    if positive and not value.is_positive:
        raise ParameterError(f"{name} must be > 0 (got '{shown}')")
    if not positive and value.is_negative:
        raise ParameterError(f"{name} must be >= 0 (got '{shown}')")
    return value


# -- moments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianMoment:
    """A Gaussian expectation of a vanilla layer, one factor ``(m, p, r)`` per point.

    One point: ``E[z^m phi(u)^p phi'(u)^r]``, ``u = sqrt(q) z``, ``z ~ N(0, 1)``. Two points:
    ``E[phi(u1)^p1 phi'(u1)^r1 phi(u2)^p2 phi'(u2)^r2]``, ``(u1, u2) ~ N(0, q [[1, c], [c, 1]])``
    (no powers of ``z`` there). Points are kept sorted (the two are exchangeable).
    """

    points: tuple[Point, ...]

    def __post_init__(self):
        if not 1 <= len(self.points) <= 2:
            raise ValueError("a Gaussian moment involves one or two pre-activations")
        if len(self.points) == 2 and any(p.m for p in self.points):
            raise ValueError("two-point Gaussian moments carry no powers of z")
        object.__setattr__(self, "points", tuple(sorted(self.points)))

    @property
    def arity(self) -> int:
        return len(self.points)

    @property
    def name(self) -> str:
        if self.arity == 1:
            pt = self.points[0]
            parts = ([("z" if pt.m == 1 else f"z^{pt.m}")] if pt.m else []) + [
                Point(0, pt.p, pt.q).text("u")]
            return "G[" + "*".join(p for p in parts if p != "1") + "]"
        return "G[" + "*".join(p.text(f"u{k + 1}") for k, p in enumerate(self.points)) + "]"

    @property
    def symbol(self) -> sp.Symbol:
        sym = sp.Symbol(self.name, real=True)
        _REGISTRY[sym] = self
        return sym

    def closed_form(self, act: Activation) -> sp.Expr:
        """The moment of a positive-homogeneous ``phi`` (degree ``alpha``) in ``q`` and ``c``.

        ``phi(sqrt(q) z) = q^{alpha/2} phi(z)`` and ``phi'(sqrt(q) z) = q^{(alpha-1)/2}
        phi'(z)``, so the moment is a power of ``q`` times the unit-variance moment (half
        moment for one point, orthant moments of correlation ``c`` for two). Raises
        :class:`DivergentMoment` where the integral diverges.
        """
        hom = act.homogeneous
        unit = unit_gaussian_moment(self.points, hom, c)
        if unit == 0:
            return sp.Integer(0)
        degree = sum(hom.point_power(Point(0, p.p, p.q))[0] for p in self.points)
        return unit * q ** (degree / 2)


_REGISTRY: dict[sp.Symbol, GaussianMoment] = {}


def gaussian_moments_in(expr: sp.Expr) -> list[GaussianMoment]:
    """The Gaussian moments an expression depends on, in a deterministic order."""
    found = [_REGISTRY[s] for s in expr.free_symbols if s in _REGISTRY]
    return sorted(found, key=lambda mo: (mo.arity, mo.points))


# -- the derivation with a generic phi -------------------------------------------------------


def _normal(v) -> sp.Expr:
    return sp.exp(-(v**2) / 2) / sp.sqrt(2 * sp.pi)


def _bivariate(var) -> sp.Expr:
    """Density of ``(u1, u2)`` with variances ``var`` and covariance ``C``."""
    det = var**2 - _C**2
    return sp.exp(-(var * _u1**2 - 2 * _C * _u1 * _u2 + var * _u2**2) / (2 * det)) / (
        2 * sp.pi * sp.sqrt(det))


def _by_parts(outer: sp.Expr, inner: sp.Expr, var) -> sp.Expr:
    """``int outer d(inner)/dvar = -int d(outer)/dvar inner``: the boundary terms vanish
    because ``inner`` carries a Gaussian factor and ``outer`` grows at most like
    ``exp(a var^2)``, ``a`` below the Gaussian's rate (the growth bound of activations)."""
    return -sp.diff(outer, var) * inner


def _order_and_argument(node):
    """``(k, arg)`` if ``node`` is the ``k``-th derivative of ``phi`` at ``arg``, else None."""
    if isinstance(node, AppliedUndef) and node.func == phi:
        return 0, node.args[0]
    if isinstance(node, sp.Derivative) and isinstance(node.expr, AppliedUndef) \
            and node.expr.func == phi:
        return node.derivative_count, node.expr.args[0]
    if isinstance(node, sp.Subs) and isinstance(node.expr, sp.Derivative):
        inner = node.expr
        if isinstance(inner.expr, AppliedUndef) and inner.expr.func == phi:
            return inner.derivative_count, node.point[0]
    return None


def _phi_factors(expr: sp.Expr) -> dict:
    """``{node: (order, argument)}`` for every ``phi``/``phi'``/``phi''`` factor of ``expr``."""
    found = {}
    walk = sp.preorder_traversal(expr)
    for node in walk:
        oa = _order_and_argument(node)
        if oa is not None:
            found[node] = oa
            walk.skip()  # phi(_xi) inside Subs(Derivative(phi(_xi)), _xi, arg) is a dummy
    return found


def _to_moments(weight_free: sp.Expr, arguments) -> sp.Expr:
    """An integrand (Gaussian weight removed) as a combination of :class:`GaussianMoment`
    symbols: a polynomial in ``z`` (one point) and ``phi^(k)`` at each argument.

    ``arguments`` lists the pre-activations (``sqrt(q) z``, or ``u1, u2``) in point order.
    Raises ``ValueError`` on a factor the moment vocabulary cannot hold (``phi''``).
    """
    slots = {}
    subs = {}
    for node, (order, arg) in _phi_factors(weight_free).items():
        if order > 1:
            raise ValueError("phi'' is not a moment factor (use the form before Stein)")
        k = arguments.index(arg)
        sym = sp.Symbol(f"_d{order}_{k}")
        slots[sym] = (order, k)
        subs[node] = sym
    poly = sp.Poly(sp.expand(weight_free.subs(subs)), _z, *slots)
    total = sp.Integer(0)
    gens = poly.gens
    for powers, coeff in poly.terms():
        m = powers[0]
        per_point = [[0, 0] for _ in arguments]
        for gen, power in zip(gens[1:], powers[1:]):
            order, k = slots[gen]
            per_point[k][order] += power
        pts = tuple(Point(m if k == 0 else 0, p, r) for k, (p, r) in enumerate(per_point))
        total += coeff * GaussianMoment(pts).symbol
    return total


@dataclass(frozen=True)
class VanillaForm:
    """One map or slope: ``definition`` (generic ``phi``, SymPy integrals), ``moment_form``
    (in :class:`GaussianMoment` symbols, ``q``, ``c``, ``sigma_w2``, ``sigma_b2``), the closed
    form where ``phi`` allows (``expr``) and how it was obtained."""

    name: str
    definition: sp.Expr
    moment_form: sp.Expr
    provenance: str
    expr: sp.Expr | None = None

    @property
    def moments(self) -> list[GaussianMoment]:
        return gaussian_moments_in(self.moment_form)


def _integral(integrand, *variables) -> sp.Expr:
    weight = sp.Mul(*(_normal(v) for v in variables))
    return sp.Integral(integrand * weight, *((v, -sp.oo, sp.oo) for v in variables))


@cache
def generic_forms() -> dict[str, VanillaForm]:
    """The maps and slopes for a generic ``phi`` (cached: the same for every activation)."""
    w = _normal(_z)
    arg = sp.sqrt(q) * _z
    length = SIGMA_W2 * sp.Integral(phi(arg) ** 2 * w, (_z, -sp.oo, sp.oo)) + SIGMA_B2
    # d/dq under the integral sign
    slope = sp.diff(length, q)
    (integral,) = slope.atoms(sp.Integral)
    h = sp.cancel(integral.function / (_z * w))  # integrand = z h(z) N(z)
    if h.has(sp.exp):
        raise ArithmeticError("length-map derivative is not of the form z h(z) N(z)")
    # Stein: z N(z) = -N'(z), then one integration by parts
    if sp.simplify(_z * w + sp.diff(w, _z)) != 0:
        raise ArithmeticError("Stein identity failed")
    stein = -_by_parts(h, w, _z) / w
    chi_q_stein = sp.expand(slope.subs(integral, sp.Integral(stein * w, (_z, -sp.oo, sp.oo))))

    # Price's theorem for the covariance map
    p = _bivariate(q)
    if sp.simplify(sp.diff(p, _C) - sp.diff(p, _u1, _u2)) != 0:
        raise ArithmeticError("Price identity dp/dC = d2p/du1du2 failed")
    pair = phi(_u1) * phi(_u2)
    once = _by_parts(pair, sp.diff(p, _u2), _u1)  # = -phi'(u1) phi(u2) dp/du2
    outer = sp.cancel(once / sp.diff(p, _u2))
    twice = _by_parts(outer, p, _u2)  # phi'(u1) phi'(u2) p
    dK_dC = SIGMA_W2 * sp.cancel(twice / p)  # integrand of dK/dC against the density
    # correlation map R(c) = K(q c)/q; chain rule with K an unknown function of C
    K = sp.Function("K")
    R = K(q * c) / q
    dR = sp.diff(R, c)  # a multiple of K'(q c)
    (kprime,) = dR.atoms(sp.Subs)
    Kp = sp.Symbol("Kp")
    coefficient = sp.diff(dR.xreplace({kprime: Kp}), Kp)  # dR/dc = coefficient * K'(q c)
    chi_c_density = sp.simplify(coefficient) * dK_dC
    # in the z-parametrisation u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1-c^2) z2)
    zpar = {_u1: sp.sqrt(q) * _z1, _u2: sp.sqrt(q) * (c * _z1 + sp.sqrt(1 - c**2) * _z2)}
    chi_c_def = _integral(chi_c_density.subs(zpar), _z1, _z2)
    # chi_1: c = 1, then u2 = u1 and the z2 integral is the normalisation of N(z2)
    at_one = chi_c_density.subs(zpar).subs(c, 1)
    if at_one.has(_z2):
        raise ArithmeticError("chi_1 integrand still depends on z2")
    norm = sp.integrate(_normal(_z2), (_z2, -sp.oo, sp.oo))
    chi_1_integrand = (at_one * norm).subs(_z1, _z)

    corr_def = (SIGMA_W2 * _integral(phi(zpar[_u1]) * phi(zpar[_u2]), _z1, _z2)
                + SIGMA_B2) / q

    one = (arg,)
    two = (_u1, _u2)
    forms = {
        "length_map": VanillaForm(
            "length_map", length,
            SIGMA_W2 * _to_moments(phi(arg) ** 2, one) + SIGMA_B2,
            "definition (Poole et al. 2016): q -> sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2"),
        "chi_q": VanillaForm(
            "chi_q", chi_q_stein,
            SIGMA_W2 * _to_moments(_z * h, one),
            "dL/dq: differentiation under the integral sign (presented after Gaussian "
            "integration by parts, Schoenholz et al. 2016)"),
        "correlation_map": VanillaForm(
            "correlation_map", corr_def,
            (SIGMA_W2 * _to_moments(pair, two) + SIGMA_B2) / q,
            "definition (Poole et al. 2016): c -> (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2)/q*"),
        "chi_c": VanillaForm(
            "chi_c", chi_c_def,
            _to_moments(chi_c_density, two),
            "dR/dc: Price's theorem (heat equation of the bivariate density, two "
            "integrations by parts) and the chain rule through C = q c"),
        "chi_1": VanillaForm(
            "chi_1", _integral(chi_1_integrand, _z),
            _to_moments(chi_1_integrand, one),
            "chi_c at c = 1 (u2 = u1): sigma_w^2 E[phi'(sqrt(q) z)^2]"),
    }
    return forms


# -- a concrete activation ------------------------------------------------------------------


@dataclass(frozen=True)
class VanillaDerivation:
    """The vanilla maps of one activation (frozen, hashable).

    ``forms``: length map, ``chi_q``, correlation map, ``chi_c``, ``chi_1``
    (:class:`VanillaForm`); ``moments``: the Gaussian moments their forms need;
    ``q_star``: the fixed point of an affine closed length map, solved by SymPy (None
    otherwise; valid where the map's slope is below 1); ``at_zero``: exact values of
    ``length_map``, ``chi_q`` and ``chi_1`` in the limit ``q -> 0`` (where the signal dies),
    None where ``phi`` is not twice differentiable at 0; ``odd``: ``phi(-x) = -phi(x)``
    (then ``c = 0`` is a fixed point of the correlation map when ``sigma_b = 0``).
    """

    activation: Activation
    forms: tuple[VanillaForm, ...]
    moments: tuple[GaussianMoment, ...]
    q_star: sp.Expr | None = None
    at_zero: tuple[tuple[str, sp.Expr | None], ...] = ()
    odd: bool = False
    _index: Mapping | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", MappingProxyType({f.name: f for f in self.forms}))

    def __getitem__(self, name: str) -> VanillaForm:
        return self._index[name]

    @property
    def closed(self) -> bool:
        """Every map and slope has a closed form (positive-homogeneous phi)."""
        return all(f.expr is not None for f in self.forms)

    def zero_limit(self, name: str) -> sp.Expr | None:
        return dict(self.at_zero).get(name)


def _concrete(expr: sp.Expr, act: Activation) -> sp.Expr:
    """``expr`` with ``phi`` replaced by the activation (derivatives taken, integrals kept)."""
    out = expr.subs(phi, sp.Lambda(x, act.expr))
    return out.replace(lambda e: isinstance(e, (sp.Subs, sp.Derivative)), lambda e: e.doit())


def _closed_forms(act: Activation, forms: dict) -> dict[str, sp.Expr | None]:
    """Closed maps of a positive-homogeneous phi; slopes as their SymPy derivatives
    (``chi_1`` from its one-point moment, +oo where ``E[phi'^2]`` diverges)."""
    out: dict[str, sp.Expr | None] = {}
    for name in ("length_map", "correlation_map"):
        mf = forms[name].moment_form
        subs = {mo.symbol: mo.closed_form(act) for mo in gaussian_moments_in(mf)}
        out[name] = _tidy(mf.subs(subs))
    out["chi_q"] = sp.diff(out["length_map"], q)
    out["chi_c"] = sp.diff(out["correlation_map"], c)
    mf = forms["chi_1"].moment_form
    try:
        subs = {mo.symbol: mo.closed_form(act) for mo in gaussian_moments_in(mf)}
        out["chi_1"] = mf.subs(subs)
    except DivergentMoment:
        out["chi_1"] = sp.oo  # E[phi'(u)^2] of a non-negative integrand diverges
    return out


def _tidy(expr: sp.Expr) -> sp.Expr:
    """``acos(-c) = pi - acos(c)`` (mixed quadrants of odd-degree kernels), then expanded."""
    expr = expr.subs(sp.acos(-c), sp.pi - sp.acos(c))
    return expr if expr.has(sp.hyper) else sp.expand(expr)


def _affine_fixed_point(length: sp.Expr) -> sp.Expr | None:
    """``q*`` of an affine length map ``a q + b`` (degree 1 or 0 phi), solved by SymPy."""
    poly = sp.Poly(sp.expand(length), q) if length.is_polynomial(q) else None
    if poly is None or poly.degree() > 1:
        return None
    sols = sp.solve(sp.Eq(length, q), q, dict=True)
    return sols[0][q] if len(sols) == 1 else None


def _zero_limits(act: Activation, forms: dict, closed: dict) -> tuple:
    """Values at ``q -> 0``: closed forms by SymPy's limit; otherwise the definitions (the
    Stein form for ``chi_q``) as ``u = sqrt(q) z -> 0``. Each Gaussian integrand depends on
    ``u`` only, so its integral tends to the mean of its one-sided limits at ``u = 0``
    (dominated convergence; a kink of ``phi`` at 0 gives two different sides)."""
    t = sp.Symbol("t", positive=True)
    out = []
    for name in ("length_map", "chi_q", "chi_1"):
        if closed.get(name) is not None:
            out.append((name, sp.limit(closed[name], q, 0, "+")))
            continue
        definition = forms[name].definition
        values = {}
        try:
            for integral in definition.atoms(sp.Integral):
                weight = sp.Mul(*(_normal(v) for v, *_ in integral.limits))
                inner = _concrete(integral.function / weight, act)
                if sp.Integer(0) not in act.kinks:  # continuous at u = 0: substitute
                    values[integral] = inner.subs(q, 0)
                    continue
                inner = inner.rewrite(sp.Piecewise)
                sides = [sp.limit(inner.subs({q: t**2, _z: s}), t, 0, "+") for s in (1, -1)]
                values[integral] = (sides[0] + sides[1]) / 2
            val = sp.simplify(definition.xreplace(values))
        except (NotImplementedError, ValueError, TypeError, ArithmeticError):
            val = None
        if val is not None and (val.free_symbols - {SIGMA_W2, SIGMA_B2}
                                or val.has(sp.nan, sp.zoo, sp.oo, -sp.oo, sp.Limit)):
            val = None
        out.append((name, val))
    return tuple(out)


@cache
def _derive_vanilla(act: Activation) -> VanillaDerivation:
    generic = generic_forms()
    forms = dict(generic)
    closed = _closed_forms(act, forms) if act.homogeneous is not None else {}
    built = []
    for name, form in forms.items():
        expr = closed.get(name)
        route = form.provenance
        if expr is not None:
            route += "; closed form: dual kernels (half and orthant moments)"
            if name in ("chi_q", "chi_c"):
                route += ", slope by SymPy differentiation of the closed map"
        built.append(VanillaForm(name, form.definition, form.moment_form, route, expr))
    moments: dict = {}
    for form in built:
        for mo in form.moments:
            moments.setdefault(mo, None)
    qstar = _affine_fixed_point(closed["length_map"]) if closed else None
    odd = sp.simplify(act.expr.subs(x, -x) + act.expr) == 0
    return VanillaDerivation(
        activation=act,
        forms=tuple(built),
        moments=tuple(moments),
        q_star=qstar,
        at_zero=_zero_limits(act, generic, closed),
        odd=bool(odd),
    )


def derive_vanilla(act: Activation) -> VanillaDerivation:
    """The vanilla length and correlation maps of ``act``, their slopes, and closed forms
    where ``phi`` is positive-homogeneous (see the module docstring for the derivation)."""
    if act.expr.free_symbols - {x}:
        raise ValueError("vanilla maps need an activation with numeric parameters")
    return _derive_vanilla(act)
