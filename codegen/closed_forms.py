"""Closed forms of one activation -> a :class:`~.spec.ModuleSpec`.

:func:`derivation_functions` is the only code in codegen that reads derive's objects (a
``Derivation`` and its ``DerivedQuantity`` items); everything after it sees specs only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p

from .errors import CodegenError
from .render import one_line
from .spec import Argument, Condition, Constant, FunctionSpec, ModuleSpec, ScaleParameter
from .spec import batch_argument
from .spec import with_depth_definitions

#: Symbols of the compact (paper) form, explained where they appear.
_KERNEL_SYMBOLS = frozenset({"J", "Jp"})
_KERNEL_NOTE = (
    "J = J(c) and Jp = J'(c) are the arc-cosine kernel and its derivative at c = -1/(B - 1)"
)


def _text(value: object) -> str:
    return "not recorded" if value is None else str(value)


#: What the family parameters of a symbolic activation stand for (documentation).
_PARAMETER_MEANINGS = {
    "slope": "the slope of phi for x < 0",
    "alpha": "the degree of phi(x) = max(x, 0)^alpha",
}


def family_parameters(deriv) -> tuple[Argument, ...]:
    """The parameters a symbolic activation (:func:`bnmft.derive.symbolic_activation`) keeps
    as symbols, as arguments after ``B``, in the family's order; () for a fixed activation."""
    params = getattr(getattr(deriv, "activation", None), "params", ()) or ()
    return tuple(Argument(v, k, _PARAMETER_MEANINGS.get(k, f"the parameter {k}"))
                 for k, v in params if isinstance(v, sp.Symbol))


def parameter_conditions(expr: sp.Expr, domain, parameters) -> tuple[Condition, ...]:
    """Where ``expr`` holds as a function of the family ``parameters``: the relations of
    ``domain`` (a derive domain such as ``(B >= 4) & (alpha > 1/2)``) free of ``B``, and
    ``p > 0`` (the assumption the closed form was derived under) for each parameter ``p`` that
    occurs in an exponent or a special function (alpha_relu's ``alpha``). Where ``p`` enters
    only rationally (leaky_relu's ``slope``: the moments of ``relu(x) + slope min(x, 0)`` are
    polynomials in ``slope``, and the quantities elementary functions of those), the identity
    holds for every real ``p``."""
    out: list[Condition] = []
    for p in parameters:
        if _enters_non_rationally(expr, p.symbol):
            out.append(Condition(sp.Symbol(p.name, real=True) > 0, f"{p.name} > 0"))
    if isinstance(domain, sp.Basic):
        names = {p.name: sp.Symbol(p.name, real=True) for p in parameters}
        parts = domain.args if isinstance(domain, sp.And) else (domain,)
        for part in parts:
            free = {s.name for s in part.free_symbols}
            if free and free <= set(names) and isinstance(part, sp.core.relational.Relational):
                part = part.xreplace({s: names[s.name] for s in part.free_symbols})
                text = str(part)
                if all(c.text != text for c in out):
                    out = [c for c in out if not _implied(c, part)] + [Condition(part, text)]
    return tuple(out)


#: Notes on the numerics of a family module's parameter (its module documentation).
_PARAMETER_NOTES = {
    "slope": (
        "slope may be any real number (the moments of relu(x) + slope min(x, 0) are "
        "polynomials in slope, so the closed forms hold for every slope). Each part rational "
        "in slope is printed in u = (1 + slope)/2 and v = (1 - slope)/2 (phi = u x + v |x|; "
        "by the symmetry z -> -z only u^2 and v^2 occur, with coefficients in B alone), so "
        "nothing cancels between slope terms near slope = 1 (phi linear) or -1 (phi = |x|), "
        "and log(gradient_rate) is evaluated as log1p(gradient_rate - 1) (gradient_rate -> 1 "
        "at slope = 1). Near a zero in slope of c_star (close to slope = 1 for large B) or "
        "of lambda_M (close to slope = -1) the value cancels between its u^2 and v^2 parts: "
        "there only an absolute accuracy of ~1e-16 times the size of those parts remains."
    ),
    "alpha": (
        "alpha must be > 0 wherever a quantity depends on it (the closed forms are derived for "
        "alpha > 0) and > 1/2 for gradient_rate, depth_scale and max_trainable_depth, which "
        "need E[phi'(z)^2], finite only for alpha > 1/2 (ValueError in numpy, NaN in C, per "
        "quantity: its Valid for line). Gamma(B/2 + 1/2 + alpha)/Gamma(B/2 + 1/2), constants "
        "such as Gamma(alpha + 1/2) and 2F1 with parameters in alpha at z = 1/(B - 1)^2 are "
        "evaluated at run time (the routines _gamma_ratio, _gamma and _hyp2f1, each "
        "documented with its error bound). Outside the verified degrees the values are "
        "computed, not verified."
    ),
}

