"""SymPy expressions as Python source on python-flint ``arb`` balls.

A 2-D quadrature at 30 digits evaluates ``phi`` and ``phi'`` at some 10^5 nodes, so the cost
of each call is what counts. Lambdified code (:func:`.arbmath.arb_function`) reaches Arb
through a name table (``tanh -> lambda a: getattr(_as_arb(a), "tanh")()``) and computes with
Python integers (``1 - x0**2`` converts ``1`` and ``2`` at every call and takes Arb's general
power): for ``tanh`` that doubles the time of the ``tanh`` itself. :class:`ArbSourcePrinter`
prints each node as the direct ball operation instead:

* a function as the method of its argument (``t0.tanh()``, ``(c1*x).erf()``);
* every subexpression free of the variable as one named constant, enclosed exactly at the
  working precision by :mod:`.arbprinter` (``sqrt(2)/(2*sqrt(pi))`` is one ball);
* integer powers as products (also valid for balls containing 0, where Arb's ``pow`` is
  NaN), square roots as ``sqrt``/``rsqrt``, quotients as one division;
* the common subexpressions of ``phi`` and ``phi'`` once (``sympy.cse``).

Nodes without a translation (``Piecewise``, ``Max``, ``Heaviside``, unknown functions) raise
:class:`~.arbprinter.NotEvaluable`; the callers then use lambdify.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.printer import Printer

from .arbprinter import _BRANCHED, _UNARY, NotEvaluable, evaluate

#: Method names of the functions translated here (SymPy function -> arb method).
_METHODS = {**_UNARY, **{fn: name for fn, name in _BRANCHED.items()}}


class ArbSourcePrinter(Printer):
    """Python source of an expression in the symbols it is given, on arb balls.

    ``constants`` collects the variable-free subexpressions met while printing (name ->
    SymPy expression); their balls are made by :func:`arb_source_function`.
    """

    printmethod = "_arbsource"

    def __init__(self):
        super().__init__()
        self.constants: dict[str, sp.Expr] = {}
        self._names: dict[sp.Expr, str] = {}

    def _print(self, expr, **kwargs):
        if isinstance(expr, sp.Basic) and not expr.free_symbols:
            return self._constant(expr)
        return super()._print(expr, **kwargs)

    def _constant(self, expr) -> str:
        if expr not in self._names:
            name = f"c{len(self._names)}"
            self._names[expr] = name
            self.constants[name] = expr
        return self._names[expr]

    def emptyPrinter(self, expr):
        raise NotEvaluable(f"no arb source for {type(expr).__name__}: {expr}")

    def _print_Symbol(self, expr):
        return expr.name

    _print_Dummy = _print_Symbol

    def _paren(self, expr) -> str:
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sp.Function) else f"({text})"

    def _print_Add(self, expr):
        terms = list(expr.as_ordered_terms())
        # a positive term first: c - t rather than -t + c
        terms.sort(key=lambda t: t.could_extract_minus_sign())
        out = self._paren(terms[0])
        for term in terms[1:]:
            if term.could_extract_minus_sign():
                out += f" - {self._paren(-term)}"
            else:
                out += f" + {self._paren(term)}"
        return out

    def _print_Mul(self, expr):
        const = [a for a in expr.args if not a.free_symbols]
        var = [a for a in expr.args if a.free_symbols]
        num, den = [], []
        for f in var:
            if f.is_Pow and f.exp.is_Rational and f.exp.is_negative:
                den.append(sp.Pow(f.base, -f.exp))
            else:
                num.append(f)
        coeff = sp.Mul(*const)
        sign = coeff.could_extract_minus_sign()
        if sign:
            coeff = -coeff
        factors = [] if coeff == 1 else [self._constant(coeff)]
        factors += [self._paren(f) for f in num]
        text = "*".join(factors) if factors else self._constant(sp.Integer(1))
        if den:
            text = f"{text}/" + (self._paren(den[0]) if len(den) == 1 else
                                  "(" + "*".join(self._paren(d) for d in den) + ")")
        return f"-({text})" if sign else text

    def _print_Pow(self, expr):
        base, exp = expr.args
        if exp.is_Integer:
            n = int(exp)
            if n > 0:
                return self._power(base, n)
            return f"{self._constant(sp.Integer(1))}/({self._power(base, -n)})"
        if exp.is_Rational and exp.q == 2:
            root = f"{self._paren(base)}.sqrt()" if exp > 0 else f"{self._paren(base)}.rsqrt()"
            p = abs(int(exp.p))
            return root if p == 1 else f"ipow({root}, {p})"
        # a general real power: Arb's pow (NaN where the base may be <= 0)
        return f"{self._paren(base)}**{self._paren(exp)}"

    def _power(self, base, n: int) -> str:
        if n == 1:
            return self._print(base)
        if base.is_Symbol and n <= 4:
            return "*".join([base.name] * n)
        return f"ipow({self._print(base)}, {n})"

    def _print_Function(self, expr):
        name = _METHODS.get(expr.func)
        if name is None or len(expr.args) != 1:
            raise NotEvaluable(f"no arb source for the function {expr.func}")
        return f"{self._paren(expr.args[0])}.{name}()"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"


def _ipow(b, n: int):
    out = b
    for _ in range(n - 1):
        out = out * b
    return out


def arb_source_function(exprs, x: sp.Symbol, bits: int, name: str = "values"):
    """``exprs`` (in ``x``) as one Python function of an arb returning the list of their
    balls, common subexpressions shared; constants are balls at ``bits`` precision
    (:func:`.arbprinter.evaluate`). Raises :class:`~.arbprinter.NotEvaluable`."""
    from .arbmath import precision

    exprs = [sp.sympify(e) for e in exprs]
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"))
    printer = ArbSourcePrinter()
    lines = [f"def {name}({x.name}):"]
    for sym, sub in temps:
        lines.append(f"    {sym.name} = {printer.doprint(sub)}")
    lines.append(f"    return [{', '.join(printer.doprint(e) for e in reduced)}]")
    namespace = {"ipow": _ipow}
    with precision(bits):
        for cname, cexpr in printer.constants.items():
            value = evaluate(cexpr)
            if not value.is_finite():
                raise NotEvaluable(f"the constant {cexpr} is not finite")
            namespace[cname] = value
    source = "\n".join(lines)
    exec(compile(source, f"<arb source of {name}>", "exec"), namespace)  # noqa: S102
    fn = namespace[name]
    fn.source = source
    return fn

