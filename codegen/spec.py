"""What codegen consumes: one :class:`FunctionSpec` per generated function, one
:class:`ModuleSpec` per generated module.

Every generated module (closed forms for one activation, the shipped moment forms) is first
described by these frozen records and then goes through the same path: :func:`.prepare.prepare`
(validation, float64 stabilisation, CSE) -> a backend printer -> its jinja2 templates. The
records hold only plain text and SymPy expressions, so the adapters that build them
(:mod:`.closed_forms`, :mod:`.moment_forms`) are the only code that knows derive's objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

import sympy as sp

from .errors import CodegenError


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
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Condition:
    """Where a function of a family module is defined: ``valid``, a relation in the
    parameter arguments (``alpha > 1/2``), stated as ``text``. The numpy function raises
    ValueError and the C kernels give NaN where it fails."""

    valid: sp.Basic
    text: str


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
class ScaleParameter:
    """A keyword parameter ``name`` (symbol ``symbol``) that multiplies the value of function
    ``f`` by ``factors[f]`` (an expression in ``symbol``) where ``valid`` (a condition on
    ``symbol``) holds; omitted, the module's functions are evaluated as they are. Printed as a
    keyword argument of every numpy function (``ValueError`` where not ``valid``) and as the C
    kernels ``NAME_QTY_p`` / ``NAME_all_p`` (NaN where not ``valid``)."""

    symbol: sp.Symbol
    name: str
    meaning: str
    valid: sp.Basic
    valid_text: str
    factors: tuple[tuple[str, sp.Expr], ...]

    def factor(self, function: str) -> sp.Expr:
        return dict(self.factors).get(function, sp.Integer(1))


@dataclass(frozen=True)
class ModuleSpec:
    """One generated module: ``name`` (a Python/C identifier), its functions in order, a
    one-line ``title``, ``header`` notes for the generated-file header, ``description``
    paragraphs for the module documentation and numpy-only ``constants``. ``parameters``:
    the family parameters (``slope``, ``alpha``) that every function takes after ``B``, as
    arrays broadcasting with it (numpy) or one value per element of ``B`` (C)."""

    name: str
    title: str
    functions: tuple[FunctionSpec, ...]
    header: tuple[str, ...] = ()
    description: tuple[str, ...] = ()
    constants: tuple[Constant, ...] = ()
    scale: ScaleParameter | None = None
    parameters: tuple[Argument, ...] = ()


def batch_argument() -> Argument:
    """The batch-size argument ``B`` every generated function takes first."""
    from bnmft.derive import B

    return Argument(B, "B", "batch size")


@cache
def depth_relations() -> dict[str, sp.Expr]:
    """``depth_scale`` and ``max_trainable_depth`` as functions of the symbol
    ``gradient_rate``, from :data:`bnmft.derive.bsb1.RELATIONS` (``xi = 1/log(rate)`` and
    ``TRAINABLE_DEPTH_FACTOR * xi``, paper Sec. 4: defined there and nowhere else), checked
    against the moment forms that :func:`bnmft.derive.bsb1.moment_forms` composes from them."""
    from bnmft.derive import RATE, compose, moment_forms

    forms = moment_forms()
    rate = sp.Symbol("gradient_rate")
    rel = {n: compose(n, {"gradient_rate": RATE}).xreplace({RATE: rate})
           for n in ("depth_scale", "max_trainable_depth")}
    for n, r in rel.items():
        if r.xreplace({rate: forms["gradient_rate"].expr}) != forms[n].expr:
            raise CodegenError(
                f"internal error: the moment form of {n} is not {r} of the gradient rate"
            )
    return rel


def _definition_text(name: str) -> str:
    from bnmft.derive.bsb1 import RELATIONS

    rel = depth_relations()
    if name == "depth_scale":
        return f"depth_scale = xi = {rel[name]} (paper Sec. 4)"
    return f"max_trainable_depth = {RELATIONS[name]} = {rel[name]} (paper Sec. 4)"


def with_depth_definitions(functions: tuple[FunctionSpec, ...]) -> tuple[FunctionSpec, ...]:
    """Add a ``Definition`` statement to ``depth_scale`` and ``max_trainable_depth`` when
    ``gradient_rate`` is generated with them, after checking that their expressions are that
    definition applied to the generated ``gradient_rate`` (so the docstring cannot lie)."""
    by_name = {f.name: f for f in functions}
    rate = by_name.get("gradient_rate")
    if rate is None or not isinstance(rate.expr, sp.Expr):
        return functions  # nothing to check against (prepare refuses a non-expression)
    sym = sp.Symbol("gradient_rate")
    out = []
    for f in functions:
        if f.name in ("depth_scale", "max_trainable_depth") and isinstance(f.expr, sp.Expr):
            expected = depth_relations()[f.name].xreplace({sym: rate.expr})
            if f.expr != expected and sp.simplify(f.expr - expected) != 0:
                raise CodegenError(
                    f"{f.name} is not {depth_relations()[f.name]} of the gradient_rate "
                    "generated with it"
                )
            f = dataclasses.replace(f, math=(*f.math, ("Definition", _definition_text(f.name))))
        out.append(f)
    return tuple(out)
