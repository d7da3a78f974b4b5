"""Batchnorm with ``eps > 0`` and weight variance ``sigma_w^2``: the BSB1 fixed point and the
forward and backward spectra, for any ``phi``.

The network (issue "eps > 0"): ``h = W x``, ``W ~ N(0, sigma_w^2/N)``, batchnorm with the
biased batch variance ``y = (h - mean h)/sqrt(var h + eps)``, ``x = phi(y)``. The covariance
map is ``V(Sigma) = sigma_w^2 E[phi(y) phi(y)^T]``, ``h ~ N(0, Sigma)``; it sees ``Sigma`` only
through ``G Sigma G``. At a BSB1 point ``G Sigma G = s G`` write ``G h = r u`` with ``u``
uniform on the unit sphere of the zero-sum hyperplane and ``k = r^2/s ~ chi^2_{B-1}``
independent of ``u``. Then

    y = sqrt(B) rho u,     rho^2 = s k / (s k + B eps),

so every expectation is a *radial mean* over ``k`` of a sphere expectation of the activation
``phi(rho z)`` (``z = sqrt(B) u``, the sphere picture of THEORY.md, now with a random radius).
Only ``eps / sigma_w^2`` matters (``s`` scales with ``sigma_w^2``); at ``eps = 0``, ``rho = 1``
and everything reduces to the scale-free theory of :mod:`.bsb1`.

Derived here (symbolically in ``B``, by :func:`.moments.expect` on each power of ``rho^2`` and
``k``, then the ultrasymmetric algebra of :mod:`.ultrasymmetric`):

* fixed point: ``q = sigma_w^2 R[E phi(z1)^2]``, ``q c = sigma_w^2 R[E phi(z1) phi(z2)]``,
  and the scale equation ``s = S(s) = q - q c`` (``R`` the radial mean at scale ``s``);
* forward Jacobian (score form of ``d E[F(h)] / d Sigma`` on the hyperplane, the radial part
  no longer factoring out): ``T_{ij,kl} = sigma_w^2/(2s) E[f_i f_j (k u_k u_l - G_kl)]``;
* backward map ``Pi -> sigma_w^2 E[J^T Pi J]``, ``J = dphi(y)/dh =
  diag(phi'(y)) sqrt(B) rho / r (G - rho^2 u u^T)``:
  ``T_{ab,cd} = sigma_w^2 B/s R[rho^2/k E[g_c g_d (G_ca - rho^2 u_c u_a)(G_db - rho^2 u_d u_b)]]``.

Both maps keep the block structure of the ``eps = 0`` case (the forward one kills
``{G D G = 0}``, the backward one maps into ``{G S G = S}``), so each has one eigenvalue on
each of ``G``, ``L``, ``M`` besides its kernel. The forward ``G`` eigenvalue is now ``S'(s*)``,
the stability of the scale; it is 0 only at ``eps = 0``.

For positive-homogeneous ``phi`` of degree ``alpha`` the sphere moments scale,
``E[.. phi(rho z)^p phi'(rho z)^q ..] = rho^(alpha p + (alpha - 1) q) E[..]``, and the radial
means of powers of ``rho`` and ``k`` are Tricomi functions (:func:`radial_power_mean`): every
quantity then has a closed form in ``a = B eps / s``, with ``s*`` the root of the scale
equation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp

from .activation import Activation
from .derivation import _moment_closed_forms
from .moments import SphereMoment, expect, f, g, moments_in, u
from .moments import centering as G
from .quantity import DerivedQuantity, Provenance, SpectralEntry
from .spectrum import _names
from .symbols import RHO, B, c
from .ultrasymmetric import UltrasymmetricOperator

#: batchnorm's ``eps`` (variance regulariser), the weight scale ``sigma_w`` and the scale
#: ``s* = q*(1 - c*)`` of the fixed point (``G Sigma* G = s* G``).
EPS = sp.Symbol("epsilon", nonnegative=True)
SIGMA_W = sp.Symbol("sigma_w", positive=True)
S = sp.Symbol("s", positive=True)
#: The radial variable ``k = |G h|^2 / s ~ chi^2_{B-1}`` and ``rho^2`` (placeholders).
K = sp.Symbol("k", positive=True)
RHO2 = sp.Symbol("rho2", positive=True)
#: ``a = B eps / s``: the argument of the closed forms (``rho^2 = k / (k + a)``).
A = sp.Symbol("a", nonnegative=True)

DOMAIN = sp.And(sp.Ge(B, 4), sp.Gt(EPS, 0), sp.Gt(SIGMA_W, 0))

_REGISTRY: dict[sp.Symbol, RadialMoment] = {}


@dataclass(frozen=True)
class RadialMoment:
    """``R[k^m rho^p M] = E_k[k^m rho(k)^p M(rho(k))]``, ``k ~ chi^2_{B-1}``,
    ``rho^2 = s k / (s k + B eps)``; ``M(rho)`` is the sphere moment ``moment`` of the activation
    ``z -> phi(rho z)`` with ``phi'`` evaluated at ``rho z`` (``None``: ``M = 1``)."""

    m: int
    p: int
    moment: SphereMoment | None
    #: one factor ``k`` replaced by ``k - (B-1)`` (``k - E[k]``), so that forms in which
    #: ``R[k ..]`` and ``(B-1) R[..]`` nearly cancel are written without the cancellation
    centred: bool = False

    @property
    def weight_text(self) -> str:
        if self.centred:
            rest = "" if self.m == 1 else (f" k^{self.m - 1}" if self.m != 2 else " k")
            return "(k-B+1)" + rest
        return f"k^{self.m}" if self.m not in (0, 1) else ("k" if self.m else "")

    @property
    def name(self) -> str:
        inner = [self.weight_text]
        inner.append(f"rho^{self.p}" if self.p else "")
        if self.moment is not None:
            pts = "*".join(p.text(f"z{i + 1}", f"rho z{i + 1}")
                           for i, p in enumerate(self.moment.points))
            inner.append(f"E[{pts}]")
        return "R[" + (" ".join(t for t in inner if t) or "1") + "]"

    @property
    def symbol(self) -> sp.Symbol:
        sym = sp.Symbol(self.name, real=True)
        _REGISTRY[sym] = self
        return sym

    def latex(self) -> str:
        if self.centred:
            parts = [r"(k - B + 1)" + ("" if self.m == 1 else f" k^{{{self.m - 1}}}")]
        else:
            parts = [f"k^{{{self.m}}}" if self.m not in (0, 1) else ("k" if self.m else "")]
        parts.append(rf"\rho^{{{self.p}}}" if self.p else "")
        if self.moment is not None:
            pts = r"\,".join(p.latex(f"z_{i + 1}", rf"\rho z_{i + 1}")
                              for i, p in enumerate(self.moment.points))
            parts.append(rf"\mathbb{{E}}[{pts}]")
        return r"\mathbb{E}_k\left[" + r"\,".join(t for t in parts if t) + r"\right]"


