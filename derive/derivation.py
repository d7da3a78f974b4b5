"""``derive(activation)``: the moment forms of every BSB1 quantity, and closed forms where
the activation is positive-homogeneous.

Route of a closed form: BSB1 quantity -> sphere moments (:mod:`.bsb1`, exchangeable
reduction) -> decoupling ``z = sqrt(B) g/|g|`` (Laplace method, paper Thm 2) -> Gaussian
half and orthant moments (:mod:`.gaussian`: polar integrals for integer degrees, Mehler
series and ``2F1`` otherwise). For integer degrees the result is rewritten in terms of the
arccosine kernel ``J(c)`` and ``J'(c)`` at ``c = -1/(B-1)``, derived from Price's theorem.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from .activation import Activation
from .bsb1 import QUANTITIES, moment_forms
from .gaussian import arccos_kernel
from .homogeneous import DivergentMoment, convergence_condition, dual_kernel, sphere_moment
from .moments import moments_in, moments_of
from .quantity import Derivation, DerivedQuantity, J, Jp, Provenance
from .symbols import B, BSB1_DOMAIN, RHO, c

_ROUTE_CLOSED = (
    "sphere moments -> decoupling z = sqrt(B) g/|g| (Laplace method, paper Thm 2) -> "
    "Gaussian half/orthant moments (polar integrals; Mehler series for non-integer degree)"
)

THEOREMS = {
    "q_star": "paper Thm 4, eq 13 (ReLU: Thm 5)",
    "c_star": "paper Thm 4, eq 14 (ReLU: Thm 5)",
    "lambda_G": "forward Jacobian at BSB1, G eigenspace (paper Thm 6)",
    "lambda_L": "forward Jacobian at BSB1, L eigenspace (paper Thm 6, corrected in THEORY.md)",
    "lambda_M": "forward Jacobian at BSB1, M eigenspace (paper Thm 6, corrected in THEORY.md)",
    "gradient_rate": "backward map at BSB1, largest eigenvalue (paper Thm 7; ReLU: Thm 8)",
    "depth_scale": "paper Sec. 4: xi = 1/log(lambda_max)",
    "max_trainable_depth": "paper Sec. 4, Figs 2 and 4: 16 xi",
}

#: Moments whose divergence makes the gradient rate infinite (E[phi'(z)^2] = oo).
_GRADIENT_QUANTITIES = ("gradient_rate", "depth_scale", "max_trainable_depth")


@cache
def _arccos_kernel_acos() -> sp.Expr:
    """``J(c) = (sqrt(1 - c^2) + (pi - acos c) c) / pi`` as derived, written with ``acos``."""
    scaled = sp.collect(sp.expand(sp.pi * arccos_kernel(1).rewrite(sp.acos)), c)
    return sp.Mul(scaled, 1 / sp.pi, evaluate=False)


@cache
def kernel_substitution() -> dict[sp.Expr, sp.Expr]:
    """``acos(c)`` and ``sqrt(1-c^2)`` in terms of ``J(c)``, ``J'(c)`` (solved, not typed)."""
    Jc = _arccos_kernel_acos()
    t, s = sp.symbols("t s")
    lin = Jc.subs({sp.acos(c): t, sp.sqrt(1 - c**2): s})
    dlin = sp.diff(Jc, c).subs({sp.acos(c): t, sp.sqrt(1 - c**2): s})
    sol = sp.solve([sp.Eq(J, lin), sp.Eq(Jp, sp.simplify(dlin))], [t, s], dict=True)[0]
    return {sp.acos(c): sol[t], sp.sqrt(1 - c**2): sol[s]}


@cache
def kernel_definitions() -> dict[sp.Expr, sp.Expr]:
    """``J`` and ``J'`` as explicit functions of ``B`` (``c = -1/(B-1)``, ``sqrt(1-c^2)``
    simplified)."""
    Jc = _arccos_kernel_acos()
    out = {}
    for sym, expr in ((J, Jc), (Jp, sp.simplify(sp.diff(Jc, c)))):
        expr = expr.subs(sp.sqrt(1 - c**2), sp.sqrt(sp.expand(B * (B - 2))) / (B - 1))
        out[sym] = expr.subs(c, RHO)
    return out


