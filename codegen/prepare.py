"""Backend-independent preparation of a :class:`~.spec.ModuleSpec` for printing.

Checks what the numpy/C backends can express (the function's arguments, first ``B``;
elementary functions only), computes the source hash written into every generated header,
rewrites ill-conditioned parts (:mod:`.stability`) and runs common-subexpression elimination,
so that both backends print the same temporaries in the same order. :func:`fuse` runs one CSE
over all functions of a module at once, for a kernel that evaluates them together.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import CodegenError
from .spec import FunctionSpec, ModuleSpec
from .special import fold_constants, routine_arguments, routine_of, rewrite_gamma
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
#: Names the generated code itself uses: a module, function, argument or constant named so
#: would shadow them (the spec's own constants are checked against its functions' names).
RESERVED_NAMES = frozenset("numpy math stddef B b i n out GENERATOR SOURCE_SHA256".split())
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
#: Names of the CSE temporaries (``x0``, ``x1``, ...): no argument may be named so.
_TEMPORARY = re.compile(r"x[0-9]+\Z")


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


def _unsupported_nodes(expr: sp.Expr) -> set[str]:
    """Names of the parts of ``expr`` neither backend prints: not ``+ * **``, a rational, a
    Float, pi, E, a symbol, an elementary function (:data:`SUPPORTED_FUNCTIONS`), a gamma
    ratio ``rf(x, a)`` or ``2F1(a, b; c; z)`` with rational ``a`` (:mod:`.special`), or a
    constant part made of other functions (evaluated at generation, :func:`constant_parts`)."""
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
        elif routine_of(node) is not None:
            stack.extend(routine_arguments(node))
        elif not node.free_symbols and node.is_real and node.is_finite:
            continue  # a real constant such as gamma(1/4): a literal (:func:`constant_parts`)
        else:
            unsupported.add(_describe(node.func))  # its arguments are not examined
    return unsupported


def _printable_constant(expr: sp.Expr) -> bool:
    """True if the constant ``expr`` is made of rationals, pi, E and elementary functions."""
    return all(
        node.is_Rational or node in _SUPPORTED_CONSTANTS or node.is_Float
        or node.is_Add or node.is_Mul or node.is_Pow or isinstance(node, SUPPORTED_FUNCTIONS)
        for node in sp.preorder_traversal(expr)
    )


def constant_parts(expr: sp.Expr) -> sp.Expr:
    """``expr`` with its constant parts made of other functions (``sqrt(2) pi / Gamma(1/4)^2``)
    as correctly rounded float64 literals (:func:`.special.fold_constants`)."""
    return fold_constants(expr, _printable_constant)


def check_supported(name: str, expr: sp.Expr, arguments: tuple[str, ...] = (BATCH_NAME,)) -> None:
    """Refuse expressions the numpy/C backends cannot print faithfully (one-line error):
    free symbols other than the function's ``arguments`` (names), or unsupported functions
    (gamma functions of ``B`` are accepted where they cancel in ratios, see
    :func:`.special.rewrite_gamma`, which must have been applied)."""
    if not isinstance(expr, sp.Expr):
        raise CodegenError(f"{name}: expected a SymPy expression, got {type(expr).__name__}")
    if expr.has(sp.zoo, sp.nan):
        raise CodegenError(f"{name} is undefined (complex infinity or nan)")
    extra = sorted(str(s) for s in expr.free_symbols if s.name not in arguments)
    if extra:
        allowed = (
            "the batch size B can be an argument"
            if arguments == (BATCH_NAME,)
            else f"its arguments {', '.join(arguments)} can occur"
        )
        raise CodegenError(f"{name} depends on {', '.join(extra)}; only {allowed}")
    unsupported = _unsupported_nodes(expr)
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
    """One function ready for printing.

    ``spec.expr`` is the source expression (hashed and documented); ``stable`` its numerically
    stable rewrite in the argument names; ``temporaries`` and ``result`` the CSE of ``stable``
    (what is printed); ``notes`` says which rewrites were made and why.
    """

    spec: FunctionSpec
    notes: tuple[str, ...]
    temporaries: tuple[tuple[sp.Symbol, sp.Expr], ...]
    result: sp.Expr
    stable: sp.Expr

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.spec.arguments)

    @property
    def is_constant(self) -> bool:
        """True if the value does not depend on the arguments (it must still fill an array)."""
        return not self.result.free_symbols and not self.temporaries


@dataclass(frozen=True)
class PreparedModule:
    """A :class:`ModuleSpec` with its functions prepared, and the header facts."""

    spec: ModuleSpec
    version: str
    sha256: str
    functions: tuple[Prepared, ...]


def _version() -> str:
    import bnmft  # late import: bnmft/__init__ may come to import this stage

    return bnmft.__version__


def _check_arguments(f: FunctionSpec) -> tuple[str, ...]:
    names = tuple(a.name for a in f.arguments)
    if not names or names[0] != BATCH_NAME:
        raise CodegenError(f"{f.name}: the first argument must be the batch size {BATCH_NAME}")
    for a in f.arguments[1:]:
        check_identifier(a.name, f"{f.name}: argument name")
        if _TEMPORARY.match(a.name):
            raise CodegenError(f"{f.name}: argument name {a.name!r} is reserved for temporaries")
    if len(set(names)) != len(names):
        raise CodegenError(f"{f.name}: an argument name appears twice")
    return names


def _only_batch(expr: sp.Expr) -> bool:
    return {s.name for s in expr.free_symbols} <= {BATCH_NAME}


def _stabilize_in_batch(expr: sp.Expr) -> tuple[sp.Expr, tuple[str, ...]]:
    """:func:`.stability.stabilize` applied to each largest part of ``expr`` that depends on
    ``B`` alone. Conditioning is measured as ``B -> oo`` with nothing else free; that of a part
    involving other arguments (e.g. ``m5 - m6``) depends on their values, unknown here."""
    notes: list[str] = []

    def walk(e: sp.Expr) -> sp.Expr:
        if _only_batch(e):
            new, found = stabilize(e)
            notes.extend(n for n in found if n not in notes)
            return new
        if e.is_Atom:
            return e
        args = [walk(a) for a in e.args]
        return e if args == list(e.args) else e.func(*args)

    return walk(expr), tuple(notes)


def _prepare_function(f: FunctionSpec) -> Prepared:
    """Validate, stabilize (the parts in ``B`` alone) and CSE one function."""
    check_identifier(f.name, "quantity name")
    names = _check_arguments(f)
    if isinstance(f.expr, sp.Basic):
        rename = {a.symbol: sp.Symbol(a.name) for a in f.arguments if a.symbol.name != a.name}
        expr = f.expr.xreplace(rename)
    else:
        expr = f.expr  # refused just below
    if isinstance(expr, sp.Basic):
        batch = {s.name: s for s in expr.free_symbols}.get(BATCH_NAME)
        if batch is not None:
            try:
                expr = rewrite_gamma(expr, batch)
            except CodegenError as err:
                raise CodegenError(f"{f.name}: {err}") from None
    check_supported(f.name, expr, names)
    stable, notes = _stabilize_in_batch(expr)
    stable = constant_parts(stable)
    if stable.free_symbols:
        temps, (result,) = sp.cse([stable], symbols=sp.numbered_symbols("x"), order="canonical")
    else:
        temps, result = [], stable
    return Prepared(spec=f, notes=notes, temporaries=tuple(temps), result=result, stable=stable)


def prepare(spec: ModuleSpec) -> PreparedModule:
    """Validate a module spec and prepare each of its functions (order kept)."""
    check_identifier(spec.name, "module name")
    if not spec.functions:
        raise CodegenError("no quantities to generate")
    for c in spec.constants:
        check_identifier(c.name, "constant name")
    names = [f.name for f in spec.functions] + [c.name for c in spec.constants]
    for name in names:
        if names.count(name) > 1:
            raise CodegenError(f"quantity {name!r} appears twice")
    functions = tuple(_prepare_function(f) for f in spec.functions)
    return PreparedModule(
        spec=spec,
        version=_version(),
        sha256=source_sha256({f.name: f.expr for f in spec.functions}),
        functions=functions,
    )


@dataclass(frozen=True)
class Fused:
    """All functions of a module evaluated together: ``temporaries`` shared by every result,
    ``results`` in the module's function order (the CSE of their ``stable`` expressions)."""

    temporaries: tuple[tuple[sp.Symbol, sp.Expr], ...]
    results: tuple[sp.Expr, ...]

    @property
    def is_constant(self) -> bool:
        """True if no result depends on the arguments."""
        return not self.temporaries and not any(r.free_symbols for r in self.results)


