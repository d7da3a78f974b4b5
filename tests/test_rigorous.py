"""``bnmft verify --rigorous``: certified Arb enclosures by two routes.

Every enclosure must contain the independent mpmath references (``tests/references.py``:
THEORY.md's closed forms for relu and leaky relu, the decoupled orthant series for
alpha_relu, a direct sphere quadrature for tanh; ``bnmft.numerics.references`` -- mpmath's
tanh-sinh ``quad`` of paper Thm 4 and Thm 7 -- for erf); a perturbed closed form must be
reported as not overlapping; every printed digit is checked against the references.
"""

import dataclasses
import json
import math
import re

import mpmath
import pytest
import sympy as sp
from flint import arb, ctx
from hypothesis import given, settings
from hypothesis import strategies as st

import bnmft
from bnmft.cli import main
from bnmft.numerics.arbprinter import NotEvaluable, evaluate
from bnmft.numerics.rigorous import Enclosure, certified_digits
from references import digit_mismatch, reference

CLOSED = ("relu", "leaky_relu", "leaky_relu:0.2", "alpha_relu:1.5")


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def contains(ball: arb, value) -> bool:
    """``value`` (an mpf of up to 80 digits) lies in the ball, compared exactly."""
    with mpmath.workprec(400):
        v = mpmath.mpf(value)
        sign, man, exp, _ = v._mpf_
    old = ctx.prec
    ctx.prec = 600
    try:
        exact = arb((-1) ** sign * int(man)) * arb(2) ** int(exp) if man else arb(0)
        return bool(ball.contains(exact))
    finally:
        ctx.prec = old


# -- the printer ---------------------------------------------------------------------------


def test_printer_functions_contain_mpmath_values():
    B = sp.Symbol("B")
    expr = (sp.acos(-1 / (B - 1)) + sp.sqrt(B**2 - 2 * B) * sp.gamma(B / 2 + sp.Rational(1, 2))
            / sp.gamma(B / 2) + sp.hyper((-sp.Rational(3, 4), -sp.Rational(3, 4)),
                                         (sp.Rational(1, 2),), (B - 1) ** -2) + sp.pi * sp.E)
    old = ctx.prec
    ctx.prec = 200
    try:
        for b in (4, 7, 1000):
            ball = evaluate(expr, {B: b})
            with mpmath.workdps(80):
                want = (mpmath.acos(-mpmath.mpf(1) / (b - 1))
                        + mpmath.sqrt(b * b - 2 * b) * mpmath.gamma(mpmath.mpf(b) / 2 + 0.5)
                        / mpmath.gamma(mpmath.mpf(b) / 2)
                        + mpmath.hyp2f1(-0.75, -0.75, 0.5, mpmath.mpf(1) / (b - 1) ** 2)
                        + mpmath.pi * mpmath.e)
            assert contains(ball, want) and ball.rad() < arb(10) ** -50
    finally:
        ctx.prec = old


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fractions(min_value=-50, max_value=50, max_denominator=1000), min_size=3,
                max_size=3),
       st.integers(min_value=0, max_value=4))
def test_printer_rational_expressions_are_enclosed(coeffs, power):
    """A rational expression's ball contains its exact value (SymPy's Rational)."""
    y = sp.Symbol("y")
    a, b, c = (sp.Rational(f.numerator, f.denominator) for f in coeffs)
    expr = (a * y**power + b) / (1 + c**2 * y**2) + sp.Rational(1, 3)
    value = sp.Rational(7, 3)
    exact = expr.subs(y, value)
    ball = evaluate(expr, {y: sp.Rational(7, 3)})
    with mpmath.workdps(60):
        assert contains(ball, mpmath.mpf(exact.p) / exact.q)


def test_printer_refuses_kinks_and_branch_cuts_in_analytic_mode():
    x = sp.Symbol("x")
    with pytest.raises(NotEvaluable):
        evaluate(sp.Max(x, 0), {x: 1}, complex_mode=True)
    from flint import acb

    # sqrt on a ball crossing the negative axis: not analytic, so not finite
    ball = evaluate(sp.sqrt(x), {x: acb(-1, arb(0, 0.5))}, complex_mode=True, analytic=True)
    assert not ball.is_finite()
    assert evaluate(sp.sqrt(x), {x: acb(4)}, complex_mode=True, analytic=True).real.contains(2)


