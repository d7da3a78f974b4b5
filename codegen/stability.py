"""Rewrite closed forms so that float64 evaluation keeps its digits at large batch sizes.

The derived formulas are exact, but printed verbatim some of them lose most of their digits
in float64 when ``B`` is large (the regime the theory is used for):

* ``log(u)`` with ``u -> 1`` (e.g. ``depth_scale = 1/log((B - 2)/(B - 3))`` for linear):
  ``u`` carries an absolute rounding error of ~1e-16, which is a *relative* error of
  ``1e-16/|u - 1| ~ 1e-16 B`` in ``log(u)``. It is printed as ``log1p(u - 1)`` with ``u - 1``
  brought to one fraction whose numerator is expanded, so the cancelling ``O(1)`` parts
  cancel exactly in SymPy instead of in floating point.
* a sum whose terms nearly cancel (e.g. ``2 acos(1/(B - 1))/pi - 1`` for ``abs``): brought to
  one fraction with expanded numerator, and if that is not enough, ``acos(y)`` is first written
  as ``pi/2 - asin(y)`` so the ``pi/2`` cancels symbolically and ``asin(y) ~ y`` keeps full
  relative precision.

Conditioning is measured at ``B = 1e9`` with 60-digit arithmetic: a sum is repaired when
``sum |t_i| / |sum t_i|`` (the factor by which float64 rounding errors are amplified) exceeds
:data:`KAPPA_MAX`. Every rewrite is checked numerically against the original expression.
Only the large-``B`` asymptotics are examined: the formulas are rational in ``B``, square
roots and ``acos(1/(B - 1))``, whose cancellations appear as ``B -> oo``.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .errors import CodegenError

#: Batch size at which conditioning is measured (large, but 1/B is still far above 1e-60).
B_PROBE = sp.Integer(10) ** 9
#: Error amplification above which a sum is rewritten (1e4: float64 would keep < 12 digits).
KAPPA_MAX = 1e4
_DIGITS = 60
#: Points where each rewrite is checked against the original (relative 1e-40).
_CHECK_POINTS = (sp.Integer(5), sp.Integer(1000), B_PROBE)


def _batch_symbol(expr: sp.Expr) -> sp.Symbol | None:
    syms = sorted(expr.free_symbols, key=sp.default_sort_key)
    return syms[0] if syms else None


def _value(expr: sp.Expr, sym: sp.Symbol, at: sp.Expr = B_PROBE) -> sp.Float:
    val = expr.evalf(_DIGITS, subs={sym: at})
    if not val.is_real:
        raise CodegenError(f"{expr} is not real at B = {at}; cannot generate float64 code")
    return val


def _amplification(size: sp.Float, total: sp.Float) -> float:
    """``|size| / |total|``, infinite when ``total`` vanishes (total cancellation)."""
    return float("inf") if total == 0 else float(abs(size) / abs(total))


def kappa(add: sp.Add, sym: sp.Symbol) -> float:
    """Rounding-error amplification of ``add`` at :data:`B_PROBE`: ``sum |t_i| / |sum t_i|``."""
    terms = [_value(t, sym) for t in add.args]
    return _amplification(sp.Add(*(abs(t) for t in terms)), sp.Add(*terms))


def worst_kappa(expr: sp.Expr, sym: sp.Symbol) -> float:
    """Largest :func:`kappa` over the sums in ``expr`` that depend on ``sym``."""
    adds = {n for n in sp.preorder_traversal(expr) if n.is_Add and n.has(sym)}
    return max((kappa(a, sym) for a in adds), default=1.0)


def _non_polynomial_atoms(expr: sp.Expr) -> list[sp.Expr]:
    found = {
        n
        for n in sp.preorder_traversal(expr)
        if isinstance(n, sp.Function) or (n.is_Pow and not n.exp.is_integer)
    }
    return sorted(found, key=sp.default_sort_key)


def _one_fraction(expr: sp.Expr) -> sp.Expr:
    """``expr`` as one fraction with expanded numerator; functions and roots are treated as
    opaque atoms (named symbols, not Dummies, so the result does not depend on creation order)."""
    atoms = _non_polynomial_atoms(expr)
    names = [sp.Symbol(f"_bnmft_atom{i}") for i in range(len(atoms))]
    num, den = sp.fraction(sp.together(expr.xreplace(dict(zip(atoms, names)))))
    back = dict(zip(names, atoms))
    return (sp.expand(num) / den).xreplace(back)


def _acos_as_asin(expr: sp.Expr) -> sp.Expr:
    return expr.replace(sp.acos, lambda y: sp.pi / 2 - sp.asin(y))


def _check_equal(new: sp.Expr, old: sp.Expr, sym: sp.Symbol) -> None:
    for at in _CHECK_POINTS:
        a, b = _value(new, sym, at), _value(old, sym, at)
        if abs(a - b) > sp.Float(10, _DIGITS) ** -40 * max(abs(b), 1):
            raise CodegenError(f"internal error: rewrite of {old} changed its value at B = {at}")


def _repair(add: sp.Expr, sym: sp.Symbol) -> sp.Expr | None:
    """A well-conditioned form of the ill-conditioned ``add``, or None if none is found."""
    for candidate in (_one_fraction(add), _one_fraction(_acos_as_asin(add))):
        if worst_kappa(candidate, sym) <= KAPPA_MAX:
            _check_equal(candidate, add, sym)
            return candidate
    return None


def stabilize(expr: sp.Expr) -> tuple[sp.Expr, tuple[str, ...]]:
    """Return ``expr`` rewritten for float64 evaluation at large ``B``, and notes describing
    each rewrite (for the generated docstrings)."""
    sym = _batch_symbol(expr)
    if sym is None:
        return expr, ()
    notes: list[str] = []
    memo: dict[sp.Expr, sp.Expr] = {}

    def walk(e: sp.Expr) -> sp.Expr:
        if e.is_Atom or not e.has(sym):
            return e
        if e in memo:
            return memo[e]
        new = e.func(*[walk(a) for a in e.args])
        if isinstance(new, sp.log):
            u = new.args[0]
            # log(u) amplifies the rounding error of u by |u| / |log u| ~ |u| / |u - 1|.
            if _amplification(_value(u, sym), _value(u - 1, sym)) > KAPPA_MAX:
                d = _repair(u - 1, sym)
                if d is not None:
                    notes.append(f"log(u) is evaluated as log1p(u - 1) with u - 1 = {d}")
                    new = log1p(d)
                else:
                    notes.append(f"log({u}) loses digits at large B (argument -> 1)")
        elif new.is_Add and kappa(new, sym) > KAPPA_MAX:
            fixed = _repair(new, sym)
            if fixed is not None:
                notes.append(f"the cancelling sum {new} is evaluated as {fixed}")
                new = fixed
            else:
                notes.append(f"the sum {new} cancels at large B; float64 loses digits there")
        memo[e] = new
        return new

    return walk(expr), tuple(notes)
