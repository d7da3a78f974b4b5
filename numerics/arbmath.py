"""High-precision arithmetic for the quadrature inner loops: python-flint ``arb`` balls.

Arb (ball arithmetic in C) evaluates the many thousand integrand points of a 2-D
high-precision quadrature several times faster than mpmath's pure-Python numbers, and
its radius bounds the rounding error. Results leave this module as ``mpmath.mpf``
midpoints; quadrature error is estimated by the callers (two rule levels).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import mpmath
import sympy as sp
from flint import arb, ctx

from bnmft.derive import x


@contextmanager
def precision(bits: int):
    """Set flint's working precision (bits) for the duration of a block."""
    old = ctx.prec
    ctx.prec = bits
    try:
        yield
    finally:
        ctx.prec = old


def from_mpf(value) -> arb:
    """Exact conversion of an mpmath number (or anything mpmath accepts) to an arb."""
    sign, man, exp, _ = mpmath.mpf(value)._mpf_
    if man == 0:
        return arb(0)
    return arb((-1) ** sign * int(man)) * arb(2) ** int(exp)


def to_mpf(value: arb) -> mpmath.mpf:
    """The midpoint of an arb ball as an mpmath number (exact)."""
    man, exp = _as_arb(value).mid().man_exp()
    return mpmath.mpf((int(man), int(exp)))


def _namespace(bits: int) -> dict:
    """mpmath names used by SymPy's mpmath printer, mapped to arb operations."""
    with precision(bits):
        pi, e = arb.pi(), arb.const_e()
    unary = ("sin", "cos", "tan", "tanh", "sinh", "cosh", "atan", "asinh", "exp", "log",
             "sqrt", "erf", "erfc", "asin", "acos", "log1p", "expm1")
    ns = {name: (lambda name: lambda a: getattr(_as_arb(a), name)())(name) for name in unary}
    ns.update({
        "mpf": _as_arb,
        "pi": pi,
        "e": e,
        "fabs": lambda a: abs(_as_arb(a)),
        "sign": lambda a: _as_arb(a).sgn(),
    })
    return ns


def _as_arb(a) -> arb:
    return a if isinstance(a, arb) else arb(a)


@lru_cache(maxsize=256)
def _compiled(expr_key: str, expr: sp.Expr, bits: int):
    return sp.lambdify(x, expr, modules=[_namespace(bits), "mpmath"])


def arb_function(expr: sp.Expr, bits: int):
    """``expr`` (in ``x``) as a function of an arb, with constants at ``bits`` precision."""
    return _compiled(sp.srepr(expr), expr, bits)


@lru_cache(maxsize=256)
def _compiled_pair(expr_key: str, expr: sp.Expr, derivative: sp.Expr, bits: int):
    return sp.lambdify(x, [expr, derivative], modules=[_namespace(bits), "mpmath"], cse=True)


def arb_function_pair(expr: sp.Expr, derivative: sp.Expr, bits: int):
    """``x -> [phi(x), phi'(x)]`` on arbs, common subexpressions evaluated once (``tanh``:
    one ``tanh`` for both)."""
    return _compiled_pair(sp.srepr(expr) + "|" + sp.srepr(derivative), expr, derivative, bits)


@lru_cache(maxsize=64)
def gauss_legendre(n: int, bits: int) -> tuple:
    """Gauss-Legendre rule on [0, 1] as ``(u, 1 - u, w)`` arb triples (roots from Arb)."""
    with precision(bits + 20):
        out = []
        for k in range(n):
            t, w = arb.legendre_p_root(n, k, weight=True)
            out.append(((1 + t) / 2, (1 - t) / 2, w / 2))
    return tuple(out)
