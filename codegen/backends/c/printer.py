"""C99 backend: ``NAME.c`` / ``NAME.h`` with one loop kernel per quantity and a fused one.

``void NAME_<quantity>(size_t n, const double *B, double *out)`` writes ``out[i] = f(B[i])``
for ``i < n``. ``void NAME_all(size_t n, const double *B, double *q1, double *q2, ...)`` (one
output per quantity, in the module's order) writes every ``q_k[i] = f_k(B[i])`` in one pass,
the sub-expressions common to the quantities computed once
(:func:`bnmft.codegen.prepare.fuse`); a NULL output is skipped. Kernels keep no state
(thread-safe), need only ``<math.h>`` (link ``-lm``) and may be called in place (an output may
be ``B``: each element is read before it is written). The fused loop carries
``#pragma omp parallel for`` under ``#ifdef _OPENMP``.

The printer is SymPy's :class:`~sympy.printing.c.C99CodePrinter` with these changes:

* ``pi`` and ``E`` print as ``bnmft_pi``/``bnmft_e``, file-scope ``static const double``s
  initialised from 36-digit literals (emitted only where used, so ``-Wunused`` stays quiet):
  ``M_PI``/``M_E`` are POSIX, not C99, and are missing under ``-std=c99`` on strict libcs;
* integers beyond 32 bits print as double literals (``1e20*b`` must not become an overflowing
  ``int``/``long`` constant);
* the symbol ``B`` prints as ``b``, the element of the input array ``B`` being processed;
* ``strict`` printing: an unsupported function raises instead of emitting a comment;
* gamma ratios ``rf(x, a)`` and ``2F1(a, b; c; z)`` print as calls of ``static`` routine
  functions of the file (:mod:`bnmft.codegen.special`), emitted once each (``routines``).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.c import C99CodePrinter, known_functions_C99

from ...errors import CodegenError
from ...prepare import PreparedModule, fuse
from ...render import WIDTH, doc_lines, environment, header_lines, one_line, wrap
from ...special import RoutinePrinting

_ENV = environment(__file__)
_CONSTANT_DIGITS = 36
#: Suffix of the fused kernel ``NAME_all`` (no quantity may be named so).
FUSED_SUFFIX = "all"
#: Identifiers the fused kernel's body may use besides its parameters: an output parameter
#: named so would shadow them (<math.h> functions and macros, stddef's names).
_BODY_NAMES = frozenset(
    {v for v in known_functions_C99.values() if isinstance(v, str)}
    | {"pow", "fabs", "sqrt", "cbrt", "INFINITY", "NAN", "HUGE_VAL", "NULL", "size_t"}
)
#: Identifiers the fused kernel declares itself (CSE temporaries) or at file scope (constants),
#: and the names C reserves (a leading ``__`` or ``_`` + capital, e.g. ``_OPENMP``).
_BODY_PATTERN = re.compile(r"x[0-9]+\Z|bnmft_|__|_[A-Z]")


class CKernelPrinter(RoutinePrinting, C99CodePrinter):
    """Prints expressions as C99 double arithmetic on the loop element ``b``.

    ``constants`` collects the named constants used, as ``{name: literal}``.
    """

    ROUTINE_PREFIX = "bnmft_"

    def __init__(self, settings: dict | None = None, parameters=()) -> None:
        super().__init__({"strict": True, "math_macros": {}, **(settings or {})})
        self.constants: dict[str, str] = {}
        self.routines: dict = {}
        self.parameters = frozenset(parameters)

    def _print_NumberSymbol(self, expr):
        name = f"bnmft_{str(expr).lower()}"
        self.constants[name] = str(sp.N(expr, _CONSTANT_DIGITS))
        return name

    def _print_Integer(self, expr):
        if abs(int(expr)) >= 2**31:
            return self._print_Float(sp.Float(expr, 17))
        return super()._print_Integer(expr)

    def _print_Symbol(self, expr):
        if expr.name == "B":
            return "b"
        if expr.name in self.parameters:
            return element_name(expr.name)
        return super()._print_Symbol(expr)


def element_name(parameter: str) -> str:
    """The loop-local value ``PARAM[i]`` of a family parameter array ``PARAM``."""
    return f"bnmft_{parameter}"


def comment_safe(line: str) -> str:
    """A line that cannot end the C comment it is in, open a nested one (``-Wcomment``) or
    form a trigraph (``-Wtrigraphs``; trigraphs are live in strict C99)."""
    line = line.replace("\r", " ").replace("\n", " ")
    return line.replace("*/", "* /").replace("/*", "/ *").replace("??", "?\\?")


#: Header paragraph on calling the kernels (``{fused}``: the fused kernel's name).
_CONVENTION = (
    "Each kernel sets out[i] = f(B[i]) for 0 <= i < n, and {fused} every quantity in one pass. "
    "Kernels are stateless (thread-safe), need only <math.h> (link with -lm), and may run in "
    "place (out == B)."
)
#: Header paragraph on the family parameters (``{params}``: their declarations).
_PARAMETERS_DOC = (
    "Every kernel (single, fused and _p) takes after B the family parameter arrays {params}: "
    "n values each, one per element of B (broadcast by the caller), read before any output "
    "is written. Where a quantity's conditions on {names} (its Valid for: line) fail, its "
    "output is NaN."
)
#: Documentation of the fused kernel (``{fused}``: its name, ``{first}``: the first output).
_FUSED_DOC = (
    "{fused}: every quantity above in one pass over the n elements of B ({first}[i] = "
    "{first}(B[i]) and so on), one output array per quantity in the order above. "
    "Sub-expressions that the quantities share are computed once per element "
    "(common-subexpression elimination across all of them), so a value may differ from the "
    "single kernel's in the last bits. A NULL output is skipped (the shared sub-expressions are "
    "still computed); any output may be B. Compiled with OpenMP (-fopenmp), the loop over i "
    "runs in parallel."
)


def _comment(text: str) -> list[str]:
    """``text`` wrapped into comment lines (after `` * ``)."""
    return [comment_safe(line) for line in wrap(text, WIDTH - 3)]


def _check_output_name(module: str, name: str) -> str:
    """``name`` if it can be an output parameter of ``{module}_all`` and stay distinct from it."""
    if name == FUSED_SUFFIX:
        raise CodegenError(
            f"quantity name {name!r}: {module}_{name} is the fused kernel; rename the quantity"
        )
    if name in _BODY_NAMES or _BODY_PATTERN.match(name):
        raise CodegenError(
            f"quantity name {name!r} would shadow a name used inside {module}_{FUSED_SUFFIX} "
            "(a <math.h> function, a temporary, a constant or a reserved C name); rename it"
        )
    return name


def _guarded(printer: CKernelPrinter, q, result: str) -> str:
    """``result``, or ``(conditions) ? result : NAN`` for a function with conditions on the
    family parameters."""
    if not q.spec.conditions:
        return result
    test = " && ".join(f"({printer.doprint(c.valid)})" for c in q.spec.conditions)
    return f"({test}) ? {result} : NAN"


def _used(exprs, parameters) -> list[dict]:
    """The family parameters occurring in ``exprs``, as template items (name, local)."""
    names = {s.name for e in exprs for s in sp.sympify(e).free_symbols}
    return [{"name": p, "local": element_name(p)} for p in parameters if p in names]


def _uses_batch(exprs) -> bool:
    """True if ``B`` occurs in ``exprs`` (else the kernel declares no ``b``)."""
    return any(s.name == "B" for e in exprs for s in sp.sympify(e).free_symbols)


def _fused(module: PreparedModule, printer: CKernelPrinter) -> dict:
    """Template context of ``{module}_all``: outputs, shared temporaries, one result each."""
    fused = fuse(module)
    symbol = f"{module.spec.name}_{FUSED_SUFFIX}"
    params = [a.name for a in module.spec.parameters]
    exprs = [e for _, e in fused.temporaries] + list(fused.results) + [
        c.valid for q in module.functions for c in q.spec.conditions]
    return {
        "symbol": symbol,
        "doc": _comment(_FUSED_DOC.format(fused=symbol, first=module.functions[0].name)),
        "indent": " " * len(f"void {symbol}("),
        "constant": fused.is_constant and not _used(exprs, params),
        "temporaries": [(printer.doprint(s), printer.doprint(e)) for s, e in fused.temporaries],
        "outputs": [
            (_check_output_name(module.spec.name, q.name),
             _guarded(printer, q, printer.doprint(r)))
            for q, r in zip(module.functions, fused.results)
        ],
        "parameters": params,
        "locals": _used(exprs, params),
    }


#: Documentation of the parameterised kernels (``{p}``: the parameter, ``{module}``).
_SCALE_DOC = (
    "{module}_QTY_p and {module}_all_p: as {module}_QTY and {module}_all, for phi({p} x): "
    "{p} is NULL (the module's activation itself) or n values, one per element of B; each "
    "output is multiplied by its factor below, and is NaN where not {valid}. {p} must not "
    "overlap an output array. Factors (derived from the moment forms): {factors}."
)


def _scale(module: PreparedModule, printer: CKernelPrinter, kernels: list) -> dict | None:
    """Template context of the ``_p`` kernels of the module's scale parameter: the parameter
    name, the validity condition and each quantity's factor, printed in the local ``p``."""
    scale = module.spec.scale
    if scale is None:
        return None
    local = sp.Symbol("bnmft_p")
    rename = {s: local for s in (scale.symbol, *scale.valid.free_symbols)
              if s.name == scale.name}
    factors = [(q.name, printer.doprint(scale.factor(q.name).xreplace(rename)))
               for q in module.functions]
    text = ", ".join(f"{name}: {sp.sstr(scale.factor(name))}" for name, _ in factors)
    params = [a.name for a in module.spec.parameters]
    return {
        "locals": {q.name: _used([scale.factor(q.name)], params) for q in module.functions},
        "all_locals": _used([scale.factor(q.name) for q in module.functions], params),
        "name": scale.name,
        "valid": printer.doprint(scale.valid.xreplace(rename)),
        "factors": factors,
        "doc": _comment(_SCALE_DOC.format(module=module.spec.name, p=scale.name,
                                          valid=scale.valid_text, factors=text)),
    }