# -- certified digits ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**30), st.integers(min_value=-40, max_value=5),
       st.integers(min_value=0, max_value=10**6), st.integers(min_value=-60, max_value=0))
def test_certified_digits_are_the_rounding_of_every_point(man, exp, rman, rexp):
    """Every point of the ball rounds to the printed value at the certified digits, and the
    printed ``value +- radius`` contains the ball."""
    from bnmft.numerics.precision import decimal_string

    old = ctx.prec
    ctx.prec = 300
    try:
        mid = arb(man) * arb(2) ** exp
        rad = arb(rman) * arb(10) ** rexp
        ball = arb(mid.mid(), rad)
        d = certified_digits(ball)
        enc = Enclosure(ball, "test")
        lo, hi = enc.lower(), enc.upper()
        if d == math.inf:
            assert ball.rad() == 0
            return
        if d == 0:
            return
        value, radius = enc.text(d)
        with mpmath.workprec(800):
            for t in (0, 0.25, 0.5, 0.999, 1):
                assert decimal_string(lo + t * (hi - lo), d) == value
            assert mpmath.mpf(value) - mpmath.mpf(radius) <= lo
            assert hi <= mpmath.mpf(value) + mpmath.mpf(radius)
        # one more digit is not certified
        assert decimal_string(lo, d + 1) != decimal_string(hi, d + 1)
    finally:
        ctx.prec = old


# -- enclosures against references ------------------------------------------------------------


@pytest.mark.parametrize("spec", CLOSED)
def test_closed_families_contain_references(spec):
    checks = bnmft.verify_rigorous(spec, [4, 8, 32], 20)
    assert all(c.ok for c in checks), [c.failures for c in checks if not c.ok]
    seen = 0
    for c in checks:
        ref = reference(spec, c.batch_size)
        if c.quantity not in ref:
            continue
        for enc in (c.first, c.second):
            assert contains(enc.ball, ref[c.quantity]), (spec, c.quantity, c.batch_size)
            seen += 1
    # relu/leaky: all eight quantities; alpha_relu: q*, c*, lambda_G, the rate and depths
    assert seen >= 2 * 3 * (8 if spec != "alpha_relu:1.5" else 6)


def test_large_batch_size_closed_and_integrals_agree():
    checks = bnmft.verify_rigorous("relu", [1000, 10**5], 25)
    assert all(c.ok for c in checks)
    for c in checks:
        ref = reference("relu", c.batch_size)
        assert contains(c.first.ball, ref[c.quantity]) and contains(c.second.ball,
                                                                      ref[c.quantity])


def test_alpha_relu_forward_eigenvalues_contain_the_project_value():
    """No independent reference for lambda_L, lambda_M of alpha_relu (a 4-point moment):
    the project's non-rigorous high-precision value must lie inside both balls."""
    checks = {c.quantity: c for c in bnmft.verify_rigorous("alpha_relu:1.5", [8], 20)}
    numbers = bnmft.analyze("alpha_relu:1.5", [8], digits=30)[0].numbers
    for name in ("lambda_L", "lambda_M"):
        for enc in (checks[name].first, checks[name].second):
            assert contains(enc.ball, numbers[name].value)


def test_tanh_two_integral_routes_contain_references():
    checks = bnmft.verify_rigorous("tanh", [4], 12)
    assert all(c.ok for c in checks)
    ref = reference("tanh", 4, 40)
    numbers = bnmft.analyze("tanh", [4], digits=25)[0].numbers
    for c in checks:
        assert c.first.route != c.second.route
        want = ref.get(c.quantity, numbers[c.quantity].value)  # lambda_L, lambda_M: project
        for enc in (c.first, c.second):
            assert contains(enc.ball, want), c.quantity
            assert enc.digits >= 12


def _erf_checks(B: int, digits: int) -> dict:
    return {c.quantity: c for c in bnmft.verify_rigorous("erf", [B], digits)}


