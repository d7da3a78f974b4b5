"""Closed forms in float64 over many batch sizes at once, each value with a rigorous error bound.

A closed form (a SymPy expression in ``B``) is compiled once into a list of vectorised steps.
Every step returns its value and a first-order bound on its absolute error (running error
analysis): the rounding of the step itself plus the errors of its arguments carried through
its derivative. Rounding allowances: the unit roundoff ``u`` for ``+ - * /`` and ``sqrt``
(correctly rounded), 4 ulp for a library function (``acos``, ``pow``, ...); the special
functions of non-integer degrees have implementations here with their own bounds:

* ``Gamma(x + a) / Gamma(x)`` (the gamma functions of ``B`` come in such ratios, which
  overflow when taken apart): the asymptotic series of its logarithm for ``x >= X0``
  (truncation bounded by twice the larger of the next two terms), the correctly rounded
  mpmath value below;
* ``2F1(a, b; c; z)`` for ``|z| <= 1/2``: its power series, with a geometric bound on the tail.

Constant subexpressions are evaluated in mpmath and rounded once. Where an operation leaves
its domain or a bound is not finite, the bound is ``inf``. The same steps run in extended
precision (:data:`EXTENDED`, ``numpy.longdouble`` where it is wider than float64), for the few
values whose float64 bound is too wide to fix their rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import B as B_SYM
from bnmft.derive.special import (HYPER_MAX_TERMS, HYPER_Z_MAX, RATIO_SERIES_X0, NotInRatios,
                                  fraction, gamma_ratios, hyp2f1_ratio_sup,
                                  log_gamma_ratio_series)

#: Factor on every final bound (covers the second-order terms a first-order bound omits).
SAFETY = 2.0
#: ``Gamma(x + a) / Gamma(x)``: asymptotic series from this ``x`` on, mpmath below.
X0 = RATIO_SERIES_X0
#: Terms of a 2F1 series summed at most.
_MAX_TERMS = HYPER_MAX_TERMS


@dataclass(frozen=True)
class Precision:
    """A numpy floating type with its unit roundoff ``u`` and library-function allowance."""

    dtype: type
    u: float
    lib: float

    @classmethod
    def of(cls, dtype) -> Precision:
        eps = float(np.finfo(dtype).eps)
        return cls(dtype, eps / 2, 4 * eps)

    def num(self, q: Fraction):
        """``q`` rounded once to this type."""
        return self.dtype(q.numerator) / self.dtype(q.denominator)


FLOAT64 = Precision.of(np.float64)
#: ``numpy.longdouble`` where it has more mantissa bits than float64 (x86: 64), else None.
EXTENDED = (Precision.of(np.longdouble)
            if np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant else None)
U = FLOAT64.u


class Unsupported(ValueError):
    """The expression has a part with no float64 step here."""


# -- special functions -------------------------------------------------------------------


def _ratio_coefficients(a: Fraction, u: float) -> tuple[tuple[Fraction, ...], float]:
    """Coefficients of ``log(Gamma(x + a) / Gamma(x)) - a log x ~ sum c_n x^-n`` up to where
    the terms at ``X0`` fall below ``u / 64``, and a bound on the omitted rest there
    (:func:`bnmft.derive.special.log_gamma_ratio_series`)."""
    try:
        return log_gamma_ratio_series(a, X0, u / 64)
    except ValueError as err:
        raise Unsupported(str(err)) from None


@lru_cache(maxsize=4096)
def _ratio_mp(x: Fraction, a: Fraction) -> str:
    """``Gamma(x + a) / Gamma(x)`` to 30 digits (a string, read by either precision)."""
    with mpmath.workdps(30):
        xm = mpmath.mpf(x.numerator) / x.denominator
        return mpmath.nstr(mpmath.gammaprod([xm + mpmath.mpf(a.numerator) / a.denominator],
                                            [xm]), 30)


def gamma_ratio(x: np.ndarray, ex: np.ndarray, a: Fraction, prec: Precision = FLOAT64):
    """``Gamma(x + a) / Gamma(x)`` for ``x > 0`` and a bound on its absolute error (``ex``: that
    of ``x``; ``|d log R / dx| ~ |a| / x`` is bounded by ``(|a| + 1) / x``)."""
    u, dt = prec.u, prec.dtype
    value = np.empty_like(x)
    err = np.empty(x.shape)
    big = x >= X0
    if big.any():
        coeffs, rest = _ratio_coefficients(a, u)
        xb = x[big]
        y = dt(1) / xb
        s = np.zeros_like(xb)
        size = np.zeros_like(xb)
        for c in reversed(coeffs):  # Horner: s = c_1 y + c_2 y^2 + ...
            s = (s + prec.num(c)) * y
            size = (size + abs(float(c))) * y
        s_err = (2 * len(coeffs) + 2) * u * size + rest
        if a == Fraction(1, 2):
            power, p_round = np.sqrt(xb), u
        else:
            power, p_round = np.power(xb, prec.num(a)), prec.lib
        v = power * np.exp(s)
        value[big] = v
        rel = p_round + prec.lib + u + s_err + (abs(float(a)) + 1) * ex[big] / xb
        err[big] = np.abs(v) * rel
    small = ~big
    if small.any():
        xs = x[small]
        vs = np.array([dt(_ratio_mp(_exact(t), a)) if t > 0 else math.nan for t in xs],
                      dtype=dt)
        value[small] = vs
        with np.errstate(all="ignore"):
            es = np.abs(vs) * (u + (abs(float(a)) + 1) * ex[small] / xs)
        err[small] = np.where(xs > 0, es, math.inf)
    return value, err


def _ratio_sup(a: Fraction, b: Fraction, c: Fraction) -> np.ndarray:
    """Bounds on the term ratios of the 2F1 series
    (:func:`bnmft.derive.special.hyp2f1_ratio_sup`)."""
    return hyp2f1_ratio_sup(a, b, c, _MAX_TERMS)


def hyp2f1_series(a: Fraction, b: Fraction, c: Fraction, z: np.ndarray, ez: np.ndarray,
                  prec: Precision = FLOAT64):
    """``2F1(a, b; c; z)`` by its power series where ``|z| <= HYPER_Z_MAX`` (bound ``inf``
    elsewhere) and a bound on its absolute error (rounding, the input error ``ez``, tail)."""
    u = prec.u
    ok = np.abs(z) <= HYPER_Z_MAX
    zz = np.where(ok, z, 0)
    term = np.ones_like(zz)
    total = np.ones_like(zz)
    abs_sum = np.ones_like(zz)
    round_err = np.zeros_like(zz)  # sum of |t_k| times the relative rounding error of t_k
    slope = np.zeros_like(zz)  # sum of k |t_k|, for the input error
    tail = np.zeros_like(zz)
    k = 0
    while k < _MAX_TERMS:
        ratio = Fraction(a + k) * (b + k) / ((c + k) * (k + 1))
        if ratio == 0:  # a terminating series: a polynomial, no tail
            tail = np.zeros_like(zz)
            break
        k += 1
        term = term * prec.num(ratio) * zz
        at = np.abs(term)
        total = total + term
        abs_sum = abs_sum + at
        round_err = round_err + at * ((3 * k + 1) * u)
        slope = slope + k * at
        # |t_(k+j+1)| <= |t_(k+j)| rho for every j >= 0: a geometric tail
        rho = np.abs(zz) * _ratio_sup(a, b, c)[k]
        tail = at * rho / np.maximum(1 - rho, 1e-300)
        if k > 2 and np.all(tail <= u / 16 * np.abs(total)):
            break
    with np.errstate(all="ignore"):
        input_err = np.where(zz != 0, slope * ez / np.abs(zz), 0)
    err = (round_err + k * u * abs_sum + tail + input_err).astype(float)
    return total, np.where(ok & (tail <= u * np.abs(total)), err, math.inf)


# -- compilation ---------------------------------------------------------------------------


def _exact(v) -> Fraction:
    """The exact value of a float64 or longdouble."""
    return Fraction(*v.as_integer_ratio())


def _constant(e: sp.Expr) -> tuple:
    """A constant step: per precision, the rounded value and the error of that rounding."""
    if e.is_Rational:
        q = fraction(e)
        vals = [(p, p.num(q)) for p in (FLOAT64, EXTENDED) if p is not None]
        return tuple((v, 0.0 if _exact(v) == q else abs(float(v)) * p.u) for p, v in vals)
    if not e.is_real or not e.is_finite:
        raise Unsupported(f"constant {e} is not a finite real number")
    with mpmath.workdps(40):
        try:
            text = mpmath.nstr(mpmath.mpf(sp.N(e, 40)), 40)
        except (TypeError, ValueError) as err:
            raise Unsupported(f"constant {e}: {err}") from None
    return tuple((p.dtype(text), abs(float(text)) * p.u)
                 for p in (FLOAT64, EXTENDED) if p is not None)


def _gamma_ratios(expr: sp.Expr) -> sp.Expr:
    """Gamma functions of ``B`` as ratios ``rf(x, a)`` (:func:`bnmft.derive.special.gamma_ratios`);
    raises :class:`Unsupported` if one is left over."""
    try:
        return gamma_ratios(expr, B_SYM)
    except NotInRatios as err:
        raise Unsupported(str(err)) from None


def _stabilized(expr: sp.Expr) -> sp.Expr:
    from bnmft.codegen.errors import CodegenError
    from bnmft.codegen.stability import stabilize

    try:
        return stabilize(expr)[0]
    except (CodegenError, TypeError, ValueError):
        return expr


_UNARY = {sp.acos: "acos", sp.asin: "asin", sp.atan: "atan", sp.exp: "exp", sp.log: "log",
          sp.sin: "sin", sp.cos: "cos", sp.Abs: "abs"}


class Kernel:
    """A compiled expression: ``kernel({input: (values, error bounds)}, precision)`` gives
    ``(values, absolute error bounds)`` as arrays of the precision's type."""

    def __init__(self, expr: sp.Expr, inputs: tuple[str, ...] = ("B",)):
        self.inputs = tuple(inputs)
        self.steps: list[tuple] = []
        self._index: dict = {}
        named = {s.name: s for s in expr.free_symbols}
        for n in self.inputs:
            self._index[named.get(n, sp.Symbol(n))] = self._add(("input", n))
        self.result = self._node(expr)
        del self._index

    def _add(self, step: tuple) -> int:
        self.steps.append(step)
        return len(self.steps) - 1

    def _node(self, e: sp.Expr) -> int:
        if e in self._index:
            return self._index[e]
        if not e.free_symbols:
            if e.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                raise Unsupported(f"constant {e} is not finite")
            idx = self._add(("const", _constant(e)))
        elif e.is_Symbol:
            raise Unsupported(f"{e} is not an input")
        elif e.is_Add or e.is_Mul:
            idx = self._add(("add" if e.is_Add else "mul", [self._node(a) for a in e.args]))
        elif e.is_Pow:
            base, p = e.args
            if not p.is_Rational:
                raise Unsupported(f"exponent {p} is not rational")
            idx = self._add(("pow", self._node(base), fraction(p)))
        elif isinstance(e, sp.RisingFactorial) and e.args[1].is_Rational:
            idx = self._add(("rf", self._node(e.args[0]), fraction(e.args[1])))
        elif isinstance(e, sp.hyper) and len(e.ap) == 2 and len(e.bq) == 1 and all(
                p.is_Rational for p in (*e.ap, *e.bq)):
            a, b = (fraction(p) for p in e.ap)
            idx = self._add(("hyp2f1", self._node(e.argument), a, b, fraction(e.bq[0])))
        elif type(e) in _UNARY:
            idx = self._add((_UNARY[type(e)], self._node(e.args[0])))
        else:
            raise Unsupported(f"no float64 step for {type(e).__name__}")
        self._index[e] = idx
        return idx

    def __call__(self, inputs: dict, prec: Precision = FLOAT64):
        shape = np.shape(inputs[self.inputs[0]][0])
        vals: list = []
        errs: list = []
        with np.errstate(all="ignore"):
            for step in self.steps:
                if step[0] == "input":
                    v, e = inputs[step[1]]
                    v = np.asarray(v, dtype=prec.dtype)
                else:
                    v, e = _STEPS[step[0]](step, vals, errs, prec)
                vals.append(v)
                errs.append(e)
            v = np.array(np.broadcast_to(vals[self.result], shape), dtype=prec.dtype)
            e = np.broadcast_to(errs[self.result], shape).astype(float) * SAFETY
            e = np.where(np.isfinite(v) & np.isfinite(e), e, math.inf)
        return v, e