def render(module: PreparedModule) -> dict[str, str]:
    """``{module}.c`` and ``{module}.h`` for ``module`` (functions of ``B`` only; the spec's
    numpy constants have no C counterpart, the header notes carry the same facts)."""
    spec = module.spec
    params = [a.name for a in spec.parameters]
    printer = CKernelPrinter(parameters=params)
    kernels = []
    for q in module.functions:
        if q.argument_names != ("B", *params):
            raise CodegenError(
                f"{q.name} takes {', '.join(q.argument_names)}; the C backend prints kernels of "
                "the batch size B " + ("and the module's family parameters only" if params
                                       else "only")
            )
        temps = [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries]
        used = _used([e for _, e in q.temporaries] + [q.result]
                     + [c.valid for c in q.spec.conditions], params)
        kernels.append(
            {
                "symbol": f"{spec.name}_{q.name}",
                "doc": [comment_safe(line) for line in doc_lines(q, tuple(spec.parameters))],
                "constant": q.is_constant and not used,
                "uses_b": _uses_batch([e for _, e in q.temporaries] + [q.result]),
                "temporaries": temps,
                "result": _guarded(printer, q, printer.doprint(q.result)),
                "locals": used,
            }
        )
    fused = _fused(module, printer)  # before the constants are collected: it may use some
    scale = _scale(module, printer, kernels)
    context = {
        "header": [comment_safe(line) for line in header_lines(module)],
        "title": comment_safe(one_line(spec.title)),
        "description": [_comment(p) for p in spec.description],
        "convention": _comment(_CONVENTION.format(fused=fused["symbol"])),
        "parameter_doc": _comment(_PARAMETERS_DOC.format(
            params=", ".join(f"const double *{a.name} ({a.meaning})" for a in spec.parameters),
            names=" and ".join(params))) if params else [],
        "module": spec.name,
        "guard": f"BNMFT_{spec.name.upper()}_H",
        "kernels": kernels,
        "fused": fused,
        "constants": sorted(printer.constants.items()),
        "routines": [printer.routines[k] for k in sorted(printer.routines)],
        "scale": scale,
        "parameters": params,
        "inputs": "".join(f", const double *{p}" for p in params),
        "arguments": "".join(f", {p}" for p in params),
    }
    return {
        f"{spec.name}.c": _ENV.get_template("module.c.jinja").render(context),
        f"{spec.name}.h": _ENV.get_template("module.h.jinja").render(context),
    }
