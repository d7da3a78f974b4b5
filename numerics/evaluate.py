"""Numbers for every quantity of a :class:`~bnmft.derive.quantity.Derivation`, to a requested
number of significant digits.

Route selection (every number carries the route that produced it and the digits it
achieved; a number short of the request is reported as such, never padded):

* closed form: the derived expression in mpmath at two working precisions; the digits on
  which they agree are the digits achieved (``B = inf``: SymPy's limit of the closed form).
  Up to :data:`~.precision.FLOAT_DIGITS` digits, first float64 kernels over all batch sizes
  at once (:mod:`.closed_float`, each value with a rounding-error bound); a value is kept
  where its bound gives the digits asked for and fixes their rounding, mpmath elsewhere;
* otherwise, up to :data:`~.precision.FLOAT_DIGITS` digits: float64 moments (Gegenbauer /
  Funk-Hecke for smooth ``phi``, hyperspherical quadrature split at kinks otherwise) with
  error estimates propagated through the moment forms (the shipped generated module
  :mod:`._moment_forms`, golden-tested against the derivation);
* beyond that, or when the float route falls short: mpmath hyperspherical quadrature;
* ``B = inf``: Gaussian moments (two-point moments factorise) in the limit of the forms;
* a quantity with a ``relation`` (``xi = 1/log(rate)``, ``16 xi``) from the numbers of the
  quantities it names, errors propagated through the relation.
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import (Derivation, DerivedQuantity, Point, SphereMoment, check_batch_sizes,
                          check_defined, numpy_function)
from bnmft.derive import B as B_SYM
from bnmft.derive.activation import check_finite_moments

from bnmft.progress import progress

from . import binterp, sphere
from .gaussian_limit import limit_moments
from .precision import FLOAT_DIGITS, INF, Number, digits_from_error, shortfalls

#: Quadrature error estimates (differences of refinement levels) are estimates, not bounds:
#: a quantity from high-precision moments claims one digit less than its propagated estimate
#: (a kinked phi at 42 digits was seen 0.6 digits short of its estimate).
ESTIMATE_SAFETY = 10

#: Relative rounding error of evaluating a moment form in float64 (a few dozen operations).
_FORM_ROUNDING = 16 * np.finfo(float).eps


class NumericalFailure(ArithmeticError):
    """A route did not reach the requested accuracy (message says which and how far)."""


@dataclass
class Analysis:
    """All quantities of one derivation at one batch size."""

    activation: object
    batch_size: float  # int, or math.inf
    numbers: dict[str, Number] = field(default_factory=dict)
    bsb1_stable: bool | None = None
    stability_note: str = ""

    def shortfalls(self, digits: int) -> list[str]:
        return shortfalls(self.numbers, digits)


# -- error propagation ---------------------------------------------------------------------


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


def _array_digits(base: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Significant digits from float64 values and absolute error bounds (plus the rounding of
    evaluating the form itself, so that exact inputs cannot make a float64 value look exact)."""
    total = total + _FORM_ROUNDING * np.abs(base)
    scale = np.where(base != 0, np.abs(base), 1.0)
    return np.where(total > 0, np.maximum(0.0, -np.log10(total / scale)), math.inf)


# -- compiled forms (cached on the derivation, which is hashable) --------------------------


@lru_cache(maxsize=256)
def _moment_function(q: DerivedQuantity, moments: tuple[SphereMoment, ...], module: str):
    args = [B_SYM, *(mo.symbol for mo in moments)]
    if module == "numpy":
        return numpy_function(args, q.moment_form)
    return sp.lambdify(args, q.moment_form, module)


@lru_cache(maxsize=256)
def _limit_function(q: DerivedQuantity, moments: tuple[SphereMoment, ...]):
    """The moment form in the limit ``B -> oo`` (moments kept symbolic)."""
    lim = sp.limit(q.moment_form, B_SYM, sp.oo)
    return sp.lambdify([mo.symbol for mo in moments], lim, "mpmath")


