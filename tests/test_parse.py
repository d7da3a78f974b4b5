"""The safe activation parser: whitelist in, SymPy out, ParseError (one line) otherwise."""

from __future__ import annotations

import builtins

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bnmft.derive.parse import ParseError, parse_expression
from bnmft.derive.symbols import x

R = sp.Rational


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg, "empty message"
    assert "\n" not in msg and len(msg.splitlines()) == 1, repr(msg)
    return msg


# -- accepted text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tanh(2*x) + 0.1", sp.tanh(2 * x) + R(1, 10)),
        ("Max(x, 0)**1.5", sp.Max(x, 0) ** R(3, 2)),
        ("x*(1 + erf(x/sqrt(2)))/2", x * (1 + sp.erf(x / sp.sqrt(2))) / 2),
        ("Max(x + 1, 0)", sp.Max(x + 1, 0)),
        ("log(1 + exp(x))", sp.log(1 + sp.exp(x))),
        ("Max(x, x/5)", sp.Max(x, x / 5)),
        ("x", x),
        ("  x  ", x),
        ("-x", -x),
        ("+x", x),
        ("pi*x + E", sp.pi * x + sp.E),
        ("abs(x) + Abs(x)", 2 * sp.Abs(x)),
        ("max(x, 0) - min(x, 0)", sp.Max(x, 0) - sp.Min(x, 0)),
        ("arctan(x) + atan(x)", 2 * sp.atan(x)),
        ("arcsinh(x)", sp.asinh(x)),
        ("heaviside(x) + sign(x)", sp.Heaviside(x) + sp.sign(x)),
        ("erfc(x) + cosh(x) - sinh(x) + cos(x) + sin(x)",
         sp.erfc(x) + sp.cosh(x) - sp.sinh(x) + sp.cos(x) + sp.sin(x)),
        ("log(x, 2)", sp.log(x) / sp.log(2)),
        ("(x +\n 1)", x + 1),
        ("1_000*x", 1000 * x),
        ("0x10*x", 16 * x),
    ],
)
def test_examples(text, expected):
    got = parse_expression(text)
    assert isinstance(got, sp.Expr)
    assert got == expected


@pytest.mark.parametrize(
    "text, value",
    [("0.1", R(1, 10)), ("0.3", R(3, 10)), ("2.5e3", 2500), ("1e-3", R(1, 1000)), (".5", R(1, 2)),
     ("1.", 1), ("1e-300", R(1, 10**300)), ("3", 3)],
)
def test_decimals_are_exact_rationals(text, value):
    got = parse_expression(text)
    assert got == value and got.is_Rational


def test_decimal_inside_expression_is_exact():
    got = parse_expression("tanh(2*x) + 0.1")
    assert not got.atoms(sp.Float)
    assert got - sp.tanh(2 * x) == R(1, 10)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x^2", x**2),
        ("x^1.5", x ** R(3, 2)),
        # '^' has the precedence of '**', not of Python's xor
        ("x^2 + 1", x**2 + 1),
        ("2*x^2", 2 * x**2),
        ("-x^2", -(x**2)),
        ("2^3^2", 512),
        ("x^0.5*2", 2 * sp.sqrt(x)),
        ("Max(x, 0)^1.5", sp.Max(x, 0) ** R(3, 2)),
    ],
)
def test_caret_is_power(text, expected):
    assert parse_expression(text) == expected
    assert parse_expression(text) == parse_expression(text.replace("^", "**"))


def test_piecewise():
    got = parse_expression("Piecewise((x, x > 0), (0.2*x, True))")
    assert got == sp.Piecewise((x, x > 0), (x / 5, True))
    got = parse_expression("Piecewise((x**2, x >= 1), (x, x < 1))")
    assert got == sp.Piecewise((x**2, x >= 1), (x, x < 1))
    got = parse_expression("Piecewise((1, x <= -1), (exp(x), True))")
    assert got == sp.Piecewise((1, x <= -1), (sp.exp(x), True))


def test_registered_style_functions_can_be_passed_in():
    def relu(arg):
        return sp.Max(arg, 0)

    assert parse_expression("relu(2*x + 1)", {"relu": relu}) == sp.Max(2 * x + 1, 0)
    with pytest.raises(ParseError, match="relu"):
        parse_expression("relu(x)")


