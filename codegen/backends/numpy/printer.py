"""NumPy backend: one vectorised function per quantity in a module that imports only numpy.

Every function converts ``B`` to a float64 array and returns a float64 array (arguments other
than ``B`` broadcast with it); module constants of the spec are printed as Python literals.

The printer is SymPy's :class:`~sympy.printing.numpy.NumPyPrinter` with two changes, both
because every generated function first converts ``B`` to a float64 array:

* negative integer powers print as ``1/(B - 3)`` / ``x**(-2)``: NumPyPrinter writes
  ``x**(-1.0)`` to dodge numpy's error for integer arrays, which cannot occur here;
* ``strict`` printing, and a check that nothing but ``numpy`` was referenced, so an
  unsupported function fails loudly instead of emitting a comment or a scipy/math call;
* gamma ratios ``rf(x, a)`` and ``2F1(a, b; c; z)`` print as calls of private routine
  functions of the module (:mod:`bnmft.codegen.special`), vectorised, which the template
  emits once each (``routines`` collects them).
"""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from ...errors import CodegenError
from ...prepare import PreparedModule
from ...special import RoutinePrinting
from ...render import (
    WIDTH,
    argument_text,
    doc_lines,
    environment,
    header_lines,
    one_line,
    shared_arguments,
    wrap,
)
from ...spec import Constant

_ENV = environment(__file__)


class NumpyModulePrinter(RoutinePrinting, NumPyPrinter):
    """Prints expressions for float64 numpy arrays, qualified as ``numpy.<function>``."""

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True, **(settings or {})})
        self.routines: dict = {}

    def _print_Pow(self, expr, rational=False):
        return self._hprint_Pow(expr, rational=rational, sqrt=self._module + ".sqrt")


def _doc_safe(line: str) -> str:
    """Escape backslashes and triple quotes so text cannot end a docstring early."""
    return line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _docstring(lines: list[str]) -> str:
    """Docstring body indented for a function body."""
    return "\n".join(("    " + _doc_safe(line)).rstrip() for line in lines) + "\n    "


def _calling_convention(module: PreparedModule, shared) -> list[str]:
    """The module docstring's first paragraphs: how every function is called, and what the
    arguments every function shares stand for."""
    takes = "Every function takes an array-like batch size ``B`` (any shape; converted to float64)"
    if all(len(q.argument_names) == 1 for q in module.functions):
        returns = " and returns a float64 array of the same shape."
    else:
        returns = (
            ", then the arguments its signature lists (array-likes broadcasting with ``B``), and"
            " returns a float64 array."
        )
    first = (
        takes + returns + " Each docstring gives the formula, its provenance and the batch sizes"
        " for which it is valid."
    )
    return [first, f"Arguments: {argument_text(shared)}."] if shared else [first]


def _constant(c: Constant) -> dict:
    """``name``, ``value`` (repr) and, for a commented tuple, ``rows`` as (repr, comment)."""
    if not c.comments:
        return {"name": c.name, "value": repr(c.value), "rows": None}
    if not isinstance(c.value, tuple) or len(c.value) != len(c.comments):
        raise CodegenError(f"constant {c.name}: comments need a tuple with one item each")
    items = [(repr(v), one_line(text)) for v, text in zip(c.value, c.comments)]
    return {"name": c.name, "value": None, "rows": items}


def render(module: PreparedModule) -> dict[str, str]:
    """``{module}.py`` for ``module``."""
    spec = module.spec
    printer = NumpyModulePrinter()
    functions = []
    shared = shared_arguments(module)
    for q in module.functions:
        doc = doc_lines(q, shared)
        if q.is_constant:
            # A constant must still fill an array of B's shape (and be float64 even if 0).
            body = [], f"numpy.full(B.shape, {printer.doprint(q.result)}, dtype=numpy.float64)"
        else:
            assigns = [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries]
            body = assigns, f"numpy.asarray({printer.doprint(q.result)}, dtype=numpy.float64)"
        scale_factor = None
        if spec.scale is not None:
            scale_factor = printer.doprint(spec.scale.factor(q.name))
            doc = doc + ["Keyword:"] + ["    " + line for line in wrap(
                f"{spec.scale.name} = {spec.scale.meaning}, times {scale_factor} (broadcast "
                f"with B; None: the module's activation itself); ValueError unless "
                f"{spec.scale.valid_text} everywhere.", WIDTH - 12)]
        params = [a.name for a in spec.parameters]
        functions.append(
            {
                "parameters": params,
                "conditions": [(printer.doprint(c.valid), repr(
                    f"{q.name}: needs {c.text} (the domain of its closed form)"))
                    for c in q.spec.conditions],
                "scale_factor": scale_factor,
                "name": q.name,
                "arguments": ", ".join(q.argument_names),
                "summary": _doc_safe(doc[0]),
                "doc": _docstring(doc[1:]),
                "assignments": body[0],
                "result": body[1],
            }
        )
    imported = set(printer.module_imports)
    if imported - {"numpy"}:
        raise CodegenError(f"numpy backend would import {sorted(imported)}; only numpy is allowed")
    paragraphs = [*_calling_convention(module, shared), *spec.description]
    if spec.scale is not None:
        paragraphs.insert(1, (
            f"Every function also takes the keyword ``{spec.scale.name}`` ({spec.scale.meaning};"
            f" an array-like broadcasting with ``B``, or None for the module's activation "
            f"itself) and raises ValueError unless {spec.scale.valid_text} everywhere; the "
            "factor each value is multiplied by is in its docstring."))
    text = _ENV.get_template("module.py.jinja").render(
        header=header_lines(module),
        title=_doc_safe(one_line(spec.title)),
        paragraphs=[[_doc_safe(line) for line in wrap(p, WIDTH - 8)] for p in paragraphs],
        generator=repr(f"bnmft {module.version}"),
        sha256=repr(module.sha256),
        constants=[_constant(c) for c in spec.constants],
        names=[repr(c.name) for c in spec.constants if c.public]
        + [repr(q.name) for q in module.functions],
        functions=functions,
        routines=[printer.routines[k] for k in sorted(printer.routines)],
        scale=_scale(spec.scale, printer),
    )
    return {f"{spec.name}.py": text}


def _scale(scale, printer) -> dict | None:
    """Template context of the module's keyword scale parameter (:class:`ScaleParameter`)."""
    if scale is None:
        return None
    return {"name": scale.name, "valid": printer.doprint(scale.valid),
            "message": repr(f"{scale.name} must satisfy {scale.valid_text} ({scale.meaning})"),
            "valid_text": scale.valid_text}


__all__ = ["NumpyModulePrinter", "render"]
