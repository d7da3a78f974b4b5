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
  quadrature module), Chebyshev interpolants in ``rho`` (pieces split where a kink enters
  the sphere) of the module's own sphere rule applied to ``phi(rho z)``;
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


_FORM_NAMES = ("scale_map", "q_star", "c_star", "forward_G", "forward_L", "forward_M",
               "backward_G", "backward_L", "backward_M")


@lru_cache(maxsize=16)
def _check_no_parameters(act) -> None:
    """Refuse a phi with symbolic parameters (a family module: slope, alpha as arguments): the
    eps > 0 functions take ``B``, ``eps`` and ``sigma_w`` only."""
    from bnmft.derive.symbols import x

    extra = sorted(s.name for s in act.expr.free_symbols - {x})
    if extra:
        raise CodegenError(
            f"{act.name}: the eps > 0 functions take B, eps and sigma_w only; give "
            f"{', '.join(extra)} a value (e.g. leaky_relu:0.2, alpha_relu:1.5)")


def epsilon_forms(act, route: str) -> EpsilonForms:
    """The eps > 0 forms of ``act`` for ``route`` (``"scaled"``: positive-homogeneous phi and
    a closed-form module; ``"table"``: a quadrature module), or :class:`CodegenError`."""
    from bnmft.derive import B
    from bnmft.derive.epsilon import (derive_regularised, radials_in, scaled_sphere_moments,
                                      sphere_moments_of)

    _check_no_parameters(act)
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
    degrees, unit = (), ()
    if route == "scaled":
        scaled = scaled_sphere_moments(act, moments)
        if set(scaled) != set(moments):
            raise CodegenError(f"{act.name}: a sphere moment of the eps > 0 forms diverges")
        unit = tuple(sp.sympify(scaled[mo][0]) for mo in moments)
        degrees = tuple(float(scaled[mo][1]) for mo in moments)
        for v in unit:
            if {s.name for s in v.free_symbols} - {B.name}:
                raise CodegenError(f"{act.name}: a closed sphere moment depends on more than B")
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
        scale_radials=scale, raw_radials=raw)


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
    fns += [FunctionSpec(f"_eps_unit_{i}", (batch_argument(),), v, f"m{i}", (),
                         "bnmft.derive.epsilon.scaled_sphere_moments", "B >= 4")
            for i, v in enumerate(forms.unit_moments)]
    return prepare(ModuleSpec(name="eps_block", title="eps > 0", functions=tuple(fns)))


def forms_sha256(forms: EpsilonForms) -> str:
    """sha256 of the forms and unit moments (:func:`.prepare.source_sha256`)."""
    from .prepare import source_sha256

    items = dict(forms.forms)
    items.update({f"unit_{i}": v for i, v in enumerate(forms.unit_moments)})
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

    @property
    def least(self) -> float:
        return min(self.digits.values())

    def text(self) -> str:
        sizes = sorted({b for b, _, _ in self.points})
        pairs = sorted({(e, w) for _, e, w in self.points})
        return (f"Verified at generation time against bnmft.numerics.epsilon."
                f"analyze_regularised ({self.reference}) at B = "
                f"{', '.join(str(b) for b in sizes)} times (eps, sigma_w) = "
                f"{', '.join(f'({e:g}, {w:g})' for e, w in pairs)}: every quantity agrees to "
                f"{self.least:.1f} significant digits or more (relative error <= "
                f"{10 ** -self.least:.1e}; per quantity in EPS_VERIFIED, capped at the "
                "reference's own digits)"
                + (f"; no nonzero fixed point (NaN, as the reference) at {len(self.dead)} of "
                   f"the {len(self.points)} points" if self.dead else "") + ".")


def _description(act, forms: EpsilonForms, record, lang: str = "numpy",
                 module: str = "") -> list[str]:
    if forms.route == "scaled":
        moments = ("the sphere moments of phi(rho z) are rho^deg times the closed sphere "
                   "moments at rho = 1 (phi positive-homogeneous)")
    else:
        moments = (f"the sphere moments of phi(rho z) are Chebyshev interpolants in rho "
                   f"({CHEBYSHEV_POINTS} points per piece, pieces split where a kink enters "
                   "the sphere), computed per B from this module's sphere rule")
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
        functions=fns,
        n_units=len(forms.unit_moments),
        depth=depth,
        quantities=QUANTITIES,
        names=[repr(f"{q}_eps") for q in QUANTITIES] + [repr("all_eps"), repr("EPS_VERIFIED")],
        routines=_routines(printer),
    )


