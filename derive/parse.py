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

from .errors import InvalidInput
from .symbols import x


class ParseError(InvalidInput):
    """The text is not an expression bnmft accepts; the message is one line (user text and
    SymPy errors may hold line breaks: :class:`InvalidInput` joins them)."""


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
    "sqrt": lambda arg: sp.sqrt(arg),  # one argument: sp.sqrt's second one is `evaluate`
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

#: Largest exact number (in bits) a power of numbers may produce: SymPy evaluates
#: ``9**9**9`` exactly, which would take hours.
_MAX_POWER_BITS = 100_000


def _power(a, b):
    a, b = sp.sympify(a), sp.sympify(b)
    if a.is_number and b.is_Rational and a not in (sp.S.Zero, sp.S.One, sp.S.NegativeOne):
        bits = sum(abs(r.p).bit_length() + r.q.bit_length() for r in a.atoms(sp.Rational))
        if max(bits, 1) * abs(b) > _MAX_POWER_BITS:
            raise ParseError("number too large (power of a number with a huge exponent)")
    return a**b


_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: _power,
    ast.BitXor: _power,  # '^' (parse_expression rewrites it to '**' first, for precedence)
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
    if value != value or value in (float("inf"), float("-inf")):
        raise ParseError(f"number {value!r} is not finite (literal too large?)")
    return sp.Rational(repr(value))


class _Builder:
    def __init__(self, text: str, functions: Mapping[str, Callable[..., sp.Expr]]):
        self.text = text
        self.functions = functions

    def build(self, node: ast.AST, depth: int = 0, in_piecewise: bool = False):
        """``in_piecewise``: ``node`` is an argument of Piecewise (a pair) or the condition
        of a pair, the only places where tuples, comparisons and ``True`` are allowed."""
        if depth > _MAX_DEPTH:
            raise ParseError("expression is nested too deeply")
        rec = lambda n, pw=False: self.build(n, depth + 1, pw)  # noqa: E731
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
            # (value, condition): only the condition may be a comparison or True
            return tuple(rec(elt, k == 1) for k, elt in enumerate(node.elts))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in self.functions:
                name = getattr(node.func, "id", None) or self.segment(node.func)
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
        if isinstance(node, ast.Compare):
            raise ParseError(f"comparison '{self.segment(node)}' outside a Piecewise condition")
        raise ParseError(f"unsupported syntax ({type(node).__name__}): {self.segment(node)}")

    def segment(self, node: ast.AST) -> str:
        """The source text of ``node``, shortened, for messages."""
        text = ast.get_source_segment(self.text, node) or type(node).__name__
        return text if len(text) <= 40 else text[:37] + "..."


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
    typed = text.strip()
    for ch in typed:
        # Python's parser NFKC-folds identifiers and reads any Unicode digit: a fullwidth
        # 'ｘ' or '８' would silently become 'x' or 8. Only ASCII is accepted.
        if not ch.isascii():
            shown = typed if len(typed) <= 60 else typed[:57] + "..."
            raise ParseError(f"non-ASCII character '{ch}' (U+{ord(ch):04X}) in '{shown}'; "
                             "type the expression in ASCII")
    # '^' is power with the precedence of '**' (x^2 + 1 is x**2 + 1, 2^3^2 is 512), not
    # Python's bitwise xor, which binds looser than + and *. No string literal survives
    # the whitelist, so a textual replacement cannot change anything else.
    text = typed.replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        shown = typed if len(typed) <= 60 else typed[:57] + "..."
        raise ParseError(f"cannot parse '{shown}': {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, deep nesting
        raise ParseError(f"cannot parse the expression: {type(err).__name__}") from None
    table = dict(FUNCTIONS)
    if functions:
        table.update(functions)
    try:
        result = sp.sympify(_Builder(text, table).build(tree))
    except ParseError:
        raise
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as err:
        # SymPy refusing an operation, e.g. comparing with a complex number in a condition
        raise ParseError(f"invalid expression: {type(err).__name__}: {err}") from None
    # (a Symbol is a sympy Boolean too, so test for Expr rather than for Boolean)
    if isinstance(result, tuple) or not isinstance(result, sp.Expr):
        raise ParseError("the expression must be a value, not a condition")
    return result
