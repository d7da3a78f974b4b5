"""NumPy backend: one vectorised function per quantity in a module that imports only numpy.

The printer is SymPy's :class:`~sympy.printing.numpy.NumPyPrinter` with two changes, both
because every generated function first converts ``B`` to a float64 array:

* negative integer powers print as ``1/(B - 3)`` / ``x**(-2)``: NumPyPrinter writes
  ``x**(-1.0)`` to dodge numpy's error for integer arrays, which cannot occur here;
* ``strict`` printing, and a check that nothing but ``numpy`` was referenced, so an
  unsupported function fails loudly instead of emitting a comment or a scipy/math call.
"""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from ...errors import CodegenError
from ...render import Bundle, doc_lines, environment, one_line

_ENV = environment(__file__)


class NumpyModulePrinter(NumPyPrinter):
    """Prints expressions for float64 numpy arrays, qualified as ``numpy.<function>``."""

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True, **(settings or {})})

    def _print_Pow(self, expr, rational=False):
        return self._hprint_Pow(expr, rational=rational, sqrt=self._module + ".sqrt")


def _doc_safe(line: str) -> str:
    """Escape backslashes and triple quotes so text cannot end a docstring early."""
    return line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _docstring(lines: list[str]) -> str:
    """Docstring body indented for a function body."""
    return "\n".join(("    " + _doc_safe(line)).rstrip() for line in lines) + "\n    "


def render(bundle: Bundle) -> dict[str, str]:
    """``{module}.py`` for ``bundle``."""
    printer = NumpyModulePrinter()
    functions = []
    for q in bundle.quantities:
        doc = doc_lines(q, bundle.activation)
        if q.is_constant:
            # A constant must still fill an array of B's shape (and be float64 even if 0).
            body = [], f"numpy.full(B.shape, {printer.doprint(q.result)}, dtype=numpy.float64)"
        else:
            assigns = [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries]
            body = assigns, f"numpy.asarray({printer.doprint(q.result)})"
        functions.append(
            {
                "name": q.name,
                "summary": _doc_safe(doc[0]),
                "doc": _docstring(doc[1:]),
                "assignments": body[0],
                "result": body[1],
            }
        )
    imported = set(printer.module_imports)
    if imported - {"numpy"}:
        raise CodegenError(f"numpy backend would import {sorted(imported)}; only numpy is allowed")
    text = _ENV.get_template("module.py.jinja").render(
        header=bundle.header_lines,
        module=bundle.module,
        activation=repr(bundle.activation),
        activation_doc=_doc_safe(one_line(bundle.activation)),
        generator=repr(f"bnmft {bundle.version}"),
        sha256=repr(bundle.sha256),
        names=[repr(q.name) for q in bundle.quantities],
        functions=functions,
    )
    return {f"{bundle.module}.py": text}


__all__ = ["NumpyModulePrinter", "render"]