@lru_cache(maxsize=256)
def _closed_function(q: DerivedQuantity):
    return sp.lambdify(B_SYM, q.expr, "mpmath")


@lru_cache(maxsize=64)
def _relation_function(q: DerivedQuantity, module: str):
    syms = sorted(q.relation.free_symbols, key=str)
    fn = numpy_function(syms, q.relation) if module == "numpy" else sp.lambdify(
        syms, q.relation, "mpmath")
    return [str(s) for s in syms], fn


def _generated_forms():
    """Moments and numpy functions of the shipped moment forms (:mod:`._moment_forms`,
    generated from :func:`bnmft.derive.bsb1.moment_forms`; a golden test keeps them equal)."""
    from . import _moment_forms as gen

    moments = [SphereMoment(tuple(Point(*pt) for pt in pts)) for pts in gen.MOMENTS]
    return moments, gen


def _float_forms(deriv: Derivation, names) -> tuple[list, dict]:
    """Moments and float64 functions ``fn(B, *moments)`` for ``names``: the shipped generated
    module for the BSB1 quantities, the derivation's own moment forms (lean numpy lambdify)
    for any other quantity (e.g. the eigenvalues of a spectrum)."""
    fmoments, gen = _generated_forms()
    if all(hasattr(gen, n) for n in names):
        return fmoments, {n: getattr(gen, n) for n in names}
    return list(deriv.moments), {n: _moment_function(deriv[n], deriv.moments, "numpy")
                                 for n in names}


# -- closed forms ------------------------------------------------------------------------


def _exact_number(expr: sp.Expr, digits: int, route: str) -> Number:
    """A constant SymPy expression, evaluated at two precisions (digits = agreement)."""
    if expr is sp.oo:
        return Number(mpmath.inf, INF, route, "exact")
    if expr.is_Rational:
        # exact only when the denominator is a power of two; else rounded at the working
        # precision (10001/20000 is not a binary fraction)
        dyadic = expr.q & (expr.q - 1) == 0
        with mpmath.workdps(digits + 20):
            return Number(mpmath.mpf(expr.p) / expr.q, INF if dyadic else digits + 19, route,
                          "exact" if dyadic else "rational, rounded")
    with mpmath.workdps(digits + 35):
        v2 = mpmath.mpf(sp.N(expr, digits + 35))
        v1 = mpmath.mpf(sp.N(expr, digits + 15))
        achieved = digits_from_error(v2, abs(v2 - v1)) if v1 != v2 else digits + 15
    return Number(v2, min(achieved, digits + 15), route)


def closed_number(q: DerivedQuantity, Bv, digits: int) -> Number:
    """The closed form of ``q`` at ``B = Bv`` (``inf``: its limit) to ``digits`` digits.

    Evaluated at ``digits + 15`` and ``digits + 35`` working digits; the value kept is the
    more precise one, at its own precision, and claims the digits on which both agree.
    """
    route = f"closed form ({q.provenance.route})" if q.expr is sp.oo else "closed form"
    if Bv == INF:
        return _exact_number(q.limit(), digits, "closed form, B -> oo limit (SymPy)")
    if q.expr.is_number:
        return _exact_number(q.expr, digits, route)
    fn = _closed_function(q)
    with mpmath.workdps(digits + 15):
        v1 = fn(mpmath.mpf(Bv))
    with mpmath.workdps(digits + 35):
        v2 = fn(mpmath.mpf(Bv))
        achieved = digits_from_error(v2, abs(v2 - v1)) if v1 != v2 else digits + 15
    return Number(v2, min(achieved, digits + 15), route)


@lru_cache(maxsize=256)
def _constant_closed(q: DerivedQuantity, Bv, digits: int) -> Number:
    """A closed form that does not depend on ``B`` (``Bv``: any finite batch size, or
    ``inf``, whose route names the limit)."""
    return closed_number(q, Bv, digits)


# -- closed forms in float64, vectorised over B ----------------------------------------------

