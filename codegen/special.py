"""Special functions in generated code: gamma ratios, Gauss 2F1 series, constants.

The closed forms of non-integer degrees contain ``Gamma(B/2 + 1/2) / Gamma(B/2)``, constants
such as ``Gamma(1/4)`` and ``2F1(a, b; c; z)`` at ``z = 1/(B - 1)^2``. Before printing
(:mod:`.prepare`):

* the gamma functions of ``B`` are rewritten as ratios ``rf(x, a) = Gamma(x + a) / Gamma(x)``
  (:func:`bnmft.derive.special.gamma_ratios`, the rewriting the float64 kernels of
  ``bnmft.numerics.closed_float`` use), each printed as a call of a routine function;
* ``2F1(a, b; c; z)`` with rational parameters is printed as a call of a routine that sums
  its power series;
* constant sub-expressions that neither backend can print (``sqrt(2) pi / Gamma(1/4)^2``)
  are evaluated by mpmath to 40 digits and printed as correctly rounded float64 literals.

The routines (:class:`GammaRatio`, :class:`Hyp2f1`) carry what the templates bake in, all
computed here at generation time: the Stirling-series coefficients of ``log rf(y, a) - a log y``
(:func:`bnmft.derive.special.log_gamma_ratio_series`) rounded to float64, and the bound on the
2F1 term ratios that bounds the series' tail (:func:`bnmft.derive.special.hyp2f1_ratio_sup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import sympy as sp

from bnmft.derive.special import (
    HYPER_MAX_TERMS,
    HYPER_Z_MAX,
    RATIO_SERIES_X0,
    NotInRatios,
    fraction,
    gamma_ratios,
    hyp2f1_ratio_sup,
    log_gamma_ratio_series,
)

from .errors import CodegenError

#: ``rf(x, a)``: Stirling's series from ``y = x + m >= X0`` on (``m`` steps of the recurrence
#: ``rf(x, a) = rf(x + 1, a) x / (x + a)`` below).
X0 = RATIO_SERIES_X0
#: Truncation of the Stirling series: omitted terms below this at ``X0`` (float64 ``u / 64``).
SERIES_TOL = 2.0**-59
#: 2F1: summed until the bound on the tail is below this times the sum.
HYPER_TOL = 2.0**-56
#: 2F1: the tail bound is used from the first term index ``K`` whose later term ratios are at
#: most ``HYPER_RATIO_MAX`` (so ``rho <= HYPER_RATIO_MAX HYPER_Z_MAX = 3/4``).
HYPER_RATIO_MAX = 1.5


def literal(value: float) -> str:
    """The shortest decimal that reads back as ``value`` (Python and C99 double literal)."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise CodegenError(f"constant {text} cannot be printed as a literal")
    return text


def _tag(q: Fraction) -> str:
    """``q`` in an identifier: ``1/2 -> 1_2``, ``-7/4 -> m7_4``, ``3 -> 3``."""
    sign = "m" if q < 0 else ""
    q = abs(q)
    return f"{sign}{q.numerator}" + (f"_{q.denominator}" if q.denominator != 1 else "")


@dataclass(frozen=True)
class GammaRatio:
    """``rf(x, a) = Gamma(x + a) / Gamma(x)`` for ``x > 0``: ``prod_(j<m) (x + j)/(x + j + a)``
    times ``y^a exp(sum_n c_n y^-n)`` at ``y = x + m >= X0`` (Stirling's series)."""

    a: Fraction

    @property
    def name(self) -> str:
        return f"gamma_ratio_{_tag(self.a)}"

    @property
    def text(self) -> str:
        return f"Gamma(x + {self.a})/Gamma(x)"

    @property
    def coefficients(self) -> tuple[str, ...]:
        """``c_1, c_2, ...`` as float64 literals (each the correctly rounded rational)."""
        return tuple(literal(float(c)) for c in log_gamma_ratio_series(self.a, X0, SERIES_TOL)[0])

    @property
    def a_literal(self) -> str:
        return literal(float(self.a))

    @property
    def sqrt(self) -> bool:
        """``y^a`` is ``sqrt(y)`` (correctly rounded) for ``a = 1/2``."""
        return self.a == Fraction(1, 2)

    x0 = X0
    x0_literal = literal(X0)


