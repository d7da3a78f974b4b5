"""Functions of ``(B, eps, sigma_w)`` for batchnorm with ``eps > 0`` in generated modules
(``bnmft codegen ACT --epsilon``).

The theory is that of :mod:`bnmft.derive.epsilon`: every quantity is a fixed algebraic form
of radial means ``R[k^m rho^p M(rho)]`` over ``k ~ chi^2_{B-1}``, ``rho^2 = k/(k + a)``,
``a = B eps / s``, evaluated at the root ``s*`` of the scale equation ``s = S(s)``. A
generated block computes, per element and at run time:

* the radial rule of :func:`bnmft.numerics.epsilon._radial_rule`: Gauss-Legendre in
  ``r = sqrt(k)`` (nodes baked as correctly rounded literals) on unit pieces about the mode,
  split geometrically towards 0 around ``sqrt(a)`` (the poles of ``rho``), the density
  ``r^(B-2) e^(-r^2/2)`` in logs (so ``B = 10^6`` neither overflows nor loses digits);
* the sphere moments ``M(rho)`` at the radial nodes: for positive-homogeneous ``phi`` of
  degree ``alpha``, ``M(rho) = rho^deg M(1)`` with ``M(1)`` the closed sphere moments
  (printed, :func:`bnmft.derive.epsilon.scaled_sphere_moments`); for any other ``phi`` (a
  quadrature module), Chebyshev interpolants in ``rho`` of the module's own sphere rule
  applied to ``phi(rho z)``, on pieces split where a kink enters the sphere or a corner of
  two kink lines enters the support of two coordinates; past such a point a moment is
  ``smooth + (rho - rho_c)^(j/2) smooth``, so the piece is Chebyshev in ``u``, ``rho = rho_c
  + (hi - rho_c) u^2``, and the radial rule is split (and graded alike) at the ``r`` where
  ``rho`` crosses it;
* ``s*``: the largest root below the ``eps = 0`` scale reached by halving, then Brent's
  method on that bracket (the library's :func:`bnmft.numerics.epsilon._solve_scale` bisects
  in ``log s``); NaN where there is no
  nonzero fixed point.

At generation the block is checked against :func:`bnmft.numerics.epsilon.analyze_regularised`
(closed Tricomi forms / mpmath radial quadrature for positive-homogeneous ``phi``, the
float64 route otherwise) on :data:`VERIFY_POINTS`; the agreement reached is written into the
header and ``EPS_VERIFIED``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

from .errors import CodegenError
from .render import WIDTH, environment, one_line, wrap

#: Gauss-Legendre nodes per unit piece of the radial rule.
RADIAL_NODES = 40
#: Chebyshev points per piece of ``rho`` for the sphere-moment interpolants (quadrature
#: modules).
CHEBYSHEV_POINTS = 64
#: Below this fraction of the eps = 0 scale the signal counts as dead (exactly scaled
#: moments), resp. the sign of ``S(s) - s`` is not resolved (interpolated moments).
DEAD_SCALED = 1e-15
DEAD_TABLE = 1e-9
#: The radial rule's geometric pieces start at sqrt(a) / RADIAL_FLOOR (towards r = 0). For a
#: family module at min(sqrt(a), 1) / FAMILY_RADIAL_FLOOR: its degrees may make the integrand
#: a non-integer power r^(2 alpha) at r = 0 (alpha_relu's backward moments at B = 4, alpha <
#: 1), which one piece [0, sqrt(a)/8] integrates only to ~5e-12 (B = 4, eps = 1e-3, alpha =
#: 0.6; at eps = 2, sigma_w = 0.5, where sqrt(a) ~ 10^2, 1.5e-11 with sqrt(a)/8192 still);
#: ten more halvings below r = 1 bring that below 1e-16.
RADIAL_FLOOR = 8
FAMILY_RADIAL_FLOOR = 8192
#: Relative width of the final bracket of ``s*`` (Brent's method).
SCALE_RTOL = 1e-15
#: Where every generated block is verified: (B, eps, sigma_w), B from 4 to 10^6.
VERIFY_POINTS = tuple((B, eps, sw) for B in (4, 5, 8, 64, 1000, 10**6)
                      for eps, sw in ((1e-3, 1.0), (0.1, 1.5), (0.2, 1.0), (2.0, 0.5)))
#: The quantities (numpy: ``NAME_eps``; C: ``MODULE_NAME_eps``), in this order.
QUANTITIES = ("s_star", "q_star", "c_star", "lambda_G", "lambda_L", "lambda_M",
              "gradient_rate", "depth_scale", "max_trainable_depth")
#: Relative agreement the generated values must reach (or the reference's own digits, if
#: fewer: the float64 reference route of a non-homogeneous phi claims fewer for lambda_G).
REQUIRED_RTOL = 1e-12
#: For interpolated sphere moments (quadrature modules) the refusal threshold is lower:
#: O(1/B) quantities such as c* of an odd phi reach about 1e-11 at B = 10^6 against the
#: float64 reference route (which interpolates too); the header states what was reached.
TABLE_REQUIRED_RTOL = 1e-10
#: Digits short of that tolerated (a reference's claimed digits are an estimate: the
#: difference of two resolutions); what is reached is stated, not the requirement.
SLACK_DIGITS = 0.5


@dataclass(frozen=True)
class EpsilonForms:
    """What a block is printed from: the route (``"scaled"`` or ``"table"``), the radial
    moments ``(m, p, moment index or -1, centred)``, the sphere moments (``(m, p, q)``
    points), their degrees (scaled route) and closed values at ``rho = 1`` (expressions in
    ``B``), the forms (name -> expression in ``B, epsilon, sigma_w, s, r0, r1, ...``), the
    radials the scale map needs, and the indices of ``R[E phi^2]``, ``R[E phi(z1) phi(z2)]``
    (q*, c* use the raw moments of phi where a quadrature module shifts phi)."""

    route: str
    radials: tuple
    radial_names: tuple
    moments: tuple
    degrees: tuple
    unit_moments: tuple
    forms: tuple
    scale_radials: tuple
    raw_radials: tuple
    #: a family (``bnmft codegen leaky_relu``): the parameter names (the functions take them
    #: as array arguments after ``B``) and, per sphere moment, the coefficient of the
    #: parameter in its degree (``M(rho) = rho^(degree + slope_j p) M(1)``; alpha_relu:
    #: ``alpha p + (alpha - 1) q``); () for a fixed phi
    parameters: tuple = ()
    degree_slopes: tuple = ()


_FORM_NAMES = ("scale_map", "q_star", "c_star", "forward_G", "forward_L", "forward_M",
               "backward_G", "backward_L", "backward_M")


#: Family parameters the eps > 0 functions take as array arguments (after ``B``, as the
#: family module's functions), the values they are verified at (times
#: :data:`FAMILY_VERIFY_POINTS`) and the domain they are computed on.
FAMILY_VERIFY_GRIDS = {
    "slope": (-0.5, 0.0, 0.2, 0.9),
    "alpha": (0.75, 1.0, 1.5, 2.5),
}
#: The (B, eps, sigma_w) points of a family's verification (each times every grid value):
#: B = 10^6 is left out (the reference's mpmath radial quadrature takes minutes per point).
FAMILY_VERIFY_POINTS = tuple((B, eps, sw) for B in (4, 5, 8, 64, 1000)
                             for eps, sw in ((1e-3, 1.0), (0.1, 1.5), (0.2, 1.0), (2.0, 0.5)))
#: name -> (numpy test, its text): the values the eps > 0 functions are computed for.
FAMILY_DOMAINS = {
    "slope": ("numpy.isfinite(slope)", "slope finite (any real slope: phi = u x + v |x|, "
              "u = (1 + slope)/2, v = (1 - slope)/2, is homogeneous of degree 1, so the "
              "sphere moments of phi(rho z) are rho^deg times quadratic forms in (u, v) "
              "with coefficients in B)"),
    "alpha": ("numpy.isfinite(alpha) & (alpha > 0.5)",
              "alpha finite and > 1/2 (the eps > 0 spectra need E[phi'(z)^2], finite only "
              "for alpha > 1/2; the sphere moments of phi(rho z) are rho^deg(alpha) times "
              "Gamma functions and 2F1 of alpha, evaluated at run time)"),
}
_C_DOMAINS = {"slope": "isfinite(bnmft_slope)",
              "alpha": "isfinite(bnmft_alpha) && bnmft_alpha > 0.5"}


def family_parameters_of(act) -> tuple:
    """``((name, symbol), ...)``: the parameters ``act`` keeps as symbols (a family built by
    :func:`bnmft.derive.activation.symbolic_activation`), () for a fixed phi;
    :class:`CodegenError` for more than one or one without an eps > 0 domain."""
    params = tuple((k, v) for k, v in (getattr(act, "params", ()) or ())
                   if isinstance(v, sp.Symbol))
    if len(params) > 1 or any(k not in FAMILY_DOMAINS for k, _ in params):
        raise CodegenError(f"{act.name}: eps > 0 functions for this family are not supported; "
                           "give its parameters values")
    return params


def epsilon_forms(act, route: str) -> EpsilonForms:
    """The eps > 0 forms of ``act`` for ``route`` (``"scaled"``: positive-homogeneous phi and
    a closed-form module; ``"table"``: a quadrature module), or :class:`CodegenError`."""
    from bnmft.derive import B
    from bnmft.derive.epsilon import (derive_regularised, radials_in, scaled_sphere_moments,
                                      sphere_moments_of)

    params = family_parameters_of(act)
    rd = derive_regularised(act)
    noted = [e.name for e in rd.entries if e.note]
    if noted:
        raise CodegenError(f"{act.name}: the eps > 0 quantities {', '.join(noted)} need "
                           "moments of phi' that diverge; no eps > 0 functions")
    moments = sphere_moments_of(rd.radials)
    index = {mo: i for i, mo in enumerate(moments)}
    radials = tuple(rd.radials)
    syms = {r.symbol: sp.Symbol(f"r{i}") for i, r in enumerate(radials)}
    quantities = {"scale_map": rd.scale_map, **{q.name: q for q in rd.quantities},
                  **{e.name: e.eigenvalue for e in rd.entries}}
    forms = tuple((n, quantities[n].moment_form.xreplace(syms)) for n in _FORM_NAMES)
    degrees, unit, slopes = (), (), ()
    if params and route != "scaled":
        raise CodegenError(f"{act.name}: eps > 0 functions of a family need closed sphere "
                           "moments")
    if route == "scaled":
        scaled = scaled_sphere_moments(act, moments)
        if set(scaled) != set(moments):
            raise CodegenError(f"{act.name}: a sphere moment of the eps > 0 forms diverges")
        unit = tuple(sp.sympify(scaled[mo][0]) for mo in moments)
        if params:
            from .closed_forms import expand_about
            from .spec import Argument

            (pname, psym), = params
            # leaky_relu: quadratic forms in u = (1 + slope)/2, v = (1 - slope)/2 (no
            # cancellation between slope terms near slope = +-1); checked to 40 digits
            unit = tuple(expand_about(v, (Argument(psym, pname, pname),)) for v in unit)
            degs = [sp.expand(sp.sympify(scaled[mo][1])) for mo in moments]
            slopes = tuple(float(sp.diff(d, psym)) for d in degs)
            degrees = tuple(float(d.subs(psym, 0)) for d in degs)
            if any(sp.diff(d, psym, 2) != 0 for d in degs):
                raise CodegenError(f"{act.name}: a sphere-moment degree is not linear in "
                                   f"{pname}")
        else:
            degrees = tuple(float(scaled[mo][1]) for mo in moments)
        allowed = {B.name} | {k for k, _ in params}
        for v in unit:
            if {s.name for s in v.free_symbols} - allowed:
                raise CodegenError(f"{act.name}: a closed sphere moment depends on more than "
                                   + ", ".join(sorted(allowed)))
    pts = tuple(tuple((p.m, p.p, p.q) for p in mo.points) for mo in moments)
    f2, f1f2 = ((0, 2, 0),), ((0, 1, 0), (0, 1, 0))
    raw = tuple(i for i, r in enumerate(radials) if r.m == 0 and r.p == 0 and not r.centred
                and r.moment is not None and pts[index[r.moment]] in (f2, f1f2))
    for name in ("q_star", "c_star"):
        used = {s.name for s in dict(forms)[name].free_symbols if s.name.startswith("r")}
        if not used <= {f"r{i}" for i in raw}:
            raise CodegenError(f"internal error: {name} uses moments beyond E[phi^2], "
                               "E[phi(z1) phi(z2)]")
    if any(r.centred and r.m != 1 for r in radials):
        raise CodegenError("internal error: a centred radial moment with k^m, m != 1")
    scale = tuple(sorted(i for i, r in enumerate(radials)
                         if r in radials_in(rd.scale_map.moment_form)))
    return EpsilonForms(
        route=route,
        radials=tuple((r.m, r.p, -1 if r.moment is None else index[r.moment], r.centred)
                      for r in radials),
        radial_names=tuple(r.name for r in radials),
        moments=pts, degrees=degrees, unit_moments=unit, forms=forms,
        scale_radials=scale, raw_radials=raw, parameters=tuple(params),
        degree_slopes=slopes)


def route_of(act, quadrature: bool) -> str:
    """``"table"`` for a quadrature module, ``"scaled"`` for a closed-form module of a
    positive-homogeneous phi; :class:`CodegenError` otherwise."""
    if quadrature:
        return "table"
    if act.homogeneous is None:
        raise CodegenError(f"{act.name}: eps > 0 functions for a closed-form module need a "
                           "positive-homogeneous phi")
    return "scaled"


def _prepared(forms: EpsilonForms):
    """The forms and unit moments through :func:`.prepare.prepare` (validation, CSE)."""
    from bnmft.derive.epsilon import EPS, S, SIGMA_W

    from .prepare import prepare
    from .spec import Argument, FunctionSpec, ModuleSpec, batch_argument

    args = (batch_argument(), Argument(EPS, "epsilon", "batchnorm's eps"),
            Argument(SIGMA_W, "sigma_w", "weight scale"), Argument(S, "s", "scale"),
            *(Argument(sp.Symbol(f"r{i}"), f"r{i}", n)
              for i, n in enumerate(forms.radial_names)))
    fns = [FunctionSpec(f"_eps_form_{n}", args, e, n, (), "bnmft.derive.epsilon", "B >= 4")
           for n, e in forms.forms]
    unit_args = (batch_argument(), *(Argument(sym, name, name) for name, sym in forms.parameters))
    fns += [FunctionSpec(f"_eps_unit_{i}", unit_args, v, f"m{i}", (),
                         "bnmft.derive.epsilon.scaled_sphere_moments", "B >= 4")
            for i, v in enumerate(forms.unit_moments)]
    return prepare(ModuleSpec(name="eps_block", title="eps > 0", functions=tuple(fns)))


def forms_sha256(forms: EpsilonForms) -> str:
    """sha256 of the forms and unit moments (:func:`.prepare.source_sha256`)."""
    from .prepare import source_sha256

    items = dict(forms.forms)
    items.update({f"unit_{i}": v for i, v in enumerate(forms.unit_moments)})
    if forms.parameters:
        (name, sym), = forms.parameters
        items["degrees"] = sp.Tuple(*(sp.Float(d, 17) + sp.Float(k, 17) * sym
                                      for d, k in zip(forms.degrees, forms.degree_slopes)))
    return source_sha256(items)


def _gauss_legendre():
    from bnmft.numerics.rules import gauss_legendre_nodes

    t, w, _ = gauss_legendre_nodes(RADIAL_NODES)
    return [float(v) for v in t], [float(v) for v in w]


def _depth_texts(printer) -> dict:
    from .spec import depth_relations

    rate = sp.Symbol("gradient_rate")
    return {n: printer.doprint(e.xreplace({rate: sp.Symbol("rate")}))
            for n, e in depth_relations().items()}


@dataclass(frozen=True)
class EpsilonVerification:
    """Per quantity the least digits (floored to 0.1, at most 16) on which the generated
    values agree with :func:`bnmft.numerics.epsilon.analyze_regularised`, never more than the
    reference's own; the points checked; which of them have no nonzero fixed point."""

    digits: dict
    points: tuple
    dead: tuple
    reference: str
    #: a family: ``(name, values)``, the parameter values each point was checked at
    grid: tuple = ()

    @property
    def least(self) -> float:
        return min(self.digits.values())

    def text(self) -> str:
        sizes = sorted({b for b, _, _ in self.points})
        pairs = sorted({(e, w) for _, e, w in self.points})
        family = ""
        if self.grid:
            name, values = self.grid
            family = (f" times {name} = {', '.join(repr(v) for v in values)} (the reference "
                      f"derived for each fixed {name})")
        return (f"Verified at generation time against bnmft.numerics.epsilon."
                f"analyze_regularised ({self.reference}) at B = "
                f"{', '.join(str(b) for b in sizes)} times (eps, sigma_w) = "
                f"{', '.join(f'({e:g}, {w:g})' for e, w in pairs)}{family}: every quantity "
                "agrees to "
                f"{self.least:.1f} significant digits or more (relative error <= "
                f"{10 ** -self.least:.1e}; per quantity in EPS_VERIFIED, capped at the "
                "reference's own digits)"
                + (f"; no nonzero fixed point (NaN, as the reference) at {len(self.dead)} of "
                   f"the {len(self.points) * max(1, len(self.grid[1]) if self.grid else 1)} "
                   "points" if self.dead else "") + ".")