def _s_const(step, vals, errs, prec):
    return step[1][0] if prec is FLOAT64 else step[1][1]


def _s_add(step, vals, errs, prec):
    args = step[1]
    v, e = vals[args[0]], errs[args[0]]
    size = np.abs(v)
    for i in args[1:]:
        v = v + vals[i]
        e = e + errs[i]
        size = size + np.abs(vals[i])
    return v, e + (len(args) - 1) * prec.u * size.astype(float)


def _s_mul(step, vals, errs, prec):
    args = step[1]
    absv = [np.abs(vals[i]).astype(float) for i in args]
    n = len(args)
    # the product of the |values| of all the other factors (prefix times suffix products)
    prefix = [1.0]
    for a in absv[:-1]:
        prefix.append(prefix[-1] * a)
    suffix = [1.0] * n
    for j in range(n - 2, -1, -1):
        suffix[j] = suffix[j + 1] * absv[j + 1]
    v = vals[args[0]]
    for i in args[1:]:
        v = v * vals[i]
    e = (n - 1) * prec.u * np.abs(v).astype(float)
    for j, i in enumerate(args):
        if np.any(errs[i]):
            e = e + errs[i] * prefix[j] * suffix[j]
    return v, e


def _s_pow(step, vals, errs, prec):
    b, eb, p = vals[step[1]], errs[step[1]], step[2]
    ab = np.abs(b).astype(float)
    if p == -1:
        v = 1 / b
        return v, prec.u * np.abs(v).astype(float) + eb / (ab * ab)
    if p == Fraction(1, 2):
        v = np.sqrt(b)
        av = np.abs(v).astype(float)
        return v, prec.u * av + eb / (2 * av)
    if p.denominator == 1 and 0 < p <= 4:
        v = b
        for _ in range(int(p) - 1):
            v = v * b
        rnd = (int(p) - 1) * prec.u
    else:
        pe = prec.num(p)
        v = np.power(b, pe)
        rnd = prec.lib
        if _exact(pe) != p:  # the rounded exponent: |v log b| |p| u
            rnd = rnd + prec.u * abs(float(p)) * np.abs(np.log(ab))
        if p.denominator != 1:
            v = np.where(b >= 0, v, math.nan)
    dv = abs(float(p)) * (np.power(ab, float(p - 1)) if p != 1 else 1.0)  # |d b^p / db|
    return v, rnd * np.abs(v).astype(float) + dv * eb