@dataclass(frozen=True)
class Hyp2f1:
    """``2F1(a, b; c; z)`` for ``|z| <= HYPER_Z_MAX``: its power series, term ratios
    ``z (a + k)(b + k) / ((c + k)(k + 1))``, until the tail bound ``|t_k| rho / (1 - rho)``
    (``rho = S |z|``, ``k >= K``) is below ``HYPER_TOL`` times the sum."""

    a: Fraction
    b: Fraction
    c: Fraction

    @property
    def name(self) -> str:
        return f"hyp2f1_{_tag(self.a)}_{_tag(self.b)}_{_tag(self.c)}"

    @property
    def text(self) -> str:
        return f"2F1({self.a}, {self.b}; {self.c}; z)"

    def _bound(self) -> tuple[int, float]:
        sup = hyp2f1_ratio_sup(self.a, self.b, self.c)
        for k in range(1, len(sup)):
            if sup[k] <= HYPER_RATIO_MAX:
                return k, float(sup[k])
        raise CodegenError(f"{self.text}: the series' term ratios do not settle")

    @property
    def start(self) -> int:
        """``K``: the tail bound holds from the term ``t_K`` on."""
        return self._bound()[0]

    @property
    def sup_literal(self) -> str:
        """``S``: at least every term ratio ``|t_(j+1) / (z t_j)|`` for ``j >= K``."""
        return literal(self._bound()[1])

    @property
    def parameters(self) -> tuple[str, str, str]:
        return tuple(literal(float(p)) for p in (self.a, self.b, self.c))

    z_max = HYPER_Z_MAX
    z_max_literal = literal(HYPER_Z_MAX)
    tol_literal = literal(HYPER_TOL)
    max_terms = HYPER_MAX_TERMS


#: Run-time ``Gamma(t)``: ``1/Gamma(1 + x) = sum_k g_k x^k`` (entire; Taylor coefficients by
#: mpmath at generation) for ``|x| <= 1/2``, reached by ``Gamma(t + 1) = t Gamma(t)``.
GAMMA_TAYLOR_TERMS = 26
#: Run-time ``Gamma(x + a)/Gamma(x)``: Stirling's series of ``log Gamma`` at ``y >= X0`` and
#: ``y + a >= X0``, this many terms ``B_2k / (2k (2k - 1)) y^(1 - 2k)`` (the first omitted one
#: is below ``6e-20`` at ``X0 = 32``, and bounds the error of an alternating series).
STIRLING_TERMS = 6


@dataclass(frozen=True)
class GammaFunction:
    """``Gamma(t)`` for a run-time ``t > 0`` (NaN for ``t <= 0``): ``t`` moved into
    ``[1/2, 3/2]`` by ``Gamma(t + 1) = t Gamma(t)`` (a product of at most ``t`` factors),
    there ``1 / sum_k g_k (t - 1)^k`` (the Taylor series of the entire function ``1/Gamma(1 +
    x)``, |x| <= 1/2, truncated where ``|g_k| 2^-k`` is below ``2^-60``)."""

    name = "gamma"
    text = "Gamma(t)"

    @property
    def coefficients(self) -> tuple[str, ...]:
        with mpmath.workdps(40):
            g = mpmath.taylor(lambda x: mpmath.rgamma(1 + x), 0, GAMMA_TAYLOR_TERMS)
        return tuple(literal(float(c)) for c in g)


@dataclass(frozen=True)
class GammaRatioParameter:
    """``Gamma(x + a)/Gamma(x)`` for run-time ``x > 0`` and ``a`` (``x + a`` no pole): the
    recurrence ``rf(x, a) = rf(x + 1, a) x / (x + a)`` to ``y = x + m`` with ``y >= X0`` and
    ``y + a >= X0``, then ``exp(a log y + ((y + a - 1/2) log1p(a/y) - a) + sum_k b_k ((y +
    a)^(1 - 2k) - y^(1 - 2k)))``: the difference of Stirling's series of ``log Gamma(y + a)``
    and ``log Gamma(y)`` with the large parts cancelled analytically (``b_k = B_2k / (2k (2k -
    1))``, Bernoulli numbers; no lgamma, so no ``signgam``)."""

    name = "gamma_ratio"
    text = "Gamma(x + a)/Gamma(x)"
    x0 = X0
    x0_literal = literal(X0)

    @property
    def coefficients(self) -> tuple[str, ...]:
        return tuple(literal(float(sp.bernoulli(2 * k) / (2 * k * (2 * k - 1))))
                     for k in range(1, STIRLING_TERMS + 1))