#: Bases a rational dependence on a family parameter is written in (:func:`expand_about`):
#: ``p -> (u, v)`` with ``p = u - v`` and ``1 = u + v``. For leaky_relu, ``phi(x) = x`` for
#: x > 0 and ``slope x`` for x < 0 is ``u x + v |x|`` with ``u = (1 + slope)/2`` and
#: ``v = (1 - slope)/2``; the sphere measure is symmetric under ``z -> -z``, so every moment the
#: quantities need is a quadratic form in ``(u, v)`` without cross terms (``E[z |z|] = 0``,
#: ``E[sign z] = 0``). Written in ``u^2`` and ``v^2`` with coefficients in B alone, each
#: quantity has no cancellation between parameter-dependent terms at ``v -> 0`` (slope = 1,
#: the linear network) or at ``u -> 0`` (slope = -1, phi = |x|), and the coefficients (the
#: values at those two points) are stabilised for large B as B-only expressions.
_BASES = {"slope": (sp.Rational(1, 2), sp.Rational(1, 2))}


def expand_about(expr: sp.Expr, parameters) -> sp.Expr:
    """``expr`` with each largest part that is a rational function ``N(p)/D(p)`` of a family
    parameter ``p`` (one with a basis, :data:`_BASES`) written as ``N_h(u, v)/D_h(u, v)``:
    ``N`` and ``D`` homogenised to their common degree ``d`` by ``p^k -> (u - v)^k (u +
    v)^(d - k)`` and expanded in monomials ``u^i v^j`` whose coefficients are expressions in
    ``B`` alone (which :mod:`.prepare` stabilises for large ``B``); ``u = (1 + p)/2`` and
    ``v = (1 - p)/2`` are printed as such. ``log(N/D)`` becomes ``log1p((N_h - D_h)/D_h)``
    (gradient_rate -> 1 as B grows at slope = 1: ``log`` would lose ``log10 B`` digits). The
    same function of ``p``, exactly (each rewrite compared with the derived part to 40 digits
    at three points, :func:`_checked`)."""
    for a in parameters:
        basis = _BASES.get(a.name)
        if basis is not None and a.symbol in expr.free_symbols:
            expr = _basis_walk(expr, a.symbol, basis)
    return expr


def _basis_polys(num: sp.Expr, den: sp.Expr, p: sp.Symbol, basis) -> tuple[sp.Expr, sp.Expr]:
    """``num`` and ``den`` (polynomials in ``p``) as homogeneous polynomials of their common
    degree in ``u = a + b p`` and ``v = a - b p`` (``basis = (a, b)``, ``a = b = 1/2``), each
    a sum of ``c_ij u^i v^j`` with ``c_ij`` free of ``p`` (brought to one fraction)."""
    a, b = basis
    u, v = sp.Dummy("u"), sp.Dummy("v")
    # p = (u - v)/(2 b) and 1 = (u + v)/(2 a)
    polys = [sp.Poly(sp.expand(part), p) for part in (num, den)]
    d = max(P.degree() for P in polys)
    one, pp = (u + v) / (2 * a), (u - v) / (2 * b)
    u_p, v_p = a + b * p, a - b * p
    out = []
    for P in polys:
        h = sp.Add(*(c * pp**k * one ** (d - k) for (k,), c in P.terms()))
        H = sp.Poly(sp.expand(h), u, v)
        terms = []
        for (i, j), c in sorted(H.terms(), key=lambda t: (-t[0][0], t[0][1])):
            c = sp.together(c)
            if c != 0:
                terms.append(c * u_p**i * v_p**j)
        out.append(sp.Add(*terms))
    return out[0], out[1]