# -- refused text -------------------------------------------------------------------------

REFUSED = {
    "unknown name": ("y*x", "'y'"),
    "unknown name I": ("x + I", "'I'"),
    "unknown function": ("foo(x)", "foo"),
    "builtin function": ("print(x)", "print"),
    "eval": ("eval('1')", "eval"),
    "attribute": ("x.__class__", "Attribute"),
    "dunder attribute chain": ("x.__class__.__mro__[1].__subclasses__()", "__subclasses__"),
    "subscript": ("x[0]", "Subscript"),
    "lambda": ("(lambda: 1)()", "lambda"),
    "lambda bare": ("lambda: x", "Lambda"),
    "list comprehension": ("[x for x in (1, 2)]", "ListComp"),
    "generator": ("sum(x for x in (1, 2))", "sum"),
    "set comprehension": ("{x for x in (1,)}", "SetComp"),
    "keyword argument": ("Max(x, 0, evaluate=False)", "keyword"),
    "starred argument": ("Max(*(x, 0))", "Starred"),
    "string": ("'x'", "literal"),
    "string argument": ("sin('x')", "literal"),
    "bytes": ("b'x'", "literal"),
    "f-string": ("f'{x}'", "JoinedStr"),
    "walrus": ("(y := x)", "NamedExpr"),
    "import": ("import os", "cannot parse"),
    "dunder import": ("__import__('os').system('true')", "__import__"),
    "dunder name": ("__builtins__", "__builtins__"),
    "statement": ("x; x", "cannot parse"),
    "conditional": ("x if x > 0 else 0", "IfExp"),
    "boolean operator": ("x and 1", "BoolOp"),
    "not": ("not x", "UnaryOp"),
    "bitwise": ("x & 1", "BinOp"),
    "floor division": ("x // 2", "BinOp"),
    "modulo": ("x % 2", "BinOp"),
    "matmul": ("x @ x", "BinOp"),
    "comparison as value": ("x > 0", "comparison"),
    "chained comparison": ("Piecewise((x, 0 < x < 1), (0, True))", "one comparison"),
    "comparison inside value": ("Piecewise((x + (x > 0), True))", "comparison"),
    "condition as value": ("Piecewise((x > 0, True))", "comparison"),
    "not pairs": ("Piecewise(x, True)", "pairs"),
    "empty Piecewise": ("Piecewise()", "pairs"),
    "triple": ("Piecewise((x, x > 0, 1))", "pairs"),
    "tuple": ("(x, 1)", "Tuple"),
    "list": ("[x]", "List"),
    "dict": ("{x: 1}", "Dict"),
    "ellipsis": ("...", "literal"),
    "None": ("None", "literal"),
    "True": ("True", "literal"),
    "bool as number": ("True*x", "literal"),
    "False": ("x + False", "literal"),
    "complex": ("1j*x", "literal"),
    "infinite literal": ("1e400*x", "not finite"),
    "await": ("await x", "Await"),
    "yield": ("(yield x)", "yield"),
    "syntax": ("x +", "cannot parse"),
    "unbalanced": ("sin(x", "cannot parse"),
    "null byte": ("x\x00", "cannot parse"),
    "too many arguments": ("Abs(x, x)", "Abs"),
    "sqrt evaluate flag": ("sqrt(x, 0)", "sqrt"),
    "no argument": ("exp()", "exp"),
    "call of a call": ("sin(x)(1)", "unknown function"),
    "call of the variable": ("x(1)", "unknown function 'x'"),
    "huge power": ("9**9**9", "too large"),
    "huge power caret": ("9^9^9", "too large"),
    "huge tower": ("((10**1000)**1000)**1000", "too large"),
    "huge power of sqrt": ("sqrt(2)**(10**9)", "too large"),
    "complex comparison": ("Piecewise((x, x > 1/0), (0, True))", "invalid expression"),
}


@pytest.mark.parametrize("text, needle", REFUSED.values(), ids=REFUSED.keys())
def test_refused(text, needle):
    with pytest.raises(ParseError) as info:
        parse_expression(text)
    assert needle.lower() in _one_line(info.value).lower()


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None, 3, b"x"])
def test_empty_or_not_text(text):
    with pytest.raises(ParseError, match="empty"):
        parse_expression(text)


