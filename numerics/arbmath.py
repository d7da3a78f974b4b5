"""High-precision arithmetic for the quadrature inner loops: python-flint ``arb`` balls.

Arb (ball arithmetic in C) evaluates the many thousand integrand points of a 2-D
high-precision quadrature several times faster than mpmath's pure-Python numbers, and
its radius bounds the rounding error. Results leave this module as ``mpmath.mpf``
midpoints; quadrature error is estimated by the callers (two rule levels).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp
from flint import arb, ctx

from bnmft.derive import x

from .arbcode import arb_source_function
from .arbprinter import NotEvaluable


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
    try:
        values = arb_source_function([expr], x, bits)
    except NotEvaluable:
        return sp.lambdify(x, expr, modules=[_namespace(bits), "mpmath"])
    return lambda z: values(z)[0]


def arb_function(expr: sp.Expr, bits: int):
    """``expr`` (in ``x``) as a function of an arb, with constants at ``bits`` precision:
    direct ball operations (:mod:`.arbcode`), or lambdify where a node has no translation."""
    return _compiled(sp.srepr(expr), expr, bits)


@lru_cache(maxsize=256)
def _compiled_pair(expr_key: str, expr: sp.Expr, derivative: sp.Expr, bits: int):
    try:
        return arb_source_function([expr, derivative], x, bits, "pair")
    except NotEvaluable:
        return sp.lambdify(x, [expr, derivative], modules=[_namespace(bits), "mpmath"],
                           cse=True)


def arb_function_pair(expr: sp.Expr, derivative: sp.Expr, bits: int):
    """``x -> [phi(x), phi'(x)]`` on arbs, common subexpressions evaluated once (``tanh``:
    one ``tanh`` for both), as :func:`arb_function`."""
    return _compiled_pair(sp.srepr(expr) + "|" + sp.srepr(derivative), expr, derivative, bits)


@lru_cache(maxsize=256)
def _parity(expr_key: str, expr: sp.Expr) -> int:
    flipped = expr.subs(x, -x)
    if flipped + expr == 0:
        return -1
    if flipped - expr == 0:
        return 1
    return 0


def parity(expr: sp.Expr) -> int:
    """``-1`` if ``expr(-x) = -expr(x)`` (odd), ``1`` if ``expr(-x) = expr(x)`` (even), else
    0, as SymPy's automatic simplification shows it (``tanh``, ``erf``, ``sin``: odd); an
    undetected parity only costs the halving it would allow."""
    return _parity(sp.srepr(expr), expr)


def point_evaluator(points):
    """``(z, f, g) -> [z^m f^p g^q for (m, p, q) in points]`` as one generated function:
    powers formed once by multiplication (as :func:`.sphere._ipow`: also for balls
    containing 0) and shared between points.

    The source is built from the points' small integer exponents only (no user text)."""
    points = list(points)
    lines, have = [], set()

    def power(name, n):
        if n == 1:
            return name
        key = f"{name}{n}"
        if key not in have:
            lines.append(f"    {key} = {power(name, n - 1)} * {name}")
            have.add(key)
        return key

    terms = []
    for pt in points:
        factors = [power(sym, n) for sym, n in (("z", pt.m), ("f", pt.p), ("g", pt.q)) if n]
        terms.append(" * ".join(factors) if factors else "one")
    src = "def values(z, f, g):\n" + "\n".join(lines + [f"    return [{', '.join(terms)}]"])
    namespace = {"one": arb(1)}
    exec(compile(src, "<point_evaluator>", "exec"), namespace)  # noqa: S102
    return namespace["values"]