def header_line(record) -> str:
    """The line the block adds to the generated-file header."""
    if record is None:
        return "eps > 0 functions: not verified"
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


def numpy_evaluator(module_text: str):
    """``all_eps`` of a generated numpy module text, as ``evaluate(B, eps, sw)``."""
    from .jit import load_numpy

    mod = load_numpy(module_text)
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
            all_eps, singles = load_c_epsilon(draft, module)
        except (CodegenError, OSError) as err:
            raise VerificationError(f"{module}: cannot compile the eps > 0 C kernels to check "
                                    f"them ({err})") from None
        rtol = REQUIRED_RTOL if forms.route == "scaled" else TABLE_REQUIRED_RTOL
        record = check_values(act, all_eps, what="C fused", rtol=rtol)
        single = check_values(
            act, lambda B, e, w: {n: singles[n](B, e, w) for n in QUANTITIES}, what="C",
            rtol=rtol)
        record = EpsilonVerification({n: min(record.digits[n], single.digits[n])
                                      for n in record.digits}, record.points, record.dead,
                                     record.reference)
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
    printer = CKernelPrinter()
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
        chebyshev=CHEBYSHEV_POINTS, max_pieces=len(act.kinks) + 1, n_kinks=len(act.kinks),
        raw_radials=forms.raw_radials, routines=_routines(printer),
        quantities=QUANTITIES, n_quantities=len(QUANTITIES),
        dead=repr(DEAD_SCALED), scale_rtol=repr(SCALE_RTOL),
        indent=" " * len(f"void {module}_all_eps("),
        indent_single=" " * len(f"void {module}_QTY_eps("),
    )
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


def load_c_epsilon(sources: dict, module: str):
    """Compile the C sources (cached) and return ``all_eps(B, eps, sigma_w) -> {name:
    array}`` calling ``MODULE_all_eps`` and ``{name: kernel}`` calling ``MODULE_NAME_eps``
    (arrays broadcast; ``None`` for eps or sigma_w passes NULL: 0 and 1). Inputs go through
    the broadcasting of :mod:`.jit` (the eps > 0 kernels take ``eps`` and ``sigma_w`` as its
    NULL-able parameters)."""
    import cffi

    from .jit import _inputs, _pointers, build_c

    path = build_c(sources, module)
    ffi = cffi.FFI()
    args = "size_t n, const double *B, const double *eps, const double *sigma_w"
    ffi.cdef(f"void {module}_all_eps({args}, "
             + ", ".join(f"double *{q}" for q in QUANTITIES) + ");")
    ffi.cdef("\n".join(f"void {module}_{q}_eps({args}, double *out);" for q in QUANTITIES))
    lib = ffi.dlopen(str(path))
    names = ("eps", "sigma_w")

    def call(symbol, B, eps, sigma_w, outputs):
        arr, given = _inputs(symbol, B, {"eps": eps, "sigma_w": sigma_w}, names)
        out = np.empty((len(outputs), *arr.shape))
        if arr.size:
            getattr(lib, symbol)(arr.size, ffi.from_buffer("double[]", arr),
                                 *_pointers(ffi, given or (None, None)),
                                 *(ffi.from_buffer("double[]", out[j, ...])  # 0-d views too
                                   for j in range(len(outputs))))
        return {name: out[j, ...] for j, name in enumerate(outputs)}

    def all_eps(B, eps, sigma_w=1.0):
        return call(f"{module}_all_eps", B, eps, sigma_w, QUANTITIES)

    def single(q):
        def kernel(B, eps, sigma_w=1.0):
            return call(f"{module}_{q}_eps", B, eps, sigma_w, (q,))[q]
        kernel._lib = lib
        return kernel

    all_eps._lib = lib
    return all_eps, {q: single(q) for q in QUANTITIES}