def test_too_long():
    with pytest.raises(ParseError, match="longer"):
        parse_expression("x" + " + x" * 600)
    parse_expression("+".join(["x"] * 50))  # a long, shallow sum is fine


@pytest.mark.parametrize(
    "text",
    [
        "(" * 300 + "x" + ")" * 300,
        "-" * 1500 + "x",
        "sin(" * 100 + "x" + ")" * 100,
        "x" + "**x" * 200,
        "[" * 150 + "x" + "]" * 150,
    ],
)
def test_deep_nesting_is_refused(text):
    with pytest.raises(ParseError) as info:
        parse_expression(text)
    _one_line(info.value)


def test_messages_are_one_line_even_for_multiline_input():
    for text in ["x +\n", "x\n+ 1", "Piecewise((x, (x>0, x)))", "x\r\n1", "x\u2028+"]:
        with pytest.raises(ParseError) as info:
            parse_expression(text)
        _one_line(info.value)


def test_parse_error_is_a_value_error():
    assert issubclass(ParseError, ValueError)
    assert str(ParseError("a\nb")) == "a b"


# -- nothing is ever executed -------------------------------------------------------------


@pytest.fixture
def sentinel(monkeypatch):
    """Side effects an executed payload would have are recorded: calls of ``os.system`` and
    of a builtin ``bnmft_sentinel`` that evaluated text could reach."""
    calls = []

    def record(name):
        def call(*args, **kwargs):
            calls.append(name)
            return 0

        return call

    monkeypatch.setattr(builtins, "bnmft_sentinel", record("bnmft_sentinel"), raising=False)
    monkeypatch.setattr("os.system", record("os.system"))
    return calls


ATTACKS = [
    "__import__('os').system('true')",
    "bnmft_sentinel()",
    "x + bnmft_sentinel()",
    "Max(x, bnmft_sentinel())",
    "Piecewise((bnmft_sentinel(), True))",
    "Piecewise((x, x > bnmft_sentinel()), (0, True))",
    "eval('bnmft_sentinel()')",
    "exec('bnmft_sentinel()')",
    "(lambda: bnmft_sentinel())()",
    "[bnmft_sentinel() for _ in (1,)]",
    "getattr(x, '__class__')",
    "x.__class__.__bases__[0].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "compile('1', 'f', 'eval')",
    "sin(x).func(x)",
    "sin(x, bnmft_sentinel())",
    "(y := bnmft_sentinel())",
    "f'{bnmft_sentinel()}'",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_attacks_are_refused_without_side_effects(text, sentinel):
    assert builtins.bnmft_sentinel() == 0 and sentinel == ["bnmft_sentinel"]  # armed
    sentinel.clear()
    with pytest.raises(ParseError) as info:
        parse_expression(text)
    _one_line(info.value)
    assert sentinel == []


def test_shell_payload_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"__import__('pathlib').Path('{marker}').touch()",
        f"open('{marker}', 'w')",
        f"eval(\"open('{marker}', 'w')\")",
    ]
    for text in payloads:
        with pytest.raises(ParseError):
            parse_expression(text)
    assert not marker.exists()


# -- property tests -----------------------------------------------------------------------

_LEAF = st.sampled_from(
    [x, x, x, sp.Integer(1), sp.Integer(2), sp.Integer(-3), R(1, 2), R(-7, 10), sp.pi, sp.E]
)
_UNARY = [sp.sin, sp.cos, sp.tanh, sp.sinh, sp.cosh, sp.atan, sp.asinh, sp.exp, sp.erf,
          sp.erfc, sp.Abs, sp.sign, sp.Heaviside,
          lambda e: sp.log(1 + sp.exp(e)), lambda e: sp.sqrt(1 + e**2)]


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(_UNARY), children).map(lambda t: t[0](t[1])),
        st.tuples(children, children).map(lambda t: t[0] + t[1]),
        st.tuples(children, children).map(lambda t: t[0] - t[1]),
        st.tuples(children, children).map(lambda t: t[0] * t[1]),
        st.tuples(children, st.sampled_from([2, 3, R(1, 3), 7])).map(lambda t: t[0] / t[1]),
        st.tuples(children, st.integers(1, 3)).map(lambda t: t[0] ** t[1]),
        st.tuples(children, children).map(lambda t: sp.Max(t[0], t[1])),
        st.tuples(children, children).map(lambda t: sp.Min(t[0], t[1])),
        st.tuples(children, children, st.sampled_from([-1, 0, R(1, 2)])).map(
            lambda t: sp.Piecewise((t[0], x > t[2]), (t[1], True))
        ),
    )