#: Notes of the numbers the float64 kernels give (their route is "closed form", as in mpmath).
FLOAT64_NOTE = "float64"
EXTENDED_NOTE = "extended precision"
_FAST_NOTES = (FLOAT64_NOTE, EXTENDED_NOTE)
#: Most digits a value from the extended-precision kernels claims (64 bits: ~19.3 digits).
EXTENDED_CLAIM = 18.0


@lru_cache(maxsize=512)
def _closed_kernel(q: DerivedQuantity, stabilize: bool):
    from .closed_float import Unsupported, compile_closed

    try:
        return compile_closed(q.expr, stabilize)
    except Unsupported:
        return None


@lru_cache(maxsize=64)
def _relation_kernel(q: DerivedQuantity):
    from .closed_float import Unsupported, compile_relation

    try:
        return compile_relation(q.relation)
    except Unsupported:
        return None


@dataclass
class _FloatTable:
    """One quantity over the batch sizes: values (``numpy.longdouble``, which holds float64
    and extended values alike), absolute error bounds, digits claimed, ``ok`` where the value
    is certified, ``extended`` where it came from the extended-precision kernels."""

    v: np.ndarray
    e: np.ndarray
    claim: np.ndarray
    ok: np.ndarray
    extended: np.ndarray
    #: ``evaluate(idx, precision)``: ``(values, bounds)`` anew at ``idx`` (set by the maker)
    evaluate: object = None

    def inputs(self, idx, prec):
        """``(values, bounds)`` at ``idx`` in ``prec`` (the rounding to float64 is added)."""
        v = self.v[idx].astype(prec.dtype)
        return v, self.e[idx] + np.abs((v - self.v[idx]).astype(float))

    def numbers(self) -> list:
        """One :class:`Number` per element (None where not certified): a float64, or where
        the value is of extended precision an mpmath number holding all its bits."""
        out = [Number(v, c, "closed form", FLOAT64_NOTE) if ok else None for v, c, ok in
               zip(self.v.astype(float).tolist(), self.claim.tolist(), self.ok.tolist())]
        bits = np.finfo(np.longdouble).nmant + 1
        for j in np.flatnonzero(self.ok & self.extended).tolist():
            m, ex = np.frexp(self.v[j])
            with mpmath.workprec(bits + 8):
                value = mpmath.mpf((int(np.ldexp(m, bits)), int(ex) - bits))
            out[j] = Number(value, float(self.claim[j]), "closed form", EXTENDED_NOTE)
        return out


def _staged(kernels: list, inputs, n: int, digits: int) -> _FloatTable:
    """Run ``kernels`` (makers of kernels of one expression, called only when needed; a maker
    may give None) on what is not yet certified: each in float64, then in extended precision.
    ``inputs(idx, prec)``: the kernel inputs at ``idx``. A value is certified where its bound
    gives ``digits`` digits and fixes their rounding (so that the digits printed are those of
    the exact value, as on the mpmath route)."""
    from .closed_float import EXTENDED, FLOAT64, claimed_digits, rounding_certain

    t = _FloatTable(np.zeros(n, np.longdouble), np.full(n, math.inf), np.zeros(n),
                    np.zeros(n, bool), np.zeros(n, bool))
    for make in kernels:
        for prec, most in ((FLOAT64, None), (EXTENDED, EXTENDED_CLAIM)):
            idx = np.flatnonzero(~t.ok)
            if not idx.size:
                return t
            kernel = make()
            if prec is None or kernel is None:
                continue
            v, e = kernel(inputs(idx, prec), prec)
            claim = claimed_digits(v, e) if most is None else claimed_digits(v, e, most)
            good = (claim >= digits) & rounding_certain(v, e, digits)
            at = idx[good]
            t.v[at], t.e[at], t.claim[at], t.ok[at] = v[good], e[good], claim[good], True
            t.extended[at] = most is not None
    return t