def _basis_walk(e: sp.Expr, p: sp.Symbol, basis) -> sp.Expr:
    if p not in e.free_symbols or e.is_Atom:
        return e
    if len(e.free_symbols) == 1:
        return e  # a function of p alone (q_star = (slope^2 + 1)/2): nothing to stabilise
    if isinstance(e, sp.log) and e.args[0].is_rational_function(p):
        num, den = sp.fraction(sp.together(e.args[0]))
        diff, den_h = _basis_polys(num - den, den, p, basis)
        return _checked(log1p(diff / den_h), e, p)
    if (e.is_Add or e.is_Mul or e.is_Pow) and e.is_rational_function(p):
        num, den = sp.fraction(sp.together(e))
        num_h, den_h = _basis_polys(num, den, p, basis)
        return _checked(num_h / den_h, e, p)
    return e.func(*(_basis_walk(x, p, basis) for x in e.args))


#: (B, parameter) points where a rewrite is compared with the derived form (60 digits).
_BASIS_CHECKS = ((5, sp.Rational(1, 3)), (64, sp.Rational(-7, 3)), (10**6, sp.Rational(99, 100)))


def _checked(new: sp.Expr, old: sp.Expr, p: sp.Symbol) -> sp.Expr:
    """``new`` after checking that it equals ``old`` (relative 1e-40) at :data:`_BASIS_CHECKS`
    (both functions of ``B`` and ``p`` only, so the points determine their values)."""
    batch = [s for s in old.free_symbols if s.name == "B"]
    for b, at in _BASIS_CHECKS:
        subs = {p: at, **{s: sp.Integer(b) for s in batch}}
        x, y = (e.xreplace(subs).evalf(60) for e in (new, old))
        if abs(x - y) > sp.Float(10, 60) ** -40 * max(abs(y), 1):
            raise CodegenError(f"internal error: the rewrite of {old} in the basis of {p} "
                               f"changed its value at B = {b}, {p} = {at}")
    return new


def _enters_non_rationally(expr: sp.Expr, p: sp.Symbol) -> bool:
    """True if ``p`` occurs in an exponent or an argument of anything but ``+ * /``, integer
    powers and elementary functions of parts rational in ``p``."""
    for node in sp.preorder_traversal(expr):
        if not isinstance(node, sp.Basic) or p not in node.free_symbols:
            continue
        if node.is_Pow and p in node.exp.free_symbols:
            return True
        if isinstance(node, (sp.gamma, sp.hyper, sp.RisingFactorial, sp.loggamma)):
            return True
    return False


def _implied(cond: Condition, stronger: sp.Basic) -> bool:
    """True if ``cond`` is ``p > 0`` and ``stronger`` is ``p > a`` or ``p >= a``, ``a >= 0``."""
    lhs, rhs = cond.valid.lhs, cond.valid.rhs
    return (isinstance(stronger, (sp.StrictGreaterThan, sp.GreaterThan)) and rhs == 0
            and stronger.lhs == lhs and stronger.rhs.is_nonnegative is True)


def _family_domain(domain, conditions, args: str) -> str:
    """``B >= 4 and alpha > 1/2``: the relations of ``domain`` in ``B`` and the conditions on
    the family parameters (``every real slope`` if there are none)."""
    if isinstance(domain, sp.Basic):
        parts = domain.args if isinstance(domain, sp.And) else (domain,)
        batch = [str(p) for p in parts if any(s.name == "B" for s in p.free_symbols)]
    else:
        batch = [_text(domain)]
    rest = [c.text for c in conditions] or [f"every real {args}"]
    return " and ".join(batch + rest)


