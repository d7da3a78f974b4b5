"""Expectations over the batch sphere, reduced to one- and two-point moments.

At a BSB1 fixed point the normalised batch ``z = sqrt(B) u`` has ``u`` uniform on the
unit sphere ``S^{B-2}`` of the zero-sum hyperplane (THEORY.md, "the sphere picture").
Every quantity of the theory is an expectation of a polynomial in the coordinates
``u_i``, the activations ``f_i = phi(z_i)`` and their derivatives ``g_i = phi'(z_i)``.

This module reduces such expectations, symbolically in ``B``, to a handful of
*sphere moments* ``E[prod_points z^m phi(z)^p phi'(z)^q]`` over one or two coordinates:

* indices carrying ``f`` or ``g`` are *active* (at most two);
* the remaining (*passive*) coordinates are exchangeable given the active ones, with
  fixed sum ``S1 = -sum(active u)`` and sum of squares ``S2 = 1 - sum(active u^2)``, so
  their moments up to degree two follow from ``S1`` and ``S2`` alone;
* sums over all batch indices become sums over set partitions of the index variables,
  each weighted by the falling factorial ``B (B-1) ... (B-k+1)`` (exchangeability).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import reduce
from operator import mul

import sympy as sp
from sympy.utilities.iterables import multiset_partitions

from .symbols import B

#: ``u[i]``: coordinate i of the unit vector u on the hyperplane sphere.
u = sp.IndexedBase("u", real=True)
#: ``f[i] = phi(z_i)``.
f = sp.IndexedBase("f", real=True)
#: ``g[i] = phi'(z_i)``.
g = sp.IndexedBase("g", real=True)

_FIELDS = {u: 0, f: 1, g: 2}


@dataclass(frozen=True, order=True)
class Point:
    """The factor ``z^m phi(z)^p phi'(z)^q`` carried by one sphere coordinate."""

    m: int
    p: int
    q: int

    def text(self, var: str, arg: str | None = None) -> str:
        """``z^m phi(z)^p dphi(z)^q`` in ``var``; ``arg``: the argument of phi if not ``var``
        (``"rho z1"`` for the moments of ``phi(rho z)``)."""
        arg = var if arg is None else arg
        parts = []
        if self.m:
            parts.append(var if self.m == 1 else f"{var}^{self.m}")
        for name, power in (("phi", self.p), ("dphi", self.q)):
            if power:
                parts.append(f"{name}({arg})" + ("" if power == 1 else f"^{power}"))
        return "*".join(parts) or "1"

    def latex(self, var: str, arg: str | None = None) -> str:
        arg = var if arg is None else arg
        parts = []
        if self.m:
            parts.append(var if self.m == 1 else f"{var}^{{{self.m}}}")
        for name, power in ((r"\phi", self.p), (r"\phi'", self.q)):
            if power:
                base = f"{name}({arg})"
                parts.append(base if power == 1 else rf"{name}({var})^{{{power}}}")
        return " ".join(parts) or "1"


@dataclass(frozen=True)
class SphereMoment:
    """``E_u[ prod_k  z_k^m phi(z_k)^p phi'(z_k)^q ]`` over one or two distinct coordinates.

    ``z = sqrt(B) u`` with ``u`` uniform on the unit sphere of the zero-sum hyperplane.
    One coordinate has density proportional to ``(1 - z^2/(B-1))^((B-4)/2)``; two have the
    density of THEORY.md, Thm 7 (``Z^((B-5)/2)``). Points are kept sorted (exchangeability).
    """

    points: tuple[Point, ...]

    def __post_init__(self):
        if not 1 <= len(self.points) <= 2:
            raise ValueError("a sphere moment involves one or two coordinates")
        object.__setattr__(self, "points", tuple(sorted(self.points)))

    @property
    def arity(self) -> int:
        return len(self.points)

    @property
    def name(self) -> str:
        inner = "*".join(p.text(f"z{k + 1}") for k, p in enumerate(self.points))
        return f"E[{inner}]"

    @property
    def symbol(self) -> sp.Symbol:
        sym = sp.Symbol(self.name, real=True)
        _REGISTRY[sym] = self
        return sym

    def latex(self) -> str:
        inner = r"\,".join(p.latex(f"z_{k + 1}") for k, p in enumerate(self.points))
        return rf"\mathbb{{E}}[{inner}]"

    def uses_derivative(self) -> bool:
        return any(p.q for p in self.points)


_REGISTRY: dict[sp.Symbol, SphereMoment] = {}


def moment_of(symbol: sp.Symbol) -> SphereMoment:
    """The :class:`SphereMoment` a symbol produced by :attr:`SphereMoment.symbol` stands for."""
    return _REGISTRY[symbol]


def moments_in(expr: sp.Expr) -> list[SphereMoment]:
    """Sphere moments an expression depends on, in a deterministic order."""
    found = [_REGISTRY[s] for s in expr.free_symbols if s in _REGISTRY]
    return sorted(found, key=lambda mo: (mo.arity, mo.points))


def moments_of(exprs) -> tuple[SphereMoment, ...]:
    """Sphere moments of several expressions: each expression's :func:`moments_in` in turn,
    first appearance kept (the argument order of the generated moment forms)."""
    seen: dict[SphereMoment, None] = {}
    for expr in exprs:
        for mo in moments_in(expr):
            seen.setdefault(mo, None)
    return tuple(seen)


def moment(*points: tuple[int, int, int]) -> sp.Symbol:
    """Shorthand: ``moment((0, 2, 0))`` is the symbol of ``E[phi(z1)^2]``."""
    return SphereMoment(tuple(Point(*p) for p in points)).symbol


