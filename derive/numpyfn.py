"""SymPy expressions -> numpy callables (``lambdify`` with a lean namespace).

``sympy.lambdify(..., "numpy")`` runs ``from numpy import *``, which imports ``numpy.f2py``,
and the SciPy printer imports SymPy's physical-units tables: together most of a second per
process. Here the code is printed by SymPy's ``NumPyPrinter`` (fully qualified ``numpy.*``
names) and the few special functions numpy lacks go to ``scipy.special``, imported only when
an expression needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import functools

import numpy
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

#: SymPy function -> name in scipy.special, for what numpy itself does not provide.
_SPECIAL = {sp.erf: "erf", sp.erfc: "erfc", sp.gamma: "gamma", sp.loggamma: "gammaln"}


class _Printer(NumPyPrinter):
    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "strict": True})


def _special_printer(func, name):
    def method(self, expr):
        return f"scipy_special.{name}({', '.join(self._print(a) for a in expr.args)})"

    method.__name__ = f"_print_{func.__name__}"
    return method


for _func, _name in _SPECIAL.items():
    setattr(_Printer, f"_print_{_func.__name__}", _special_printer(_func, _name))


def numpy_function(args: Sequence[sp.Symbol] | sp.Symbol, expr: sp.Expr) -> Callable:
    """``expr`` as a numpy function of ``args`` (elementwise; broadcasting)."""
    namespace: dict = {"numpy": numpy, "functools": functools}  # Max/Min: reduce
    if any(expr.has(f) for f in _SPECIAL):
        import scipy.special

        namespace["scipy_special"] = scipy.special
    return sp.lambdify(args, expr, modules=[namespace], printer=_Printer())