def closed_form_spec(
    name: str, expr: sp.Expr, *, compact, provenance, domain, activation: str,
    parameters: tuple[Argument, ...] = (),
) -> FunctionSpec:
    """A function of ``B`` (and the family ``parameters``) documented by its compact (paper)
    form and its explicit form; ``expr`` as derived (:func:`closed_form_module` rewrites the
    family dependence for printing, :func:`expand_about`)."""
    explicit = str(expr)
    if compact is not None and compact != expr:
        names = {s.name for s in compact.free_symbols}
        where = f", where {_KERNEL_NOTE}" if names & _KERNEL_SYMBOLS else ""
        math = (("Formula", f"{compact}{where}"), ("Explicit in B", explicit))
    else:
        math = (("Formula", explicit),)
    if not parameters:
        return FunctionSpec(
            name=name,
            arguments=(batch_argument(),),
            expr=expr,
            summary=f"{name}(B) for activation {one_line(activation)}, elementwise in B.",
            math=math,
            provenance=_text(provenance),
            domain=_text(domain),
        )
    args = ", ".join(p.name for p in parameters)
    conditions = ()
    if isinstance(expr, sp.Expr):
        conditions = parameter_conditions(expr, domain, parameters)
    return FunctionSpec(
        name=name,
        arguments=(batch_argument(), *parameters),
        expr=expr,
        summary=f"{name}(B, {args}) for activation {one_line(activation)}, elementwise.",
        math=math,
        provenance=_text(provenance),
        domain=_family_domain(domain, conditions, args),
        conditions=conditions,
    )


def derivation_functions(quantities, activation_name: str | None = None, parameters=()):
    """``(activation name, function specs)`` of ``quantities``: a ``Derivation`` (its closed
    forms, activation name from it unless given), a mapping ``name -> DerivedQuantity`` or an
    iterable of ``DerivedQuantity``; the order is kept. Reads ``.closed``, ``.activation.name``
    and, per quantity, ``.name``, ``.expr``, ``.compact``, ``.provenance``, ``.domain``."""
    closed = getattr(quantities, "closed", None)  # a whole Derivation
    if isinstance(closed, Mapping):
        if activation_name is None:
            activation_name = getattr(getattr(quantities, "activation", None), "name", None)
        if not closed:
            name = activation_name or "this activation"
            raise CodegenError(f"{name} has no closed forms; there is nothing to generate")
        quantities = closed
    if activation_name is None:
        raise CodegenError("activation_name is required unless a Derivation is given")
    if isinstance(quantities, Mapping):
        items = list(quantities.items())
    elif isinstance(quantities, Iterable) and not isinstance(quantities, (str, bytes)):
        items = [(getattr(q, "name", None), q) for q in quantities]
    else:
        raise CodegenError(f"expected quantities (mapping or iterable), got {type(quantities)}")
    specs = tuple(
        closed_form_spec(
            getattr(q, "name", key),
            getattr(q, "expr", None),
            compact=getattr(q, "compact", None),
            provenance=getattr(q, "provenance", None),
            domain=getattr(q, "domain", None),
            activation=str(activation_name),
            parameters=parameters,
        )
        for key, q in items
    )
    return str(activation_name), specs


@dataclass(frozen=True)
class ClosedVerification:
    """How far a closed-form module was verified at generation time: per quantity the least
    significant digits (floored to 0.1, at most 16) on which the generated numpy module (and
    the compiled C kernels, ``languages``) agree with the mpmath reference at
    ``batch_sizes``."""

    digits: dict
    batch_sizes: tuple[int, ...]
    languages: tuple[str, ...]
    grid: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @property
    def least(self) -> float:
        return min(self.digits.values())

    def grid_text(self) -> str:
        """``slope = -1, -0.3, ...``: the parameter values verified (family modules)."""
        return "; ".join(f"{name} = {', '.join(repr(v) for v in values)}"
                         for name, values in self.grid)

    def text(self) -> str:
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        what = {"numpy": "the numpy module", "c": "the C kernels (single and fused)"}
        where = f"at B = {sizes}"
        if self.grid:
            where = (f"at every pair of B = {sizes} and {self.grid_text()} (bnmft.derive at "
                     "each fixed parameter value)")
        return (
            f"Verified at generation time: {' and '.join(what[x] for x in self.languages)} "
            f"agree with bnmft's mpmath evaluation of the closed forms (bnmft.analyze, 16 "
            f"digits) {where} to {self.least:.1f} significant digits or more (relative "
            f"error <= {10 ** -self.least:.1e}) in every quantity (per quantity: VERIFIED in "
            "the numpy module)."
        )


#: The input scale: the generated functions of ``phi`` evaluate those of ``phi(gamma x)``.
GAMMA = sp.Symbol("gamma", positive=True)