def test_erf_contains_thm4_quadrature_and_project_values():
    """q*, c* against mpmath's quad of paper Thm 4; the eigenvalues and the rate against the
    project's (non-rigorous) high-precision values."""
    from bnmft.numerics.references import fixed_point

    checks = _erf_checks(4, 12)
    assert all(c.ok for c in checks.values())
    with mpmath.workdps(30):
        q, cs = fixed_point(mpmath.erf, 4, dps=20)
    numbers = bnmft.analyze("erf", [4], digits=25)[0].numbers
    for name, c in checks.items():
        want = {"q_star": q, "c_star": cs}.get(name, numbers[name].value)
        for enc in (c.first, c.second):
            # mpmath's quad is good to ~20 digits here: the ball widened by 1e-18
            assert contains(enc.ball + arb(0, 1e-18), want), name
            assert enc.digits >= 12


@pytest.mark.slow
def test_erf_rate_contains_thm7_quadrature():
    from bnmft.numerics.references import gradient_rate

    checks = _erf_checks(4, 12)
    with mpmath.workdps(40):
        rate = gradient_rate(mpmath.erf, lambda z: 2 * mpmath.exp(-z * z) / mpmath.sqrt(mpmath.pi),
                             4, dps=30)
    for enc in (checks["gradient_rate"].first, checks["gradient_rate"].second):
        assert contains(enc.ball + arb(0, 1e-25), rate)


# -- a perturbed closed form is caught ------------------------------------------------------------


def _perturbed(spec: str, name: str, rel) -> bnmft.Derivation:
    d = bnmft.derivation(spec)
    quantities = tuple(dataclasses.replace(q, expr=q.expr * (1 + rel)) if q.name == name else q
                       for q in d.quantities)
    return dataclasses.replace(d, quantities=quantities)


@pytest.mark.parametrize("rel", [sp.Rational(1, 10**15), sp.Rational(-1, 10**18)])
def test_perturbed_closed_form_does_not_overlap(rel):
    bad = _perturbed("leaky_relu:0.2", "lambda_M", rel)
    checks = bnmft.verify_rigorous(bad, [8, 32], 20)
    for c in checks:
        if c.quantity == "lambda_M":
            assert not c.overlap and not c.ok
            assert "do not overlap" in c.failures[0]
        else:
            assert c.overlap and c.ok


def test_cli_reports_a_perturbed_closed_form(capsys, monkeypatch):
    from bnmft import pipeline

    bad = _perturbed("relu", "gradient_rate", sp.Rational(1, 10**16))
    monkeypatch.setattr(pipeline, "derivation", lambda act, *a, **k: bad)
    status, out, err = run(capsys, "verify", "relu", "--rigorous", "--batch-size", "8")
    assert status == 1
    assert re.search(r"^gradient_rate\s+8\s+closed form", out, re.M)
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("gradient_rate"))
    assert lines[i + 1].rstrip().endswith("NO")
    assert err.strip().splitlines() == [
        "bnmft: rigorous check failed: gradient_rate at B = 8: the enclosures do not overlap "
        "(closed form (Arb) vs sphere integrals (acb.integral, polar))"]


# -- what the user sees ---------------------------------------------------------------------------

_ROW = re.compile(r"^(?P<q>\w+)?\s+(?P<B>\d+)?\s+(?P<route>closed form \(Arb\)|sphere integrals "
                  r"\(acb\.integral, [^)]*\))\s+(?P<value>\S+) \+- (?P<radius>\S+)\s+"
                  r"(?P<digits>exact|\d+)(?:\s+(?P<overlap>yes|NO))?$")


def _rows(out: str):
    rows, quantity, B = [], None, None
    for line in out.splitlines()[1:]:
        m = _ROW.match(line)
        if not m:
            continue
        quantity = m["q"] or quantity
        B = int(m["B"]) if m["B"] else B
        rows.append((quantity, B, m))
    return rows


@pytest.mark.parametrize("spec", ["relu", "leaky_relu:0.2"])
def test_cli_text_digits_against_references(capsys, spec):
    status, out, err = run(capsys, "verify", spec, "--rigorous", "--batch-size", "4,32",
                           "--digits", "25")
    assert status == 0 and err == ""
    rows = _rows(out)
    assert len(rows) == 2 * 8 * 2
    for quantity, B, m in rows:
        want = reference(spec, B)[quantity]
        if quantity == "lambda_G":
            assert m["value"] == "0" and m["digits"] == "exact"
            continue
        assert digit_mismatch(m["value"], want, 25) is None, (quantity, B, m["value"])
        with mpmath.workdps(60):
            v, r = mpmath.mpf(m["value"]), mpmath.mpf(m["radius"])
            assert v - r <= want <= v + r
        assert m["digits"] == "exact" or int(m["digits"]) >= 25
    overlaps = [m["overlap"] for _, _, m in rows if m["overlap"]]
    assert overlaps == ["yes"] * 16
    assert "16 of 16 quantities: two certified enclosures that overlap, each to at least 25 " \
           "digits" in out