def _compact(expr_c: sp.Expr) -> sp.Expr | None:
    """Rewrite a closed form in ``c`` as a rational function of ``B``, ``J``, ``J'``."""
    e = expr_c.subs(sp.acos(-c), sp.pi - sp.acos(c))
    e = e.subs(kernel_substitution())
    if e.has(sp.acos, sp.asin, sp.hyper) or any(
        p.has(c) for p in e.atoms(sp.Pow) if not p.exp.is_integer
    ):
        return None
    e = sp.factor(sp.cancel(sp.together(e.subs(c, RHO))))
    return _tidy_signs(e)


def _tidy_signs(e: sp.Expr) -> sp.Expr:
    """Prefer ``(1 - J)`` over ``-(J - 1)`` in the printed formula."""
    num, den = sp.fraction(sp.factor(e))
    factors = []
    for fac in sp.Mul.make_args(den):
        base, power = fac.as_base_exp()
        if base.has(J, Jp) and base.is_Add and base.subs({J: 0, Jp: 0}).could_extract_minus_sign():
            base, num = -base, num * (-1) ** power
        factors.append(base**power)
    return num / sp.Mul(*factors)


def _explicit(compact: sp.Expr | None, expr_c: sp.Expr) -> sp.Expr:
    if compact is not None:
        return compact.subs(kernel_definitions())
    e = expr_c.subs(sp.sqrt(1 - c**2), sp.sqrt(sp.expand(B * (B - 2))) / (B - 1))
    return e.subs(c, RHO)


def _moment_closed_forms(act: Activation, moments) -> tuple[dict, set]:
    subs, divergent = {}, set()
    for mo in moments:
        try:
            subs[mo.symbol] = sphere_moment(mo, act.homogeneous, corr=c)
        except DivergentMoment:
            divergent.add(mo)
    return subs, divergent


def _closed_forms(act: Activation, forms: dict[str, sp.Expr], moments) -> dict:
    subs, divergent = _moment_closed_forms(act, moments)
    infinite_rate = act.derivative_has_delta or any(
        mo.arity == 1 and mo.points[0].q == 2 and mo.points[0].m == 0 for mo in divergent
    )
    closed = {}
    for name in QUANTITIES:
        form = forms[name]
        prov = Provenance(THEOREMS[name], _ROUTE_CLOSED)
        if name in _GRADIENT_QUANTITIES and infinite_rate:
            value = {"gradient_rate": sp.oo, "depth_scale": sp.Integer(0)}.get(name, sp.Integer(0))
            prov = Provenance(THEOREMS[name], "E[phi'(z)^2] diverges, so the rate is infinite")
            closed[name] = DerivedQuantity(name, value, form, prov, compact=value)
            continue
        if name in ("depth_scale", "max_trainable_depth"):
            rate = closed.get("gradient_rate")
            if rate is not None:
                k = sp.Integer(16) if name == "max_trainable_depth" else sp.Integer(1)
                compact = None if rate.compact is None else k / sp.log(rate.compact)
                closed[name] = DerivedQuantity(name, k / sp.log(rate.expr), form, prov,
                                               domain=rate.domain, compact=compact)
            continue
        if any(mo in divergent for mo in moments_in(form)):
            continue
        expr_c = form.subs(subs)
        compact = _compact(expr_c)
        expr = _explicit(compact, expr_c)
        domain = sp.simplify(sp.And(BSB1_DOMAIN, *(convergence_condition(mo, act.homogeneous)
                                                   for mo in moments_in(form))))
        closed[name] = DerivedQuantity(name, expr, form, prov, domain=domain, compact=compact)
    return closed


@cache
def _derive_cached(act: Activation) -> Derivation:
    mforms = moment_forms()
    forms = {name: mforms[name].expr for name in QUANTITIES}
    moments = moments_of(forms.values())
    provenance = {name: Provenance(THEOREMS[name], mforms[name].provenance) for name in QUANTITIES}
    deriv = Derivation(activation=act, forms=forms, moments=moments, provenance=provenance)
    if act.homogeneous is not None:
        deriv.closed = _closed_forms(act, forms, moments)
        deriv.dual_kernel = dual_kernel(act.homogeneous)
        if any(q.compact is not None and q.compact.has(J, Jp) for q in deriv.closed.values()):
            deriv.definitions = {
                "c": RHO,
                "J(c)": _arccos_kernel_acos(),
                "J'(c)": sp.simplify(sp.diff(_arccos_kernel_acos(), c)),
            }
    return deriv


def derive(act: Activation) -> Derivation:
    """Derive every BSB1 quantity for ``act``: moment forms always, closed forms if
    ``phi`` is positive-homogeneous (relu, leaky relu, alpha-relu, abs, step, linear)."""
    return _derive_cached(act)