_TREES = st.recursive(_LEAF, _extend, max_leaves=8)

_PRINTED_ONLY = ("zoo", "nan", "oo", "I", "&", "|", "~", "Eq(", "Ne(", "cot", "csc", "sec")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TREES)
def test_roundtrip_of_printed_sympy_trees(expr):
    text = str(expr)
    # SymPy may simplify into notation outside the whitelist (And conditions, cot, ...)
    assume(not any(tok in text for tok in _PRINTED_ONLY))
    assume(len(text) <= 2000)
    got = parse_expression(text)
    assert got == expr or sp.simplify(got - expr) == 0, (text, got)


_DECIMALS = ["0.1", "2.5", "1e-3", "0.125", "3"]


@st.composite
def _typed(draw, depth=3):
    """A text as a user would type it, and a function building the expression it must mean
    (built in the test, not in the strategy: SymPy's simplifications may use ``random``)."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        leaf = draw(st.sampled_from(["x", "pi", "E", *_DECIMALS]))
        value = {"x": x, "pi": sp.pi, "E": sp.E}.get(leaf)
        return leaf, (lambda: R(leaf)) if value is None else (lambda: value)
    kind = draw(st.sampled_from(["fn", "max", "add", "sub", "mul", "div", "pow", "neg", "pw"]))
    a_text, a = draw(_typed(depth - 1))
    if kind == "fn":
        name, fn = draw(st.sampled_from(
            [("sin", sp.sin), ("tanh", sp.tanh), ("erf", sp.erf), ("abs", sp.Abs),
             ("exp", sp.exp), ("atan", sp.atan), ("Heaviside", sp.Heaviside)]))
        return f"{name}( {a_text} )", lambda: fn(a())
    if kind == "neg":
        return f"-({a_text})", lambda: -a()
    if kind == "div":
        d = draw(st.sampled_from(_DECIMALS))
        return f"({a_text}) / {d}", lambda: a() / R(d)
    if kind == "pow":
        n = draw(st.integers(1, 3))
        op = draw(st.sampled_from(["**", "^"]))
        return f"({a_text}){op}{n}", lambda: a()**n
    b_text, b = draw(_typed(depth - 1))
    if kind == "max":
        return f"Max({a_text}, {b_text})", lambda: sp.Max(a(), b())
    if kind == "pw":
        c = draw(st.sampled_from(_DECIMALS))
        return f"Piecewise(({a_text}, x > {c}), ({b_text}, True))", lambda: sp.Piecewise(
            (a(), x > R(c)), (b(), True))
    op, fn = {"add": ("+", sp.Add), "sub": ("-", lambda p, q: p - q),
              "mul": ("*", sp.Mul)}[kind]
    return f"({a_text}) {op} ({b_text})", lambda: fn(a(), b())


@settings(max_examples=80, deadline=None)
@given(_typed())
def test_typed_text_means_the_expected_expression(pair):
    text, build = pair
    assert parse_expression(text) == build(), text


_TOKENS = ["x", "1", "0.5", "2", "1e999", "(", ")", ",", "+", "-", "*", "/", "**", "^", ">",
           "<=", "==", "True", "False", "None", "sin", "Max", "Piecewise", "sqrt", "log", "y",
           "__class__", ".", "[", "]", "'", "lambda", ":", "=", " ", "\n", "\x00", "I", "j",
           "9**9**9", "1/0", "pi"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(_TOKENS), max_size=25).map("".join)))
def test_arbitrary_text_parses_or_raises_parse_error(text):
    try:
        got = parse_expression(text)
    except ParseError as err:
        _one_line(err)
    else:
        assert isinstance(got, sp.Expr)
        assert got.free_symbols <= {x}