def _jacobi_eigenvalues(off):
    """Eigenvalues (ascending, float64) of the symmetric tridiagonal matrix with zero diagonal
    and off-diagonal ``off``, all inside ``(-1, 1)`` (a Jacobi matrix on ``[-1, 1]``): bisection
    of every eigenvalue at once on the Sturm count ``#{i: q_i < 0}``, ``q_1 = -x``,
    ``q_i = -x - off_(i-1)^2 / q_(i-1)`` (the number of eigenvalues below ``x``)."""
    n = len(off) + 1
    sq = np.asarray(off, dtype=float) ** 2
    # hi = 1 + 2^-7: no midpoint is ever 0 (then q_1 = -x = 0); later q_i = 0 needs an
    # exact cancellation (a division by zero gives +-inf, the count at x -+ 0)
    lo, hi = np.full(n, -1.0), np.full(n, 1.0 + 2.0**-7)
    index = np.arange(n)
    # to 2^-8 / n^2: the nodes are at least ~1/n^2 apart (at the ends), so each guess is
    # well inside its root's basin and the float64 Newton steps of the caller take it to
    # rounding level
    steps = max(20, 2 * int(n).bit_length() + 10)
    with np.errstate(divide="ignore"):
        for _ in range(steps):
            x = (lo + hi) / 2
            q = -x
            count = (q < 0).astype(int)
            for b in sq:
                q = -x - b / q
                count += q < 0
            below = count > index  # the (index+1)-th eigenvalue lies below x
            hi = np.where(below, x, hi)
            lo = np.where(below, lo, x)
    return (lo + hi) / 2


def scaled_columns(rows) -> tuple:
    """Arb entries ``rows[k][j]`` as float64 ``v 2^-e_j`` with one exponent per column (the
    largest midpoint's), so that any column fits float64's range: ``(floats, [e_j])``
    (``e_j = 0`` when every entry is well inside the range as it is)."""
    ncols = len(rows[0]) if rows else 0
    direct = np.array([[float(v) for v in row] for row in rows]).reshape(len(rows), ncols)
    magnitudes = np.abs(direct[direct != 0])
    if np.all(np.isfinite(direct)) and (not magnitudes.size or (
            magnitudes.max() < 1e280 and magnitudes.min() > 1e-280)):
        return direct, [0] * ncols
    mids = [[v.mid().man_exp() for v in row] for row in rows]
    exps = []
    for j in range(ncols):
        tops = [int(e) + int(man).bit_length() for man, e in (row[j] for row in mids)
                if int(man)]
        exps.append(max(tops) if tops else 0)
    out = np.array([[math.ldexp(float(int(man)), int(e) - exps[j]) if int(man) else 0.0
                     for j, (man, e) in enumerate(row)] for row in mids])
    return out.reshape(len(rows), ncols), exps