@dataclass(frozen=True)
class Hyp2f1Parameter:
    """``2F1(a, b; c; z)`` for run-time ``a, b, c`` and ``|z| <= HYPER_Z_MAX`` (NaN elsewhere):
    the power series ``t_(k+1) = t_k z (a + k)(b + k)/((c + k)(k + 1))`` until the tail after
    ``t_(k+1)`` is below ``HYPER_TOL`` times the sum. Tail bound, per element at run time: for
    ``j >= k + 1`` with ``c + k + 1 > 0`` every ratio ``|t_(j+1)/(z t_j)| <= S = max(1, (k + 1 +
    |a|)/(k + 2)) max(1, (k + 1 + |b|)/(k + 1 + c))`` (each factor decreases in ``j`` or stays
    below 1), so the tail is at most ``|t_(k+1)| rho/(1 - rho)``, ``rho = S |z| < 1``."""

    name = "hyp2f1"
    text = "2F1(a, b; c; z)"
    z_max = HYPER_Z_MAX
    z_max_literal = literal(HYPER_Z_MAX)
    tol_literal = literal(HYPER_TOL)
    max_terms = HYPER_MAX_TERMS


def routine_of(expr: sp.Expr):
    """The routine that prints ``expr`` (a ratio ``rf(x, a)``, a 2F1 or, with run-time
    parameters, ``Gamma(t)``), or None."""
    if isinstance(expr, sp.RisingFactorial):
        if expr.args[1].is_Rational:
            return GammaRatio(fraction(expr.args[1]))
        return GammaRatioParameter() if _run_time(expr.args[1]) else None
    if isinstance(expr, sp.hyper) and len(expr.ap) == 2 and len(expr.bq) == 1:
        params = (*expr.ap, *expr.bq)
        if all(p.is_Rational for p in params):
            return Hyp2f1(*(fraction(p) for p in params))
        if all(p.is_Rational or _run_time(p) for p in params):
            return Hyp2f1Parameter()
        return None
    if isinstance(expr, sp.gamma) and _run_time(expr.args[0]):
        return GammaFunction()
    return None


def _run_time(parameter: sp.Expr) -> bool:
    """True if ``parameter`` is one the run-time routines take: an expression in family
    parameters, not in the batch size (``alpha/2 + 1/2``; not ``sqrt(2)``, not ``B``)."""
    names = {s.name for s in parameter.free_symbols}
    return bool(names) and "B" not in names


def routine_argument(expr: sp.Expr) -> sp.Expr:
    """The argument the routine of ``expr`` is called with (``x`` of ``rf``, ``z`` of 2F1)."""
    return expr.args[0] if isinstance(expr, sp.RisingFactorial) else expr.argument


def routine_arguments(expr: sp.Expr) -> tuple[sp.Expr, ...]:
    """Every argument the routine of ``expr`` is called with: that of
    :func:`routine_argument`, and for the run-time routines their parameters (``x, a`` of
    ``rf``; ``a, b, c, z`` of 2F1; ``t`` of ``Gamma``)."""
    routine = routine_of(expr)
    if isinstance(routine, GammaRatioParameter):
        return tuple(expr.args)
    if isinstance(routine, Hyp2f1Parameter):
        return (*expr.ap, *expr.bq, expr.argument)
    if isinstance(routine, GammaFunction):
        return tuple(expr.args)
    return (routine_argument(expr),)