def input_scale_parameter(deriv) -> ScaleParameter | None:
    """``gamma`` of ``phi(gamma x)`` (``gamma > 0``) for a positive-homogeneous ``phi`` of
    degree ``alpha``: each quantity's factor derived from its moment form
    (:func:`bnmft.derive.homogeneous.input_scale`; ``gamma^(2 alpha)`` for ``q*``, 1 for the
    others); None without homogeneity or moment forms (e.g. bare quantities)."""
    hom = getattr(getattr(deriv, "activation", None), "homogeneous", None)
    quantities = getattr(deriv, "quantities", None)
    if hom is None or quantities is None:
        return None
    from bnmft.derive.homogeneous import input_scale

    factors = []
    for q in quantities:
        if q.name in deriv.closed and q.moment_form is not None:
            try:
                factors.append((q.name, input_scale(q.moment_form, hom.alpha, GAMMA,
                                                    hom.alpha.free_symbols)))
            except ValueError:
                return None
    return ScaleParameter(
        symbol=GAMMA, name="gamma", meaning="the input scale: the values for phi(gamma x)",
        valid=sp.Symbol("gamma", real=True) > 0, valid_text="gamma > 0",
        factors=tuple(factors))


def closed_form_module(quantities, *, module: str, activation_name: str | None = None,
                       verified: ClosedVerification | None = None):
    """The :class:`ModuleSpec` of the closed forms in ``quantities`` (see
    :func:`derivation_functions`), named ``module``; ``verified``: the record of
    :func:`verify_closed`, stated in the header (and as ``VERIFIED`` in the numpy module)."""
    parameters = family_parameters(quantities)
    activation, functions = derivation_functions(quantities, activation_name, parameters)
    header = (f"Activation: {activation}",)
    constants = (Constant("ACTIVATION", activation),)
    description = tuple(_PARAMETER_NOTES[p.name] for p in parameters
                        if p.name in _PARAMETER_NOTES)
    if verified is not None:
        least = f"{verified.least:.1f}"
        header += (f"Verified: >= {least} significant digits against mpmath at B = "
                   f"{verified.batch_sizes[0]} ... {verified.batch_sizes[-1]}"
                   + (f" times {verified.grid_text()}" if verified.grid else ""),)
        description += (verified.text(),)
        constants += (Constant("VERIFIED", dict(verified.digits)),
                      Constant("VERIFIED_BATCH_SIZES", tuple(verified.batch_sizes)))
        constants += tuple(Constant(f"VERIFIED_{name.upper()}", tuple(values))
                           for name, values in verified.grid)
    # the depth definitions are checked on the derived forms, the rewrite is exact
    functions = tuple(
        dataclasses.replace(f, expr=expand_about(f.expr, parameters))
        if isinstance(f.expr, sp.Expr) else f
        for f in with_depth_definitions(functions))
    return ModuleSpec(
        name=module,
        title=f"Closed-form BSB1 quantities for activation {one_line(activation)}",
        functions=functions,
        header=header,
        description=description,
        constants=constants,
        scale=input_scale_parameter(quantities),
        parameters=parameters,
    )


def _closed_references(deriv, Bs) -> dict:
    """``{name: [mpf per B]}``: bnmft's mpmath evaluation of the closed forms, 16 digits."""
    from .quadrature import mpmath_references

    return mpmath_references(deriv, Bs, 15)