def radials_in(expr: sp.Expr) -> list[RadialMoment]:
    """Radial moments an expression depends on, in a deterministic order."""
    found = [_REGISTRY[s] for s in expr.free_symbols if s in _REGISTRY]
    return sorted(found, key=lambda r: (r.m, r.p, () if r.moment is None
                                        else (r.moment.arity, r.moment.points)))


def radial_expect(expr: sp.Expr, k_power: int = 0, rho_power: int = 0) -> sp.Expr:
    """``R[k^k_power rho^rho_power E_u[expr]]`` for ``expr`` polynomial in ``u, f, g`` (explicit
    indices) and in the placeholders ``K``, ``RHO2``: each monomial ``RHO2^a K^b`` is reduced by
    :func:`.moments.expect` and its sphere moments become radial moments."""
    poly = sp.Poly(sp.expand(expr), RHO2, K)
    total = sp.Integer(0)
    for (a, b), coeff in poly.terms():
        for term in sp.Add.make_args(expect(coeff).expr()):
            mos = moments_in(term)
            mo = mos[0] if mos else None
            factor = term / mo.symbol if mo else term
            total += factor * RadialMoment(k_power + b, rho_power + 2 * a, mo).symbol
    return total


# -- the maps ---------------------------------------------------------------------------------


def _q_moment() -> sp.Expr:
    return radial_expect(f[1] ** 2)


