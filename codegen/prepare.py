"""Backend-independent preparation of derived quantities for printing.

Checks what the numpy/C backends can express (one symbol ``B``; elementary functions only),
computes the source hash written into every generated header, rewrites ill-conditioned
parts (:mod:`.stability`) and runs common-subexpression elimination, so that both backends
print the same temporaries in the same order.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import CodegenError
from .stability import stabilize

#: Name of the batch-size symbol every expression must be written in.
BATCH_NAME = "B"

#: Functions with a float64 implementation in both numpy and C99 <math.h>.
SUPPORTED_FUNCTIONS = (
    sp.exp, sp.log, log1p, expm1, sp.sin, sp.cos, sp.tan, sp.asin, sp.acos, sp.atan,
    sp.sinh, sp.cosh, sp.tanh, sp.asinh, sp.acosh, sp.atanh, sp.Abs,
)  # fmt: skip
_SUPPORTED_CONSTANTS = (sp.pi, sp.E)

#: C99 keywords (a module or quantity may not be named like one).
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto "
    "if inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while _Bool _Complex _Imaginary".split()
)
#: Names the generated code itself uses: a module or function named so would shadow them.
RESERVED_NAMES = frozenset(
    "numpy math stddef B b i n out ACTIVATION GENERATOR SOURCE_SHA256".split()
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def check_identifier(name: object, what: str) -> str:
    """Return ``name`` if it is usable as a Python module/function and C identifier."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise CodegenError(
            f"{what} {name!r} is not a valid identifier (use letters, digits and _, "
            "not starting with a digit, at most 63 characters)"
        )
    if keyword.iskeyword(name) or name in C_KEYWORDS or name in RESERVED_NAMES:
        raise CodegenError(f"{what} {name!r} is reserved in Python, C or the generated code")
    return name


def check_module_name(name: object) -> str:
    """Return ``name`` if a generated ``name.py`` / ``name.c`` may carry it: an identifier
    (:func:`check_identifier`) that is no standard-library module (``os.py`` next to a
    script would shadow ``os`` on import) and not ``bnmft``."""
    check_identifier(name, "module name")
    if name in sys.stdlib_module_names or name == "bnmft":
        raise CodegenError(
            f"module name {name!r} is a standard-library or bnmft module: a generated "
            f"{name}.py would shadow it on import; choose another name"
        )
    return name


def _describe(func) -> str:
    name = getattr(func, "__name__", str(func))
    return "the hypergeometric function hyper()" if name == "hyper" else f"{name}()"


def check_supported(name: str, expr: sp.Expr) -> None:
    """Refuse expressions the numpy/C backends cannot print faithfully (one-line error)."""
    if not isinstance(expr, sp.Expr):
        raise CodegenError(f"{name}: expected a SymPy expression, got {type(expr).__name__}")
    if expr.has(sp.zoo, sp.nan):
        raise CodegenError(f"{name} is undefined (complex infinity or nan)")
    extra = sorted(str(s) for s in expr.free_symbols if s.name != BATCH_NAME)
    if extra:
        raise CodegenError(
            f"{name} depends on {', '.join(extra)}; only the batch size B can be an argument"
        )
    unsupported = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.is_Atom:
            if not (
                node.is_Symbol
                or node.is_Rational
                or node.is_Float
                or node in _SUPPORTED_CONSTANTS
                or node in (sp.oo, sp.S.NegativeInfinity)
            ):
                unsupported.add(str(node))
        elif node.is_Add or node.is_Mul or node.is_Pow or isinstance(node, SUPPORTED_FUNCTIONS):
            stack.extend(node.args)
        else:
            unsupported.add(_describe(node.func))  # its arguments are not examined
    if unsupported:
        verb = "is" if len(unsupported) == 1 else "are"
        raise CodegenError(
            f"{name}: {' and '.join(sorted(unsupported))} {verb} not supported by the numpy/C "
            "backends yet"
        )


def source_text(exprs: Mapping[str, sp.Expr]) -> str:
    """Canonical text of the source expressions: ``name=srepr(expr)`` lines sorted by name."""
    return "".join(f"{name}={sp.srepr(exprs[name])}\n" for name in sorted(exprs))


def source_sha256(exprs: Mapping[str, sp.Expr]) -> str:
    """sha256 (hex) of :func:`source_text`: identifies the expressions a file was made from."""
    return hashlib.sha256(source_text(exprs).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """One quantity ready for printing.

    ``expr`` is the derived expression (hashed and documented); ``temporaries`` and ``result``
    are the CSE of its numerically stable rewrite (what is printed); ``notes`` says which
    rewrites were made and why.
    """

    name: str
    expr: sp.Expr
    compact: sp.Expr | None
    provenance: str
    domain: str
    notes: tuple[str, ...]
    temporaries: tuple[tuple[sp.Symbol, sp.Expr], ...]
    result: sp.Expr

    @property
    def is_constant(self) -> bool:
        """True if the value does not depend on ``B`` (it must still fill an array)."""
        return not self.result.free_symbols and not self.temporaries


def _as_items(quantities) -> list[tuple[str, object]]:
    closed = getattr(quantities, "closed", None)  # a whole Derivation
    if isinstance(closed, Mapping):
        if not closed:
            name = getattr(getattr(quantities, "activation", None), "name", "this activation")
            raise CodegenError(f"{name} has no closed forms; there is nothing to generate")
        quantities = closed
    if isinstance(quantities, Mapping):
        items = list(quantities.items())
    elif isinstance(quantities, Iterable) and not isinstance(quantities, (str, bytes)):
        items = [(getattr(q, "name", None), q) for q in quantities]
    else:
        raise CodegenError(f"expected quantities (mapping or iterable), got {type(quantities)}")
    if not items:
        raise CodegenError("no quantities to generate")
    return items


def _text(value: object) -> str:
    return "not recorded" if value is None else str(value)


def prepare(quantities) -> list[Prepared]:
    """Validate, stabilize and CSE each quantity (``DerivedQuantity`` objects, a mapping of
    them, or a ``Derivation``); the input order is kept."""
    out: list[Prepared] = []
    seen: set[str] = set()
    for key, q in _as_items(quantities):
        name = check_identifier(getattr(q, "name", key), "quantity name")
        if name in seen:
            raise CodegenError(f"quantity {name!r} appears twice")
        seen.add(name)
        expr = getattr(q, "expr", None)
        check_supported(name, expr)
        stable, notes = stabilize(expr)
        if stable.free_symbols:
            temps, (result,) = sp.cse([stable], symbols=sp.numbered_symbols("x"), order="canonical")
        else:
            temps, result = [], stable
        out.append(
            Prepared(
                name=name,
                expr=expr,
                compact=getattr(q, "compact", None),
                provenance=_text(getattr(q, "provenance", None)),
                domain=_text(getattr(q, "domain", None)),
                notes=notes,
                temporaries=tuple(temps),
                result=result,
            )
        )
    return out