def _s_rf(step, vals, errs, prec):
    x, ex = np.broadcast_arrays(vals[step[1]], errs[step[1]])
    return gamma_ratio(np.array(x, dtype=prec.dtype), np.array(ex, dtype=float), step[2], prec)


def _s_hyp2f1(step, vals, errs, prec):
    z, ez = np.broadcast_arrays(vals[step[1]], errs[step[1]])
    return hyp2f1_series(step[2], step[3], step[4], np.asarray(z, prec.dtype),
                         np.asarray(ez, float), prec)


def _unary(fn, slope):
    """A library function and a bound on ``|f'(y)|`` (it carries the argument's error)."""

    def step_fn(step, vals, errs, prec):
        y, ey = vals[step[1]], errs[step[1]]
        v = fn(y)
        yf = np.asarray(y, dtype=float)
        return v, prec.lib * np.abs(v).astype(float) + slope(yf, v) * ey

    return step_fn


_STEPS = {
    "const": _s_const, "add": _s_add, "mul": _s_mul, "pow": _s_pow, "rf": _s_rf,
    "hyp2f1": _s_hyp2f1,
    "acos": _unary(np.arccos, lambda y, v: 1 / np.sqrt(1 - y * y)),
    "asin": _unary(np.arcsin, lambda y, v: 1 / np.sqrt(1 - y * y)),
    "atan": _unary(np.arctan, lambda y, v: 1 / (1 + y * y)),
    "exp": _unary(np.exp, lambda y, v: np.abs(v).astype(float)),
    "log": _unary(np.log, lambda y, v: 1 / np.abs(y)),
    "sin": _unary(np.sin, lambda y, v: 1.0),
    "cos": _unary(np.cos, lambda y, v: 1.0),
    "abs": _unary(np.abs, lambda y, v: 1.0),
}  # fmt: skip