def test_cli_json(capsys):
    status, out, err = run(capsys, "verify", "alpha_relu:1.5", "--rigorous", "--batch-size",
                           "8", "--digits", "18", "--json")
    assert status == 0 and err == ""
    doc = json.loads(out)
    assert doc["activation"] == "alpha_relu:1.5" and doc["ok"] is True
    assert [c["quantity"] for c in doc["checks"]] == [
        "q_star", "c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate", "depth_scale",
        "max_trainable_depth"]
    ref = reference("alpha_relu:1.5", 8)
    for c in doc["checks"]:
        assert c["overlap"] is True and c["failures"] == []
        assert [r["route"] for r in c["routes"]] == [
            "closed form (Arb)", "sphere integrals (acb.integral, polar)"]
        for r in c["routes"]:
            with mpmath.workdps(60):
                lo, hi = mpmath.mpf(r["lower"]), mpmath.mpf(r["upper"])
            if c["quantity"] in ref:
                assert lo <= ref[c["quantity"]] <= hi
                if c["quantity"] != "lambda_G":
                    assert digit_mismatch(r["value"], ref[c["quantity"]], 18) is None


def test_cli_smooth_activation_text(capsys):
    status, out, err = run(capsys, "verify", "tanh", "--rigorous", "--batch-size", "4",
                           "--digits", "10")
    assert status == 0 and err == ""
    ref = reference("tanh", 4, 40)
    rows = _rows(out)
    assert {m["route"] for _, _, m in rows} == {"sphere integrals (acb.integral, polar)",
                                                 "sphere integrals (acb.integral, Thm 4 angles)"}
    for quantity, B, m in rows:
        if quantity in ref and quantity != "lambda_G":
            assert digit_mismatch(m["value"], ref[quantity], 10) is None


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["relu", "--rigorous", "--epsilon", "0.1"], "takes no --epsilon"),
    (["relu", "--rigorous", "--sigma-w", "2"], "takes no --sigma-w"),
    (["relu", "--json"], "--json needs --rigorous"),
    (["relu(x + 0.5)", "--rigorous"], "has kinks at -1/2"),
    (["step", "--rigorous"], "Dirac mass"),
    (["tanh", "--rigorous", "--batch-size", "2000"], "up to 1,000"),
    (["relu", "--rigorous", "--batch-size", "inf"], "finite batch sizes"),
    (["relu", "--rigorous", "--batch-size", "3"], "batch size must be >= 4"),
    (["relu", "--rigorous", "--digits", "0"], "--digits must be between"),
])
def test_bad_input(capsys, argv, message):
    status, out, err = run(capsys, "verify", *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_api_bad_input():
    with pytest.raises(bnmft.InvalidInput, match="batch size must be >= 4"):
        bnmft.verify_rigorous("relu", [3])
    with pytest.raises(bnmft.InvalidInput, match="digits"):
        bnmft.verify_rigorous("relu", [8], 0)


# -- invariants -----------------------------------------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(st.fractions(min_value=-3, max_value=3, max_denominator=20),
       st.integers(min_value=4, max_value=100))
def test_leaky_slopes_and_batch_sizes_overlap(slope, B):
    """For any slope and batch size the two routes overlap and certify the digits."""
    checks = bnmft.verify_rigorous(f"leaky_relu:{slope.numerator}/{slope.denominator}", [B], 15)
    assert all(c.ok for c in checks), [c.failures for c in checks if not c.ok]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["tanh", "erf"])
def test_smooth_full(spec):
    checks = bnmft.verify_rigorous(spec, [4, 8, 32], 20)
    assert all(c.ok for c in checks)
    if spec == "tanh":
        for c in checks:
            ref = reference("tanh", c.batch_size, 40)
            if c.quantity in ref:
                assert contains(c.first.ball, ref[c.quantity])
                assert contains(c.second.ball, ref[c.quantity])
