"""What codegen consumes: one :class:`FunctionSpec` per generated function, one
:class:`ModuleSpec` per generated module.

Every generated module (closed forms for one activation, the shipped moment forms) is first
described by these frozen records and then goes through the same path: :func:`.prepare.prepare`
(validation, float64 stabilisation, CSE) -> a backend printer -> its jinja2 templates. The
records hold only plain text and SymPy expressions, so the adapters that build them
(:mod:`.closed_forms`, :mod:`.moment_forms`) are the only code that knows derive's objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class Argument:
    """One argument of a generated function.

    ``symbol`` is the SymPy symbol as it occurs in the expression (hashed and documented as
    is), ``name`` the identifier the generated code uses for it, ``meaning`` what it stands
    for (documentation).
    """

    symbol: sp.Symbol
    name: str
    meaning: str


@dataclass(frozen=True)
class FunctionSpec:
    """One generated function, elementwise in its arguments (the first is the batch size ``B``).

    ``math`` is the docstring's statement of the formula as ``(label, text)`` pairs (e.g.
    ``("Formula", ...)``); ``provenance`` says where the formula comes from, ``domain`` where it
    is valid.
    """

    name: str
    arguments: tuple[Argument, ...]
    expr: sp.Expr
    summary: str
    math: tuple[tuple[str, str], ...]
    provenance: str
    domain: str


@dataclass(frozen=True)
class Constant:
    """A module-level constant of the numpy module: ``name = value`` (a Python literal).

    With ``comments`` (one per item), a tuple ``value`` is printed one item per line, each with
    its comment. ``public`` constants are listed in ``__all__``.
    """

    name: str
    value: object
    comments: tuple[str, ...] = ()
    public: bool = False


@dataclass(frozen=True)
class ModuleSpec:
    """One generated module: ``name`` (a Python/C identifier), its functions in order, a
    one-line ``title``, ``header`` notes for the generated-file header, ``description``
    paragraphs for the module documentation and numpy-only ``constants``."""

    name: str
    title: str
    functions: tuple[FunctionSpec, ...]
    header: tuple[str, ...] = ()
    description: tuple[str, ...] = ()
    constants: tuple[Constant, ...] = ()


def batch_argument() -> Argument:
    """The batch-size argument ``B`` every generated function takes first."""
    from bnmft.derive.symbols import B

    return Argument(B, "B", "batch size")