def compile_closed(expr: sp.Expr, stabilize: bool = False) -> Kernel:
    """The kernel of a closed form in ``B`` (raises :class:`Unsupported`); ``stabilize``:
    first rewrite the sums that cancel at large ``B`` (as the generated code does,
    :mod:`bnmft.codegen.stability`)."""
    expr = _gamma_ratios(expr)
    return Kernel(_stabilized(expr) if stabilize else expr)


def compile_relation(relation: sp.Expr) -> Kernel:
    """The kernel of a relation in other quantities (``1/log(rate)``); its inputs are the
    names of its symbols, sorted."""
    return Kernel(relation, tuple(sorted(str(s) for s in relation.free_symbols)))


# -- what a value may claim ----------------------------------------------------------------

#: Most digits a float64 value claims, however small its bound (53 bits are ~15.9 digits).
MAX_CLAIM = 15.0


def claimed_digits(v: np.ndarray, e: np.ndarray, most: float = MAX_CLAIM) -> np.ndarray:
    """Significant digits the bound ``e`` guarantees for ``v`` (relative to the smallest
    magnitude within the bound), at most ``most``; 0 where nothing is known."""
    with np.errstate(all="ignore"):
        av = np.abs(v).astype(float)
        low = av - e
        d = np.where(e == 0, most, -np.log10(e / low))
        return np.where((low > 0) & np.isfinite(av), np.clip(d, 0.0, most), 0.0)


