"""The central objects that flow from ``derive`` to ``codegen`` and ``numerics``.

A :class:`DerivedQuantity` is one closed form: the SymPy expression (explicit in ``B``),
its definition in sphere moments, its validity domain and its provenance (paper theorem
and derivation route). A :class:`Derivation` gathers everything derived for one
activation: the moment forms valid for any ``phi`` and, where they exist, the closed forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .activation import Activation
from .moments import SphereMoment, moments_in
from .symbols import B, BSB1_DOMAIN, c

#: Symbols of the compact presentation: the arccosine kernel J(c) and its derivative.
J = sp.Symbol("J")
Jp = sp.Symbol("Jp")
_LATEX_NAMES = {J: "J(c)", Jp: "J'(c)", B: "B", c: "c"}


@dataclass(frozen=True)
class Provenance:
    """Where a formula comes from: the paper's statement and the route that derived it."""

    theorem: str
    route: str

    def __str__(self) -> str:
        return f"{self.theorem}; derived by {self.route}"


@dataclass(frozen=True)
class DerivedQuantity:
    """One derived closed form.

    ``expr`` is explicit in ``B`` (what codegen prints), ``compact`` the same formula in
    terms of ``J(c)``, ``J'(c)`` with ``c = -1/(B-1)`` (what a paper prints), and
    ``moment_form`` its definition in sphere moments (valid for any activation).
    """

    name: str
    expr: sp.Expr
    moment_form: sp.Expr
    provenance: Provenance
    domain: sp.Basic = BSB1_DOMAIN
    compact: sp.Expr | None = None
    symbols: tuple[sp.Symbol, ...] = (B,)

    def sympy_str(self) -> str:
        return str(self.expr)

    def latex(self, compact: bool = False) -> str:
        if compact and self.compact is not None:
            return sp.latex(self.compact, symbol_names=_LATEX_NAMES)
        return sp.latex(self.expr)

    def moment_latex(self) -> str:
        names = {mo.symbol: mo.latex() for mo in moments_in(self.moment_form)}
        return sp.latex(self.moment_form, symbol_names=names)

    @property
    def is_finite(self) -> bool:
        return self.expr.is_finite is not False

    def limit(self) -> sp.Expr:
        """``lim_{B -> oo}`` of the closed form, by SymPy (cached)."""
        if "_limit" not in self.__dict__:
            value = sp.limit(self.expr, B, sp.oo)
            object.__setattr__(self, "_limit", sp.simplify(value))
        return self.__dict__["_limit"]


@dataclass
class Derivation:
    """Everything derived for one activation.

    ``forms`` holds every BSB1 quantity as a function of sphere moments (any ``phi``);
    ``closed`` the quantities that have a closed form for this ``phi`` (empty for most
    non-homogeneous activations); ``moments`` the sphere moments the forms need;
    ``definitions`` the auxiliary definitions used by the compact forms.
    """

    activation: Activation
    forms: dict[str, sp.Expr]
    closed: dict[str, DerivedQuantity] = field(default_factory=dict)
    moments: tuple[SphereMoment, ...] = ()
    definitions: dict[str, sp.Expr] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    #: ``E[phi(u) phi(v)]`` for unit Gaussians with correlation ``c`` (homogeneous phi only).
    dual_kernel: sp.Expr | None = None

    @property
    def has_closed_forms(self) -> bool:
        return bool(self.closed)