def _description(act, forms: EpsilonForms, record, lang: str = "numpy",
                 module: str = "") -> list[str]:
    if forms.route == "scaled":
        moments = ("the sphere moments of phi(rho z) are rho^deg times the closed sphere "
                   "moments at rho = 1 (phi positive-homogeneous)")
    else:
        moments = (f"the sphere moments of phi(rho z) are Chebyshev interpolants in rho "
                   f"({CHEBYSHEV_POINTS} points per piece, pieces split where a kink or a "
                   "corner of two kink lines enters the support and graded past it, the "
                   "radial rule split where rho crosses those points), computed per B from "
                   "this module's sphere rule")
    if forms.parameters:
        return _family_description(forms, record, lang, module, moments)
    if lang == "c":
        call = (f"the kernels {module}_NAME_eps(n, B, eps, sigma_w, out) and "
                f"{module}_all_eps (declared in {module}.h, which states the calling convention)"
                " evaluate")
        args = ("eps and sigma_w are NULL (0, resp. 1) or n values, one per element of B "
                "(NaN for B < 4, eps < 0, sigma_w <= 0 or non-finite values). eps = 0 gives "
                "the eps = 0 kernels of this file (q* times sigma_w^2, s* = q*(1 - c*)).")
    else:
        call = "the functions NAME_eps(B, eps, sigma_w=1.0) evaluate"
        args = ("B, eps, sigma_w are array-likes broadcast together (B >= 4, eps >= 0, sigma_w "
                "> 0; ValueError otherwise); each distinct (B, eps, sigma_w) is computed once. "
                "eps = 0 gives the eps = 0 functions of this module (q* times sigma_w^2, s* = "
                "q*(1 - c*)).")
    text = [
        f"Batchnorm with eps > 0 (variance regulariser) and weight scale sigma_w: {call} "
        "the theory of bnmft.derive.epsilon "
        "(radial means over k ~ chi^2_{B-1} of sphere moments of phi(rho z), rho^2 = k/(k + "
        f"a), a = B eps/s, at the root s* of the scale equation s = S(s)). {args} NaN means "
        "no nonzero fixed point: S(s) < s down to "
        f"{DEAD_SCALED if forms.route == 'scaled' else DEAD_TABLE:g} of the eps = 0 scale "
        "(the signal dies out with depth).",
        f"Radial rule: {RADIAL_NODES}-point Gauss-Legendre in r = sqrt(k) per unit piece on "
        "[max(0, r0 - 12), r0 + 12] (r0 the mode), split geometrically towards 0 around "
        f"sqrt(a), the density r^(B-2) e^(-r^2/2) in logs; {moments}. s*: the largest root "
        "below the eps = 0 scale reached by halving, then Brent's method to a relative "
        f"bracket of {SCALE_RTOL:g}. lambda_G/L/M are the forward eigenvalues, gradient_rate the largest "
        "backward one (bnmft.numerics.epsilon).",
    ]
    if record is not None:
        text.append(record.text())
    return text