def _float_closed(closed: list, finite: list[int], digits: int) -> dict:
    """``{name: _FloatTable}`` of the closed forms that depend on ``B``, over ``finite``. The
    kernels are compiled as derived and, for what that leaves uncertified, with the sums that
    cancel at large ``B`` rewritten."""
    Barr = np.asarray(finite, dtype=float)

    def inputs(idx, prec):
        return {"B": (Barr[idx].astype(prec.dtype), 0.0)}

    out = {}
    for q in closed:
        if q.expr.is_number or _closed_kernel(q, False) is None:
            continue
        makers = [lambda q=q: _closed_kernel(q, False), lambda q=q: _closed_kernel(q, True)]
        t = out[q.name] = _staged(makers, inputs, len(finite), digits)
        t.evaluate = lambda idx, prec, q=q: _closed_kernel(q, False)(inputs(idx, prec), prec)
    return out


def _float_relations(deriv: Derivation, table: dict, digits: int) -> None:
    """Add to ``table`` the quantities defined through those in it (``xi = 1/log(rate)``),
    vectorised, with the inputs' bounds carried through: in float64 on their float64 values,
    then in extended precision on their extended-precision values (evaluated anew)."""
    from .closed_float import FLOAT64

    for q in deriv.quantities:
        if q.relation is None or not all(n in table for n in q.depends_on):
            continue
        kernel = _relation_kernel(q)
        if kernel is None:
            continue
        n = len(table[q.depends_on[0]].v)

        def inputs(idx, prec, q=q):
            if prec is FLOAT64:
                return {name: table[name].inputs(idx, prec) for name in q.depends_on}
            return {name: table[name].evaluate(idx, prec) for name in q.depends_on}

        t = _staged([lambda k=kernel: k], inputs, n, digits)
        t.evaluate = lambda idx, prec, k=kernel, inputs=inputs: k(inputs(idx, prec), prec)
        table[q.name] = t


def _closed_numbers(deriv, plan, Bv, j, fast: dict, digits: int, memo: dict) -> dict:
    """The closed forms and the relations on them at one batch size (``plan``: from
    :func:`_closed_plan`): from ``fast`` where it holds a certified value (``j``: the index
    there), mpmath otherwise. A relation not certified in ``fast`` is evaluated on the mpmath
    numbers of its inputs, as without ``fast``."""

    def fast_number(name):
        return fast[name][j] if j is not None and name in fast else None

    closed, relations = plan
    nums = {}
    for q, constant in closed:
        if constant:
            key = (q.name, Bv == INF)
            if key not in memo:
                memo[key] = _constant_closed(q, INF if Bv == INF else 8, digits)
            nums[q.name] = memo[key]
        else:
            nums[q.name] = fast_number(q.name) or closed_number(q, Bv, digits)
    for q, names, constant in relations:
        if not all(n in nums for n in names):
            continue
        num = fast_number(q.name)
        if num is None:
            inputs = {n: closed_number(deriv[n], Bv, digits)
                      if nums[n].note in _FAST_NOTES else nums[n]
                      for n in names}
            if constant:  # the same at every finite B
                key = (q.name, Bv == INF)
                if key not in memo:
                    memo[key] = _related_number(q, inputs, digits)
                num = memo[key]
            else:
                num = _related_number(q, inputs, digits)
        nums[q.name] = num
    return nums


def _closed_plan(deriv: Derivation, closed: list):
    """What :func:`_closed_numbers` asks of each quantity, worked out once: the closed forms
    with whether they are constant, the relations with their inputs and whether those are."""
    const = {q.name: q.expr.is_number for q in closed}
    relations = [(q, q.depends_on, all(const.get(n, False) for n in q.depends_on))
                 for q in deriv.quantities if q.relation is not None]
    return [(q, const[q.name]) for q in closed], relations


# -- moment routes -------------------------------------------------------------------------


def _smooth(act) -> bool:
    return not act.kinks and not act.singular