def verify_closed(deriv, module: str, languages=("numpy", "c"), Bs=None, grid=None
                  ) -> ClosedVerification:
    """Generate the closed-form modules of ``deriv`` for ``languages``, evaluate them (the C
    kernels compiled) at ``Bs`` (default :data:`.quadrature.VERIFY_BATCH_SIZES`, B from 4 to
    10^6) and compare every quantity with bnmft's mpmath evaluation of the closed forms; raises
    :class:`.quadrature.VerificationError` below :data:`.quadrature.REQUIRED_RTOL` (or if the C
    kernels cannot be compiled). For a family (parameters kept symbolic), every pair of a
    batch size and a point of ``grid`` (``((name, values), ...)``, default
    :data:`FAMILY_GRIDS`) is compared with the closed forms derived at that fixed point."""
    from .generate import generate
    from .jit import load_c, load_numpy
    from .quadrature import REQUIRED_RTOL, VERIFY_BATCH_SIZES, VerificationError
    from .quadrature import agreement_digits

    from .prepare import check_module_name

    check_module_name(module)  # before the references are computed
    Bs = tuple(VERIFY_BATCH_SIZES if Bs is None else Bs)
    params = family_parameters(deriv)
    if params:
        if grid is None:
            grid = tuple((p.name, FAMILY_GRIDS[p.name]) for p in params)
        points = _grid_points(grid)
        refs = [_family_references(deriv, point, Bs) for point in points]
    else:
        grid, points, refs = (), [()], [_closed_references(deriv, Bs)]
    x = np.asarray(Bs, dtype=float)
    got: dict = {}
    langs = tuple(lang for lang in ("numpy", "c") if lang in languages)
    for lang in langs:
        sources = generate(deriv, lang=lang, module=module)
        if lang == "numpy":
            mod = load_numpy(sources, module)
        else:
            try:
                mod = load_c(sources, module)
            except CodegenError as err:
                raise VerificationError(f"{module}: cannot compile the C kernels to check them "
                                        f"({err})") from None
        for point, ref in zip(points, refs):
            args = [np.full(x.shape, v) for _, v in point]
            values = {n: getattr(mod, n)(x, *args) for n in ref}
            if lang == "c":
                values.update({f"{n} (fused)": v for n, v in mod.all(x, *args).items()
                               if n in ref})
            for key, vals in values.items():
                name = key.split()[0]
                found = _agreement(vals, ref[name], agreement_digits)
                got.setdefault(name, []).append((found, point))
    need = -math.log10(REQUIRED_RTOL)
    digits = {}
    for name, found in got.items():
        least, point = min(found, key=lambda item: item[0])
        if least < need:
            at = "".join(f" at {k} = {v!r}" for k, v in point)
            raise VerificationError(
                f"{deriv.activation.name}: generated {name}{at} agrees with the mpmath "
                f"reference to only {least:.1f} digits (need {need:g}); refusing to write the "
                "module"
            )
        digits[name] = math.floor(min(least, 16.0) * 10) / 10
    return ClosedVerification(digits, Bs, langs, tuple(grid))


#: The parameter values a family module is verified at (times every batch size): slopes of
#: both signs, relu (0) and near it, the linear network (1) and near it; degrees from just above
#: 1/2 (where E[phi'^2] diverges) to 4.5, half-integers and integers included.
FAMILY_GRIDS = {
    "slope": (-1.0, -0.3, 0.0, 0.01, 0.5, 0.99, 1.0, 2.0),
    "alpha": (0.55, 0.75, 1.0, 1.5, 2.0, 3.0, 4.5),
}


def _grid_points(grid) -> list[tuple[tuple[str, float], ...]]:
    """Every combination of the grid's values, as ``((name, value), ...)``."""
    points: list[tuple] = [()]
    for name, values in grid:
        points = [(*p, (name, float(v))) for p in points for v in values]
    return points


def _family_references(deriv, point, Bs) -> dict:
    """``{name: [mpf per B]}`` at one parameter point of a family: the closed forms derived
    at those fixed values (``activation("alpha_relu:alpha=1.5")``, the value as its exact
    binary rational), evaluated by mpmath to 16 digits; only the quantities whose conditions
    hold there."""
    from fractions import Fraction

    from bnmft.derive import derive
    from bnmft.derive.activation import activation

    family = deriv.activation.name.split()[0]
    text = ",".join(f"{k}={Fraction(v).numerator}/{Fraction(v).denominator}" for k, v in point)
    fixed = derive(activation(f"{family}:{text}"))
    ref = _closed_references(fixed, Bs)
    values = {sp.Symbol(k, real=True): sp.Float(v, 30) for k, v in point}
    _, specs = derivation_functions(deriv, parameters=family_parameters(deriv))
    keep = {f.name for f in specs if all(bool(c.valid.xreplace(values)) for c in f.conditions)}
    return {n: v for n, v in ref.items() if n in keep}


def _agreement(values, reference, agreement_digits) -> float:
    """Digits of agreement, infinite values included (equal infinities agree exactly)."""
    finite = [(v, r) for v, r in zip(values, reference) if not (math.isinf(v) and v == r)]
    if any(math.isinf(v) or math.isnan(v) for v, _ in finite):
        return 0.0
    return agreement_digits([v for v, _ in finite], [r for _, r in finite])
