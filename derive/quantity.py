"""The central objects that flow from ``derive`` to ``codegen`` and ``numerics``.

A :class:`DerivedQuantity` is one quantity of the theory, always with the same parts: its
definition in sphere moments (``moment_form``, valid for any ``phi``), its closed form where
one exists (``expr``, explicit in ``B`` and the family parameters), its validity domain, its
provenance (paper theorem and derivation route) and the parameters it depends on. A quantity
defined through other quantities (the depth scale ``xi = 1/log(rate)``) also carries that
``relation``, so that numerics evaluates it from their numbers instead of knowing the formula.

A :class:`Derivation` gathers the quantities derived for one activation. Both are frozen and
hashable: a derivation is a value that later stages may cache on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import sympy as sp

from .activation import Activation
from .moments import SphereMoment, moments_in
from .symbols import B, BSB1_DOMAIN, c

#: Symbols of the compact presentation: the arccosine kernel J(c) and its derivative.
J = sp.Symbol("J")
Jp = sp.Symbol("Jp")
_LATEX_NAMES = {J: "J(c)", Jp: "J'(c)", B: "B", c: "c"}

#: Kinds of result a quantity can have. A scalar is one number per parameter point; an
#: eigenvalue is one entry of a :class:`Spectrum` (it also carries a space and a dimension
#: there). Both evaluate through the same moment-form machinery.
KINDS = ("scalar", "eigenvalue")


@dataclass(frozen=True)
class Provenance:
    """Where a formula comes from: the paper's statement and the route that derived it."""

    theorem: str
    route: str

    def __str__(self) -> str:
        return f"{self.theorem}; derived by {self.route}"