def _qc_moment() -> sp.Expr:
    return radial_expect(f[1] * f[2])


@cache
def fixed_point_forms() -> dict[str, sp.Expr]:
    """``q*``, ``c*`` and the scale map ``S(s) = q - q c`` as radial moments at scale ``s``."""
    q, qc = SIGMA_W**2 * _q_moment(), SIGMA_W**2 * _qc_moment()
    return {"q_star": q, "c_star": qc / q, "scale_map": q - qc}


@cache
def forward_operator() -> UltrasymmetricOperator:
    """``T_{ij,kl} = sigma_w^2/(2s) E[f_i f_j (k u_k u_l - G_kl)]`` (module docstring)."""
    return UltrasymmetricOperator.from_function(
        lambda i, j, k, l: radial_expect(f[i] * f[j] * (K * u[k] * u[l] - G(k, l))),
        scale=SIGMA_W**2 / (2 * S),
    )


@cache
def backward_operator() -> UltrasymmetricOperator:
    """``T_{ab,cd} = sigma_w^2 B/s R[rho^2/k E[g_c g_d (G_ca - rho^2 u_c u_a)(G_db - rho^2 u_d
    u_b)]]`` (module docstring)."""
    return UltrasymmetricOperator.from_function(
        lambda a, b, c, d: radial_expect(
            g[c] * g[d] * (G(c, a) - RHO2 * u[c] * u[a]) * (G(d, b) - RHO2 * u[d] * u[b]),
            k_power=-1, rho_power=2),
        scale=SIGMA_W**2 * B / S,
    )


OPERATORS = {"forward": forward_operator, "backward": backward_operator}


def centre(form: sp.Expr) -> sp.Expr:
    """``form`` with every ``R[k ..]`` written as ``R[(k-B+1) ..] + (B-1) R[..]`` and the
    coefficients collected: the ``O(B)`` terms of the forward eigenvalues cancel exactly
    here instead of in floating point (``lambda_G`` is ``O(1/B)`` of its terms)."""
    reps = {}
    for r in radials_in(form):
        if r.m == 1 and not r.centred:
            reps[r.symbol] = (RadialMoment(1, r.p, r.moment, True).symbol
                              + (B - 1) * RadialMoment(0, r.p, r.moment).symbol)
    if not reps:
        return form
    rest, scale = form.as_independent(*reps, as_Add=False) if form.is_Mul else (1, form)
    expanded = sp.expand(scale.xreplace(reps))
    syms = [r.symbol for r in radials_in(expanded)]
    collected = sp.collect(expanded, syms, evaluate=False)
    out = sp.Add(*(sp.factor(coeff) * (sym if sym != 1 else 1)
                   for sym, coeff in collected.items() if sp.factor(coeff) != 0))
    return rest * out


@cache
def spectrum_forms() -> dict[str, tuple]:
    """``{direction: ((space, dim, form), ...)}`` in radial moments (centred, :func:`centre`)."""
    return {d: tuple((sp_, dim, centre(form)) for sp_, dim, form in OPERATORS[d]().eigenvalues())
            for d in OPERATORS}


# -- closed forms for positive-homogeneous phi ---------------------------------------------------


class TricomiU(sp.Function):
    """Tricomi's confluent hypergeometric function ``U(a, b, z) = 1/Gamma(a)
    int_0^oo e^(-z t) t^(a-1) (1+t)^(b-a-1) dt`` (DLMF 13.4.4); evaluated by mpmath."""

    nargs = 3

    def _eval_evalf(self, prec):
        dps = mpmath.libmp.prec_to_dps(prec)
        vals = [arg.evalf(dps + 5) for arg in self.args]
        if not all(v.is_Float for v in vals):
            return None
        with mpmath.workprec(prec + 20):
            a, b, z = (mpmath.mpf(v._mpf_) for v in vals)
            # the series' term budget bounds the cost (large B: NoConvergence, not minutes)
            return sp.Float(mpmath.hyperu(a, b, z, maxterms=4000), dps)

    def _latex(self, printer):
        return r"U\left(%s\right)" % ", ".join(printer._print(arg) for arg in self.args)