def _family_description(forms: EpsilonForms, record, lang: str, module: str,
                        moments: str) -> list[str]:
    """The block's documentation for a family module (the parameter an array argument)."""
    (name, _), = forms.parameters
    domain = FAMILY_DOMAINS[name][1]
    grid = ", ".join(repr(v) for v in FAMILY_VERIFY_GRIDS[name])
    if lang == "c":
        call = (f"the kernels {module}_NAME_eps(n, B, {name}, eps, sigma_w, out) and "
                f"{module}_all_eps (declared in {module}.h, which states the calling convention)"
                " evaluate")
        args = (f"{name} takes the place it has in this file's kernels (right after B): n "
                f"values, never NULL; eps and sigma_w are NULL (0, resp. 1) or n values. NaN "
                f"for B < 4, eps < 0, sigma_w <= 0, non-finite values or {name} outside its "
                f"domain. eps = 0 gives the eps = 0 kernels of this file (q* times sigma_w^2, "
                "s* = q*(1 - c*)).")
        refusal = "NaN"
    else:
        call = (f"the functions NAME_eps(B, {name}, eps, sigma_w=1.0) evaluate")
        args = (f"B, {name}, eps, sigma_w are array-likes broadcast together, {name} right "
                "after B as in this module's functions (B >= 4, eps >= 0, sigma_w > 0, "
                f"{name} in its domain; ValueError otherwise); each distinct (B, "
                f"{name}, eps, sigma_w) is computed once. eps = 0 gives the eps = 0 functions "
                "of this module (q* times sigma_w^2, s* = q*(1 - c*)).")
        refusal = "ValueError"
    text = [
        f"Batchnorm with eps > 0 (variance regulariser) and weight scale sigma_w: {call} "
        "the theory of bnmft.derive.epsilon "
        "(radial means over k ~ chi^2_{B-1} of sphere moments of phi(rho z), rho^2 = k/(k + "
        f"a), a = B eps/s, at the root s* of the scale equation s = S(s)). {args} NaN also "
        "means no nonzero fixed point: S(s) < s down to "
        f"{DEAD_SCALED:g} of the eps = 0 scale (the signal dies out with depth).",
        f"Domain of {name}: {domain}; outside it {refusal}. Verified at {name} = {grid} "
        "(the header's line and EPS_VERIFIED_GRID); at other values in the domain the values "
        "are computed by the same code, not verified.",
        f"Radial rule: {RADIAL_NODES}-point Gauss-Legendre in r = sqrt(k) per unit piece on "
        "[max(0, r0 - 12), r0 + 12] (r0 the mode), split geometrically towards 0 around "
        f"sqrt(a) (from min(sqrt(a), 1)/{FAMILY_RADIAL_FLOOR}: r^(2 alpha) at r = 0), the "
        f"density r^(B-2) e^(-r^2/2) in logs; {moments}, computed at run time "
        f"for each distinct (B, {name}). s*: the largest root below the eps = 0 scale "
        f"reached by halving, bisection in log s to {SCALE_RTOL:g}. lambda_G/L/M are the "
        "forward eigenvalues, gradient_rate the largest backward one "
        "(bnmft.numerics.epsilon).",
    ]
    if record is not None:
        text.append(record.text())
    return text


