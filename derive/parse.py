"""Safe parsing of activation expressions typed by a user.

The text is parsed by Python's :mod:`ast` (syntax only, nothing is executed) and the
tree is rebuilt as a SymPy expression from a whitelist: numbers, the variable ``x``, the
constants ``pi`` and ``E``, ``+ - * / ** ^``, comparisons (inside ``Piecewise``) and calls
of whitelisted functions. Decimal literals become exact rationals (``0.1 -> 1/10``), so
that high-precision references integrate the function the user wrote.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

import sympy as sp

from .symbols import x


class ParseError(ValueError):
    """The text is not an expression bnmft accepts; the message is one line."""


#: Functions a user may call, by the names they may type.
FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "atan": sp.atan,
    "arctan": sp.atan,
    "asinh": sp.asinh,
    "arcsinh": sp.asinh,
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "Max": sp.Max,
    "max": sp.Max,
    "Min": sp.Min,
    "min": sp.Min,
    "Heaviside": sp.Heaviside,
    "heaviside": sp.Heaviside,
    "sign": sp.sign,
    "Piecewise": sp.Piecewise,
}

CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.BitXor: lambda a, b: a**b,  # '^' as power, as in most papers
}
_CMPOPS = {
    ast.Lt: sp.Lt,
    ast.LtE: sp.Le,
    ast.Gt: sp.Gt,
    ast.GtE: sp.Ge,
}
_MAX_LENGTH = 2000
_MAX_DEPTH = 60


def _number(value) -> sp.Expr:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParseError(f"unsupported literal {value!r}")
    if isinstance(value, int):
        return sp.Integer(value)
    return sp.Rational(repr(value))


class _Builder:
    def __init__(self, text: str, functions: Mapping[str, Callable[..., sp.Expr]]):
        self.text = text
        self.functions = functions

    def build(self, node: ast.AST, depth: int = 0, in_piecewise: bool = False):
        if depth > _MAX_DEPTH:
            raise ParseError("expression is nested too deeply")
        rec = lambda n, pw=in_piecewise: self.build(n, depth + 1, pw)  # noqa: E731
        if isinstance(node, ast.Expression):
            return rec(node.body)
        if isinstance(node, ast.Constant):
            if in_piecewise and node.value is True:
                return sp.true
            return _number(node.value)
        if isinstance(node, ast.Name):
            if node.id == "x":
                return x
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ParseError(f"unknown name '{node.id}' (the variable is x)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            val = rec(node.operand)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](rec(node.left), rec(node.right))
        if isinstance(node, ast.Compare) and in_piecewise:
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
                raise ParseError("conditions must be one comparison such as x > 0")
            return _CMPOPS[type(node.ops[0])](rec(node.left), rec(node.comparators[0]))
        if isinstance(node, ast.Tuple) and in_piecewise:
            return tuple(rec(elt) for elt in node.elts)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in self.functions:
                name = getattr(node.func, "id", "?")
                raise ParseError(f"unknown function '{name}'")
            if node.keywords:
                raise ParseError("keyword arguments are not supported")
            name = node.func.id
            piecewise = self.functions[name] is sp.Piecewise
            args = [rec(a, piecewise) for a in node.args]
            if piecewise and not all(isinstance(a, tuple) and len(a) == 2 for a in args or [0]):
                raise ParseError("Piecewise takes pairs (value, condition)")
            try:
                return self.functions[name](*args)
            except (TypeError, ValueError) as err:
                raise ParseError(f"bad arguments to {name}: {err}") from None
        raise ParseError(f"unsupported syntax: {ast.dump(node)[:40]}")


def parse_expression(
    text: str, functions: Mapping[str, Callable[..., sp.Expr]] | None = None
) -> sp.Expr:
    """Parse ``text`` (e.g. ``"tanh(2*x) + 0.1"``) into a SymPy expression in ``x``.

    Never evaluates the text: only whitelisted syntax and functions are rebuilt.
    Raises :class:`ParseError` with a one-line message otherwise.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty expression")
    if len(text) > _MAX_LENGTH:
        raise ParseError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ParseError(f"cannot parse '{text}': {err.msg}") from None
    table = dict(FUNCTIONS)
    if functions:
        table.update(functions)
    result = _Builder(text, table).build(tree)
    if isinstance(result, (tuple, sp.logic.boolalg.Boolean)) or isinstance(result, sp.Rel):
        raise ParseError("the expression must be a value, not a condition")
    return sp.sympify(result)