def rewrite_gamma(expr: sp.Expr, batch: sp.Symbol) -> sp.Expr:
    """``expr`` with its gamma functions of ``batch`` as ratios ``rf(x, a)`` (unevaluated); an
    offset that is not rational (``Gamma(B/2 + alpha + 1/2)``, a family parameter) is measured
    from the least rational offset of its group (:func:`_family_ratios`)."""
    try:
        return gamma_ratios(expr, batch)
    except NotInRatios as err:
        family = _family_ratios(expr, batch)
        if family is None:
            raise CodegenError(str(err)) from None
        return family


def _family_ratios(expr: sp.Expr, batch: sp.Symbol) -> sp.Expr | None:
    """Every ``Gamma(v + r)`` (``v`` the part in ``batch``, ``r`` the rest: rational or in
    the family parameters) as ``rf(v + r0, r - r0) Gamma(v + r0)``, ``r0`` the least rational
    offset of its group; None if a group has no rational offset or gammas of ``batch`` remain."""
    groups: dict = {}
    for g in expr.atoms(sp.gamma):
        if g.has(batch):
            arg = sp.expand(g.args[0])
            v = sp.Add(*(t for t in sp.Add.make_args(arg) if t.has(batch)))
            groups.setdefault(v, []).append((arg - v, g))
    subs = {}
    for v, items in groups.items():
        rational = [r for r, _ in items if r.is_Rational]
        if not rational or any(not (r.is_Rational or _run_time(r)) for r, _ in items):
            return None
        r0 = min(rational)
        for r, g in items:
            if r != r0:
                subs[g] = sp.RisingFactorial(v + r0, r - r0, evaluate=False) * sp.gamma(v + r0)
    out = expr.xreplace(subs)
    if any(g.has(batch) for g in out.atoms(sp.gamma)):
        return None
    return out


def constant_literal(expr: sp.Expr) -> sp.Float:
    """The constant ``expr`` correctly rounded to float64 (from its 40-digit mpmath value),
    as a 17-digit Float (which prints as a decimal reading back to that float64)."""
    try:
        value = sp.N(expr, 40)
        if not (value.is_real and value.is_finite):
            raise CodegenError(f"constant {expr} is not a finite real number")
        with mpmath.workdps(40):
            f = float(mpmath.mpf(value))
    except (TypeError, ValueError) as err:
        raise CodegenError(f"constant {expr}: {err}") from None
    return sp.Float(f, 17)


def fold_constants(expr: sp.Expr, printable) -> sp.Expr:
    """``expr`` with each largest constant part that ``printable(node)`` refuses (it contains
    e.g. ``Gamma(1/4)``) replaced by its :func:`constant_literal`; the constant factors of a
    product (terms of a sum) are folded together."""
    if expr.is_Atom or not isinstance(expr, sp.Expr):  # (the parameter tuples of 2F1)
        return expr
    if not expr.free_symbols:
        return expr if printable(expr) else constant_literal(expr)
    if expr.is_Mul or expr.is_Add:
        const = [a for a in expr.args if not a.free_symbols]
        rest = [fold_constants(a, printable) for a in expr.args if a.free_symbols]
        part = expr.func(*const)
        if const and not printable(part):
            const = [constant_literal(part)]
        return expr.func(*const, *rest)
    args = [fold_constants(a, printable) for a in expr.args]
    return expr if args == list(expr.args) else expr.func(*args, evaluate=False)


class RoutinePrinting:
    """Printer mixin: ``RisingFactorial`` (gamma ratios) and ``hyper`` (2F1) print as calls of
    the generated routines (:func:`routine_of`), named ``ROUTINE_PREFIX + name``, collected in
    ``self.routines`` so that the template emits each routine used once."""

    ROUTINE_PREFIX = "_"

    def _print_routine(self, expr):
        routine = routine_of(expr)
        if routine is None:
            return self._print_not_supported(expr)
        self.routines[routine.name] = routine
        args = ", ".join(self._print(a) for a in routine_arguments(expr))
        return f"{self.ROUTINE_PREFIX}{routine.name}({args})"

    _print_RisingFactorial = _print_routine
    _print_hyper = _print_routine

    def _print_gamma(self, expr):
        if isinstance(routine_of(expr), GammaFunction):
            return self._print_routine(expr)
        return self._print_Function(expr)
