"""Generated modules for activations without closed forms: sphere quadrature + moment forms.

Every BSB1 quantity is a fixed algebraic form of the sphere moments ``m0 ... m8`` of ``phi``
(:func:`bnmft.derive.bsb1.moment_forms`, shipped as :mod:`bnmft.numerics._moment_forms`). A
generated module is therefore ``phi`` and ``phi'`` printed by SymPy's numpy / C printers, a
sphere-moment quadrature whose rule is computed at run time from ``B`` (a Gauss-Legendre rule
on ``[0, 1]`` baked in as correctly rounded float64 literals, mapped onto panels between the
breakpoints), and the moment forms printed by the same printers.

The quadrature (paper Thm 4 form, THEORY.md "The sphere picture"):

* ``B < TENSOR_MIN_B``: hyperspherical angles as :func:`bnmft.numerics.sphere.moments_float`
  (outer ``d1``, inner ``d2`` per outer node), split at the kinks of ``phi`` and, for the
  inner integral, at the tangency angles of the kink lines;
* ``B >= TENSOR_MIN_B``: a product rule in the two coordinates with their marginal weights,
  the joint density entering as ``expm1`` of its log ratio to the product of the marginals
  (written without cancellation), so that two-point moments of size ``1/B`` keep their
  relative accuracy (verified up to ``B = 10^6``).

At generation time the panel width is chosen by self-convergence (two rules must agree to
1e-14 at a spread of batch sizes) and the module is verified against the project's mpmath
route (``bnmft.analyze`` at 16 digits) at :data:`VERIFY_BATCH_SIZES`; the accuracy reached is
written into the module header, and a module that misses :data:`REQUIRED_RTOL` is refused.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

from .errors import CodegenError
from .prepare import check_module_name, prepare
from .render import WIDTH, doc_lines, environment, header_lines, one_line, wrap

#: Batch sizes every generated quadrature module is verified at (B from 4 to 10^6).
VERIFY_BATCH_SIZES = (4, 5, 8, 32, 63, 64, 1000, 10**5, 10**6)
#: Relative accuracy a generated module must reach at every verified batch size.
REQUIRED_RTOL = 1e-12
#: Gauss-Legendre nodes per panel.
RULE_NODES = 16
#: Panel widths in z tried (widest first) until two rules agree (power kinks with small
#: exponent denominators are graded by s^(2P) at the tangency angles of small B and may need
#: the narrow ones; Max(x - 0.2, 0)**0.75, P = 4, takes 0.25).
PANEL_WIDTHS = (2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)
#: Self-convergence tolerance of the panel choice.
SELF_RTOL = 1e-14
#: From this B on, the product rule: the joint density's non-smooth edge (the ellipse
#: ``Q = 1``) then carries weight below ``2^-(B-4) < 1e-18`` inside the grid.
TENSOR_MIN_B = 64
#: Up to this B the tangency angles of the inner kink lines are outer breakpoints (beyond,
#: the inner integral is smooth to well below 1e-15 there; cf. ``sphere.Geometry``).
TANGENCY_MAX_B = 33
#: The weight window: ``cos^(B-3) d >= 10^-WINDOW_DIGITS`` (the registered activations grow
#: at most linearly, so the integrands at most like ``z^4``; a faster-growing typed phi whose
#: tails matter fails the verification rather than passing silently).
WINDOW_DIGITS = 30.0
#: The admissible batchnorm parameters of phi(gamma x + beta): |gamma| in GAMMA_RANGE,
#: |beta| <= beta_max, the first of BETA_CANDIDATES whose grid (:func:`parameter_grid`:
#: edges and corners of the range, both signs) verifies at generation (a kinked phi such as
#: hardtanh is constant on the whole sphere at B = 4 for gamma = 1/2, |beta| >= 2: no
#: quantity exists there). The panels are narrower by max(1, |gamma|) at run time.
GAMMA_RANGE = (0.5, 2.0)
BETA_CANDIDATES = (3.0, 1.0)


def parameter_grid(beta_max: float) -> tuple[tuple[float, float], ...]:
    """The (gamma, beta) verified for the range |gamma| in GAMMA_RANGE, |beta| <= beta_max."""
    lo, hi = GAMMA_RANGE
    m = float(beta_max)
    return ((lo, m), (-lo, -m), (hi, m), (-hi, -m), (hi, 0.0), (lo, 0.0), (-1.0, m / 2),
            (1.0, -m))
#: The quantities of the fixed point Sigma* = E[phi phi^T] itself, the only ones that change
#: when a constant is added to phi (the next batchnorm takes the batch mean off: THEORY.md);
#: the modules compute the moments of phi(gamma x + beta) - phi(beta) and recover the raw
#: m0 = E[phi^2], m1 = E[phi(z1) phi(z2)] for these from E[psi] (their forms may use no other
#: moment of phi).
RAW_QUANTITIES = ("q_star", "c_star")
#: Batch sizes each point of the parameter grid is verified at (both quadratures, both sides of
#: TENSOR_MIN_B and of TANGENCY_MAX_B).
PARAMETER_BATCH_SIZES = (4, 5, 8, 33, 34, 63, 64, 1000, 10**6)


class VerificationError(CodegenError):
    """A generated module did not reach :data:`REQUIRED_RTOL` against the references (or a
    reference did not converge): nothing is written."""


class GridVerificationError(VerificationError):
    """As :class:`VerificationError`, at a point of the (gamma, beta) grid."""


@dataclass(frozen=True)
class QuadraturePlan:
    """What is baked into a module: the panel width and the verification record."""

    panel_z: float
    verified: dict  # quantity -> least digits of agreement (float) over the batch sizes
    verified_batch_sizes: tuple[int, ...]
    #: quantity -> least digits over the grid x PARAMETER_BATCH_SIZES
    verified_grid: dict = dataclasses.field(default_factory=dict)
    grid: tuple = ()
    grid_batch_sizes: tuple[int, ...] = ()

    @property
    def beta_max(self) -> float:
        """The verified range of |beta| (0 without a grid)."""
        return max((abs(float(b)) for _, b in self.grid), default=0.0)


def _float_literals(expr: sp.Expr) -> sp.Expr:
    """Non-integer rationals as float64 literals (selu's 31-digit constants would otherwise
    print as integer ratios that overflow C's integer types)."""
    reps = {r: sp.Float(float(r), 17) for r in expr.atoms(sp.Rational) if not r.is_Integer}
    return expr.xreplace(reps)


def _numpy_printer():
    from .backends.numpy.printer import NumpyModulePrinter

    class Printer(NumpyModulePrinter):
        uses_erf = False

        def _print_erf(self, expr):
            self.uses_erf = True
            return f"_erf({self._print(expr.args[0])})"

        def _print_Heaviside(self, expr):
            a = self._print(expr.args[0])
            return f"numpy.where(({a}) > 0, 1.0, numpy.where(({a}) < 0, 0.0, 0.5))"

        def _nested(self, name, args):
            out = self._print(args[0])
            for a in args[1:]:
                out = f"numpy.{name}({out}, {self._print(a)})"
            return out

        def _print_Min(self, expr):
            return self._nested("minimum", sorted(expr.args, key=sp.default_sort_key))

        def _print_Max(self, expr):
            return self._nested("maximum", sorted(expr.args, key=sp.default_sort_key))

    return Printer()


def _c_printer():
    from .backends.c.printer import CKernelPrinter

    class Printer(CKernelPrinter):
        def _print_Heaviside(self, expr):
            a = self._print(expr.args[0])
            return f"(({a}) > 0 ? 1.0 : (({a}) < 0 ? 0.0 : 0.5))"

    return Printer()


def _phi_expressions(act):
    from bnmft.derive import x

    phi = _float_literals(act.expr).xreplace({x: sp.Symbol("x")})
    dphi = _float_literals(act.derivative).xreplace({x: sp.Symbol("x")})
    return phi, dphi


def side_expressions(act) -> list[dict]:
    """phi and phi' next to each kink ``k`` of ``act`` (in ``act.kinks`` order) as functions of
    the offset ``t = x - k``, one pair per side: ``phi(k + t)`` with the sign of ``t`` known,
    so that SymPy's automatic evaluation turns ``Max(t, 0)**a`` into ``t**a`` (or 0) and
    ``Abs(t)``, ``sign(t)``, ``Heaviside(t)`` into ``+-t``, ``+-1``, 1 or 0. The generated code
    evaluates these at the quadrature nodes next to the kink from the node's offset, so that
    ``x - k`` is never formed (in float64 it would cancel, and ``|x - k|^e`` with ``e < 0``
    turn the rounding of ``x`` into relative errors of 1e-10 and more). Each entry:
    ``{"kink": k, "side": -1 or 1, "phi": expr, "dphi": expr}`` in the symbol ``t``."""
    from bnmft.derive import x

    t = sp.Symbol("t")
    out = []
    for k in act.kinks:
        for side in (-1, 1):
            ts = sp.Symbol("t", positive=True) if side > 0 else sp.Symbol("t", negative=True)
            pair = {}
            for key, expr in (("phi", act.expr), ("dphi", act.derivative)):
                value = expr.xreplace({x: k + ts})
                pair[key] = _float_literals(value.xreplace({ts: t}))
            out.append({"kink": k, "side": side, **pair})
    return out


def _check_sides(act, sides) -> None:
    """Each side expression must be free of a non-smooth function of ``t`` vanishing at
    ``t = 0`` (which would form ``x - k`` again): refuse (one line) otherwise."""
    t = sp.Symbol("t")
    for sd in sides:
        for key in ("phi", "dphi"):
            for node in sp.preorder_traversal(sd[key]):
                if isinstance(node, (sp.Max, sp.Min, sp.Abs, sp.sign, sp.Heaviside,
                                     sp.Piecewise)) and node.has(t):
                    args = node.args if not isinstance(node, sp.Piecewise) else [
                        c.lhs - c.rhs for _, c in node.args
                        if isinstance(c, sp.core.relational.Relational)]
                    for arg in args:
                        if arg.has(t) and arg.subs(t, 0) == 0:
                            raise CodegenError(
                                f"{act.name}: {key} next to the kink {sp.sstr(sd['kink'])} "
                                "does not simplify on one side of it; not supported by the "
                                "generated quadrature")


def _rule():
    from bnmft.numerics.rules import gauss_legendre_nodes

    t, w, v = gauss_legendre_nodes(RULE_NODES)
    return (1 + t) / 2, v, w / 2


def _floats(values) -> str:
    """A tuple of float64 literals, ``repr`` (shortest round-trip, stable)."""
    return "(" + ", ".join(repr(float(v)) for v in values) + ("," if len(values) == 1 else "") + ")"


def _forms():
    """The prepared moment forms (one per BSB1 quantity, arguments ``B, m0, ...``)."""
    from .moment_forms import moment_forms_module

    return prepare(moment_forms_module())


def kink_exponents(act) -> list[tuple[float, int, float]]:
    """:func:`bnmft.derive.activation.kink_exponents`, refusals as :class:`CodegenError`."""
    from bnmft.derive.activation import ActivationError
    from bnmft.derive.activation import kink_exponents as exponents

    try:
        return exponents(act)
    except ActivationError as err:
        raise CodegenError(f"{err}; not supported by the generated quadrature") from None


def check_finite_moments(act) -> None:
    """Refuse (one line) a phi for which a sphere moment ``E[z^m phi^p phi'^q]`` of the
    moment forms is infinite (:func:`bnmft.derive.activation.check_finite_moments`)."""
    from bnmft.derive.activation import ActivationError
    from bnmft.derive.activation import check_finite_moments as check

    from .moment_forms import moment_forms_module

    needed = sorted({pt[2] for pts in moment_forms_module().constants[0].value for pt in pts})
    try:
        check(act, needed)
    except ActivationError as err:
        raise CodegenError(str(err)) from None


def check_supported_activation(act) -> None:
    """Refuse, with one line, what the quadrature modules do not handle."""
    if act.derivative_has_delta:
        raise CodegenError(f"{act.name}: phi' has a Dirac mass; its moments are infinite")
    if act.kink_power is None:
        raise CodegenError(
            f"{act.name}: power singularities with irrational exponents (phi ~ |x - k|^a) "
            "are not supported by the generated quadrature"
        )
    if act.kink_power != 1:
        check_finite_moments(act)
    if act.params:
        names = ", ".join(str(n) for n, _ in act.params if not isinstance(_, (int, sp.Number)))
        if names:
            raise CodegenError(f"{act.name}: symbolic parameters ({names}) are not supported")


def _description(act, plan: QuadraturePlan) -> list[str]:
    least = min(plan.verified.values()) if plan.verified else float("nan")
    sizes = ", ".join(str(b) for b in plan.verified_batch_sizes)
    return [
        (
            f"Activation phi(x) = {one_line(act.expr)} (kinks: "
            f"{', '.join(str(k) for k in act.kinks) or 'none'}). Every quantity is its moment "
            "form (bnmft.derive.bsb1.moment_forms, the exchangeable reduction of the forward and "
            "backward maps at the BSB1 point) evaluated on sphere moments computed by quadrature."
        ),
        (
            "Quadrature (paper Thm 4, hyperspherical angles): a "
            f"{RULE_NODES}-point Gauss-Legendre rule per panel of width {plan.panel_z} in z, "
            "panels between breakpoints computed at run time from B (the weight window "
            f"cos^(B-3) d >= 10^-{WINDOW_DIGITS:g}, the kinks of phi, and for B <= "
            f"{TANGENCY_MAX_B} the angles where a kink line of the inner coordinate leaves its "
            f"window). For B < {TENSOR_MIN_B} two-coordinate moments are nested angle integrals; "
            f"from B = {TENSOR_MIN_B} on a product rule in the two coordinates with the joint "
            "density as expm1 of its log ratio to the product of the marginals, so that moments "
            "of size 1/B keep their relative accuracy (verified from B = 4 to 10^6; larger B are "
            "computed, not verified)."
            + (_power_sentence(act) if act.kink_power != 1 else "")
        ),
        (
            "Batchnorm's gamma, beta (absorbed into phi): every quantity is also evaluated for "
            "phi(gamma x + beta), gamma != 0, the kinks moved to (k - beta)/gamma and the "
            "panels narrower by max(1, |gamma|) at run time. The moments are those of psi = "
            "phi(gamma x + beta) - phi(beta) (a constant changes no quantity but q*, c*, which "
            "take E[phi^2] = m0 + c (2 E[psi] + c) and E[phi(z1) phi(z2)] = m1 + c (2 E[psi] + "
            "c), c = phi(beta)), so that the moment forms' differences do not cancel where phi "
            "saturates. Admissible range |gamma| in "
            f"[{GAMMA_RANGE[0]:g}, {GAMMA_RANGE[1]:g}], |beta| <= {plan.beta_max:g} (outside it "
            "values are computed, not verified)."
        ),
        (
            f"Verified at generation time against bnmft's mpmath sphere quadrature (16 digits) "
            f"at B = {sizes}: every quantity agrees to {least:.1f} significant digits or more "
            f"(relative error <= {10 ** -least:.1e}); per quantity in VERIFIED."
            + (_grid_sentence(plan) if plan.grid else "")
        ),
    ]


def _power_sentence(act) -> str:
    p = int(act.kink_power)
    return (f" Power singularities at the kinks (phi ~ |x - k|^(r/q), q | {p}): the pieces ending "
            f"at a kink are graded, d = k + (b - k) s^{p} (s^{2 * p} at the tangency angles, "
            "which are kept where they meet the outer window's end), and every inner piece is "
            "halved and each half graded so towards its end, so that the integrands are "
            "analytic in s (the Gauss-Legendre rule converges geometrically again). Next to a "
            "kink phi and phi' are evaluated from the node's offset t to the kink's breakpoint, "
            "as phi(k + t) written for the side of t (t**a for Max(x - k, 0)**a), so that x - k "
            "is never formed in float64 (it would cancel; phi' may be unbounded there); the "
            "moments of phi' the quantities need were checked finite at generation.")


def _grid_sentence(plan: QuadraturePlan) -> str:
    least = min(plan.verified_grid.values()) if plan.verified_grid else float("nan")
    points = ", ".join(f"({g:g}, {b:g})" for g, b in plan.grid)
    sizes = ", ".join(str(b) for b in plan.grid_batch_sizes)
    return (f" With (gamma, beta) = {points} at B = {sizes} (references for phi(gamma x + "
            f"beta)): {least:.1f} digits or more (relative error <= {10 ** -least:.1e}); per "
            "quantity in VERIFIED_GRID.")


def route_text(act, plan: QuadraturePlan) -> str:
    """How a quadrature module computes its numbers and how far it was verified (one
    paragraph, for a package README)."""
    return " ".join(_description(act, plan)[1:])


def _sample_moments(source: str, Bs):
    from .jit import load_numpy

    mod = load_numpy(source)
    return mod, np.array(mod.sphere_moments(np.asarray(Bs, dtype=float)))


SELF_CHECK_BATCH_SIZES = (4, 5, 7, 12, 33, 34, 63, 64, 100, 1000, 10**4, 10**6)


def choose_panel(act, module: str) -> float:
    """The widest panel (in z) of :data:`PANEL_WIDTHS` whose moments agree with those of the
    next, half as wide, to :data:`SELF_RTOL` at :data:`SELF_CHECK_BATCH_SIZES` (relative to
    each moment, floored at 1e-3 of the largest moment at that B: a moment that vanishes by
    symmetry only needs absolute accuracy). Raises :class:`VerificationError` if none does."""
    Bs = np.array(SELF_CHECK_BATCH_SIZES, dtype=float)
    previous = None
    for width in PANEL_WIDTHS:
        plan = QuadraturePlan(width, {}, ())
        _, moms = _sample_moments(_render_numpy(act, module, plan), Bs)
        if previous is not None:
            prev_width, prev = previous
            floor = 1e-3 * np.max(np.abs(moms), axis=0, keepdims=True)
            scale = np.maximum(np.abs(moms), np.maximum(floor, 1e-300))
            if np.all(np.abs(prev - moms) <= SELF_RTOL * scale):
                return prev_width
        previous = (width, moms)
    raise VerificationError(
        f"{act.name}: the quadrature did not converge to {SELF_RTOL:g} with panels down to "
        f"{PANEL_WIDTHS[-1]} in z"
    )


def mpmath_references(deriv, Bs, least: float, digits: int = 16) -> dict:
    """``{name: [mpf per B]}``: ``bnmft.analyze(deriv, Bs, digits)`` on its mpmath routes (the
    closed forms, or the hyperspherical quadrature), each number required to reach ``least``
    digits (:class:`VerificationError` otherwise: a module cannot be verified against it)."""
    import bnmft

    out: dict = {}
    for res in bnmft.analyze(deriv, list(Bs), digits=digits):
        for name, num in res.numbers.items():
            if num.digits is None or num.digits < least:
                raise VerificationError(
                    f"{deriv.activation.name}: the mpmath reference for {name} at B = "
                    f"{res.batch_size} reached only {num.digits} digits; cannot verify the "
                    "generated module"
                )
            out.setdefault(name, []).append(num.value)
    return out


@lru_cache(maxsize=32)
def _reference(act, Bs, digits: int = 16) -> dict:
    """The project's mpmath route (hyperspherical quadrature at ``digits``): ``{name: [mpf]}``."""
    import bnmft

    return mpmath_references(bnmft.derivation(act), Bs, 14, digits)


def agreement_digits(values, reference) -> float:
    """Least significant digits on which ``values`` agree with ``reference`` (exact zeros
    count as infinitely many)."""
    import mpmath

    worst = math.inf
    for v, r in zip(values, reference):
        r = mpmath.mpf(r)
        if r == 0:
            if v != 0:
                worst = min(worst, -math.log10(abs(v)) if abs(v) < 1 else 0.0)
            continue
        if not math.isfinite(float(v)):
            return -math.inf
        err = abs(mpmath.mpf(float(v)) - r) / abs(r)
        if err > 0:
            worst = min(worst, float(-mpmath.log10(err)))
    return worst


@lru_cache(maxsize=64)
def scaled_activation(act, gamma: float, beta: float):
    """The activation ``phi(gamma x + beta)`` (THEORY.md: batchnorm's gamma, beta absorbed
    into phi), gamma and beta as exact rationals of their float64 values' shortest repr."""
    from bnmft.derive import x
    from bnmft.derive.activation import analyse

    g, b = sp.Rational(repr(float(gamma))), sp.Rational(repr(float(beta)))
    return analyse(f"{act.name} (gamma={g}, beta={b})", act.expr.xreplace({x: g * x + b}),
                   tuple(act.params) + (("gamma", g), ("beta", b)))


def _agreement(act, got: dict, ref: dict, where: str) -> dict:
    """Least digits per quantity; short of :data:`REQUIRED_RTOL` raises."""
    need = -math.log10(REQUIRED_RTOL)
    out = {}
    for name, vals in got.items():
        digits = agreement_digits(vals, ref[name])
        out[name] = math.floor(min(digits, 16.0) * 10) / 10
        if digits < need:
            raise VerificationError(
                f"{act.name}: generated {name}{where} agrees with the mpmath reference to only "
                f"{digits:.1f} digits (need {need:g}); refusing to write the module"
            )
    return out


def verify(act, module: str, panel_z: float, Bs=VERIFY_BATCH_SIZES, grid=None,
           grid_Bs=PARAMETER_BATCH_SIZES) -> QuadraturePlan:
    """Evaluate the generated numpy module at ``Bs`` (default gamma, beta) and at every
    ``(gamma, beta)`` of ``grid`` (default ``parameter_grid(BETA_CANDIDATES[-1])``) times
    ``grid_Bs``, and compare every quantity with the mpmath reference of ``phi(gamma x +
    beta)``; a quantity short of :data:`REQUIRED_RTOL` raises :class:`VerificationError`
    (:class:`GridVerificationError` on the grid)."""
    from bnmft.derive.activation import NoBSB1Point

    from .jit import load_numpy

    grid = tuple(parameter_grid(BETA_CANDIDATES[-1]) if grid is None else grid)
    plan = QuadraturePlan(panel_z, {}, tuple(Bs), {}, grid, tuple(grid_Bs))
    mod = load_numpy(_render_numpy(act, module, plan))
    got = mod.all(np.asarray(Bs, dtype=float))
    verified = _agreement(act, got, _reference(act, tuple(int(b) for b in Bs)), "")
    on_grid: dict = {}
    for g, b in grid:
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0: phi constant, refused
                got = mod.all(np.asarray(grid_Bs, dtype=float), gamma=g, beta=b)
            ref = _reference(scaled_activation(act, g, b), tuple(int(v) for v in grid_Bs))
            agreed = _agreement(act, got, ref, f" at gamma = {g}, beta = {b}")
        except VerificationError as err:
            raise GridVerificationError(str(err)) from None
        except NoBSB1Point as err:  # phi(gamma x + beta) vanishes on the whole sphere
            raise GridVerificationError(f"{act.name}: {err}") from None
        for name, digits in agreed.items():
            on_grid[name] = min(on_grid.get(name, math.inf), digits)
    return QuadraturePlan(panel_z, verified, tuple(Bs), on_grid, grid, tuple(grid_Bs))


def plan_for(act, module: str = "generated") -> QuadraturePlan:
    """Choose the panel width and verify (the expensive step: mpmath references; cached per
    activation within a process)."""
    from bnmft.derive import check_defined

    check_supported_activation(act)
    check_defined(act, VERIFY_BATCH_SIZES)
    return _plan(act)


@lru_cache(maxsize=32)
def _plan(act) -> QuadraturePlan:
    """The panel, then the widest parameter range of :data:`BETA_CANDIDATES` that verifies."""
    panel = choose_panel(act, "generated")
    for beta_max in BETA_CANDIDATES:
        try:
            return verify(act, "generated", panel, grid=parameter_grid(beta_max))
        except GridVerificationError as err:
            last = err
    raise last


# -- rendering ---------------------------------------------------------------------------------


def _header(act, module: str, plan: QuadraturePlan, prepared) -> list[str]:
    lines = header_lines(prepared)
    lines.insert(1, f"Activation: {one_line(act.name)}")
    return lines


def _module_spec(act, module: str):
    from .moment_forms import moment_forms_module
    import dataclasses

    spec = moment_forms_module()
    return dataclasses.replace(spec, name=module, header=())


def _check_raw_forms(prepared) -> None:
    """The forms of :data:`RAW_QUANTITIES` may use only m0 = E[phi^2] and m1 = E[phi(z1)
    phi(z2)] of the moments of phi (the ones recovered from the shifted moments)."""
    from .moment_forms import moment_forms_module

    moments = moment_forms_module().constants[0].value
    if tuple(moments[:2]) != (((0, 2, 0),), ((0, 1, 0), (0, 1, 0))):
        raise CodegenError("moment forms: m0, m1 are not E[phi^2], E[phi(z1) phi(z2)]")
    allowed = {"B", "m0", "m1"} | {f"m{i}" for i, pts in enumerate(moments)
                                   if all(p[1] == 0 for p in pts)}
    for q in prepared.functions:
        if q.name in RAW_QUANTITIES:
            used = {str(v) for v in q.result.free_symbols}
            for _, e in q.temporaries:
                used |= {str(v) for v in e.free_symbols}
            temps = {str(t) for t, _ in q.temporaries}
            if not used - temps <= allowed:
                raise CodegenError(f"moment forms: {q.name} uses moments of phi beyond m0, m1")


def _side_names(act) -> list[tuple[str, str]]:
    """Names of the side functions of :func:`side_expressions`, ``(left, right)`` per kink."""
    return [(f"k{i}_left", f"k{i}_right") for i in range(len(act.kinks))]


def _numpy_sides(act, printer):
    """The side functions (power kinks only: :func:`side_expressions`) for the numpy template."""
    if act.kink_power == 1:
        return [], []
    sides = side_expressions(act)
    _check_sides(act, sides)
    names = _side_names(act)
    out = []
    for sd, name in zip(sides, (n for pair in names for n in pair)):
        out.append({
            "name": name, "sign": ">" if sd["side"] > 0 else "<",
            "kink_text": _doc_safe_text(one_line(sd["kink"])),
            "phi": printer.doprint(sd["phi"]), "dphi": printer.doprint(sd["dphi"]),
            "phi_text": _doc_safe_text(one_line(sd["phi"])),
            "dphi_text": _doc_safe_text(one_line(sd["dphi"])),
        })
    return out, names


def _doc_safe_text(text: str) -> str:
    from .backends.numpy.printer import _doc_safe

    return _doc_safe(text)


def _render_numpy(act, module: str, plan: QuadraturePlan) -> str:
    from .backends.numpy.printer import _doc_safe, _docstring

    prepared = prepare(_module_spec(act, module))
    printer = _numpy_printer()
    phi, dphi = _phi_expressions(act)
    phi_code, dphi_code = printer.doprint(phi), printer.doprint(dphi)
    forms, functions = [], []
    _check_raw_forms(prepared)
    for q in prepared.functions:
        forms.append({
            "name": q.name,
            "raw": q.name in RAW_QUANTITIES,
            "arguments": ", ".join(q.argument_names[1:]),
            "assignments": [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries],
            "result": printer.doprint(q.result),
        })
        doc = doc_lines(q, q.spec.arguments)
        doc[0] = (f"{q.name}(B, *, gamma=1.0, beta=0.0) for activation phi(gamma x + beta), "
                  f"phi = {one_line(act.name)}, elementwise (broadcast).")
        functions.append({"name": q.name, "raw": q.name in RAW_QUANTITIES,
                          "summary": _doc_safe(doc[0]),
                          "doc": _docstring(doc[1:])})
    sides, side_pairs = _numpy_sides(act, printer)
    imported = set(printer.module_imports)
    if imported - {"numpy"}:
        raise CodegenError(f"{act.name}: phi needs {sorted(imported)}; only numpy is allowed")
    u, v, w = _rule()
    from .moment_forms import moment_forms_module

    moments = moment_forms_module().constants[0].value
    paragraphs = [
        "Every function takes an array-like batch size ``B`` (B >= 4) and keyword arrays "
        "``gamma`` (default 1, nonzero) and ``beta`` (default 0), broadcast together and "
        "converted to float64, and returns a float64 array of the broadcast shape; each "
        "distinct (B, gamma, beta) is computed once. ``all(B, gamma=, beta=)`` returns every "
        "quantity at once; ``sphere_moments(B, gamma=, beta=)`` the moments MOMENTS of "
        "phi(gamma x + beta) - shift(gamma, beta). "
        "ValueError for B < 4, gamma = 0 or non-finite values.",
        *_description(act, plan),
    ]
    env = environment(__file__.replace("quadrature.py", "backends/numpy/printer.py"))
    return env.get_template("quadrature.py.jinja").render(
        header=_header(act, module, plan, prepared),
        title=_doc_safe(
            f"BSB1 quantities for activation {one_line(act.name)} by sphere quadrature"),
        paragraphs=[[_doc_safe(line) for line in wrap(p, WIDTH - 8)] for p in paragraphs],
        generator=repr(f"bnmft {prepared.version}"),
        sha256=repr(prepared.sha256),
        activation=repr(act.name),
        kinks=_floats([float(k) for k in act.kinks]),
        moments=repr(moments),
        verified=repr({k: round(v, 1) for k, v in plan.verified.items()}),
        verified_batch_sizes=repr(plan.verified_batch_sizes),
        verified_grid=repr({k: round(v, 1) for k, v in plan.verified_grid.items()}),
        verified_parameters=repr(tuple((float(g), float(b)) for g, b in plan.grid)),
        verified_parameter_batch_sizes=repr(plan.grid_batch_sizes),
        gamma_range=repr(tuple(float(g) for g in GAMMA_RANGE)),
        beta_max=repr(float(plan.beta_max)),
        rule_u=_floats(u).replace("(", "[", 1)[:-1] + "]",
        rule_v=_floats(v).replace("(", "[", 1)[:-1] + "]",
        rule_w=_floats(w).replace("(", "[", 1)[:-1] + "]",
        window_digits=repr(WINDOW_DIGITS),
        panel_z=repr(float(plan.panel_z)),
        tensor_min_b=repr(float(TENSOR_MIN_B)),
        tangency_max_b=repr(float(TANGENCY_MAX_B)),
        kink_power=int(act.kink_power),
        sides=sides, side_pairs=side_pairs,
        names=[repr(n) for n in ("ACTIVATION", "KINKS", "MOMENTS", "VERIFIED", "VERIFIED_GRID",
                                 "VERIFIED_PARAMETERS", "GAMMA_RANGE", "BETA_MAX",
                                 "sphere_moments", "shift",
                                 *(q.name for q in prepared.functions), "all")],
        uses_erf=printer.uses_erf,
        phi=phi_code, dphi=dphi_code,
        phi_text=_doc_safe(one_line(act.expr)), dphi_text=_doc_safe(one_line(act.derivative)),
        forms=forms,
        functions=functions,
    )


#: Room for the moments of one call of the C sphere rule (MAX_MOMENTS in the template).
C_MAX_MOMENTS = 16
#: Relative agreement the compiled C kernels must show with the verified numpy module at
#: least (more is allowed up to what keeps them within REQUIRED_RTOL of the references).
C_RTOL = 1e-13


def c_tolerance(verified: dict, quantity: str) -> float:
    """Allowed relative C - numpy difference for ``quantity``: the room the numpy module's
    verified error leaves under :data:`REQUIRED_RTOL` (at least :data:`C_RTOL`), so that by
    the triangle inequality the C values are within REQUIRED_RTOL of the mpmath references at
    the verified batch sizes (a depth scale ``1/log(rate)`` with ``rate`` near 1 amplifies
    the last-bit differences of the two float64 implementations)."""
    digits = verified.get(quantity)
    if digits is None:
        return C_RTOL
    return max(C_RTOL, REQUIRED_RTOL - 10.0 ** -digits)


def check_c_against_numpy(c_sources: dict, numpy_source: str, name: str,
                          plan: QuadraturePlan, Bs=VERIFY_BATCH_SIZES, act=None) -> None:
    """Compile the C kernels and compare every quantity (single kernels and the fused one)
    with the numpy module, which was verified against mpmath, at ``Bs``; raises
    :class:`VerificationError` beyond :func:`c_tolerance` or if the kernels cannot be
    compiled. With ``act`` and a parameter grid in ``plan``, the C kernels at the grid are
    compared with the mpmath references of ``phi(gamma x + beta)`` directly (to
    :data:`REQUIRED_RTOL`: there the ill-conditioned quantities, e.g. a depth scale
    ``1/log(rate)`` with ``rate`` near 1, leave too little room for the triangle inequality)."""
    from .jit import load_c, load_numpy

    try:
        c = load_c(c_sources)
    except CodegenError as err:
        raise VerificationError(f"{name}: cannot compile the C kernels to check them ({err})"
                                ) from None
    py = load_numpy(numpy_source)
    x = np.asarray(Bs, dtype=float)
    want, fused = py.all(x), c.all(x)
    for q, ref in want.items():
        scale = np.maximum(np.abs(ref), 1e-300)
        tol = c_tolerance(plan.verified, q)
        for got in (getattr(c, q)(x), fused[q]):
            if not np.all(np.abs(got - ref) <= tol * scale):
                raise VerificationError(
                    f"{name}: the C kernel {q} differs from the verified numpy module by more "
                    f"than {tol:.1e}; refusing to write the module")
    if act is None or not plan.grid:
        return
    x = np.asarray(plan.grid_batch_sizes, dtype=float)
    for g, b in plan.grid:
        fused = c.all(x, gamma=g, beta=b)
        ref = _reference(scaled_activation(act, g, b), tuple(int(v) for v in x))
        singles = {q: getattr(c, q)(x, gamma=g, beta=b) for q in fused}
        for what, got in (("C", singles), ("fused C", fused)):
            _agreement(act, got, ref, f" ({what}) at gamma = {g}, beta = {b}")


def generate_quadrature(act, *, lang: str, module: str, plan: QuadraturePlan | None = None
                        ) -> dict[str, str]:
    """``{filename: text}`` of the quadrature module of ``act`` for ``lang``; ``plan`` (panel
    width and verification) is computed and verified unless given."""
    check_module_name(module)
    check_supported_activation(act)
    if plan is None:
        plan = plan_for(act, module)
    if lang == "numpy":
        return {f"{module}.py": _render_numpy(act, module, plan)}
    if lang == "c":
        sources = _render_c(act, module, plan)
        check_c_against_numpy(sources, _render_numpy(act, module, plan), act.name, plan,
                              act=act)
        return sources
    raise CodegenError(f"unknown lang {lang!r}; choose one of c, numpy")


def c_array(values) -> str:
    """A C99 initializer ``{v0, v1, ...}`` of float64 values (``repr``: they read back exactly)."""
    return "{" + ", ".join(repr(float(v)) for v in values) + "}"


def _c_cse(printer, expr):
    """CSE of a function of ``x`` for a C function body."""
    temps, (result,) = sp.cse([expr], symbols=sp.numbered_symbols("x_"), optimizations=None)
    return ([(printer.doprint(s), printer.doprint(e)) for s, e in temps], printer.doprint(result))


def _c_sides(act, printer) -> list[dict]:
    """The side functions (power kinks only: :func:`side_expressions`) for the C template, in
    the order of its switch (2 k + right)."""
    from .backends.c.printer import comment_safe

    if act.kink_power == 1:
        return []
    sides = side_expressions(act)
    _check_sides(act, sides)
    out = []
    for sd in sides:
        where = f"kink {sp.sstr(sd['kink'])}, t {'>' if sd['side'] > 0 else '<'} 0"
        phi_t, phi_code = _c_cse(printer, sd["phi"])
        dphi_t, dphi_code = _c_cse(printer, sd["dphi"])
        out.append({
            "text": comment_safe(f"{where}: phi = {one_line(sd['phi'])}"),
            "dtext": comment_safe(f"{where}: phi' = {one_line(sd['dphi'])}"),
            "phi": phi_code, "dphi": dphi_code,
            "phi_temporaries": phi_t, "dphi_temporaries": dphi_t,
        })
    return out


def _render_c(act, module: str, plan: QuadraturePlan) -> dict[str, str]:
    from .backends.c.printer import comment_safe

    prepared = prepare(_module_spec(act, module))
    _check_raw_forms(prepared)
    printer = _c_printer()
    phi, dphi = _phi_expressions(act)
    phi_t, phi_code = _c_cse(printer, phi)
    dphi_t, dphi_code = _c_cse(printer, dphi)
    forms, kernels = [], []
    for q in prepared.functions:
        forms.append({
            "name": q.name,
            "raw": q.name in RAW_QUANTITIES,
            "arguments": list(q.argument_names[1:]),
            "temporaries": [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries],
            "result": printer.doprint(q.result),
        })
        doc = doc_lines(q, q.spec.arguments)
        doc[0] = f"{q.name}(B) for activation {one_line(act.name)}: out[i] = {q.name}(B[i])."
        kernels.append({"name": q.name, "doc": [comment_safe(line) for line in doc]})
    from .moment_forms import moment_forms_module

    moments = moment_forms_module().constants[0].value
    if len(moments) > C_MAX_MOMENTS:
        raise CodegenError(f"more than {C_MAX_MOMENTS} sphere moments (MAX_MOMENTS in C)")
    points = []
    for pts in moments:
        first = "{%d, %d, %d}" % pts[0]
        second = "{%d, %d, %d}" % pts[1] if len(pts) > 1 else "{-1, 0, 0}"
        points.append("{" + first + ", " + second + "}")
    names = [f"m{i} = {forms_name}" for i, forms_name in enumerate(
        a.meaning for a in prepared.functions[0].spec.arguments[1:])]
    u, v, w = _rule()
    description = [
        *_description(act, plan),
        "These C kernels were compiled at generation and checked against that numpy module at "
        "the same batch sizes (every kernel and the fused one): each quantity within "
        f"{REQUIRED_RTOL:g} minus the numpy module's verified error (at least {C_RTOL:g}), so "
        f"within {REQUIRED_RTOL:g} of the mpmath references there; at the (gamma, beta) grid "
        f"every kernel and the fused one against the mpmath references directly, within "
        f"{REQUIRED_RTOL:g}.",
        "Sphere moments: " + ", ".join(names) + ".",
    ]
    convention = (
        f"Each kernel sets out[i] = f(B[i]) for 0 <= i < n (B >= 4; NaN otherwise) and "
        f"{module}_all every quantity in one pass, the sphere moments computed once per "
        "element. Kernels keep no state (thread-safe; node arrays are allocated per call), "
        "need only <math.h> and <stdlib.h> (link with -lm) and may run in place (out == B). "
        "Compiled with OpenMP (-fopenmp), the loops over i run in parallel."
    )
    params_doc = (
        f"Batchnorm's gamma, beta: {module}_QTY_p and {module}_all_p evaluate the quantities "
        "of phi(gamma x + beta); gamma and beta are each NULL (gamma = 1, beta = 0) or n "
        "values, one per element of B. gamma = 0 or a non-finite gamma or beta gives NaN. "
        f"Verified range: |gamma| in [{GAMMA_RANGE[0]:g}, {GAMMA_RANGE[1]:g}], |beta| <= "
        f"{plan.beta_max:g} (see above). The unparameterised kernels are the _p kernels with NULL."
    )
    fused_doc = (
        f"{module}_all: every quantity above in one pass over the n elements of B, one output "
        "array per quantity in the order above; a NULL output is skipped; any output may be B."
    )
    context = {
        "header": [comment_safe(line) for line in _header(act, module, plan, prepared)],
        "title": comment_safe(f"BSB1 quantities for activation {one_line(act.name)} by sphere "
                              "quadrature"),
        "description": [[comment_safe(line) for line in wrap(p, WIDTH - 3)] for p in description],
        "convention": [comment_safe(line) for line in wrap(convention, WIDTH - 3)],
        "fused_doc": [comment_safe(line) for line in wrap(fused_doc, WIDTH - 3)],
        "params_doc": [comment_safe(line) for line in wrap(params_doc, WIDTH - 3)],
        "indent_p": " " * len(f"void {module}_all_p("),
        "module": module,
        "guard": f"BNMFT_{module.upper()}_H",
        "rule_n": RULE_NODES,
        "rule_u": c_array(u), "rule_v": c_array(v), "rule_w": c_array(w),
        "n_kinks": len(act.kinks),
        "kinks": c_array([float(k) for k in act.kinks]),
        "window_digits": repr(WINDOW_DIGITS),
        "panel_z": repr(float(plan.panel_z)),
        "tensor_min_b": repr(float(TENSOR_MIN_B)),
        "tangency_max_b": repr(float(TANGENCY_MAX_B)),
        "kink_power": int(act.kink_power),
        "sides": _c_sides(act, printer),
        "n_moments": len(moments),
        "moment_points": "{" + ", ".join(points) + "}",
        "phi": phi_code, "dphi": dphi_code,
        "phi_temporaries": phi_t, "dphi_temporaries": dphi_t,
        "phi_text": comment_safe(one_line(act.expr)),
        "dphi_text": comment_safe(one_line(act.derivative)),
        "forms": forms,
        "kernels": kernels,
        "indent": " " * len(f"void {module}_all("),
    }
    env = environment(__file__.replace("quadrature.py", "backends/c/printer.py"))
    context["constants"] = sorted(printer.constants.items())
    return {
        f"{module}.c": env.get_template("quadrature.c.jinja").render(context),
        f"{module}.h": env.get_template("quadrature.h.jinja").render(context),
    }
