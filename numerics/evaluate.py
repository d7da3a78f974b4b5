"""Numbers for every BSB1 quantity, to a requested number of significant digits.

Route selection (every number carries the route that produced it and the digits it
achieved; a number short of the request is reported as such, never padded):

* closed form (positive-homogeneous ``phi``): the derived expression in mpmath at two
  working precisions; the digits on which they agree are the digits achieved;
* otherwise, up to :data:`~.precision.FLOAT_DIGITS` digits: float64 moments (Gegenbauer /
  Funk-Hecke for smooth ``phi``, hyperspherical quadrature split at kinks otherwise) with
  error estimates propagated through the moment forms;
* beyond that, or when the float route falls short: mpmath hyperspherical quadrature;
* ``B = inf``: Gaussian moments (two-point moments factorise) in the limit of the forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive.activation import Activation
from bnmft.derive.bsb1 import QUANTITIES
from bnmft.derive.derivation import derive
from bnmft.derive.moments import SphereMoment
from bnmft.derive.quantity import Derivation
from bnmft.derive.symbols import B as B_SYM

from . import sphere
from .precision import FLOAT_DIGITS, digits_from_error

INF = math.inf


class NumericalFailure(ArithmeticError):
    """A route did not reach the requested accuracy (message says which and how far)."""


@dataclass
class Number:
    """A computed value with the significant digits it is known to (``inf``: exact)."""

    value: object
    digits: float
    route: str
    note: str = ""

    @property
    def is_infinite(self) -> bool:
        return self.value is not None and mpmath.isinf(mpmath.mpf(self.value))


@dataclass
class Analysis:
    """All BSB1 quantities of one activation at one batch size."""

    activation: Activation
    batch_size: float  # int, or math.inf
    numbers: dict[str, Number] = field(default_factory=dict)
    bsb1_stable: bool | None = None
    stability_note: str = ""

    def shortfalls(self, digits: int) -> list[str]:
        out = []
        for name, num in self.numbers.items():
            if num.value is None:
                out.append(f"{name}: {num.note or 'not computed'}")
            elif num.digits < digits:
                out.append(f"{name}: only {num.digits:.1f} digits ({num.route})")
        return out


# -- moment forms as functions -----------------------------------------------------------


@lru_cache(maxsize=64)
def _form_functions(deriv_key: str, module: str):
    deriv = _DERIVATIONS[deriv_key]
    syms = [mo.symbol for mo in deriv.moments]
    return {
        name: sp.lambdify([B_SYM, *syms], deriv.forms[name], module) for name in QUANTITIES
    }


@lru_cache(maxsize=64)
def _limit_functions(deriv_key: str):
    """Forms in the limit ``B -> oo`` (moments kept symbolic; their B = oo values plug in)."""
    deriv = _DERIVATIONS[deriv_key]
    syms = [mo.symbol for mo in deriv.moments]
    out = {}
    for name in QUANTITIES:
        lim = sp.limit(deriv.forms[name], B_SYM, sp.oo)
        out[name] = sp.lambdify(syms, lim, "mpmath")
    return out


_DERIVATIONS: dict[str, Derivation] = {}


def _register(deriv: Derivation) -> str:
    key = deriv.activation.key
    _DERIVATIONS[key] = deriv
    return key


def _propagate(fn, args: list, errors: list, rel_step):
    """Value of ``fn(*args)`` and a first-order error bound from per-argument errors.

    Each argument is shifted by ``h = max(err, rel_step |arg|)`` (a shift below the working
    precision would vanish) and the change is scaled back by ``err / h``.
    """
    base = fn(*args)
    total = 0
    for i, err in enumerate(errors):
        if not err:
            continue
        h = max(err, rel_step * abs(args[i]))
        shifted = list(args)
        shifted[i] = args[i] + h
        total = total + abs(fn(*shifted) - base) * (err / h)
    return base, total


# -- closed forms ---------------------------------------------------------------------


@lru_cache(maxsize=256)
def _closed_function(deriv_key: str, name: str):
    expr = _DERIVATIONS[deriv_key].closed[name].expr
    return sp.lambdify(B_SYM, expr, "mpmath")


def _exact_number(expr: sp.Expr, digits: int, route: str) -> Number:
    """A constant SymPy expression, evaluated at two precisions (digits = agreement)."""
    if expr is sp.oo:
        return Number(mpmath.inf, INF, route, "exact")
    if expr.is_Rational:
        with mpmath.workdps(digits + 10):
            return Number(mpmath.mpf(expr.p) / expr.q, INF, route, "exact")
    with mpmath.workdps(digits + 35):
        v2 = mpmath.mpf(sp.N(expr, digits + 35))
        v1 = mpmath.mpf(sp.N(expr, digits + 15))
        achieved = digits_from_error(v2, abs(v2 - v1)) if v1 != v2 else digits + 15
    return Number(v2, min(achieved, digits + 15), route)


def _closed_number(deriv_key: str, name: str, Bv, digits: int) -> Number:
    q = _DERIVATIONS[deriv_key].closed[name]
    if Bv == INF:
        return _exact_number(q.limit(), digits, "closed form, B -> oo limit (SymPy)")
    if q.expr.is_number:
        return _exact_number(q.expr, digits, "closed form")
    fn = _closed_function(deriv_key, name)
    with mpmath.workdps(digits + 15):
        v1 = fn(mpmath.mpf(Bv))
    with mpmath.workdps(digits + 35):
        v2 = fn(mpmath.mpf(Bv))
        achieved = digits_from_error(v2, abs(v2 - v1)) if v1 != v2 else digits + 15
    return Number(+v2, min(achieved, digits + 15), "closed form")


# -- moment routes -------------------------------------------------------------------------


def _smooth(act: Activation) -> bool:
    return not act.kinks and not act.singular


def _float_moments(act: Activation, moments, Bs: list[int]):
    """Float64 moments and absolute error estimates for each batch size."""
    out = {}
    if _smooth(act):
        try:
            from . import gegenbauer
        except ImportError:  # pragma: no cover - the engine ships with the package
            gegenbauer = None
        if gegenbauer is not None and hasattr(gegenbauer, "moments_gegenbauer"):
            values, errors = gegenbauer.moments_gegenbauer(act, moments, np.asarray(Bs, float))
            for j, Bv in enumerate(Bs):
                out[Bv] = ({mo: float(values[mo][j]) for mo in moments},
                           {mo: float(errors[mo][j]) for mo in moments},
                           "Gegenbauer/Funk-Hecke (float64)")
            return out
    for Bv in Bs:
        vals, errs = sphere.moments_float_estimated(act, moments, Bv)
        out[Bv] = (vals, errs, "sphere quadrature (float64)")
    return out


def _mp_moments(act: Activation, moments, Bv: int, dps: int):
    """Moments to ``dps`` digits by the hyperspherical quadrature (Arb inner loops)."""
    res = sphere.moments_mp(act, moments, Bv, dps)
    return ({mo: v for mo, (v, e) in res.items()}, {mo: e for mo, (v, e) in res.items()},
            "sphere quadrature (mpmath)")


def gaussian_moment(act: Activation, point, dps: int):
    """``E[g^m phi(g)^p phi'(g)^q]`` for ``g ~ N(0, 1)``, split at kinks (B = oo marginal)."""
    phi, dphi = act.mpmath, act.mpmath_derivative
    with mpmath.workdps(dps + 10):
        pts = [-mpmath.inf] + [mpmath.mpf(sp.N(k, dps + 15)) for k in act.kinks] + [mpmath.inf]

        def integrand(g):
            val = g**point.m if point.m else 1
            if point.p:
                val *= phi(g) ** point.p
            if point.q:
                val *= dphi(g) ** point.q
            return val * mpmath.exp(-g * g / 2)

        value, err = mpmath.quad(integrand, pts, error=True, maxdegree=10)
        norm = mpmath.sqrt(2 * mpmath.pi)
        return value / norm, abs(err) / norm + mpmath.mpf(10) ** (-dps - 5) * abs(value)


def _limit_moments(act: Activation, moments, digits: int):
    one: dict = {}
    vals, errs = {}, {}
    for mo in moments:
        parts = []
        for pt in mo.points:
            if pt not in one:
                one[pt] = gaussian_moment(act, pt, digits + 5)
            parts.append(one[pt])
        if len(parts) == 1:
            vals[mo], errs[mo] = parts[0]
        else:
            (a, ea), (b, eb) = parts
            vals[mo], errs[mo] = a * b, abs(a) * eb + abs(b) * ea
    return vals, errs


def depth_numbers(rate: Number) -> dict[str, Number]:
    """``xi = 1/log(rate)`` and ``16 xi`` from a gradient-rate number.

    Relative error of ``xi`` is that of the rate divided by ``|log rate|``: digits are lost
    when the rate approaches 1 (near-linear ``phi``, huge ``B``).
    """
    if rate.value is None:
        return {n: Number(None, 0.0, rate.route, rate.note) for n in ("depth_scale", "max_trainable_depth")}
    r = mpmath.mpf(rate.value)
    if mpmath.isinf(r):
        xi, digits = mpmath.mpf(0), rate.digits
    elif r == 1:
        xi, digits = mpmath.inf, rate.digits
    else:
        xi = 1 / mpmath.log(r)
        digits = rate.digits + float(mpmath.log10(abs(mpmath.log(r)))) if rate.digits != INF else INF
    return {
        "depth_scale": Number(xi, max(digits, 0.0), rate.route, rate.note),
        "max_trainable_depth": Number(16 * xi, max(digits, 0.0), rate.route, rate.note),
    }


def _numbers_from_moments(fns: dict, Bv, moments, vals, errs, route: str, mp: bool) -> dict:
    args = [vals[mo] for mo in moments]
    eargs = [errs[mo] for mo in moments]
    out = {}
    for name in QUANTITIES:
        if name in ("depth_scale", "max_trainable_depth"):
            continue
        fn = fns[name]
        call = (lambda *a, fn=fn: fn(Bv, *a)) if Bv is not None else fn
        rel_step = mpmath.mpf(10) ** (-mpmath.mp.dps // 2) if mp else 1e-8
        try:
            value, err = _propagate(call, args, eargs, rel_step)
        except (ZeroDivisionError, ValueError) as exc:
            out[name] = Number(None, 0.0, route, f"evaluation failed: {exc}")
            continue
        if not mp:
            value, err = float(value), float(err)
            if not math.isfinite(value):
                out[name] = Number(None, 0.0, route, "not finite in float64")
                continue
        out[name] = Number(value, digits_from_error(value, err), route)
    out.update(depth_numbers(out["gradient_rate"]))
    return out


# -- public entry point ----------------------------------------------------------------------


def _stability(numbers: dict) -> tuple[bool | None, str]:
    lam = [numbers.get(k) for k in ("lambda_L", "lambda_M")]
    if any(n is None or n.value is None for n in lam):
        return None, "forward spectrum not available"
    top = max(mpmath.mpf(n.value) for n in lam)
    digits = min(n.digits for n in lam)
    margin = abs(top - 1)
    if digits != INF and margin <= abs(top) * mpmath.mpf(10) ** (-digits):
        return None, "largest forward eigenvalue equals 1 within accuracy (marginal)"
    if top < 1:
        return True, ""
    return False, f"largest forward eigenvalue {mpmath.nstr(top, 8)} > 1"


def _gradient_special(act: Activation) -> dict | None:
    """Infinite gradient rate when phi' carries a Dirac mass (E[phi'(z)^2] = oo)."""
    if not act.derivative_has_delta:
        return None
    note = "phi' has a Dirac mass: E[phi'(z)^2] is infinite"
    return {
        "gradient_rate": Number(mpmath.inf, INF, "exact", note),
        "depth_scale": Number(mpmath.mpf(0), INF, "exact", note),
        "max_trainable_depth": Number(mpmath.mpf(0), INF, "exact", note),
    }


def analyze(act: Activation, batch_sizes, digits: int = 16, deriv: Derivation | None = None):
    """:class:`Analysis` of ``act`` for each batch size (``math.inf`` allowed)."""
    deriv = deriv or derive(act)
    key = _register(deriv)
    moments: list[SphereMoment] = list(deriv.moments)
    finite = [int(b) for b in batch_sizes if b != INF]
    results: dict = {}
    special = _gradient_special(act)
    need_moments = [n for n in QUANTITIES if n not in deriv.closed]
    if special:
        need_moments = [n for n in need_moments if n not in special]

    float_ok: dict = {}
    if need_moments and finite and digits <= FLOAT_DIGITS:
        fns = _form_functions(key, "numpy")
        for Bv, (vals, errs, route) in _float_moments(act, moments, finite).items():
            float_ok[Bv] = _numbers_from_moments(fns, Bv, moments, vals, errs, route, mp=False)

    for Bv in batch_sizes:
        an = Analysis(act, Bv)
        if Bv == INF and len(deriv.closed) == len(QUANTITIES):
            an.numbers = {n: _closed_number(key, n, Bv, digits) for n in QUANTITIES}
        elif Bv == INF:
            vals, errs = _limit_moments(act, moments, digits)
            with mpmath.workdps(digits + 10):
                nums = _numbers_from_moments(_limit_functions(key), None, moments, vals, errs,
                                             "Gaussian limit (mpmath)", mp=True)
            an.numbers = nums
        else:
            nums: dict = {}
            for name in QUANTITIES:
                if name in deriv.closed:
                    nums[name] = _closed_number(key, name, Bv, digits)
            if special:
                nums.update({k: v for k, v in special.items() if k not in nums})
            missing = [n for n in QUANTITIES if n not in nums]
            if missing:
                fl = float_ok.get(Bv, {})
                if fl and all(fl[n].value is not None and fl[n].digits >= digits for n in missing):
                    nums.update({n: fl[n] for n in missing})
                else:
                    try:
                        with mpmath.workdps(digits + 10):
                            vals, errs, route = _mp_moments(act, moments, Bv, digits + 3)
                            mpn = _numbers_from_moments(_form_functions(key, "mpmath"),
                                                        mpmath.mpf(Bv), moments, vals, errs, route,
                                                        mp=True)
                    except sphere.QuadratureError as err:
                        mpn = {n: Number(None, 0.0, "sphere quadrature (mpmath)", str(err))
                               for n in QUANTITIES}
                    nums.update({n: mpn[n] for n in missing})
            an.numbers = {n: nums[n] for n in QUANTITIES}
        if special and Bv == INF:
            an.numbers.update(special)
        an.bsb1_stable, an.stability_note = _stability(an.numbers)
        results[Bv] = an
    return [results[b] for b in batch_sizes]