class _Renamed:
    """A generated routine (:mod:`.special`) under the name ``prefix + name`` (the eps > 0
    block emits its own copies, which cannot clash with the module's)."""

    def __init__(self, routine, prefix: str):
        self._routine, self.name = routine, prefix + routine.name
        self.base_name = routine.name

    def __getattr__(self, key):
        return getattr(self._routine, key)


def _routines(printer, prefix: str = "eps_") -> list:
    return [_Renamed(printer.routines[k], prefix) for k in sorted(printer.routines)]


def render_numpy(act, forms: EpsilonForms, record=None) -> str:
    """The numpy block (to append to the module of ``act``)."""
    from .backends.numpy.printer import NumpyModulePrinter, _doc_safe

    prepared = _prepared(forms)
    printer = NumpyModulePrinter()
    printer.ROUTINE_PREFIX = "_eps_"
    fns = [{"name": q.name, "arguments": ", ".join(q.argument_names),
            "assignments": [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries],
            "result": printer.doprint(q.result)} for q in prepared.functions]
    depth = _depth_texts(printer)
    if set(printer.module_imports) - {"numpy"}:
        raise CodegenError(f"{act.name}: the eps > 0 forms need more than numpy")
    t, w = _gauss_legendre()
    env = environment(__file__.replace("epsilon.py", "backends/numpy/printer.py"))
    paragraphs = _description(act, forms, record)
    return env.get_template("epsilon.py.jinja").render(
        paragraphs=[["# " + _doc_safe(line) for line in wrap(p, WIDTH - 2)]
                    for p in paragraphs],
        route=forms.route,
        sha256=repr(forms_sha256(forms)),
        moments=repr(forms.moments),
        radials=repr(forms.radials),
        degrees=repr(forms.degrees),
        n_moments=len(forms.moments),
        derivatives=repr(tuple(float(sum(q for _, _, q in pts)) for pts in forms.moments)),
        scale_radials=repr(forms.scale_radials),
        raw_radials=repr(forms.raw_radials),
        n_radials=len(forms.radials),
        gl_x=repr(t), gl_w=repr(w),
        dead=repr(DEAD_SCALED if forms.route == "scaled" else DEAD_TABLE),
        chebyshev=CHEBYSHEV_POINTS,
        scale_rtol=repr(SCALE_RTOL),
        verified=repr({} if record is None else dict(record.digits)),
        verified_points=repr(() if record is None else record.points),
        parameter=forms.parameters[0][0] if forms.parameters else None,
        degree_slopes=repr(forms.degree_slopes),
        domain=FAMILY_DOMAINS[forms.parameters[0][0]][0] if forms.parameters else None,
        domain_text=(FAMILY_DOMAINS[forms.parameters[0][0]][1].split(" (")[0]
                     if forms.parameters else None),
        domain_message=(f"{forms.parameters[0][0]} must be "
                        + FAMILY_DOMAINS[forms.parameters[0][0]][1].split(" (")[0]
                        [len(forms.parameters[0][0]) + 1:] if forms.parameters else None),
        verified_grid=repr(() if record is None else record.grid),
        radial_start=(f"min(numpy.sqrt(a), 1.0) / {FAMILY_RADIAL_FLOOR}" if forms.parameters
                      else f"numpy.sqrt(a) / {RADIAL_FLOOR}"),
        functions=fns,
        n_units=len(forms.unit_moments),
        depth=depth,
        quantities=QUANTITIES,
        names=[repr(f"{q}_eps") for q in QUANTITIES] + [repr("all_eps"), repr("EPS_VERIFIED")]
        + ([repr("EPS_PARAMETERS")] if forms.parameters else []),
        routines=_routines(printer),
    )