@lru_cache(maxsize=64)
def gauss_gegenbauer(n: int, two_lam: int, bits: int) -> tuple:
    """``n``-point Gauss rule for the weight ``(1 - x^2)^(lam - 1/2)`` on ``[-1, 1]``,
    ``lam = two_lam / 2 > 0``, as ``(x, w, (1 - x^2)^(lam - 1/2))`` arb triples.

    The nodes are the roots of the Gegenbauer polynomial ``C_n^lam``, polished by Newton's
    method from float64 roots (eigenvalues of the Jacobi matrix, Golub-Welsch, with the
    monic recurrence coefficients ``beta_k = k (k + 2lam - 1) / (4 (k + lam)(k + lam - 1))``). ``C_n^lam`` comes from the three-term recurrence
    ``(k+1) C_{k+1} = 2(k+lam) x C_k - (k+2lam-1) C_{k-1}`` (stable forward on [-1, 1]),
    run for all nodes at once in fixed point (Python integers scaled by ``2^(bits+64)``;
    Arb's hypergeometric ``gegenbauer_c`` loses all digits near the ends for large ``n``),
    and ``(1 - x^2) C_n' = (n + 2lam - 1) C_{n-1} - n x C_n`` (at the nodes, from the last
    Newton iterate by one Taylor step). The Christoffel weights are
    ``w_i = pi 2^(2-2lam) Gamma(n+2lam) / (n! Gamma(lam)^2 (1 - x_i^2) C_n'(x_i)^2)``
    (Szego, Orthogonal Polynomials, (15.3.2) with the norms (4.7.16)).
    """
    F = bits + 64  # noqa: N806 (fractional bits)
    one = 1 << F
    k = np.arange(1, n, dtype=float)
    lam_f = two_lam / 2
    off = np.sqrt(k * (k + two_lam - 1) / (4 * (k + lam_f) * (k + lam_f - 1)))
    # bisection on Sturm counts (O(n^2), all eigenvalues at once): a dense eigvalsh is O(n^3)
    # and, with threaded BLAS on a busy machine, took up to a second at n = 240
    guess = _jacobi_eigenvalues(off) if n > 1 else np.zeros(1)

    def values(X):
        prev = np.array([one] * n, dtype=object)
        cur = (two_lam * X) if n > 0 else prev
        for k in range(1, n):
            nxt = ((2 * k + two_lam) * ((X * cur) >> F) - (k + two_lam - 1) * prev) // (k + 1)
            prev, cur = cur, nxt
        # (1 - x^2) C_n'
        return cur, (n + two_lam - 1) * prev - n * ((X * cur) >> F)

    def values_float(x):
        prev, cur = np.ones_like(x), two_lam * x
        for k in range(1, n):
            prev, cur = cur, ((2 * k + two_lam) * x * cur - (k + two_lam - 1) * prev) / (k + 1)
        return cur, (n + two_lam - 1) * prev - n * x * cur

    for _ in range(3):  # Newton in float64 first (cheap), to ~1e-16
        cn, dn = values_float(guess)
        guess = guess - cn * (1 - guess * guess) / dn
    X = np.array([int(mpmath.mpf(float(g)) * 2**F) for g in guess], dtype=object)
    # quadratic convergence: once the step s has n^2 s^2 < 2^-(bits+8), the updated node
    # is accurate to the working precision
    for _ in range(8):
        cn, dn = values(X)
        one_minus = one - ((X * X) >> F)
        step = np.array([(c * om) // d if d else 0 for c, om, d in zip(cn, one_minus, dn)],
                        dtype=object)
        previous, X = X, X - step
        biggest = max(abs(int(s)) for s in step)
        if (n * biggest) ** 2 < 1 << (2 * F - bits - 8):
            break
    else:
        raise ArithmeticError(f"Gauss-Gegenbauer nodes (n={n}) did not converge")
    with precision(bits + 30):
        lam = arb(two_lam) / 2
        const = (arb.pi() * arb(2) ** (2 - 2 * lam) * (n + 2 * lam).gamma()
                 / (arb(n + 1).gamma() * lam.gamma() ** 2))
        scale = arb(2) ** -F
        out = []
        for x0, c0, d0, si in zip(previous, cn, dn, step):
            # D = (1 - x^2) C_n' at the new node from its value at the last iterate, by
            # D' = (2 lam - 1) x D/(1 - x^2) - n (n + 2 lam) C (the Gegenbauer equation):
            # the error is O(n^2 s^2), below 2^-(bits+8) by the stopping rule
            t0, c, d, s = (arb(int(v)) * scale for v in (x0, c0, d0, si))
            slope = (2 * lam - 1) * t0 * d / (1 - t0 * t0) - n * (n + 2 * lam) * c
            t = t0 - s
            om = 1 - t * t
            deriv = (d - slope * s) / om  # C_n'(x_i)
            out.append((t, const / (om * deriv * deriv), om ** (lam - arb(1) / 2)))
        return _symmetric_rule(out)


def _symmetric_rule(rule) -> tuple:
    """A rule for an even weight on ``[-1, 1]`` made exactly symmetric: the nodes in increasing
    order, those of the upper half the negated lower ones (same weights and weight values)
    and, for odd ``n``, the middle node ``x = 0`` (a root of the odd ``C_n``) with weight
    value 1. The nodes of the true rule are symmetric; this keeps the balls so (the inner
    sums then need ``phi`` at half the nodes, :func:`.inner.pair_values`). Called at the
    rule's own precision, so that the negation is exact."""
    rule = sorted(rule, key=lambda entry: float(entry[0]))
    n = len(rule)
    lower = rule[:n // 2]
    middle = [(arb(0), rule[n // 2][1], arb(1))] if n % 2 else []
    return tuple(lower + middle + [(-t, w, wp) for t, w, wp in reversed(lower)])


@lru_cache(maxsize=64)
def gauss_legendre(n: int, bits: int) -> tuple:
    """Gauss-Legendre rule on [0, 1] as ``(u, 1 - u, w)`` arb triples (roots from Arb)."""
    with precision(bits + 20):
        out = []
        for k in range(n):
            t, w = arb.legendre_p_root(n, k, weight=True)
            out.append(((1 + t) / 2, (1 - t) / 2, w / 2))
    return tuple(out)