def radial_power_mean(m: int, p: int) -> sp.Expr:
    """``E[k^m rho^p]`` for ``k ~ chi^2_n``, ``n = B - 1``, ``rho^2 = k/(k + a)``:

        a^(n/2+m) Gamma(n/2+m+p/2) / (2^(n/2) Gamma(n/2)) U(n/2+m+p/2, n/2+m+1, a/2)

    (substitute ``k = a t`` in the chi-square integral and compare with DLMF 13.4.4)."""
    n = B - 1
    if p == 0:  # a chi-square moment: E[k^m] = 2^m Gamma(n/2 + m) / Gamma(n/2)
        return sp.gammasimp(2**m * sp.gamma(n / 2 + m) / sp.gamma(n / 2))
    alpha = n / 2 + m + sp.sympify(p) / 2  # p symbolic for a family (alpha_relu's alpha)
    return (A ** (n / 2 + m) * sp.gamma(alpha) / (2 ** (n / 2) * sp.gamma(n / 2))
            * TricomiU(alpha, n / 2 + m + 1, A / 2))


@cache
def scaled_sphere_moments(act: Activation, moments: tuple) -> dict:
    """For positive-homogeneous ``phi`` of degree ``alpha``: ``{moment: (value at rho = 1,
    degree in rho)}``, ``M(rho) = rho^(alpha p + (alpha - 1) q) M(1)`` (closed sphere
    moments, ``c = -1/(B-1)``); moments that diverge are left out."""
    hom = act.homogeneous
    subs, divergent = _moment_closed_forms(act, moments)
    return {mo: (subs[mo.symbol].subs(c, RHO),
                 sum(hom.alpha * pt.p + (hom.alpha - 1) * pt.q for pt in mo.points))
            for mo in moments if mo not in divergent}


def sphere_moments_of(radials) -> tuple:
    """The distinct sphere moments of some radial moments, in a deterministic order."""
    return tuple(sorted({r.moment for r in radials if r.moment is not None},
                        key=lambda mo: (mo.arity, mo.points)))


def _closed_substitution(act: Activation, radials) -> tuple[dict, set] | None:
    """``{radial symbol: closed form in a}`` for positive-homogeneous ``phi``, and the radial
    moments whose sphere moment diverges; None for other ``phi``."""
    if act.homogeneous is None:
        return None
    scaled = scaled_sphere_moments(act, sphere_moments_of(radials))
    out, bad = {}, set()

    def mean(r, extra):
        value = radial_power_mean(r.m, r.p + extra)
        if r.centred:
            value -= (B - 1) * radial_power_mean(r.m - 1, r.p + extra)
            if r.p + extra == 0:
                value = sp.simplify(value)  # E[k - (B-1)] = 0 exactly
        return value

    for r in radials:
        if r.moment is None:
            out[r.symbol] = mean(r, 0)
        elif r.moment not in scaled:
            bad.add(r)
        else:
            closed, degree = scaled[r.moment]
            out[r.symbol] = closed * mean(r, degree)
    return out, bad


# -- the derivation -----------------------------------------------------------------------------

_THEOREM = {
    "fixed_point": "BSB1 fixed point of V(Sigma) = sigma_w^2 E[phi(y) phi(y)^T] with eps > 0 "
                   "(paper Sec. 4; scale equation s = S(s))",
    "forward": "forward Jacobian dV/dSigma at BSB1 with eps > 0 (score form on the hyperplane), "
               "eigenspaces of an ultrasymmetric operator (paper Thm 1, A.2.4)",
    "backward": "backward map Pi -> sigma_w^2 E[J^T Pi J] at BSB1 with eps > 0, eigenspaces of "
                "an ultrasymmetric operator (paper Thm 1, A.2.4)",
}
_ROUTE = ("radial means over k ~ chi^2_{B-1} of sphere moments of phi(rho z), "
          "rho^2 = s k/(s k + B eps) (exchangeable reduction per power of rho^2 and k)")