def header_line(record) -> str:
    """The line the block adds to the generated-file header."""
    if record is None:
        return "eps > 0 functions: not verified"
    if record.grid:
        name, values = record.grid
        sizes = sorted({b for b, _, _ in record.points})
        return (f"eps > 0 functions: >= {record.least:.1f} digits against bnmft.numerics."
                f"epsilon at B = {sizes[0]} ... {sizes[-1]} times {name} = "
                f"{', '.join(repr(v) for v in values)}")
    return (f"eps > 0 functions: >= {record.least:.1f} digits against bnmft.numerics.epsilon "
            "at B = 4 ... 10^6")


def append_block(text: str, block: str, header: str) -> str:
    """``text`` (a generated module) with ``header`` as one more header comment line (after
    the leading comment lines) and ``block`` appended."""
    lines = text.split("\n")
    k = 0
    while k < len(lines) and lines[k].startswith("//" if lines[0].startswith("//") else "#"):
        k += 1
    prefix = "// " if lines[0].startswith("//") else "# "
    lines.insert(k, prefix + one_line(header))
    return "\n".join(lines).rstrip("\n") + "\n" + block


@lru_cache(maxsize=8)
def _reference(act, points) -> tuple[dict, dict, str]:
    """``{point: {name: float}}`` (empty: no nonzero fixed point) and ``{point: {name:
    digits}}`` from analyze_regularised, and the routes used."""
    from bnmft.derive.epsilon import derive_regularised
    from bnmft.numerics.epsilon import analyze_regularised

    rd = derive_regularised(act)
    values, digits, routes = {}, {}, set()
    for B, eps, sw in points:
        res = analyze_regularised(rd, [B], repr(float(eps)), repr(float(sw)))[0]
        if res.regime != "fixed point":
            values[(B, eps, sw)], digits[(B, eps, sw)] = {}, {}
            continue
        values[(B, eps, sw)] = {n: float(res.numbers[n].value) for n in QUANTITIES}
        digits[(B, eps, sw)] = {n: float(res.numbers[n].digits) for n in QUANTITIES}
        routes |= {res.numbers[n].route for n in QUANTITIES}
    return values, digits, "; ".join(sorted(routes))


