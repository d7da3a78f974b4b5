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
from .bsb1 import QUANTITIES, RELATIONS, moment_forms
from .gaussian import arccos_kernel
from .homogeneous import DivergentMoment, convergence_condition, dual_kernel, sphere_moment
from .moments import Point, SphereMoment, moments_in, moments_of
from .quantity import Derivation, DerivedQuantity, J, Jp, Provenance
from .symbols import B, BSB1_DOMAIN, RHO, c, x

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


_RATE_MOMENT = SphereMoment((Point(0, 0, 2),))  # E[phi'(z)^2]


def _infinite_rate(act: Activation, divergent) -> str | None:
    """Why the gradient rate is infinite, or None: ``E[phi'(z)^2] = oo`` because ``phi'``
    carries a Dirac mass (a jump of ``phi``) or because the moment's integral diverges
    (``relu^alpha`` with ``alpha <= 1/2``)."""
    if act.derivative_has_delta:
        return "phi' has a Dirac mass: E[phi'(z)^2] is infinite"
    if _RATE_MOMENT in divergent:
        return "E[phi'(z)^2] diverges, so the rate is infinite"
    return None


def _closed_form(act: Activation, form: sp.Expr, subs: dict, divergent: set):
    """``(expr, compact, domain)`` of one primary quantity, or None if a moment diverges."""
    if any(mo in divergent for mo in moments_in(form)):
        return None
    expr_c = form.subs(subs)
    compact = _compact(expr_c)
    expr = _explicit(compact, expr_c)
    domain = sp.simplify(sp.And(BSB1_DOMAIN, *(convergence_condition(mo, act.homogeneous)
                                               for mo in moments_in(form))))
    return expr, compact, domain


def _quantities(act: Activation, mforms: dict, moments) -> tuple[DerivedQuantity, ...]:
    """One :class:`DerivedQuantity` per BSB1 quantity: moment form always; closed form where
    the activation allows (positive-homogeneous phi; an infinite rate for any phi whose
    ``E[phi'^2]`` diverges); dependent quantities through :data:`RELATIONS`."""
    homogeneous = act.homogeneous is not None
    subs, divergent = _moment_closed_forms(act, moments) if homogeneous else ({}, set())
    infinite = _infinite_rate(act, divergent)
    params = (B, *sorted(act.expr.free_symbols - {x}, key=str))
    out: dict[str, DerivedQuantity] = {}
    for name in QUANTITIES:
        mf = mforms[name]
        base = dict(name=name, moment_form=mf.expr, moment_route=mf.provenance,
                    parameters=params, relation=RELATIONS.get(name))
        closed = None
        route = _ROUTE_CLOSED
        if name in RELATIONS:
            inner = {sym: out[str(sym)] for sym in RELATIONS[name].free_symbols}
            if all(q.expr is not None for q in inner.values()):
                rel = RELATIONS[name]
                expr = rel.subs({sym: q.expr for sym, q in inner.items()})
                compact = None
                if all(q.compact is not None for q in inner.values()):
                    compact = rel.subs({sym: q.compact for sym, q in inner.items()})
                closed = (expr, compact, sp.And(*(q.domain for q in inner.values())))
                route = "; ".join(sorted({q.provenance.route for q in inner.values()}))
        elif name == "gradient_rate" and infinite:
            closed, route = (sp.oo, sp.oo, BSB1_DOMAIN), infinite
        elif homogeneous:
            closed = _closed_form(act, mf.expr, subs, divergent)
        if closed is None:
            out[name] = DerivedQuantity(**base, provenance=Provenance(THEOREMS[name],
                                                                      mf.provenance))
        else:
            expr, compact, domain = closed
            out[name] = DerivedQuantity(**base, provenance=Provenance(THEOREMS[name], route),
                                        expr=expr, compact=compact, domain=domain)
    return tuple(out.values())


@cache
def _derive_cached(act: Activation) -> Derivation:
    mforms = moment_forms()
    moments = moments_of(mforms[name].expr for name in QUANTITIES)
    quantities = _quantities(act, mforms, moments)
    definitions: tuple = ()
    if any(q.compact is not None and q.compact.has(J, Jp) for q in quantities):
        definitions = (
            ("c", RHO),
            ("J(c)", _arccos_kernel_acos()),
            ("J'(c)", sp.simplify(sp.diff(_arccos_kernel_acos(), c))),
        )
    dual = dual_kernel(act.homogeneous) if act.homogeneous is not None else None
    return Derivation(activation=act, quantities=quantities, moments=moments,
                      definitions=definitions, dual_kernel=dual)


def derive(act: Activation) -> Derivation:
    """Derive every BSB1 quantity for ``act``: moment forms always, closed forms if
    ``phi`` is positive-homogeneous (relu, leaky relu, alpha-relu, abs, step, linear), and
    the infinite gradient rate of any ``phi`` whose ``E[phi'(z)^2]`` diverges."""
    return _derive_cached(act)
