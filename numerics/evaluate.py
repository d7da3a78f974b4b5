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
from bnmft.derive.errors import check_batch_sizes
from bnmft.derive.moments import Point, SphereMoment
from bnmft.derive.numpyfn import numpy_function
from bnmft.derive.quantity import Derivation
from bnmft.derive.symbols import B as B_SYM

from . import sphere
from .precision import FLOAT_DIGITS, digits_from_error

INF = math.inf
_DEPTH = ("depth_scale", "max_trainable_depth")
#: Relative rounding error of evaluating a moment form in float64 (a few dozen operations).
_FORM_ROUNDING = 16 * np.finfo(float).eps


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
    if module == "numpy":
        return {name: numpy_function([B_SYM, *syms], deriv.forms[name]) for name in QUANTITIES}
    return {name: sp.lambdify([B_SYM, *syms], deriv.forms[name], module) for name in QUANTITIES}


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
    precision would vanish) and the change is scaled back by ``err / h``. Works on mpmath
    scalars and, elementwise, on float64 arrays (many batch sizes at once).
    """
    base = fn(*args)
    total = 0
    for i, err in enumerate(errors):
        if isinstance(err, np.ndarray):
            if not err.any():
                continue
            h = np.maximum(err, rel_step * np.abs(args[i]))
            scale = np.divide(err, h, out=np.zeros_like(h), where=h > 0)
        else:
            if not err:
                continue
            h = max(err, rel_step * abs(args[i]))
            scale = err / h
        shifted = list(args)
        shifted[i] = args[i] + h
        total = total + abs(fn(*shifted) - base) * scale
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
    """Float64 moments and absolute error estimates, as arrays over ``Bs``, and the route."""
    Barr = np.asarray(Bs, dtype=float)
    if _smooth(act):
        from . import gegenbauer

        values, errors = gegenbauer.moments_gegenbauer(act, moments, Barr)
        return values, errors, "Gegenbauer/Funk-Hecke (float64)"
    values = {mo: np.empty(len(Bs)) for mo in moments}
    errors = {mo: np.empty(len(Bs)) for mo in moments}
    for j, Bv in enumerate(Bs):
        vals, errs = sphere.moments_float_estimated(act, moments, Bv)
        for mo in moments:
            values[mo][j], errors[mo][j] = vals[mo], errs[mo]
    return values, errors, "sphere quadrature (float64)"


def _float_numbers(fns: dict, Bs: list[int], moments, values, errors, route: str) -> dict:
    """``{B: {quantity: Number}}`` from float64 moment arrays, vectorised over ``B``.

    Errors propagate to first order (:func:`_propagate`), plus the float64 rounding of
    evaluating the form itself (:data:`_FORM_ROUNDING` relative), so that exact moments do
    not make a float64 number look exact. The depth scale follows the rate as in
    :func:`depth_numbers`.
    """
    Barr = np.asarray(Bs, dtype=float)
    args = [np.asarray(values[mo], dtype=float) for mo in moments]
    eargs = [np.asarray(errors[mo], dtype=float) for mo in moments]
    table: dict = {}  # name -> (values, digits) arrays over Bs
    with np.errstate(all="ignore"):
        for name in QUANTITIES:
            if name in _DEPTH:
                continue
            fn = fns[name]
            base, total = _propagate(lambda *a, fn=fn: fn(Barr, *a), args, eargs, 1e-8)
            base = np.broadcast_to(np.asarray(base, dtype=float), Barr.shape)
            total = total + _FORM_ROUNDING * np.abs(base)
            scale = np.where(base != 0, np.abs(base), 1.0)
            digits = np.where(total > 0, np.maximum(0.0, -np.log10(total / scale)), math.inf)
            table[name] = (base, digits)
        rate, rdigits = table["gradient_rate"]
        logr = np.log(rate)
        xi = np.where(logr == 0, np.inf, 1 / np.where(logr == 0, 1, logr))
        xi = np.where(np.isinf(rate), 0.0, xi)
        # relative error of xi = that of the rate / |log rate| (see depth_numbers)
        xdigits = np.where(np.isinf(rate) | (logr == 0), rdigits,
                           np.maximum(rdigits + np.log10(np.abs(logr)), 0.0))
        table["depth_scale"] = (xi, xdigits)
        table["max_trainable_depth"] = (16 * xi, xdigits)
    out = {}
    for j, Bv in enumerate(Bs):
        nums = {}
        for name in QUANTITIES:
            value, digits = float(table[name][0][j]), float(table[name][1][j])
            rate_finite = math.isfinite(table["gradient_rate"][0][j])
            if not math.isfinite(value) and name in _DEPTH and rate_finite:
                nums[name] = Number(value, digits, route)  # xi = oo at rate 1
            elif not math.isfinite(value):
                nums[name] = Number(None, 0.0, route, "not finite in float64")
            elif math.isnan(digits):
                nums[name] = Number(None, 0.0, route, "error estimate not finite")
            else:
                nums[name] = Number(value, digits, route)
        if nums["gradient_rate"].value is None:
            nums.update(depth_numbers(nums["gradient_rate"]))
        out[Bv] = nums
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
        return {
            n: Number(None, 0.0, rate.route, rate.note)
            for n in ("depth_scale", "max_trainable_depth")
        }
    r = mpmath.mpf(rate.value)
    if mpmath.isinf(r):
        xi, digits = mpmath.mpf(0), rate.digits
    elif r == 1:
        xi, digits = mpmath.inf, rate.digits
    else:
        xi = 1 / mpmath.log(r)
        gain = float(mpmath.log10(abs(mpmath.log(r))))
        digits = rate.digits + gain if rate.digits != INF else INF
    return {
        "depth_scale": Number(xi, max(digits, 0.0), rate.route, rate.note),
        "max_trainable_depth": Number(16 * xi, max(digits, 0.0), rate.route, rate.note),
    }


def _numbers_from_moments(fns: dict, Bv, moments, vals, errs, route: str) -> dict:
    """Quantities from high-precision moments at one batch size (``Bv`` None: the limit forms,
    which take the moments only). Call inside ``mpmath.workdps``."""
    args = [vals[mo] for mo in moments]
    eargs = [errs[mo] for mo in moments]
    rel_step = mpmath.mpf(10) ** (-mpmath.mp.dps // 2)
    out = {}
    for name in QUANTITIES:
        if name in ("depth_scale", "max_trainable_depth"):
            continue
        fn = fns[name]
        call = (lambda *a, fn=fn: fn(Bv, *a)) if Bv is not None else fn
        try:
            value, err = _propagate(call, args, eargs, rel_step)
        except (ZeroDivisionError, ValueError) as exc:
            out[name] = Number(None, 0.0, route, f"evaluation failed: {exc}")
            continue
        out[name] = Number(value, digits_from_error(value, err), route)
    out.update(depth_numbers(out["gradient_rate"]))
    return out


def numbers_at(deriv: Derivation, Bv: int, values: dict, errors: dict, route: str) -> dict:
    """``{quantity: Number}`` at batch size ``Bv`` from high-precision moments ``{moment:
    value}`` and their absolute errors (any route); call inside ``mpmath.workdps``."""
    fns = _form_functions(_register(deriv), "mpmath")
    return _numbers_from_moments(fns, mpmath.mpf(Bv), list(deriv.moments), values, errors, route)


# -- public entry point ----------------------------------------------------------------------


def _stability(numbers: dict) -> tuple[bool | None, str]:
    lam = [numbers.get(k) for k in ("lambda_L", "lambda_M")]
    if any(n is None or n.value is None for n in lam):
        return None, "forward spectrum not available"
    digits = min(n.digits for n in lam)
    if all(isinstance(n.value, float) for n in lam):
        top = max(n.value for n in lam)
        tolerance = abs(top) * 10.0 ** (-digits)
    else:
        top = max(mpmath.mpf(n.value) for n in lam)
        tolerance = abs(top) * mpmath.mpf(10) ** (-digits)
    margin = abs(top - 1)
    if digits != INF and margin <= tolerance:
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


def _enough(numbers: dict | None, names, digits: int) -> bool:
    """True if ``numbers`` has every one of ``names`` to at least ``digits`` digits."""
    return bool(numbers) and all(
        numbers[n].value is not None and numbers[n].digits >= digits for n in names
    )


def _float_analysis(act: Activation, Bv, numbers: dict, special: dict | None) -> Analysis:
    an = Analysis(act, Bv)
    nums = dict(numbers)
    if special:
        nums.update(special)
    an.numbers = {n: nums[n] for n in QUANTITIES}
    an.bsb1_stable, an.stability_note = _stability(an.numbers)
    return an


def _generated_forms():
    """Moments and numpy functions of the shipped moment forms (:mod:`._moment_forms`,
    generated from :func:`bnmft.derive.bsb1.moment_forms`; a golden test keeps them equal)."""
    from . import _moment_forms as gen

    moments = [SphereMoment(tuple(Point(*pt) for pt in pts)) for pts in gen.MOMENTS]
    return moments, {name: getattr(gen, name) for name in QUANTITIES}


def analyze(act: Activation, batch_sizes, digits: int = 16, deriv: Derivation | None = None):
    """:class:`Analysis` of ``act`` for each batch size (``math.inf`` allowed).

    ``deriv`` (optional) is ``derive(act)``; without it the derivation is made only when a
    route needs it (closed forms, high precision, ``B = inf``): the float64 route evaluates
    the generated moment forms directly. Batch sizes outside the theory raise
    :class:`~bnmft.derive.errors.InvalidInput`.
    """
    batch_sizes = check_batch_sizes(batch_sizes)
    if deriv is None and act.homogeneous is not None:
        deriv = derive(act)  # closed forms
    finite = [int(b) for b in batch_sizes if b != INF]
    results: dict = {}
    special = _gradient_special(act)
    closed = deriv.closed if deriv is not None else {}
    need_moments = [n for n in QUANTITIES if n not in closed]
    if special:
        need_moments = [n for n in need_moments if n not in special]

    float_ok: dict = {}
    if need_moments and finite and digits <= FLOAT_DIGITS:
        if deriv is None:
            fmoments, fns = _generated_forms()
        else:
            fmoments, fns = list(deriv.moments), _form_functions(_register(deriv), "numpy")
        values, errors, route = _float_moments(act, fmoments, finite)
        float_ok = _float_numbers(fns, finite, fmoments, values, errors, route)
    if deriv is None and (INF in batch_sizes or not all(
        _enough(float_ok.get(b), need_moments, digits) for b in finite
    )):
        deriv = derive(act)  # the high-precision and B = inf routes use the derived forms
    if deriv is None:
        return [_float_analysis(act, b, float_ok[b], special) for b in batch_sizes]
    key = _register(deriv)
    moments: list[SphereMoment] = list(deriv.moments)

    for Bv in batch_sizes:
        an = Analysis(act, Bv)
        if Bv == INF and len(deriv.closed) == len(QUANTITIES):
            an.numbers = {n: _closed_number(key, n, Bv, digits) for n in QUANTITIES}
        elif Bv == INF:
            vals, errs = _limit_moments(act, moments, digits)
            with mpmath.workdps(digits + 10):
                nums = _numbers_from_moments(_limit_functions(key), None, moments, vals, errs,
                                             "Gaussian limit (mpmath)")
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
                fl = float_ok.get(Bv)
                if _enough(fl, missing, digits):
                    nums.update({n: fl[n] for n in missing})
                else:
                    try:
                        with mpmath.workdps(digits + 10):
                            vals, errs, route = _mp_moments(act, moments, Bv, digits + 3)
                            mpn = _numbers_from_moments(_form_functions(key, "mpmath"),
                                                        mpmath.mpf(Bv), moments, vals, errs, route)
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