def check_values(act, evaluate, points=VERIFY_POINTS, what: str = "numpy",
                 rtol: float = REQUIRED_RTOL) -> EpsilonVerification:
    """Compare ``evaluate(B, eps, sw) -> {name: array}`` (arrays over ``points``) with the
    references; :class:`.quadrature.VerificationError` short of ``rtol`` (or
    the reference's own digits, if fewer), or where the two disagree on the regime."""
    from .quadrature import VerificationError

    points = tuple(points)
    ref, ref_digits, route = _reference(act, points)
    arr = np.array(points, dtype=float)
    got = evaluate(arr[:, 0], arr[:, 1], arr[:, 2])
    out = {n: math.inf for n in QUANTITIES}
    dead = []
    for i, pt in enumerate(points):
        if not ref[pt]:
            dead.append(pt)
            if not all(math.isnan(got[n][i]) for n in QUANTITIES):
                raise VerificationError(f"{act.name}: the reference has no nonzero fixed point "
                                        f"at (B, eps, sigma_w) = {pt}, the generated {what} "
                                        "block has one")
            continue
        for n in QUANTITIES:
            v, r = float(got[n][i]), ref[pt][n]
            err = abs(v - r) / abs(r) if r != 0 else abs(v)
            agree = -math.log10(err) if err > 0 else 16.0
            if not math.isfinite(v):
                agree = 0.0
            need = min(-math.log10(rtol), ref_digits[pt][n]) - SLACK_DIGITS
            if agree < need:
                raise VerificationError(
                    f"{act.name}: generated {n}_eps ({what}) agrees with the reference to only "
                    f"{agree:.1f} digits at (B, eps, sigma_w) = {pt} (need {need:.1f}); "
                    "refusing to write the module")
            out[n] = min(out[n], agree, ref_digits[pt][n])
    digits = {n: math.floor(min(v, 16.0) * 10) / 10 for n, v in out.items()}
    return EpsilonVerification(digits, points, tuple(dead), route)


def fixed_member(act, value: float):
    """The member of the family ``act`` at one parameter value (its exact binary rational),
    e.g. ``alpha_relu:alpha=3/2``: what the reference is derived for."""
    from fractions import Fraction

    from bnmft.derive.activation import activation

    (name, _), = family_parameters_of(act)
    q = Fraction(value)
    return activation(f"{act.name.split()[0]}:{name}={q.numerator}/{q.denominator}")


def check_family_values(act, evaluate, grid=None, points=FAMILY_VERIFY_POINTS,
                        what: str = "numpy", rtol: float = REQUIRED_RTOL) -> EpsilonVerification:
    """:func:`check_values` of ``evaluate(B, p, eps, sw)`` at each family parameter value of
    ``grid`` (default :data:`FAMILY_VERIFY_GRIDS`) against the reference of that fixed member;
    the least digits over them."""
    (name, _), = family_parameters_of(act)
    values = tuple(float(v) for v in (FAMILY_VERIFY_GRIDS[name] if grid is None else grid))
    records = []
    for v in values:
        records.append(check_values(
            fixed_member(act, v),
            lambda B, e, w, v=v: evaluate(B, np.full(np.shape(B), v), e, w),
            points=points, what=f"{what}, {name} = {v!r}", rtol=rtol))
    digits = {n: min(r.digits[n] for r in records) for n in QUANTITIES}
    dead = tuple((v, pt) for v, r in zip(values, records) for pt in r.dead)
    reference = "; ".join(sorted({part for r in records for part in r.reference.split("; ")}))
    return EpsilonVerification(digits, tuple(points), dead, reference, (name, values))


def numpy_evaluator(module_text: str):
    """``all_eps`` of a generated numpy module text, as ``evaluate(B, eps, sw)``."""
    from .jit import load_numpy

    mod = load_numpy(module_text)
    if getattr(mod, "EPS_PARAMETERS", ()):
        return lambda B, p, e, w: mod.all_eps(B, p, e, w)
    return lambda B, e, w: mod.all_eps(B, e, w)