def _float_moments(act, moments, Bs: list[int]):
    """Float64 moments and absolute error estimates, as arrays over ``Bs``, and the route."""
    Barr = np.asarray(Bs, dtype=float)
    if _smooth(act):
        from . import gegenbauer

        values, errors = gegenbauer.moments_gegenbauer(act, moments, Barr)
        return values, errors, "Gegenbauer/Funk-Hecke (float64)"
    values = {mo: np.empty(len(Bs)) for mo in moments}
    errors = {mo: np.empty(len(Bs)) for mo in moments}
    todo = np.ones(len(Bs), dtype=bool)
    route = "sphere quadrature (float64)"
    big = np.flatnonzero(Barr >= binterp.MIN_B)
    if len(big) >= binterp.MIN_COUNT:
        # many batch sizes: the moments are analytic in 1/B, interpolated from a few nodes
        vals, errs, ok = binterp.moments_interpolated(act, moments, Barr[big])
        for mo in moments:
            values[mo][big[ok]], errors[mo][big[ok]] = vals[mo][ok], errs[mo][ok]
        todo[big[ok]] = False
        route = f"sphere quadrature (float64; interpolated in 1/B for B >= {binterp.MIN_B})"
    rest = np.flatnonzero(todo)
    if len(rest):
        vals, errs = sphere.moments_float_many(act, moments, Barr[rest])
        for mo in moments:
            values[mo][rest], errors[mo][rest] = vals[mo], errs[mo]
    return values, errors, route


def _float_related(relations, table: dict, shape) -> None:
    """Add to ``table`` (``{name: (values, digits)}``, float64 over the batch sizes) the
    quantities ``relations`` defines through those in it (``xi = 1/log(rate)``), vectorised:
    the inputs' errors ``|v| 10^-digits`` carried to first order by :func:`_propagate`, the
    claim capped at the inputs' digits + 15 as on the mpmath route (:func:`_related_number`).
    A pole at an input (``log(rate) = 0``) gives a non-finite value, left to that route."""
    for q in relations:
        names, fn = _relation_function(q, "numpy")
        if any(n not in table for n in names):
            continue
        vals = [table[n][0] for n in names]
        digs = [table[n][1] for n in names]
        errs = [np.where(np.isinf(d), 0.0, np.abs(v) * 10.0 ** -np.minimum(d, 400.0))
                for v, d in zip(vals, digs)]
        base, total = _propagate(fn, vals, errs, 1e-8)
        base = np.broadcast_to(np.asarray(base, dtype=float), shape)
        digits = np.minimum(_array_digits(base, total), np.minimum.reduce(digs) + 15)
        table[q.name] = (base, digits)


def _float_table(names, fns, Bs, moments, values, errors, route: str, relations=()) -> dict:
    """``{B: {name: Number}}`` from float64 moment arrays, vectorised over ``B``; with the
    quantities ``relations`` defines through them, vectorised as well."""
    Barr = np.asarray(Bs, dtype=float)
    args = [np.asarray(values[mo], dtype=float) for mo in moments]
    eargs = [np.asarray(errors[mo], dtype=float) for mo in moments]
    table = {}
    with np.errstate(all="ignore"):
        for name in names:
            fn = fns[name]
            base, total = _propagate(lambda *a, fn=fn: fn(Barr, *a), args, eargs, 1e-8)
            base = np.broadcast_to(np.asarray(base, dtype=float), Barr.shape)
            table[name] = (base, _array_digits(base, total))
        _float_related(relations, table, Barr.shape)
    related = [name for name in table if name not in names]
    # as Python floats once (indexing numpy arrays element by element is slow)
    lists = {name: (np.asarray(v, dtype=float).tolist(), np.asarray(d, dtype=float).tolist())
             for name, (v, d) in table.items()}
    out = {}
    for j, Bv in enumerate(Bs):
        nums = {}
        for name in related:  # a pole or an undefined value: left to the mpmath relation
            value, digits = lists[name][0][j], lists[name][1][j]
            if math.isfinite(value) and not math.isnan(digits):
                nums[name] = Number(value, digits, route)
        for name in names:
            value, digits = lists[name][0][j], lists[name][1][j]
            if not math.isfinite(value):
                nums[name] = Number(None, 0.0, route, "not finite in float64")
            elif math.isnan(digits):
                nums[name] = Number(None, 0.0, route, "error estimate not finite")
            else:
                nums[name] = Number(value, digits, route)
        out[Bv] = nums
    return out