@dataclass(frozen=True)
class DerivedQuantity:
    """One derived quantity.

    * ``moment_form``: exact function of ``B`` and sphere moments (any activation);
    * ``expr``: the closed form, explicit in ``B`` (and the family parameters), or ``None``;
    * ``compact``: the closed form in terms of ``J(c)``, ``J'(c)``, ``c = -1/(B-1)`` (what a
      paper prints), or ``None``;
    * ``relation``: for a quantity defined through others, its expression in their symbols
      (``Symbol(name)``); numerics evaluates it from their numbers;
    * ``parameters``: the symbols the quantity depends on besides the moments (``B`` first);
    * ``provenance``: theorem and the route of the presented formula (the closed form's route
      where there is one); ``moment_route``: how the moment form was derived.
    """

    name: str
    moment_form: sp.Expr
    provenance: Provenance
    expr: sp.Expr | None = None
    compact: sp.Expr | None = None
    domain: sp.Basic = BSB1_DOMAIN
    parameters: tuple[sp.Symbol, ...] = (B,)
    relation: sp.Expr | None = None
    moment_route: str = ""
    kind: str = "scalar"

    @property
    def has_closed_form(self) -> bool:
        return self.expr is not None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Names of the quantities ``relation`` is written in (empty for a primary one)."""
        if self.relation is None:
            return ()
        if "_depends_on" not in self.__dict__:  # cached: asked for at every batch size
            names = tuple(sorted(str(s) for s in self.relation.free_symbols))
            object.__setattr__(self, "_depends_on", names)
        return self.__dict__["_depends_on"]

    @property
    def moments(self) -> list[SphereMoment]:
        return moments_in(self.moment_form)

    @property
    def symbols(self) -> tuple[sp.Symbol, ...]:
        return self.parameters

    def sympy_str(self) -> str:
        return str(self.expr if self.expr is not None else self.moment_form)

    def latex(self, compact: bool = False) -> str:
        """The closed form (``compact``: in ``J(c)``, ``J'(c)``); else the moment form."""
        if self.expr is None:
            return self.moment_latex()
        if compact and self.compact is not None:
            return sp.latex(self.compact, symbol_names=_LATEX_NAMES)
        return sp.latex(self.expr)

    def moment_latex(self) -> str:
        names = {mo.symbol: mo.latex() for mo in moments_in(self.moment_form)}
        return sp.latex(self.moment_form, symbol_names=names)

    @property
    def is_finite(self) -> bool:
        return self.expr is not None and self.expr.is_finite is not False

    def limit(self) -> sp.Expr:
        """``lim_{B -> oo}`` of the closed form, by SymPy (cached)."""
        if self.expr is None:
            raise ValueError(f"{self.name} has no closed form")
        if "_limit" not in self.__dict__:
            value = sp.limit(self.expr, B, sp.oo)
            object.__setattr__(self, "_limit", sp.simplify(value))
        return self.__dict__["_limit"]


@dataclass(frozen=True)
class Derivation:
    """Every quantity derived for one activation (frozen, hashable).

    ``quantities`` in the order of :data:`bnmft.derive.bsb1.QUANTITIES` (a spectrum's
    derivation: its eigenvalues, forward then backward); ``moments`` the sphere
    moments their forms need (the argument order of generated moment-form modules);
    ``definitions`` the auxiliary definitions of the compact forms (``J(c)``, ...);
    ``dual_kernel`` ``E[phi(u) phi(v)]`` for unit Gaussians of correlation ``c``
    (positive-homogeneous phi only).
    """

    activation: Activation
    quantities: tuple[DerivedQuantity, ...]
    moments: tuple[SphereMoment, ...] = ()
    definitions: tuple[tuple[str, sp.Expr], ...] = ()
    dual_kernel: sp.Expr | None = None
    _index: Mapping | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self):
        index = {q.name: q for q in self.quantities}
        if len(index) != len(self.quantities):
            raise ValueError("duplicate quantity names")
        object.__setattr__(self, "_index", MappingProxyType(index))

    def __getitem__(self, name: str) -> DerivedQuantity:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.quantities)

    @property
    def closed(self) -> Mapping[str, DerivedQuantity]:
        """The quantities that have a closed form (read-only view)."""
        return MappingProxyType({q.name: q for q in self.quantities if q.expr is not None})

    @property
    def forms(self) -> Mapping[str, sp.Expr]:
        """``name -> moment form`` (read-only view)."""
        return MappingProxyType({q.name: q.moment_form for q in self.quantities})

    @property
    def has_closed_forms(self) -> bool:
        return any(q.expr is not None for q in self.quantities)

    @property
    def all_closed(self) -> bool:
        return all(q.expr is not None for q in self.quantities)


@dataclass(frozen=True)
class SpectralEntry:
    """One eigenvalue of a linear operator at the BSB1 point: the ``direction`` of the map
    (``"forward"``, ``"backward"``), the invariant ``space`` (``"kernel"``, ``"G"``, ``"L"``,
    ``"M"``), its dimension ``dim`` (in ``B``) and the eigenvalue as a
    :class:`DerivedQuantity` of kind ``"eigenvalue"``. ``note`` is non-empty when the
    eigenvalue cannot be evaluated for this activation (and says why)."""

    direction: str
    space: str
    dim: sp.Expr
    eigenvalue: DerivedQuantity
    note: str = ""

    @property
    def name(self) -> str:
        return self.eigenvalue.name


@dataclass(frozen=True)
class Spectrum:
    """The forward and backward spectra derived for one activation (frozen, hashable).

    ``entries`` in the order forward then backward, each direction in the order kernel, G,
    L, M; ``derivation`` holds the evaluable eigenvalues as an ordinary :class:`Derivation`
    (their moment forms, closed forms, moments), so that numerics evaluates them exactly as
    it evaluates the scalar quantities.
    """

    activation: Activation
    entries: tuple[SpectralEntry, ...]
    derivation: Derivation

    def direction(self, name: str) -> tuple[SpectralEntry, ...]:
        return tuple(e for e in self.entries if e.direction == name)

    @property
    def forward(self) -> tuple[SpectralEntry, ...]:
        return self.direction("forward")

    @property
    def backward(self) -> tuple[SpectralEntry, ...]:
        return self.direction("backward")

    def __getitem__(self, name: str) -> SpectralEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)