def with_epsilon(act, sources: dict, lang: str, module: str, quadrature: bool,
                 record: EpsilonVerification | None = None) -> tuple[dict, EpsilonVerification]:
    """``sources`` (the generated module of ``act`` for ``lang``) with the eps > 0 block,
    verified (numpy: against the references; C: the compiled kernels as well) unless
    ``record`` is given for numpy."""
    forms = epsilon_forms(act, route_of(act, quadrature))
    if lang == "numpy":
        name = f"{module}.py"
        if record is None:
            draft = append_block(sources[name], render_numpy(act, forms), header_line(None))
            if forms.parameters:
                record = check_family_values(act, numpy_evaluator(draft))
            else:
                record = check_values(act, numpy_evaluator(draft), rtol=REQUIRED_RTOL
                                      if forms.route == "scaled" else TABLE_REQUIRED_RTOL)
        text = append_block(sources[name], render_numpy(act, forms, record), header_line(record))
        return {**sources, name: text}, record
    if lang != "c":
        raise CodegenError(f"unknown lang {lang!r}")
    c_name, h_name = f"{module}.c", f"{module}.h"

    def assemble(rec):
        c_block, h_block = render_c(act, forms, module, rec)
        line = header_line(rec)
        return {**sources,
                c_name: insert_c_header(sources[c_name], line).rstrip("\n") + "\n" + c_block,
                h_name: insert_header(sources[h_name], h_block, line)}

    if record is None:
        from .quadrature import VerificationError

        draft = assemble(None)
        try:
            all_eps, singles = load_c_epsilon(draft, module,
                                              tuple(n for n, _ in forms.parameters))
        except (CodegenError, OSError) as err:
            raise VerificationError(f"{module}: cannot compile the eps > 0 C kernels to check "
                                    f"them ({err})") from None
        rtol = REQUIRED_RTOL if forms.route == "scaled" else TABLE_REQUIRED_RTOL
        if forms.parameters:
            record = check_family_values(act, all_eps, what="C fused")
            single = check_family_values(
                act, lambda B, p, e, w: {n: singles[n](B, p, e, w) for n in QUANTITIES},
                what="C")
        else:
            record = check_values(act, all_eps, what="C fused", rtol=rtol)
            single = check_values(
                act, lambda B, e, w: {n: singles[n](B, e, w) for n in QUANTITIES}, what="C",
                rtol=rtol)
        record = EpsilonVerification({n: min(record.digits[n], single.digits[n])
                                      for n in record.digits}, record.points, record.dead,
                                     record.reference, record.grid)
    return assemble(record), record


# -- C ------------------------------------------------------------------------------------------


def render_c(act, forms: EpsilonForms, module: str, record=None) -> tuple[str, str]:
    """``(C block, header block)`` to append to ``module.c`` / insert into ``module.h`` (a
    closed-form module: the scaled route; a quadrature module: the table route, built on its
    ``angle_moments`` / ``tensor_moments``)."""
    from .quadrature import c_array

    from .quadrature import C_MAX_MOMENTS

    if len(forms.moments) > C_MAX_MOMENTS:
        raise CodegenError(f"more than {C_MAX_MOMENTS} sphere moments (MAX_MOMENTS in C)")
    import re

    from .backends.c.printer import CKernelPrinter, comment_safe

    prepared = _prepared(forms)
    printer = CKernelPrinter(parameters=[name for name, _ in forms.parameters])
    printer.ROUTINE_PREFIX = "bnmft_eps_"
    by_name = {q.name: q for q in prepared.functions}
    out_forms = []
    for name, _ in forms.forms:
        q = by_name[f"_eps_form_{name}"]
        used = set(q.result.free_symbols)
        for _, e in q.temporaries:
            used |= e.free_symbols
        used = {s.name for s in used} - {s.name for s, _ in q.temporaries}
        out_forms.append({
            "name": name, "uses_b": "B" in used,
            "unused": [v for v in ("epsilon", "sigma_w", "s") if v not in used],
            "radials": sorted(int(v[1:]) for v in used if re.fullmatch(r"r[0-9]+", v)),
            "temporaries": [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries],
            "result": printer.doprint(q.result)})
    from .prepare import PreparedModule, fuse

    units = [q for q in prepared.functions if q.name.startswith("_eps_unit_")]
    unit_ctx = {"temporaries": [], "results": []}
    if units:
        fused = fuse(PreparedModule(prepared.spec, prepared.version, prepared.sha256,
                                    tuple(units)))
        unit_ctx = {"temporaries": [(printer.doprint(s), printer.doprint(e))
                                    for s, e in fused.temporaries],
                    "results": [printer.doprint(r) for r in fused.results]}
    depth = _depth_texts(printer)
    t, w = _gauss_legendre()
    description = [[comment_safe(line) for line in wrap(p, WIDTH - 3)]
                   for p in _description(act, forms, record, lang="c", module=module)]
    env = environment(__file__.replace("epsilon.py", "backends/c/printer.py"))
    constants = sorted(printer.constants.items())
    ctx = dict(
        description=description, sha256=forms_sha256(forms), constants=constants,
        gl_n=RADIAL_NODES, gl_x=c_array(t), gl_w=c_array(w),
        n_radials=len(forms.radials),
        radials="{" + ", ".join("{%d, %d, %d, %d}" % (m, p, j, int(c))
                                for m, p, j, c in forms.radials) + "}",
        n_scale=len(forms.scale_radials),
        scale_radials="{" + ", ".join(str(i) for i in forms.scale_radials) + "}",
        n_moments=len(forms.moments), degrees=c_array(forms.degrees),
        forms=out_forms, units=unit_ctx, depth=depth, module=module, route=forms.route,
        points="{" + ", ".join(
            "{" + ", ".join("{%d, %d, %d}" % p for p in pts)
            + (", {-1, 0, 0}" if len(pts) == 1 else "") + "}" for pts in forms.moments) + "}",
        derivatives=c_array([sum(q for _, _, q in pts) for pts in forms.moments]),
        chebyshev=CHEBYSHEV_POINTS, n_kinks=len(act.kinks),
        # single kinks and corners of pairs: at most n + n^2 cuts in (0, 1)
        max_pieces=1 + len(act.kinks) * (len(act.kinks) + 1),
        raw_radials=forms.raw_radials, routines=_routines(printer),
        quantities=QUANTITIES, n_quantities=len(QUANTITIES),
        dead=repr(DEAD_SCALED), scale_rtol=repr(SCALE_RTOL),
        indent=" " * len(f"void {module}_all_eps("),
        indent_single=" " * len(f"void {module}_QTY_eps("),
        parameter=None, c_arg="", c_elem="", c_pass="", c_lead="",
        radial_start=(f"fmin(sqrt(a), 1.0) / {FAMILY_RADIAL_FLOOR}" if forms.parameters
                      else f"sqrt(a) / {RADIAL_FLOOR}"),
    )
    if forms.parameters:
        from .backends.c.printer import element_name

        (name, _), = forms.parameters
        ctx.update(parameter=name, c_parameter=element_name(name), c_domain=_C_DOMAINS[name],
                   c_pass=f"&{element_name(name)}, ", c_arg=f"const double *{name}, ",
                   c_elem=f"{name}[i], ", c_lead=f"{name}, ",
                   degree_slopes=c_array(forms.degree_slopes),
                   domain_text=FAMILY_DOMAINS[name][1].split(" (")[0])
    c_text = env.get_template("epsilon.c.jinja").render(ctx)
    h_text = env.get_template("epsilon.h.jinja").render(ctx)
    # the block's constants must not clash with the module's own (bnmft_pi, ...)
    for name, _ in constants:
        c_text = re.sub(rf"\b{name}\b", f"bnmft_eps_{name[len('bnmft_'):]}", c_text)
    return c_text, h_text