def rounding_certain(v: np.ndarray, e: np.ndarray, digits: int) -> np.ndarray:
    """True where every number within ``e`` of ``v`` rounds to the same ``digits``
    significant decimal digits as ``v`` (so that ``v`` printed to ``digits`` digits is the
    exact value correctly rounded)."""
    with np.errstate(all="ignore"):
        av = np.abs(v)
        dt = av.dtype.type
        exp10 = np.floor(np.log10(av.astype(float)))
        lo, hi = 10.0 ** (digits - 1), 10.0**digits
        s = av * np.power(dt(10), (digits - 1 - exp10).astype(av.dtype))
        exp10 = exp10 + (s >= hi) - (s < lo)  # log10 rounded across a power of ten
        scale = np.power(dt(10), (digits - 1 - exp10).astype(av.dtype))
        s = av * scale
        lib = float(np.finfo(dt).eps) * 4
        es = e * scale.astype(float) + (lib + lib) * s.astype(float)  # the scaling's rounding
        frac = (s - np.floor(s)).astype(float)
        sf = s.astype(float)
        # no midpoint between ``digits``-digit decimals within the bound: here, and across
        # the powers of ten around (the nearest midpoints there: lo - 0.05 and hi + 5)
        ok = (np.abs(frac - 0.5) > es) & (sf - es > lo - 0.05) & (sf + es < hi + 5)
        return ok & np.isfinite(sf) & (av > 0)
