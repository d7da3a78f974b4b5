"""C99 backend: ``NAME.c`` / ``NAME.h`` with one loop kernel per quantity.

``void NAME_<quantity>(size_t n, const double *B, double *out)`` writes ``out[i] = f(B[i])``
for ``i < n``. Kernels keep no state (thread-safe), need only ``<math.h>`` (link ``-lm``) and
may be called in place (``out == B``: each element is read before it is written).

The printer is SymPy's :class:`~sympy.printing.c.C99CodePrinter` with these changes:

* ``pi`` and ``E`` print as ``bnmft_pi``/``bnmft_e``, file-scope ``static const double``s
  initialised from 36-digit literals (emitted only where used, so ``-Wunused`` stays quiet):
  ``M_PI``/``M_E`` are POSIX, not C99, and are missing under ``-std=c99`` on strict libcs;
* integers beyond 32 bits print as double literals (``1e20*b`` must not become an overflowing
  ``int``/``long`` constant);
* the symbol ``B`` prints as ``b``, the element of the input array ``B`` being processed;
* ``strict`` printing: an unsupported function raises instead of emitting a comment.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.c import C99CodePrinter

from ...errors import CodegenError
from ...prepare import PreparedModule
from ...render import WIDTH, doc_lines, environment, header_lines, one_line, wrap

_ENV = environment(__file__)
_CONSTANT_DIGITS = 36


class CKernelPrinter(C99CodePrinter):
    """Prints expressions as C99 double arithmetic on the loop element ``b``.

    ``constants`` collects the named constants used, as ``{name: literal}``.
    """

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"strict": True, "math_macros": {}, **(settings or {})})
        self.constants: dict[str, str] = {}

    def _print_NumberSymbol(self, expr):
        name = f"bnmft_{str(expr).lower()}"
        self.constants[name] = str(sp.N(expr, _CONSTANT_DIGITS))
        return name

    def _print_Integer(self, expr):
        if abs(int(expr)) >= 2**31:
            return self._print_Float(sp.Float(expr, 17))
        return super()._print_Integer(expr)

    def _print_Symbol(self, expr):
        return "b" if expr.name == "B" else super()._print_Symbol(expr)


def comment_safe(line: str) -> str:
    """A line that cannot end the C comment it is in, open a nested one (``-Wcomment``) or
    form a trigraph (``-Wtrigraphs``; trigraphs are live in strict C99)."""
    line = line.replace("\r", " ").replace("\n", " ")
    return line.replace("*/", "* /").replace("/*", "/ *").replace("??", "?\\?")


def render(module: PreparedModule) -> dict[str, str]:
    """``{module}.c`` and ``{module}.h`` for ``module`` (functions of ``B`` only; the spec's
    numpy constants have no C counterpart, the header notes carry the same facts)."""
    spec = module.spec
    printer = CKernelPrinter()
    kernels = []
    for q in module.functions:
        if len(q.argument_names) > 1:
            raise CodegenError(
                f"{q.name} takes {', '.join(q.argument_names)}; the C backend prints kernels of "
                "the batch size B only"
            )
        temps = [(printer.doprint(s), printer.doprint(e)) for s, e in q.temporaries]
        kernels.append(
            {
                "symbol": f"{spec.name}_{q.name}",
                "doc": [comment_safe(line) for line in doc_lines(q)],
                "constant": q.is_constant,
                "temporaries": temps,
                "result": printer.doprint(q.result),
            }
        )
    context = {
        "header": [comment_safe(line) for line in header_lines(module)],
        "title": comment_safe(one_line(spec.title)),
        "description": [[comment_safe(ln) for ln in wrap(p, WIDTH - 3)] for p in spec.description],
        "module": spec.name,
        "guard": f"BNMFT_{spec.name.upper()}_H",
        "kernels": kernels,
        "constants": sorted(printer.constants.items()),
    }
    return {
        f"{spec.name}.c": _ENV.get_template("module.c.jinja").render(context),
        f"{spec.name}.h": _ENV.get_template("module.h.jinja").render(context),
    }
