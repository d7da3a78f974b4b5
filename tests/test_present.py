"""Closed forms as text: ``bnmft derive`` prints named sub-expressions, one line each, that
read back (sympify) to the derived expressions."""

import re

import pytest
import sympy as sp

from bnmft.cli import main
from bnmft.derive.activation import activation, symbolic_activation
from bnmft.derive.bsb1 import QUANTITIES
from bnmft.derive.derivation import derive
from bnmft.present import WIDTH, formula_block, formula_lines

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z_0-9]*) = (.+)$")


def _read_back(lines, symbols) -> dict[str, sp.Expr]:
    """Every ``name = expr`` line, parsed, with the definitions substituted to a fixpoint."""
    local = {str(s): s for s in symbols}
    table = {}
    for line in lines:
        m = _LINE.match(line)
        if m and "[" not in m.group(2):
            local.setdefault(m.group(1), sp.Symbol(m.group(1)))
            table[m.group(1)] = m.group(2)
    parsed = {k: sp.sympify(v, locals=local) for k, v in table.items()}
    subs = {local[k]: v for k, v in parsed.items()}
    out = {}
    for k, v in parsed.items():
        for _ in range(100):
            new = v.xreplace(subs)
            if new == v:
                break
            v = new
        out[k] = v
    return out


def _same(a: sp.Expr, b: sp.Expr, symbols) -> bool:
    """Equal after expansion, or to 40 digits at three points (B; other symbols near 1.5)."""
    if sp.expand(a - b) == 0:
        return True
    for point in ("7.25", "13.5", "40.75"):
        values = {s: sp.Rational(point) if str(s) == "B" else sp.Rational(3, 2) + sp.Rational(k, 7)
                  for k, s in enumerate(sorted(symbols, key=str))}
        x, y = (sp.N(e.subs(values), 50) for e in (a, b))
        if abs(x - y) > sp.Float("1e-40") * max(1, abs(y)):
            return False
    return True


def test_derive_alpha_relu_is_compact_and_reads_back(capsys):
    status = main(["derive", "alpha_relu"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert status == 0 and len(lines) < 60  # SymPy's pretty form: over 1,000 lines
    deriv = derive(symbolic_activation("alpha_relu"))
    for name in QUANTITIES:
        assert sum(line.startswith(f"{name} = ") for line in lines) == 1, name
    assert all(len(line) <= 2 * WIDTH for line in lines if _LINE.match(line))
    symbols = {s for q in deriv.closed.values() for s in q.expr.free_symbols}
    back = _read_back(lines, symbols)
    for name in QUANTITIES:
        q = deriv.closed[name]
        expected = q.compact if q.compact is not None else q.expr
        assert _same(back[name], expected, symbols), name


def test_derive_full_prints_the_pretty_forms(capsys):
    status = main(["derive", "alpha_relu", "--full"])
    out = capsys.readouterr().out
    assert status == 0 and len(out.splitlines()) > 300
    q = derive(symbolic_activation("alpha_relu")).closed["q_star"]
    assert sp.pretty(q.expr, use_unicode=False) in out


def test_derive_relu_names_the_kernel(capsys):
    main(["derive", "relu"])
    out = capsys.readouterr().out
    assert "lambda_M = B*Jp/((1 - J)*(B + 1))\n" in out
    assert "depth_scale = 1/log(gradient_rate)\n" in out
    assert "where c = -1/(B - 1); J(c) = " in out


def test_formula_lines_split_long_sums_and_read_back():
    B, J = sp.symbols("B J")
    expr = sum(sp.gamma(B / 2 + k) * J**k / (B - k) for k in range(1, 25)) / (1 + J)
    lines = formula_lines("f", expr)
    assert lines[0].startswith("f = ") and len(lines) > 3
    assert all(len(line) <= WIDTH + 2 for line in lines)
    assert sp.expand(_read_back(lines, {B, J})["f"] - expr) == 0


def test_formula_block_shares_sub_expressions():
    B = sp.Symbol("B", positive=True)
    g = sp.gamma(B / 2 + sp.Rational(1, 2)) / sp.gamma(B / 2)
    main_lines, defs = formula_block({"a": g * (B + 1), "b": g / (B - 3)})
    assert len(defs) == 1 and defs[0] == "k1 = gamma(B/2 + 1/2)/gamma(B/2)"
    assert main_lines == {"a": "a = k1*(B + 1)", "b": "b = k1/(B - 3)"}


def test_formula_lines_full_is_the_pretty_form():
    B = sp.Symbol("B")
    assert formula_lines("r", (B - 2) / (B - 3), full=True) == [
        "r =", *sp.pretty((B - 2) / (B - 3), use_unicode=False).splitlines()]


@pytest.mark.parametrize("spec", ["alpha_relu:1.5", "leaky_relu:0.2"])
def test_numeric_members_read_back_too(spec):
    deriv = derive(activation(spec))
    shown = {n: q.compact if q.compact is not None else q.expr for n, q in deriv.closed.items()}
    main_lines, defs = formula_block(shown, refer={"depth_scale": "gradient_rate"})
    symbols = {s for e in shown.values() for s in e.free_symbols}
    back = _read_back([*main_lines.values(), *defs], symbols)
    for name, expr in shown.items():
        assert _same(back[name], expr, symbols), name
