"""Activations: registered names or typed expressions, and what the theory needs of them.

``activation("relu")``, ``activation("alpha_relu:1.5")``, ``activation("tanh(2*x) + 0.1")``
and ``activation("tanh", gamma=2, beta=0.1)`` (meaning ``phi(gamma x + beta)``, the paper's
way of tuning linearity, Fig. 4) all return an :class:`Activation`: an exact SymPy
expression ``phi(x)`` with the properties the numerics depend on:

* positive homogeneity and its degree (closed forms through dual kernels);
* kinks: real points where ``phi`` or ``phi'`` is not smooth (quadratures split there);
* whether ``phi'`` carries a Dirac mass (then ``E[phi'(z)^2]`` is infinite);
* growth: the theory needs finite Gaussian moments of ``phi^2`` and ``phi'^2``.

What the theory cannot handle is refused with :class:`ActivationError` (one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable

import mpmath
import sympy as sp

from .budget import time_budget
from .errors import InvalidInput
from .homogeneous import Homogeneous
from .parse import ParseError, parse_expression
from .symbols import x


class ActivationError(InvalidInput):
    """An activation bnmft refuses, with a one-line reason (messages quote user text, which
    may hold line breaks: :class:`InvalidInput` joins them)."""


#: Real window searched for kinks: beyond |z| = 64 the sphere marginal is below 1e-800
#: for every batch size (and outside the support for B <= 4097).
KINK_WINDOW = 64
#: Most kinks in the window: every quadrature splits at each (Max(sin(x), 0) has 41).
MAX_KINKS = 256
#: Highest degree of a polynomial whose real roots locate kinks (Max(p(x), 0), |p(x)|).
MAX_POLY_DEGREE = 400
#: Wall-clock budget of the symbolic steps of :func:`analyse` (SymPy can run for hours or
#: fill the memory on innocent-looking input such as ``simplify(tanh(10^10 x))``).
ANALYSIS_SECONDS = 30

_SELU_SCALE = sp.Rational("1.0507009873554804934193349852946")
_SELU_ALPHA = sp.Rational("1.6732632423543772848170429916717")


def _elu(alpha=sp.Integer(1)):
    return sp.Piecewise((x, x > 0), (alpha * (sp.exp(x) - 1), True))


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., sp.Expr]
    params: tuple[tuple[str, sp.Expr | None], ...] = ()
    about: str = ""


REGISTRY: dict[str, _Entry] = {
    "relu": _Entry(lambda: sp.Max(x, 0), about="max(x, 0)"),
    "leaky_relu": _Entry(
        lambda slope: sp.Max(x, 0) + slope * sp.Min(x, 0),
        (("slope", sp.Rational(1, 100)),),
        "x for x > 0, slope*x otherwise",
    ),
    "alpha_relu": _Entry(
        lambda alpha: sp.Piecewise((x**alpha, x > 0), (0, True)),
        (("alpha", None),),
        "max(x, 0)^alpha",
    ),
    "linear": _Entry(lambda: x, about="x"),
    "abs": _Entry(lambda: sp.Abs(x), about="|x|"),
    "step": _Entry(lambda: sp.Heaviside(x), about="1 for x > 0, 0 otherwise"),
    "tanh": _Entry(lambda: sp.tanh(x)),
    "erf": _Entry(lambda: sp.erf(x)),
    "sigmoid": _Entry(lambda: 1 / (1 + sp.exp(-x))),
    "sin": _Entry(lambda: sp.sin(x)),
    "gelu": _Entry(lambda: x * (1 + sp.erf(x / sp.sqrt(2))) / 2, about="x Phi(x)"),
    "swish": _Entry(lambda: x / (1 + sp.exp(-x)), about="x sigmoid(x)"),
    "silu": _Entry(lambda: x / (1 + sp.exp(-x)), about="x sigmoid(x)"),
    "softplus": _Entry(lambda: sp.log(1 + sp.exp(x)), about="log(1 + e^x)"),
    "elu": _Entry(_elu, (("alpha", sp.Integer(1)),), "x for x > 0, alpha (e^x - 1) otherwise"),
    "selu": _Entry(lambda: _SELU_SCALE * _elu(_SELU_ALPHA), about="scaled elu"),
}


def _as_function(entry: _Entry):
    """A registered activation used inside an expression: ``relu(2*x + 1)``."""

    def call(arg, *params):
        if len(params) > len(entry.params):
            raise ValueError("too many parameters")
        values = list(params) + [d for _, d in entry.params[len(params):]]
        if any(v is None for v in values):
            raise ValueError("missing parameter " + ", ".join(n for n, _ in entry.params))
        return entry.build(*values).subs(x, arg)

    return call


_REGISTRY_FUNCTIONS = {name: _as_function(entry) for name, entry in REGISTRY.items()}


def _parse_number(text: str) -> sp.Expr:
    if text.strip().lstrip("+-").lower() in ("inf", "infinity", "oo", "nan"):
        raise ActivationError(f"parameter '{text}' is not a finite real number")
    try:
        value = parse_expression(text)
    except ParseError as err:
        raise ActivationError(f"bad parameter '{text}': {err}") from None
    if value.free_symbols or not value.is_real:
        raise ActivationError(f"parameter '{text}' is not a real number")
    return value


def _registered(name: str, param_text: str | None) -> sp.Expr:
    entry = REGISTRY[name]
    values = {pname: default for pname, default in entry.params}
    if param_text:
        if not entry.params:
            raise ActivationError(f"'{name}' takes no parameters")
        for k, item in enumerate(param_text.split(",")):
            key, sep, val = item.partition("=")
            if not sep:
                if k >= len(entry.params):
                    raise ActivationError(f"too many parameters for '{name}'")
                key, val = entry.params[k][0], item
            key = key.strip()
            if key not in values:
                raise ActivationError(f"'{name}' has no parameter '{key}'")
            values[key] = _parse_number(val.strip())
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ActivationError(f"'{name}' needs {missing[0]}, e.g. {name}:{missing[0]}=1.5")
    return entry.build(*values.values()), values


@dataclass(frozen=True)
class Activation:
    """An activation ``phi(x)`` (exact SymPy expression) and its analysed properties."""

    name: str
    expr: sp.Expr
    params: tuple[tuple[str, sp.Expr], ...] = ()
    kinks: tuple[sp.Expr, ...] = ()
    homogeneous: Homogeneous | None = None
    derivative: sp.Expr = field(default=sp.Integer(0))
    derivative_has_delta: bool = False
    singular: bool = False
    #: Substitution power that makes the integrand analytic at a kink: ``|z - k|^(r/q)``
    #: becomes analytic under ``z - k = s^q``; None when an exponent is irrational.
    kink_power: int | None = 1

    @property
    def key(self) -> str:
        """Canonical identity of the function (independent of how it was typed)."""
        return sp.srepr(self.expr)

    @property
    def kink_floats(self) -> tuple[float, ...]:
        return tuple(float(k) for k in self.kinks)

    @cached_property
    def numpy(self) -> Callable:
        """Vectorised float64 ``phi``."""
        return _lambdify_numpy(self.expr)

    @cached_property
    def numpy_derivative(self) -> Callable:
        return _lambdify_numpy(self.derivative)

    @cached_property
    def mpmath(self) -> Callable:
        """``phi`` at mpmath precision (exact constants)."""
        return _mpmath_function(self.expr)

    @cached_property
    def mpmath_derivative(self) -> Callable:
        return _mpmath_function(self.derivative)

    def latex(self) -> str:
        return sp.latex(self.expr)

    @cached_property
    def zero_radius(self) -> sp.Expr:
        """Largest ``t`` with ``phi = 0`` on ``[-t, t]`` (0 when ``phi`` does not vanish near
        0), see :func:`zero_radius`."""
        return zero_radius(self.expr, self.kinks)


#: Interior points probed per piece between kinks by :func:`zero_radius`.
ZERO_PROBES = 7


def zero_radius(expr: sp.Expr, kinks) -> sp.Expr:
    """Largest ``t`` such that ``phi = 0`` on ``[-t, t]``; 0 if ``phi`` is nonzero
    arbitrarily close to 0.

    Between consecutive kinks ``phi`` is analytic (an elementary expression off its kinks),
    so it vanishes on a whole piece as soon as it vanishes at :data:`ZERO_PROBES` interior
    points (exactly, at 30 digits: the zero branches of ``Max``, ``Piecewise``, ``Heaviside``
    give exact zeros, an analytic nonzero branch has isolated zeros). The pieces are walked
    outward from 0 on each side; ``t`` is the nearer of the two kinks where a nonzero piece
    starts, or :data:`KINK_WINDOW` if ``phi`` vanishes on the whole window."""
    fn = _mpmath_function(expr)
    window = sp.Integer(KINK_WINDOW)

    def zero_between(a: sp.Expr, b: sp.Expr) -> bool:
        with mpmath.workdps(30):
            lo, hi = _mp(a), _mp(b)
            for j in range(ZERO_PROBES):
                t = lo + (hi - lo) * (mpmath.mpf(j) + mpmath.mpf(3) / 7) / ZERO_PROBES
                if fn(t) != 0:
                    return False
        return True

    def side(points) -> sp.Expr:
        edge = sp.Integer(0)
        for nxt in points:
            if not zero_between(edge, nxt):
                return abs(edge)
            edge = nxt
        return abs(edge)

    right = [k for k in sorted(kinks, key=float) if k > 0] + [window]
    left = [k for k in sorted(kinks, key=float, reverse=True) if k < 0] + [-window]
    return sp.Min(side(right), side(left))


class NoBSB1Point(InvalidInput):
    """``phi`` vanishes on the whole sphere at a requested batch size (:func:`check_defined`)."""


def check_defined(act: "Activation", batch_sizes) -> None:
    """Refuse batch sizes at which ``phi`` vanishes on the whole sphere: the batchnorm
    output ``z = sqrt(B) u`` has ``|z_i| <= sqrt(B - 1)``, so if ``phi = 0`` on
    ``[-sqrt(B-1), sqrt(B-1)]`` every layer outputs 0, the next batchnorm divides 0 by 0 and
    there is no BSB1 point (``q* = 0``, everything else undefined)."""
    t = act.zero_radius
    if t == 0:
        return
    bad = [b for b in batch_sizes if b != float("inf") and b - 1 <= t**2]
    if bad:
        first = next(b for b in range(4, 10**6) if b - 1 > t**2)
        raise NoBSB1Point(
            f"{act.name}: phi is 0 on |x| <= {sp.sstr(t)} and the batchnorm output lies in "
            f"|z| <= sqrt(B - 1), so at B = {_short_list(bad)} every layer outputs 0 and "
            f"there is no BSB1 point; use B >= {first}")


#: Kink exponent estimates: phi' sampled at k +- h for these h (mpmath, KINK_DPS digits).
KINK_STEPS = (sp.Rational(1, 10**20), sp.Rational(1, 10**40))
KINK_DPS = 80


def kink_exponents(act: "Activation") -> list[tuple[float, int, float]]:
    """``(k, side, e)``: phi'(k + side h) ~ c h^e as h -> 0+ at each kink ``k`` of ``phi``
    (``e`` from two steps :data:`KINK_STEPS`, rounded to a multiple of ``1/kink_power``, the
    exponents of phi being rationals r/q with q | kink_power; ``e = 0`` where phi' stays
    bounded away from 0 and from infinity, ``+inf`` where it vanishes identically, as on the
    flat side of ``Max(x - k, 0)**a``, see :func:`_flat_sides_explicit`). A phi' that cannot
    be evaluated next to a kink raises :class:`ActivationError`."""
    import math

    q = int(act.kink_power)
    out = []
    with mpmath.workdps(KINK_DPS):
        for k in act.kinks:
            kk = mpmath.mpf(sp.N(k, KINK_DPS + 20))  # exact kinks may be irrational
            for side in (-1, 1):
                try:
                    vals = [abs(act.mpmath_derivative(kk + side * mpmath.mpf(h)))
                            for h in KINK_STEPS]
                except (ZeroDivisionError, ValueError, TypeError):
                    vals = [mpmath.nan]
                if not all(mpmath.isfinite(v) for v in vals):
                    raise ActivationError(
                        f"{act.name}: phi' cannot be evaluated next to the kink {float(k):g} "
                        f"({'right' if side > 0 else 'left'} side)")
                if all(v == 0 for v in vals):
                    out.append((float(k), side, math.inf))
                    continue
                h1, h2 = (mpmath.mpf(h) for h in KINK_STEPS)
                e = float(mpmath.log(vals[0] / vals[1]) / mpmath.log(h1 / h2))
                out.append((float(k), side, round(e * q) / q))
    return out


def check_finite_moments(act: "Activation", powers) -> None:
    """Refuse (:class:`ActivationError`, one line) a phi for which a sphere moment ``E[z^m
    phi^p phi'^q]`` with ``q`` in ``powers`` is infinite: near a kink ``|phi'|^q ~ |x -
    k|^(q e)`` (:func:`kink_exponents`) is integrable iff ``q e > -1``; ``z^m phi^p`` is
    bounded there and not credited (so a vanishing ``phi(k)`` that would make the moment
    finite is refused too). Two-point moments factor near the crossing of two kink lines
    (Thm 4: the joint density is bounded inside the ellipse), so the same condition per
    coordinate decides them. Only kinks with power singularities (``kink_power > 1``) can
    fail."""
    if act.kink_power in (None, 1):
        return
    for k, side, e in kink_exponents(act):
        for q in sorted(set(powers)):
            if q and q * e <= -1:
                raise ActivationError(
                    f"{act.name}: E[phi'^{q} ...] is infinite: phi' ~ |x - {k:g}|^{e:g} at the "
                    f"kink {k:g} ({'right' if side > 0 else 'left'} side), so the moments the "
                    "quantities need do not exist")


def _short_list(values) -> str:
    values = sorted(set(int(v) for v in values))
    return ", ".join(map(str, values)) if len(values) <= 4 else f"{values[0]} ... {values[-1]}"


def _lambdify_numpy(expr: sp.Expr) -> Callable:
    import numpy as np

    from .numpyfn import numpy_function

    if not expr.free_symbols:
        value = float(expr)
        return lambda z: np.full(np.shape(z), value)
    fn = numpy_function(x, expr)

    def vectorised(z):
        # numpy.select evaluates every branch of a Piecewise everywhere (e.g. x**1.5 at
        # x < 0); the discarded branches may warn, the selected values are unaffected.
        # float64 input: a Python float would make x**1.5 complex (and the result with it).
        z = np.asarray(z, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return fn(z)

    return vectorised


# -- properties ------------------------------------------------------------------------


def _degree_bound(expr: sp.Expr) -> int:
    """An upper bound of the degree in ``x`` of a polynomial ``expr``, read off its tree
    (``Poly`` of ``x**(10**9) - 1`` would allocate a dense list of 10^9 coefficients)."""
    if expr.is_Add:
        return max(_degree_bound(a) for a in expr.args)
    if expr.is_Mul:
        return sum(_degree_bound(a) for a in expr.args)
    if expr.is_Pow:
        return int(expr.exp) * _degree_bound(expr.base)
    return 1 if expr.has(x) else 0


def _real_zero_set(expr: sp.Expr) -> sp.Set:
    """Real zeros of ``expr``. Polynomials with rational coefficients: real-root isolation
    (``solveset`` would compute every complex root first: 15 s for ``x**50 - x - 1``);
    otherwise ``solveset`` over the reals, where periodic zeros stay lattices (ImageSet)
    instead of being listed (``sin(10^10 x)`` has 4e11 zeros in the window)."""
    if expr.is_polynomial(x):
        degree = _degree_bound(expr)
        if degree > MAX_POLY_DEGREE:
            raise ActivationError(
                f"cannot locate where {_short(expr)} vanishes: a polynomial of degree up to "
                f"{degree} (at most {MAX_POLY_DEGREE})"
            )
        poly = sp.Poly(expr, x)
        if poly.domain.is_ZZ or poly.domain.is_QQ:
            return sp.FiniteSet(*poly.real_roots())
    return sp.solveset(expr, x, sp.S.Reals)


def _lattice(part: sp.ImageSet, expr: sp.Expr) -> list[sp.Expr]:
    """Points ``a n + b`` (``n`` integer) of a solveset lattice inside the kink window."""
    (n,) = part.lamda.variables
    line = sp.Poly(part.lamda.expr, n) if part.base_sets == (sp.S.Integers,) else None
    if line is None or line.degree() != 1 or not all(cf.is_real for cf in line.all_coeffs()):
        raise ActivationError(f"cannot locate where {_short(expr)} vanishes")
    a, b = line.all_coeffs()
    lo, hi = sorted(((-KINK_WINDOW - b) / a, (KINK_WINDOW - b) / a), key=float)
    first, last = int(sp.ceiling(lo)), int(sp.floor(hi))
    if last - first + 1 > MAX_KINKS:
        raise ActivationError(
            f"phi has more than {MAX_KINKS} kinks in |x| <= {KINK_WINDOW} (where "
            f"{_short(expr)} vanishes); quadratures split at each"
        )
    return [a * k + b for k in range(first, last + 1)]


def _zeros(expr: sp.Expr) -> list[sp.Expr]:
    """Real zeros of ``expr`` in the kink window (interval ends for flat zero sets)."""
    if not expr.has(x):
        return []
    try:
        sol = _real_zero_set(expr)
    except (NotImplementedError, ValueError, TypeError, ArithmeticError) as err:
        if isinstance(err, ActivationError):
            raise
        sol = None
    points: list[sp.Expr] = []
    parts = sol.args if isinstance(sol, sp.Union) else (sol,)
    for part in parts:
        if isinstance(part, sp.FiniteSet):
            points.extend(p for p in part if abs(p) <= KINK_WINDOW)
        elif isinstance(part, sp.Interval):
            points.extend(p for p in (part.start, part.end) if abs(p) < KINK_WINDOW)
        elif isinstance(part, sp.ImageSet):
            points.extend(_lattice(part, expr))
        elif part is sp.S.EmptySet:
            continue
        else:
            raise ActivationError(
                f"cannot locate where {_short(expr)} vanishes (needed to split integrals)"
            )
        if len(points) > MAX_KINKS:
            raise ActivationError(
                f"phi has more than {MAX_KINKS} kinks in |x| <= {KINK_WINDOW}; quadratures "
                "split at each"
            )
    if not isinstance(sol, sp.FiniteSet) or not expr.is_polynomial(x):  # roots are exact
        _check_no_zero_missed(expr, points)
    return points


def _check_no_zero_missed(expr: sp.Expr, points) -> None:
    """Refuse when ``expr`` changes sign between two grid points (spacing 1/4 on the kink
    window, float64) with no located zero between them, and bisection (30 digits) closes in
    on a zero there rather than a jump. ``solveset`` can miss real zeros: it returns the
    empty set for ``exp(50 x) - exp(x) - 3``, whose zero near 0.028 is a kink of Max(., 0)."""
    import numpy as np

    grid = np.arange(-4 * KINK_WINDOW, 4 * KINK_WINDOW + 1) / 4
    values = np.real_if_close(np.asarray(_lambdify_numpy(expr)(grid), dtype=complex))
    if np.iscomplexobj(values):
        return
    located = [float(p) for p in points]
    fn = _mpmath_function(expr)
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
        a, b = grid[i], grid[i + 1]
        if any(a <= p <= b for p in located):
            continue
        with mpmath.workdps(30):

            def value(t):
                try:
                    v = fn(t)
                except (ArithmeticError, ValueError, TypeError):
                    return None
                return None if isinstance(v, mpmath.mpc) or not mpmath.isfinite(v) else v

            t = _bisect(lambda s: value(s) or 0, mpmath.mpf(a), mpmath.mpf(b))
            scale = max(abs(values[i]), abs(values[i + 1]))
            v = value(t)
            if v is not None and abs(v) <= 1e-20 * scale:
                raise ActivationError(
                    f"cannot locate where {_short(expr)} vanishes: SymPy found no zero near "
                    f"x = {mpmath.nstr(t, 6)} (needed to split integrals)"
                )


def _short(expr: sp.Expr) -> str:
    """``expr`` for a message: at most 60 characters."""
    text = str(expr)
    return text if len(text) <= 60 else text[:57] + "..."


def _kink_candidates(expr: sp.Expr) -> list[sp.Expr]:
    found: list[sp.Expr] = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Max, sp.Min)):
            args = node.args
            for i in range(len(args)):
                for j in range(i + 1, len(args)):
                    found.extend(_zeros(args[i] - args[j]))
        elif isinstance(node, (sp.Abs, sp.sign, sp.Heaviside, sp.DiracDelta)):
            found.extend(_zeros(node.args[0]))
        elif isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                for rel in sp.preorder_traversal(cond):
                    if isinstance(rel, sp.Rel):
                        found.extend(_zeros(rel.lhs - rel.rhs))
        elif isinstance(node, sp.Pow) and not node.exp.is_integer:
            found.extend(_zeros(node.base))
    return found


def _kinks(expr: sp.Expr) -> tuple[sp.Expr, ...]:
    points = {sp.nsimplify(p) for p in _kink_candidates(expr)}
    for p in points:
        if not p.is_real:
            raise ActivationError(f"kink at non-real point {p}")
    return tuple(sorted(points, key=lambda p: float(p)))


def _magnitude(expr: sp.Expr) -> int:
    """Decimal orders of magnitude of the numbers in ``expr`` (``10^10`` and ``10^-10`` give
    10): the scales at which ``phi`` may change character (``tanh(10^10 x)``)."""
    bits = [abs(r.p).bit_length() + r.q.bit_length() for r in expr.atoms(sp.Rational)]
    bits += [abs(int(mpmath.mpf(f._mpf_).exp)) for f in expr.atoms(sp.Float) if f]
    return min(int(max(bits, default=0) * 0.30103) + 1, _MAX_MAGNITUDE)


#: Probe scales of the homogeneity screen reach 10^(+-(magnitude + 12)), magnitude capped.
_MAX_MAGNITUDE = 2000


def _homogeneity_probes(expr: sp.Expr) -> list[mpmath.mpf]:
    """Points ``t > 0`` where ``phi(2t)/phi(t)`` is compared: four at order 1, then every
    second decade out to ``10^(+-(m + 12))``, ``m`` the magnitude of the numbers in ``phi``.
    Below ``10^-(m+12)`` every term of ``phi`` has reached its small-argument power law (at
    30 digits), above ``10^(m+12)`` its large-argument one: ``tanh(10^10 x)`` has degree 0
    at ``t = 1`` but degree 1 at ``t = 10^-22``, which the probes at order 1 cannot see."""
    probes = [mpmath.mpf(t) for t in ("0.37", "1.3", "2.9", "7.1")]
    reach = _magnitude(expr) + 12
    for k in range(2, reach + 2, 2):
        scale = mpmath.mpf(10) ** k
        probes += [mpmath.mpf("1.3") / scale, mpmath.mpf("1.3") * scale]
    return probes


def _numerically_homogeneous(expr: sp.Expr) -> bool:
    """Cheap necessary test before the symbolic one: ``phi(2t)/phi(t)`` is the same power of
    2 at every probe scale (:func:`_homogeneity_probes`) on each side (and the same power on
    both sides). A probe whose ratio changes between 30 and 45 digits is ill-conditioned
    (``cosh(t)**2 - sinh(t)**2`` at ``t = 10^14``) and is skipped. Symbolic parameters pass
    through to the symbolic test."""
    if expr.free_symbols - {x}:
        return True
    fn = _mpmath_function(expr)

    def degree(t):
        """log2 of the ratio (None: both values 0; False: not a power law at t)."""
        try:
            a, b = fn(t), fn(2 * t)
        except (ArithmeticError, ValueError, TypeError):
            return False
        if isinstance(a, mpmath.mpc) or isinstance(b, mpmath.mpc):
            return False
        if a == 0 and b == 0:
            return None
        if a == 0 or b == 0 or a * b < 0 or not mpmath.isfinite(a * b):
            return False
        return mpmath.log(b / a, 2)

    degrees = []
    for t in _homogeneity_probes(expr):
        for sign in (1, -1):
            with mpmath.workdps(30):
                coarse = degree(sign * t)
            with mpmath.workdps(45):
                fine = degree(sign * t)
                if coarse is None and fine is None:
                    continue
                if coarse is False or fine is False or coarse is None or fine is None:
                    if coarse == fine:
                        return False
                    continue  # ill-conditioned
                if abs(coarse - fine) > mpmath.mpf(10) ** -25:
                    continue  # ill-conditioned
                degrees.append(fine)
                if max(degrees) - min(degrees) >= mpmath.mpf(10) ** -20:
                    return False
    return bool(degrees)


def _power_law(side: sp.Expr, p: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """``(A, alpha)`` with ``side = A p^alpha`` (``A``, ``alpha`` free of ``p``), or None.

    Structural first (``Max(p, 0)``, ``Abs(-p)``, ``Piecewise((p**a, p > 0), ...)`` have
    already evaluated to powers of ``p``); ``simplify`` only for small expressions with
    small numbers (``p*(cosh(p)**2 - sinh(p)**2)``), as it can expand ``tanh(10^10 p)``
    into a rational function of degree 10^10."""
    coeff, alpha = sp.powsimp(sp.expand_power_base(side, force=True)).as_coeff_exponent(p)
    if not coeff.has(p) and not alpha.has(p):
        return coeff, alpha
    if sp.count_ops(side) > _SIMPLIFY_OPS or _magnitude(side) > _SIMPLIFY_MAGNITUDE:
        return None
    side = sp.simplify(side)
    alpha = sp.simplify(p * sp.diff(side, p) / side)
    if alpha.has(p):
        return None
    coeff = sp.simplify(side / p**alpha)
    return (None if coeff.has(p) else coeff), alpha


#: Limits of the expressions :func:`_power_law` gives to ``simplify``.
_SIMPLIFY_OPS = 40
_SIMPLIFY_MAGNITUDE = 6


def _homogeneity(expr: sp.Expr) -> Homogeneous | None:
    """``(alpha, A, C)`` if ``phi(t z) = t^alpha phi(z)`` for all ``t > 0``, else None.

    Each half line ``phi(+-p)`` (``p > 0``) must be a power law ``A p^alpha``
    (:func:`_power_law`) with one ``alpha`` for both; a Piecewise whose conditions do not
    resolve for ``p > 0`` (``x > 1``) is not homogeneous."""
    if not _numerically_homogeneous(expr):
        return None
    p = sp.Symbol("p", positive=True)
    alpha = None
    coeffs = []
    for sign in (1, -1):
        side = sp.piecewise_fold(expr.subs(x, sign * p))
        if side.has(sp.Piecewise, sp.Max, sp.Min, sp.Heaviside, sp.sign, sp.Abs):
            side = sp.piecewise_fold(side.rewrite(sp.Piecewise))
        if side.has(sp.Piecewise):
            return None
        if side == 0:
            coeffs.append(sp.Integer(0))
            continue
        law = _power_law(side, p)
        if law is None or law[0] is None:
            return None
        coeff, deg = law
        if not deg.is_real or not coeff.is_real:
            return None
        if alpha is not None and (deg - alpha).is_zero is not True:
            return None
        alpha = deg
        coeffs.append(coeff)
    if alpha is None or alpha.is_negative is not False:
        return None
    return Homogeneous(sp.nsimplify(alpha), coeffs[0], coeffs[1])


def _jumps(expr: sp.Expr, points) -> bool:
    """Whether ``phi`` is discontinuous at one of ``points`` (then ``phi'`` has a Dirac mass).

    The mass of ``phi'`` at ``k`` is the jump of ``phi`` there, whatever form the Dirac
    terms of ``diff`` take (SymPy even drops them for a Piecewise, differentiated branch by
    branch). Numerically: ``|phi(k + h) - phi(k - h)|`` tends to the jump with ``O(h)``
    corrections, while for a continuous ``phi`` (even ``|z|^0.01``) it keeps shrinking
    between ``h = 1e-30`` and ``h = 1e-60``.
    """
    if not points:
        return False
    fn = _mpmath_function(expr)
    with mpmath.workdps(100):
        steps = (mpmath.mpf("1e-30"), mpmath.mpf("1e-60"))
        for k in points:
            kk = mpmath.mpf(sp.N(k, 110))
            try:
                gaps = [abs(fn(kk + h) - fn(kk - h)) for h in steps]
            except (ArithmeticError, ValueError, TypeError):
                raise ActivationError(f"phi cannot be evaluated next to x = {k}") from None
            if gaps[1] > mpmath.mpf("1e-40") and abs(gaps[0] - gaps[1]) <= 1e-6 * gaps[1]:
                return True
    return False


def _flat_sides_explicit(expr: sp.Expr) -> sp.Expr:
    """``expr`` with each ``Max(0, u)**a``, ``0 < a < 1``, written ``Piecewise((u**a, u > 0),
    (0, True))`` (the same function).

    The chain rule turns ``Max(0, u)**a`` into ``a Heaviside(u) Max(0, u)**(a - 1) u'``:
    on the flat side ``u < 0`` that is ``0 * 0**(a - 1) = 0 * oo``, NaN in every evaluator
    (mpmath, numpy, arb, generated code), although ``phi' = 0`` there. Differentiated
    branch by branch, the Piecewise form gives ``a u**(a - 1) u'`` for ``u > 0`` and ``0``
    otherwise. For ``a > 1`` the product is ``0 * 0 = 0`` and the expression is left as it
    is."""

    def flat(node):
        return (isinstance(node, sp.Pow) and isinstance(node.base, sp.Max)
                and len(node.base.args) == 2 and sp.S.Zero in node.base.args
                and node.exp.is_number and node.exp.is_positive and (node.exp < 1) is sp.true)

    def explicit(node):
        (u,) = [a for a in node.base.args if a != 0]
        return sp.Piecewise((u**node.exp, u > 0), (0, True))

    return expr.replace(flat, explicit)


def _derivative(expr: sp.Expr, kinks) -> tuple[sp.Expr, bool]:
    """``phi'`` without its Dirac masses; flag whether a mass of nonzero weight exists.
    Flat sides of power kinks are made explicit first (:func:`_flat_sides_explicit`)."""
    d = sp.diff(_flat_sides_explicit(expr), x)
    if any(isinstance(n, sp.Pow) and n.exp.is_number and not n.exp.is_Rational
           for n in sp.preorder_traversal(d)):
        # d/dx u^a is printed u^a/u for irrational a: 0/0 where u = 0 (relu^sqrt(2), z < 0)
        d = sp.powsimp(d, combine="exp")
    if not d.has(sp.DiracDelta):
        return d, _jumps(expr, kinks)
    # The weights are decided by the jumps of phi rather than by sp.limit of each Dirac
    # term's factor: limit can hang (Min(Heaviside(x), x)) and per-term weights can cancel
    # (Heaviside(2*x) - Heaviside(x) is 0).
    points = set(kinks)
    smooth = []
    # distribute products only: a full expand would multiply out (x + 1)**100000
    for term in sp.Add.make_args(sp.expand(d, power_base=False, power_exp=False,
                                           multinomial=False, log=False)):
        if term.has(sp.DiracDelta):
            for dd in term.atoms(sp.DiracDelta):
                points.update(_zeros(dd.args[0]))
        else:
            smooth.append(term)
    return sp.Add(*smooth), _jumps(expr, sorted(points, key=float))


def _probes(kinks, generic: bool = False) -> list[sp.Expr]:
    """Points where ``phi`` is probed: a grid over ``|x| <= KINK_WINDOW`` and each kink with
    its two sides (``+- 1/1000``). ``generic``: the grid shifted by 1/7 and the kinks
    themselves left out, so that no point is special (for properties that hold almost
    everywhere, such as being constant)."""
    shift = sp.Rational(1, 7) if generic else 0
    probes = [sp.Rational(k, 4) + shift for k in range(-4 * KINK_WINDOW, 4 * KINK_WINDOW + 1, 3)]
    sides = (-1, 1) if generic else (-1, 0, 1)
    return probes + [k + sp.Rational(d, 1000) for k in kinks for d in sides]


def _mp(t: sp.Expr) -> mpmath.mpf:
    """A probe point at the working precision (exact rationals stay exact to the last bit)."""
    return mpmath.mpf(t.p) / t.q if t.is_Rational else mpmath.mpf(sp.N(t, mpmath.mp.dps + 10))


@lru_cache(maxsize=256)
def _mpmath_function(expr: sp.Expr) -> Callable:
    """``expr`` (in ``x``) as an mpmath function, made once per expression."""
    return sp.lambdify(x, expr, "mpmath")


def _check_real_finite(expr: sp.Expr, kinks) -> None:
    fn = _mpmath_function(expr)
    probes = _probes(kinks)
    with mpmath.workdps(30):
        for t in probes:
            try:
                val = fn(_mp(t))
            except (ZeroDivisionError, ValueError, OverflowError):
                raise ActivationError(f"phi is undefined at x = {t}") from None
            except TypeError:  # a complex value compared inside Max, Min or Piecewise
                raise ActivationError(f"phi is not real at x = {t}") from None
            if isinstance(val, mpmath.mpc) and val.imag != 0:
                raise ActivationError(f"phi is not real at x = {t}")
            if not mpmath.isfinite(val):
                raise ActivationError(f"phi is not finite at x = {t}")
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_negative:
            if _zeros(node.base):
                raise ActivationError(f"phi has a pole where {node.base} = 0")
        if isinstance(node, sp.log) and _zeros(node.args[0]):
            raise ActivationError(f"phi has a log singularity where {node.args[0]} = 0")
        if isinstance(node, sp.tan) and _zeros(sp.cos(node.args[0])):
            raise ActivationError(f"phi has a pole where cos({node.args[0]}) = 0")
    # The float64 callable must agree: mpmath carries complex intermediates through (e.g.
    # Abs(sqrt(x)) is real in mpmath at x < 0), numpy gives NaN for them.
    import numpy as np

    values = np.asarray(_lambdify_numpy(expr)(np.array([float(t) for t in probes])))
    bad = np.flatnonzero(np.isnan(values) | (np.iscomplexobj(values) and values.imag != 0))
    if bad.size:
        t = probes[bad[0]]
        raise ActivationError(
            f"phi is not real at x = {t} (a sub-expression is complex; restrict its domain"
            " with Max(x, 0) or Piecewise)"
        )


def _numerically_constant(expr: sp.Expr, kinks) -> bool:
    """Constant on ``|x| <= KINK_WINDOW`` (where every batch lives): all probe values equal at
    30 digits. Catches ``Heaviside(2x) - Heaviside(x)`` and the like, which SymPy does not
    reduce to a number."""
    if expr.free_symbols - {x}:
        return False
    fn = _mpmath_function(expr)
    with mpmath.workdps(30):
        first = None
        for t in _probes(kinks, generic=True):
            val = fn(_mp(t))
            if first is None:
                first = val
            elif val != first:
                return False
    return True


def _check_growth(expr: sp.Expr, what: str) -> None:
    """Refuse ``log|phi(x)| / x^2 >= 1/4`` at large ``|x|``: then ``E[phi(g)^2] = oo``.

    The theory needs ``E[g^m phi(g)^2]`` (and the same for ``phi'``) finite for ``m <= 4``,
    which holds iff ``limsup log|phi(x)|/x^2 < 1/4``. At ``|x| = 10^4`` a polynomial factor
    shifts the ratio by ``< 1e-7``, so the test is sharp to about ``1e-6``.
    """
    fn = _mpmath_function(expr)
    with mpmath.workdps(30):
        for t in (mpmath.mpf(10) ** 4, -(mpmath.mpf(10) ** 4)):
            try:
                val = abs(fn(t))
            except (ArithmeticError, ValueError, TypeError):
                # far outside KINK_WINDOW; e.g. 1/softplus(x) underflows to 1/0 at x = -1000
                continue
            if val == 0:
                continue
            if mpmath.log(val) / t**2 >= mpmath.mpf(1) / 4 - mpmath.mpf(10) ** -6:
                raise ActivationError(
                    f"{what} grows like exp(c x^2): its Gaussian moments are infinite"
                )


#: Narrowest transition a smooth nonlinearity may make: tanh(100 x) converges to 6 digits
#: at B = 8, tanh(1000 x) to none on any route; tanh(10^10 x) used to stall every one.
MIN_FEATURE_WIDTH = sp.Rational(1, 1000)
#: Transitions are looked for on |x| <= 8 (the Gaussian weight beyond is below 1e-14).
_SCALE_WINDOW = 8
#: Functions that change by O(1) where their argument crosses [-1, 1].
_UNIT_SCALE = (sp.tanh, sp.erf, sp.erfc, sp.atan, sp.asinh, sp.sin, sp.cos, sp.tan, sp.exp,
               sp.sinh, sp.cosh)


def _unit_scale_arguments(expr: sp.Expr) -> list[tuple[sp.Expr, sp.Expr]]:
    """``(node, u)`` for every ``f(u)`` in ``expr`` with ``f`` of unit scale (and ``a**u``
    as ``exp(u log a)``)."""
    out = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _UNIT_SCALE) and node.args[0].has(x):
            out.append((node, node.args[0]))
        elif isinstance(node, sp.Pow) and node.exp.has(x) and not node.base.has(x):
            out.append((node, node.exp * sp.log(node.base)))
    return out


def _bisect(f, a, b):
    """A zero of ``f`` between ``a`` and ``b`` (``f(a) f(b) < 0``), to the working precision."""
    fa = f(a)
    for _ in range(mpmath.mp.prec):
        m = (a + b) / 2
        fm = f(m)
        if fm == 0 or m in (a, b):
            return m
        if (fm < 0) == (fa < 0):
            a, fa = m, fm
        else:
            b = m
    return (a + b) / 2


def _check_scale(expr: sp.Expr) -> None:
    """Refuse ``phi`` that varies on scales no quadrature resolves.

    ``f(u(x))`` with ``f`` of unit scale (tanh, erf, sin, exp, ...) changes by O(1) where
    ``|u| <= 1``, over a width ``min(1/|u'|, sqrt(2/|u''|))``. That width must be at least
    :data:`MIN_FEATURE_WIDTH` wherever ``|u| <= 1`` on ``|x| <= 8``: checked on a grid and at
    the zeros of ``u`` and ``u'`` the grid brackets (a transition narrower than the grid
    spacing lies at one of them). ``tanh(10^10 x)`` is a step at every probe of the other
    tests, and a transition of width 1e-10 that every route misses for minutes.
    """
    grid = [mpmath.mpf(k) / 8 for k in range(-8 * _SCALE_WINDOW, 8 * _SCALE_WINDOW + 1)]
    with mpmath.workdps(30):
        narrowest = mpmath.mpf(MIN_FEATURE_WIDTH.p) / MIN_FEATURE_WIDTH.q
        for node, u in _unit_scale_arguments(expr):
            du = sp.diff(u, x)
            fns = [_mpmath_function(e) for e in (u, du, sp.diff(du, x))]

            def at(t, fns=fns):
                try:
                    return [mpmath.re(f(t)) for f in fns]
                except (ArithmeticError, ValueError, TypeError):
                    return None  # at a pole or kink of u: the other checks decide

            values = [at(t) for t in grid]
            points = list(zip(grid, values))
            for k in (0, 1):  # zeros of u and of u' between grid points
                for (a, va), (b, vb) in zip(points, points[1:]):
                    if va is not None and vb is not None and va[k] * vb[k] < 0:
                        t = _bisect(lambda s, k=k: (at(s) or [0, 0])[k], a, b)
                        points.append((t, at(t)))
            for t, v in points:
                if v is None or abs(v[0]) > 1:
                    continue
                width = min(1 / abs(v[1]) if v[1] else mpmath.inf,
                            mpmath.sqrt(2 / abs(v[2])) if v[2] else mpmath.inf)
                if width < narrowest:
                    raise ActivationError(
                        f"phi varies on scales below {MIN_FEATURE_WIDTH}: {_short(node)} "
                        f"changes over a width {mpmath.nstr(width, 3)} near x = "
                        f"{mpmath.nstr(t, 6)}, which no quadrature resolves"
                    )


def analyse(name: str, expr: sp.Expr, params=()) -> Activation:
    """Validate ``phi`` and compute the properties of :class:`Activation`, within
    :data:`ANALYSIS_SECONDS` (:func:`~.budget.time_budget`; refused beyond)."""
    expr = sp.sympify(expr)
    with time_budget(ANALYSIS_SECONDS, lambda: _too_slow(expr)):
        return _analyse(name, expr, params)


def _too_slow(expr: sp.Expr) -> ActivationError:
    return ActivationError(
        f"cannot analyse phi = {_short(expr)} within {ANALYSIS_SECONDS} s (its symbolic "
        "steps grow without bound; write it with smaller numbers or fewer terms)"
    )


def _analyse(name: str, expr: sp.Expr, params) -> Activation:
    extra = expr.free_symbols - {x}
    if extra:
        raise ActivationError(
            "unknown symbol(s) " + ", ".join(sorted(map(str, extra))) + " (the variable is x)"
        )
    if not expr.has(x):
        raise ActivationError("phi is constant: batchnorm output would carry no signal")
    if expr.has(sp.I) or expr.has(sp.zoo, sp.nan, sp.oo):
        raise ActivationError("phi must be real and finite")
    kinks = _kinks(expr)
    _check_real_finite(expr, kinks)
    _check_growth(expr, "phi")
    _check_scale(expr)
    derivative, has_delta = _derivative(expr, kinks)
    if _numerically_constant(expr, kinks):
        raise ActivationError("phi is constant: batchnorm output would carry no signal")
    if not has_delta:
        _check_growth(derivative, "phi'")
    exponents = [
        n.exp
        for e in (expr, derivative)
        for n in sp.preorder_traversal(e)
        if isinstance(n, sp.Pow) and not n.exp.is_integer and n.base.has(x)
    ]
    singular = bool(exponents)
    kink_power: int | None = 1
    for e in exponents:
        if not e.is_Rational:
            kink_power = None
            break
        kink_power = int(sp.ilcm(kink_power, e.q))
    try:
        homogeneous = _homogeneity(expr)
    except (ArithmeticError, ValueError, TypeError, NotImplementedError, RecursionError):
        homogeneous = None  # detection is best effort; None means generic numerics
    return Activation(
        name=name,
        expr=expr,
        params=tuple(params),
        kinks=kinks,
        homogeneous=homogeneous,
        derivative=derivative,
        derivative_has_delta=has_delta,
        singular=singular,
        kink_power=kink_power,
    )


def symbolic_activation(name: str) -> Activation:
    """A registered family with its parameters kept as symbols (``alpha``, ``slope``).

    For closed forms in ``B`` and the parameters (``bnmft derive alpha_relu``); the
    numeric checks of :func:`analyse` need numbers and are skipped. Only families whose
    members are positive-homogeneous (alpha_relu, leaky_relu) have such closed forms.
    """
    entry = REGISTRY.get(name)
    if entry is None or not entry.params:
        raise ActivationError(f"'{name}' is not a registered family with parameters")
    syms = [sp.Symbol(pname, positive=True) for pname, _ in entry.params]
    expr = entry.build(*syms)
    with time_budget(ANALYSIS_SECONDS, lambda: _too_slow(expr)):
        hom = _homogeneity(expr)
    if hom is None:
        raise ActivationError(
            f"'{name}' is not positive-homogeneous: no closed forms in its parameters"
        )
    return Activation(
        name=f"{name} (symbolic {', '.join(map(str, syms))})",
        expr=expr,
        params=tuple((str(s_), s_) for s_ in syms),
        kinks=(sp.Integer(0),),
        homogeneous=hom,
        derivative=sp.diff(expr, x),
        derivative_has_delta=False,
        singular=True,
        kink_power=None,
    )


def activation(spec: str, gamma=None, beta=None) -> Activation:
    """Parse an activation spec: a registered name (``"relu"``, ``"leaky_relu:0.2"``,
    ``"alpha_relu:alpha=1.5"``) or an expression in ``x`` (``"tanh(2*x) + 0.1"``).

    ``gamma``/``beta`` (numbers or strings) make it ``phi(gamma x + beta)``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ActivationError("empty activation")
    spec = spec.strip()
    head, _, param_text = spec.partition(":")
    params: dict = {}
    if head in REGISTRY:
        expr, params = _registered(head, param_text or None)
        name = spec
    else:
        if param_text and ":" in spec and head.isidentifier():
            raise ActivationError(f"unknown activation '{head}'")
        try:
            expr = parse_expression(spec, _REGISTRY_FUNCTIONS)
        except ParseError as err:
            raise ActivationError(str(err)) from None
        name = spec
    if gamma is not None or beta is not None:
        g = _parse_number(str(gamma)) if gamma is not None else sp.Integer(1)
        b = _parse_number(str(beta)) if beta is not None else sp.Integer(0)
        if g == 0:
            raise ActivationError("gamma = 0 makes phi constant")
        expr = expr.subs(x, g * x + b)
        name = f"{name} (gamma={g}, beta={b})"
        params = {**params, "gamma": g, "beta": b}
    try:
        return analyse(name, expr, tuple(params.items()))
    except ActivationError:
        raise
    except (ArithmeticError, ValueError, TypeError, NotImplementedError, LookupError,
            RecursionError) as err:
        # SymPy can fail inside solveset/limit/simplify on unusual expressions: refuse with
        # one line rather than a traceback (the chained error keeps the details).
        raise ActivationError(
            f"cannot analyse phi = {expr} (SymPy failed: {type(err).__name__})"
        ) from err