_ROUTE_CLOSED = ("homogeneous scaling of the sphere moments in rho and Tricomi U for the "
                 "radial means (chi-square integral)")


@dataclass(frozen=True)
class RegularisedDerivation:
    """Everything derived for batchnorm with ``eps > 0`` for one activation (frozen).

    ``scale_map`` is ``S(s)``, whose fixed point ``s*`` every other quantity is evaluated at;
    ``quantities`` holds ``q_star`` and ``c_star``; ``entries`` the forward and backward
    spectra. Forms are in the radial moments (``radials``), ``B``, ``s``, ``epsilon`` and
    ``sigma_w``; closed forms (positive-homogeneous ``phi``) in ``a = B eps / s`` instead of
    the radial moments."""

    activation: Activation
    scale_map: DerivedQuantity
    quantities: tuple[DerivedQuantity, ...]
    entries: tuple[SpectralEntry, ...]
    radials: tuple[RadialMoment, ...]

    def __getitem__(self, name: str) -> DerivedQuantity:
        if name == "scale_map":
            return self.scale_map
        for q in self.quantities:
            if q.name == name:
                return q
        for e in self.entries:
            if e.name == name:
                return e.eigenvalue
        raise KeyError(name)

    @property
    def evaluable(self) -> tuple[DerivedQuantity, ...]:
        return (self.scale_map, *self.quantities, *(e.eigenvalue for e in self.entries
                                                     if not e.note))


def _quantity(name, form, theorem, closed, bad, kind="scalar") -> tuple[DerivedQuantity, str]:
    params = (B, EPS, SIGMA_W, S)
    base = dict(name=name, moment_form=form, parameters=params, moment_route=_ROUTE, kind=kind,
                domain=DOMAIN)
    used = radials_in(form)
    if form == 0:
        return DerivedQuantity(**base, provenance=Provenance(theorem, "identically zero"),
                               expr=sp.Integer(0), compact=sp.Integer(0)), ""
    if any(r in bad for r in used):
        return DerivedQuantity(**base, provenance=Provenance(theorem, _ROUTE)), (
            "needs moments of phi' that diverge here (not computed)")
    if closed is None:
        return DerivedQuantity(**base, provenance=Provenance(theorem, _ROUTE)), ""
    expr = form.xreplace(closed).subs(A, B * EPS / S)
    return DerivedQuantity(**base, provenance=Provenance(theorem, _ROUTE_CLOSED), expr=expr), ""


@cache
def derive_regularised(act: Activation) -> RegularisedDerivation:
    """The ``eps > 0`` derivation of ``act`` (module docstring); cached per activation."""
    fp = fixed_point_forms()
    spec = spectrum_forms()
    forms = [fp["scale_map"], fp["q_star"], fp["c_star"]]
    forms += [form for d in spec for _, _, form in spec[d]]
    radials = []
    for form in forms:
        for r in radials_in(form):
            if r not in radials:
                radials.append(r)
    sub = _closed_substitution(act, radials)
    closed, bad = (None, set()) if sub is None else sub
    delta = bool(act.derivative_has_delta) or (act.homogeneous is not None
                                               and act.homogeneous.alpha == 0)
    if delta:
        bad |= {r for r in radials if r.moment is not None and r.moment.uses_derivative()}
    scale_map, _ = _quantity("scale_map", fp["scale_map"], _THEOREM["fixed_point"], closed, bad)
    quantities = tuple(_quantity(n, fp[n], _THEOREM["fixed_point"], closed, bad)[0]
                       for n in ("q_star", "c_star"))
    entries = []
    for d in spec:
        names = _names(d, [space for space, _, _ in spec[d]])
        for name, (space, dim, form) in zip(names, spec[d]):
            q, note = _quantity(name, form, _THEOREM[d], closed, bad, kind="eigenvalue")
            entries.append(SpectralEntry(d, space, dim, q, note))
    return RegularisedDerivation(act, scale_map, quantities, tuple(entries), tuple(radials))