def _divides(expr: sp.Expr) -> bool:
    """True if ``expr`` is a product with a factor ``1/d`` (printed as one division)."""
    return expr.is_Mul and any(f.is_Pow and f.exp.is_negative for f in expr.args)


def _only_in_divisions(t: sp.Symbol, exprs: list[sp.Expr]) -> bool:
    """True if ``t`` occurs in ``exprs`` only as a factor of products that divide already."""
    for expr in exprs:
        if expr == t:
            return False
        for node in sp.preorder_traversal(expr):
            if t in node.args and not _divides(node):
                return False
    return True


def _fold_reciprocals(temps: list, results: list) -> tuple[list, list]:
    """Fold each temporary ``t = 1/e`` that occurs only as a factor of products ``a/d`` into
    them: ``t`` holds ``e`` instead (or, for a symbol ``e``, is dropped) and those products
    read ``a/(d t)``: one division fewer, the same number of multiplications. Temporaries are
    then renumbered ``x0, x1, ...``."""
    k = 0
    while k < len(temps):
        t, e = temps[k]
        later = [x for _, x in temps[k + 1 :]] + results
        if e.is_Pow and e.exp == -1 and _only_in_divisions(t, later):
            base = e.base
            back = {t: 1 / base} if base.is_Symbol else {t: 1 / t}
            kept = [] if base.is_Symbol else [(t, base)]
            temps = temps[:k] + kept + [(s, x.xreplace(back)) for s, x in temps[k + 1 :]]
            results = [x.xreplace(back) for x in results]
        k += 1
    names = {s: sp.Symbol(f"x{i}") for i, (s, _) in enumerate(temps)}
    temps = [(names[s], x.xreplace(names)) for s, x in temps]
    return temps, [x.xreplace(names) for x in results]


def fuse(module: PreparedModule) -> Fused:
    """One CSE over the stabilised expressions of every function of ``module``: a
    sub-expression common to several functions (``acos(1/(B - 1))``, a root, a division) is
    computed once for all of them; a shared reciprocal used only in divisions is folded into
    them (:func:`_fold_reciprocals`)."""
    temps, results = sp.cse(
        [q.stable for q in module.functions], symbols=sp.numbered_symbols("x"), order="canonical"
    )
    temps, results = _fold_reciprocals(list(temps), list(results))
    return Fused(temporaries=tuple(temps), results=tuple(results))