def delta(i: int, j: int) -> int:
    return 1 if i == j else 0


def centering(i: int, j: int) -> sp.Expr:
    """Entry ``G_ij = delta_ij - 1/B`` of the centring projection ``G = I - 11^T/B``."""
    return delta(i, j) - 1 / B


def _passive_moment(exponents: list[int], S1, S2, m) -> sp.Expr:
    """E of a monomial in exchangeable coordinates with fixed sum S1 and sum of squares S2.

    ``m`` coordinates. Only degree <= 2 is determined by (S1, S2); that is all the
    first-order theory (forward Jacobian, backward map) needs.
    """
    exps = sorted(exponents)
    if not exps:
        return sp.Integer(1)
    if exps == [1]:
        return S1 / m
    if exps == [2]:
        return S2 / m
    if exps == [1, 1]:
        return (S1**2 - S2) / (m * (m - 1))
    raise NotImplementedError(f"passive sphere moment of degree {sum(exps)} is not implemented")


# Coefficients are rational functions of sqrt(B): exact and fast field arithmetic.
_ROOT_B = sp.Symbol("sqrtB", positive=True)
_FIELD = sp.QQ.frac_field(_ROOT_B)


def _coeff(expr) -> object:
    return _FIELD.from_sympy(sp.sympify(expr).subs(B, _ROOT_B**2))


class LinearForm:
    """``sum_k  coeff_k(B) * moment_k  (+ constant)``: what an expectation reduces to."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict | None = None):
        self.terms: dict[SphereMoment | None, object] = dict(terms or {})

    def __add__(self, other: LinearForm) -> LinearForm:
        out = dict(self.terms)
        for k, v in other.terms.items():
            out[k] = out.get(k, _FIELD.zero) + v
        return LinearForm({k: v for k, v in out.items() if v})

    def __sub__(self, other: LinearForm) -> LinearForm:
        return self + other.scaled(-1)

    def scaled(self, factor) -> LinearForm:
        fac = _coeff(factor)
        return LinearForm({k: v * fac for k, v in self.terms.items() if v * fac})

    def expr(self) -> sp.Expr:
        """As a SymPy expression, each coefficient a factored rational function of ``B``."""
        out = []
        for key in sorted(self.terms, key=lambda k: (0, ()) if k is None else (k.arity, k.points)):
            coeff = sp.factor(_FIELD.to_sympy(self.terms[key]).subs(_ROOT_B, sp.sqrt(B)))
            out.append(coeff if key is None else coeff * key.symbol)
        return sp.Add(*out)


def _split_term(term: sp.Expr) -> tuple[sp.Expr, dict[int, list[int]]]:
    coeff = sp.Integer(1)
    per_index: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for factor in sp.Mul.make_args(term):
        base, power = factor.as_base_exp()
        if isinstance(base, sp.Indexed) and base.base in _FIELDS:
            (idx,) = base.indices
            per_index[int(idx)][_FIELDS[base.base]] += int(power)
        else:
            coeff *= factor
    return coeff, per_index


def expect(expr: sp.Expr) -> LinearForm:
    """Sphere expectation of a polynomial in ``u[i], f[i], g[i]`` with explicit indices.

    Returns a :class:`LinearForm` in :class:`SphereMoment` with coefficients rational
    in ``B``.
    """
    out: dict[SphereMoment | None, object] = {}

    def add(key, value):
        out[key] = out.get(key, _FIELD.zero) + _coeff(value)

    for term in sp.Add.make_args(sp.expand(expr)):
        coeff, per_index = _split_term(term)
        active = sorted(i for i, (_, p, q) in per_index.items() if p or q)
        if len(active) > 2:
            raise NotImplementedError("sphere moments over more than two activations")
        passive = [m for i, (m, p, q) in per_index.items() if not (p or q) and m]
        ua = sp.symbols(f"ua0:{len(active)}", real=True)
        S1 = -sum(ua, sp.Integer(0))
        S2 = 1 - sum((v**2 for v in ua), sp.Integer(0))
        cond = _passive_moment(passive, S1, S2, B - len(active))
        if not active:
            add(None, coeff * cond)
            continue
        monomial = reduce(mul, (v ** per_index[i][0] for v, i in zip(ua, active)), 1)
        for powers, c in sp.Poly(sp.expand(cond * monomial), *ua).terms():
            pts = tuple(
                Point(mpow, per_index[i][1], per_index[i][2]) for mpow, i in zip(powers, active)
            )
            # u = z / sqrt(B) on every active coordinate
            add(SphereMoment(pts), coeff * c * B ** sp.Rational(-sum(powers), 2))
    return LinearForm({k: v for k, v in out.items() if v})


def expect_sum(fn, nvars: int) -> LinearForm:
    """``E[ sum_{i_1..i_k = 1..B} fn(i_1, ..., i_k) ]`` by exchangeability.

    The sum splits over set partitions of the ``k`` index variables (variables in one
    block equal, blocks distinct); a partition with ``n`` blocks has ``B (B-1)...(B-n+1)``
    index tuples, all with the same expectation as the representative ``1, ..., n``.
    ``fn`` receives concrete integers and may use :func:`centering` / :func:`delta`.
    """
    total = LinearForm()
    for partition in multiset_partitions(list(range(nvars))):
        labels = [0] * nvars
        for block_no, block in enumerate(partition, start=1):
            for var in block:
                labels[var] = block_no
        total = total + expect(fn(*labels)).scaled(sp.ff(B, len(partition)))
    return total