def _mp_numbers(fns: dict, Bv, moments, vals, errs, route: str) -> dict:
    """Quantities from high-precision moments at one batch size (``Bv`` None: the limit forms,
    which take the moments only). Call inside ``mpmath.workdps``."""
    args = [vals[mo] for mo in moments]
    eargs = [errs[mo] for mo in moments]
    rel_step = mpmath.mpf(10) ** (-mpmath.mp.dps // 2)
    out = {}
    for name, fn in fns.items():
        call = (lambda *a, fn=fn: fn(Bv, *a)) if Bv is not None else fn
        try:
            value, err = _propagate(call, args, eargs, rel_step)
        except (ZeroDivisionError, ValueError) as exc:
            out[name] = Number(None, 0.0, route, f"evaluation failed: {exc}")
            continue
        out[name] = Number(value, digits_from_error(value, ESTIMATE_SAFETY * err), route)
    return out


def numbers_from_moments(deriv: Derivation, Bv: int, values: dict, errors: dict, route: str,
                         names=None) -> dict[str, Number]:
    """``{quantity: Number}`` at batch size ``Bv`` from high-precision moments ``{moment:
    value}`` and their absolute errors (any route: sphere, Cartesian, Gegenbauer), through the
    derivation's moment forms; dependent quantities follow by their relations. Call inside
    ``mpmath.workdps`` at the precision of the moments."""
    moments = deriv.moments
    primary = [q for q in deriv.quantities if q.relation is None]
    if names is not None:
        primary = [q for q in primary if q.name in names]
    fns = {q.name: _moment_function(q, moments, "mpmath") for q in primary}
    nums = _mp_numbers(fns, mpmath.mpf(Bv), list(moments), values, errors, route)
    return _with_relations(deriv, nums, mpmath.mp.dps)


def _bits(value) -> int:
    """Bits of mantissa a value holds (53 for a float64)."""
    return value._mpf_[3] if isinstance(value, mpmath.mpf) else 53


# -- quantities defined through others -----------------------------------------------------


def _related_number(q: DerivedQuantity, nums: dict, digits: int) -> Number:
    """``q.relation`` evaluated on the numbers it names, errors propagated to first order.

    The working precision covers the request (``digits``) and the inputs' digits with guard
    digits; the claim never exceeds it (an exact input such as the rate 3/2 of a linear phi
    has few mantissa bits, so its bit length says nothing about the precision needed). A pole
    of the relation at an exact input (``1/log(1)``: no gradient explosion) gives an infinite
    value with the digits of the inputs.
    """
    names, fn = _relation_function(q, "mpmath")
    inputs = [nums[n] for n in names]
    route = "; ".join(dict.fromkeys(n.route for n in inputs))
    missing = [n for n in inputs if n.value is None]
    if missing:
        return Number(None, 0.0, route, missing[0].note)
    digits_in = min(n.digits for n in inputs)
    dps = max(digits, min(digits_in, digits + 40)) + 25
    prec = max(int(dps * 3.33) + 16, *(_bits(n.value) + 64 for n in inputs))
    with mpmath.workprec(prec):
        vals = [mpmath.mpf(n.value) for n in inputs]
        errs = [0 if n.digits == INF or mpmath.isinf(v) else abs(v) * mpmath.mpf(10) ** -n.digits
                for n, v in zip(inputs, vals)]
        try:
            value, err = _propagate(fn, vals, errs, mpmath.mpf(2) ** (-prec // 2))
        except ZeroDivisionError:
            return Number(mpmath.inf, digits_in, route, "relation has a pole here")
        digits = digits_from_error(value, err) if mpmath.isfinite(value) else digits_in
        if digits_in != INF:
            digits = min(digits, digits_in + 15)  # first order only: keep the claim modest
        digits = min(digits, dps - 10)  # rounding of the working precision
        value = +value if isinstance(inputs[0].value, mpmath.mpf) else float(value)
    return Number(value, digits, route)


def _with_relations(deriv: Derivation, nums: dict, digits: int) -> dict:
    """Add the quantities defined through others (``digits``: the requested digits)."""
    for q in deriv.quantities:
        if q.relation is not None and q.name not in nums and all(
                n in nums for n in q.depends_on):
            nums[q.name] = _related_number(q, nums, digits)
    return {q.name: nums[q.name] for q in deriv.quantities if q.name in nums}


# -- stability of the BSB1 point -----------------------------------------------------------


#: The forward eigenvalues that decide whether the BSB1 point attracts (lambda_G = 0).
FORWARD_TOP = ("lambda_L", "lambda_M")


def stability(numbers: dict, names=FORWARD_TOP) -> tuple[bool | None, str]:
    """``(bsb1_stable, note)``: stable iff the largest of the forward eigenvalues ``names``
    (those outside the kernel) is below 1; None where that is undecided within the digits
    achieved, or a number is missing."""
    lam = [numbers.get(k) for k in names]
    if any(n is None or n.value is None for n in lam):
        return None, "forward spectrum not available"
    digits = min(n.digits for n in lam)
    if digits != INF and all(type(n.value) is float for n in lam):  # the same test in floats,
        top = max(n.value for n in lam)  # decided there unless within 1e-9 of the threshold
        tolerance, margin = abs(top) * 10.0**-digits, abs(top - 1.0)
        if margin < tolerance * (1 - 1e-9):
            return None, "largest forward eigenvalue equals 1 within accuracy (marginal)"
        if margin > tolerance * (1 + 1e-9):
            return (True, "") if top < 1 else (
                False, f"largest forward eigenvalue {mpmath.nstr(mpmath.mpf(top), 8)} > 1")
    with mpmath.workprec(max(64, *(_bits(n.value) + 10 for n in lam))):
        top = max(mpmath.mpf(n.value) for n in lam)
        tolerance = abs(top) * mpmath.mpf(10) ** (-digits) if digits != INF else 0
        margin = abs(top - 1)
        if margin <= tolerance:
            return None, "largest forward eigenvalue equals 1 within accuracy (marginal)"
        if top < 1:
            return True, ""
        return False, f"largest forward eigenvalue {mpmath.nstr(top, 8)} > 1"


# -- public entry point ----------------------------------------------------------------------


def _enough(numbers: dict | None, names, digits: int) -> bool:
    """True if ``numbers`` has every one of ``names`` to at least ``digits`` digits."""
    return bool(numbers) and all(numbers[n].reaches(digits) for n in names)


def _moment_numbers(deriv: Derivation, names: list[str], finite: list[int], digits: int):
    """``{B: {name: Number}}`` for quantities without closed form at finite batch sizes."""
    act = deriv.activation
    out: dict = {}
    if digits <= FLOAT_DIGITS:
        fmoments, fns = _float_forms(deriv, names)
        values, errors, route = _float_moments(act, fmoments, finite)
        relations = [q for q in deriv.quantities if q.relation is not None]
        out = _float_table(names, fns, finite, fmoments, values, errors, route, relations)
    qs = [deriv[n] for n in names]
    moments = list(deriv.moments)
    for Bv in progress(finite, "sphere quadrature (mpmath)"):
        # the relations the float table derived too (xi = 1/log(rate) loses digits where
        # rate is near 1): short there, the mpmath moments give the rate the digits it needs
        if _enough(out.get(Bv), list(out.get(Bv, names)), digits):
            continue
        route = "sphere quadrature (mpmath)"
        try:
            with mpmath.workdps(digits + 10):
                res = sphere.moments_mp(act, moments, Bv, digits + 3)
                vals = {mo: v for mo, (v, e) in res.items()}
                errs = {mo: e for mo, (v, e) in res.items()}
                fns = {q.name: _moment_function(q, deriv.moments, "mpmath") for q in qs}
                out[Bv] = _mp_numbers(fns, mpmath.mpf(Bv), moments, vals, errs, route)
        except sphere.QuadratureError as err:
            out[Bv] = {n: Number(None, 0.0, route, str(err)) for n in names}
    return out


def _limit_numbers(deriv: Derivation, names: list[str], digits: int) -> dict:
    """Quantities without closed form at ``B = inf``: Gaussian moments in the limit forms."""
    moments = list(deriv.moments)
    fns = {n: _limit_function(deriv[n], deriv.moments) for n in names}
    with mpmath.workdps(digits + 10):  # products of the Gaussian moments keep these digits
        vals, errs = limit_moments(deriv.activation, moments, digits)
        return _mp_numbers(fns, None, moments, vals, errs, "Gaussian limit (mpmath)")


@contextmanager
def _gc_paused():
    """Automatic garbage collection off (restored after): building thousands of small result
    objects otherwise triggers full collections that walk the whole heap (SymPy's objects
    included; about 40 ms for 853 batch sizes). Nothing here depends on collecting cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_gc_paused()  # a context decorator: a fresh pause per call
def analyze(deriv: Derivation, batch_sizes, digits: int = 16,
            float_kernels: bool = True) -> list[Analysis]:
    """:class:`Analysis` of every quantity of ``deriv`` for each batch size (``math.inf``
    allowed), each number to ``digits`` significant digits or marked as falling short.
    Batch sizes outside the theory raise :class:`~bnmft.derive.InvalidInput`.
    ``float_kernels=False``: closed forms in mpmath at every batch size, also at ``digits <=
    FLOAT_DIGITS`` (the same digits printed, more claimed, slower)."""
    batch_sizes = check_batch_sizes(batch_sizes)
    act = deriv.activation
    check_defined(act, batch_sizes)
    if act.homogeneous is None:  # a power-singular kink can make a needed moment infinite
        check_finite_moments(act, {p.q for mo in deriv.moments for p in mo.points})
    primary = [q for q in deriv.quantities if q.relation is None]
    closed = [q for q in primary if q.expr is not None]
    open_ = [q.name for q in primary if q.expr is None]
    finite = [int(b) for b in batch_sizes if b != INF]
    moment_nums = _moment_numbers(deriv, open_, finite, digits) if open_ and finite else {}
    if open_ and INF in batch_sizes:
        moment_nums[INF] = _limit_numbers(deriv, open_, digits)
    fast: dict = {}
    if float_kernels and closed and finite and digits <= FLOAT_DIGITS:
        tables = _float_closed(closed, finite, digits)
        _float_relations(deriv, tables, digits)
        fast = {name: t.numbers() for name, t in tables.items()}
    index = {b: j for j, b in enumerate(finite)}
    plan = _closed_plan(deriv, closed)
    memo: dict = {}
    results = []
    for Bv in progress(batch_sizes, "closed forms" if closed else "quantities"):
        key = INF if Bv == INF else int(Bv)
        nums = _closed_numbers(deriv, plan, Bv, index.get(key), fast, digits, memo)
        nums.update(moment_nums.get(key, {}))
        an = Analysis(act, Bv, _with_relations(deriv, nums, digits))
        an.bsb1_stable, an.stability_note = stability(an.numbers)
        if an.bsb1_stable is None and any(
                n in an.numbers and an.numbers[n].note in _FAST_NOTES for n in FORWARD_TOP):
            # undecided within the digits of float64: decide on the mpmath numbers
            an.bsb1_stable, an.stability_note = stability({
                n: closed_number(deriv[n], Bv, digits) if num.note in _FAST_NOTES else num
                for n, num in ((n, an.numbers.get(n)) for n in FORWARD_TOP) if num})
        results.append(an)
    return results