def insert_header(h_text: str, block: str, header: str) -> str:
    """``module.h`` with ``header`` as one more header line and ``block`` before the closing
    ``extern "C"`` brace."""
    lines = h_text.split("\n")
    k = 1
    while k < len(lines) and lines[k].startswith(" * ") and lines[k].strip() != "*":
        k += 1
    lines.insert(k, " * " + one_line(header))
    text = "\n".join(lines)
    tail = "\n#ifdef __cplusplus\n}\n#endif\n"
    at = text.rindex(tail)
    return text[:at] + block.rstrip("\n") + "\n" + text[at:]


def insert_c_header(c_text: str, header: str) -> str:
    lines = c_text.split("\n")
    k = 1
    while k < len(lines) and lines[k].startswith(" * ") and lines[k].strip() != "*":
        k += 1
    lines.insert(k, " * " + one_line(header))
    return "\n".join(lines)


def load_c_epsilon(sources: dict, module: str, parameters: tuple = ()):
    """Compile the C sources (cached) and return ``all_eps(B, eps, sigma_w) -> {name:
    array}`` calling ``MODULE_all_eps`` and ``{name: kernel}`` calling ``MODULE_NAME_eps``
    (arrays broadcast; ``None`` for eps or sigma_w passes NULL: 0 and 1). Inputs go through
    the broadcasting of :mod:`.jit` (the eps > 0 kernels take ``eps`` and ``sigma_w`` as its
    NULL-able parameters). ``parameters``: the family argument names (``("slope",)``), which
    the kernels then take after ``B`` (``all_eps(B, slope, eps, sigma_w)``)."""
    import cffi

    from .jit import _inputs, _pointers, build_c

    path = build_c(sources, module)
    ffi = cffi.FFI()
    args = ("size_t n, const double *B, "
            + "".join(f"const double *{p}, " for p in parameters)
            + "const double *eps, const double *sigma_w")
    ffi.cdef(f"void {module}_all_eps({args}, "
             + ", ".join(f"double *{q}" for q in QUANTITIES) + ");")
    ffi.cdef("\n".join(f"void {module}_{q}_eps({args}, double *out);" for q in QUANTITIES))
    lib = ffi.dlopen(str(path))
    names = ("eps", "sigma_w")

    def call(symbol, B, lead, eps, sigma_w, outputs):
        arr, given = _inputs(symbol, B, {"eps": eps, "sigma_w": sigma_w}, names, lead)
        out = np.empty((len(outputs), *arr.shape))
        if arr.size:
            getattr(lib, symbol)(arr.size, ffi.from_buffer("double[]", arr),
                                 *_pointers(ffi, given or (None, None)),
                                 *(ffi.from_buffer("double[]", out[j, ...])  # 0-d views too
                                   for j in range(len(outputs))))
        return {name: out[j, ...] for j, name in enumerate(outputs)}

    k = len(parameters)

    def all_eps(B, *rest):
        lead, (eps, sigma_w) = rest[:k], (*rest[k:], 1.0)[:2]
        return call(f"{module}_all_eps", B, lead, eps, sigma_w, QUANTITIES)

    def single(q):
        def kernel(B, *rest):
            lead, (eps, sigma_w) = rest[:k], (*rest[k:], 1.0)[:2]
            return call(f"{module}_{q}_eps", B, lead, eps, sigma_w, (q,))[q]
        kernel._lib = lib
        return kernel

    all_eps._lib = lib
    return all_eps, {q: single(q) for q in QUANTITIES}
