"""Derivations against the checked formulas of THEORY.md (test oracles, not implementation)."""

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.derive.activation import activation
from bnmft.derive.bsb1 import QUANTITIES, moment_forms
from bnmft.derive.derivation import derive
from bnmft.derive.gaussian import arccos_kernel, orthant_moment, orthant_moment_hyper
from bnmft.derive.moments import moment
from bnmft.derive.symbols import B, c

# -- oracles from THEORY.md ------------------------------------------------------------------
J_ORACLE = (sp.sqrt(1 - c**2) + (sp.pi - sp.acos(c)) * c) / sp.pi
JP_ORACLE = (sp.pi - sp.acos(c)) / sp.pi
RHO = -1 / (B - 1)


def relu_oracles():
    Jv, Jpv = J_ORACLE.subs(c, RHO), JP_ORACLE.subs(c, RHO)
    return {
        "q_star": sp.Rational(1, 2),
        "c_star": Jv,
        "lambda_M": B * Jpv / ((B + 1) * (1 - Jv)),
        "lambda_L": (B - 2) / (B + 1) + B * Jpv / ((B - 1) * (B + 1) * (1 - Jv)),
        "gradient_rate": (Jpv + B - 1) / ((B - 3) * (1 - Jv)) - 1 / (B - 3),
    }


def _close(a, b, digits=30):
    a, b = sp.N(a, digits + 10), sp.N(b, digits + 10)
    return abs(a - b) <= 10 ** (-digits) * max(1, abs(b))


# -- Gaussian building blocks -----------------------------------------------------------------


def test_price_theorem_gives_the_arccos_kernel_of_theory():
    assert sp.simplify((arccos_kernel(1) - J_ORACLE).rewrite(sp.acos)) == 0
    assert sp.simplify(sp.diff(arccos_kernel(1), c) - JP_ORACLE.rewrite(sp.asin)) == 0
    for n in range(3):
        assert sp.simplify(arccos_kernel(n).subs(c, 1)) == 1


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("cv", ["-0.7", "-0.2", "0.4", "0.9"])
def test_arccos_kernels_against_gaussian_integral(n, cv):
    """J_n(c) = E[relu(u)^n relu(v)^n] / E[relu(u)^2n] by 2-D quadrature of the Gaussian."""
    from scipy import integrate, stats

    r = float(cv)
    cov = [[1.0, r], [r, 1.0]]
    dens = stats.multivariate_normal(mean=[0.0, 0.0], cov=cov).pdf
    num, _ = integrate.dblquad(lambda v, u: u**n * v**n * dens([u, v]), 0, 12, 0, 12,
                               epsabs=1e-13, epsrel=1e-11)
    norm, _ = integrate.quad(lambda u: u ** (2 * n) * stats.norm.pdf(u), 0, 12, epsabs=1e-14)
    assert abs(float(arccos_kernel(n).subs(c, sp.Rational(cv))) - num / norm) < 1e-9


@pytest.mark.parametrize("a,b", [(0, 0), (1, 1), (2, 1), (3, 3), (4, 2)])
def test_polar_orthant_moments_equal_mehler_hypergeometric(a, b):
    for cv in (sp.Rational(-1, 3), sp.Rational(1, 7)):
        assert _close(orthant_moment(a, b).subs(c, cv), orthant_moment_hyper(a, b, cv), 25)


# -- moment forms -------------------------------------------------------------------------------


def test_gradient_rate_form_is_paper_thm7():
    forms = moment_forms()
    dphi2, z2dphi2 = moment((0, 0, 2)), moment((2, 0, 2))
    dd, zdzd = moment((0, 0, 1), (0, 0, 1)), moment((1, 0, 1), (1, 0, 1))
    s = moment((0, 2, 0)) - moment((0, 1, 0), (0, 1, 0))
    thm7 = ((B - 1) * dphi2 - z2dphi2 + dd + zdzd) / ((B - 3) * s)
    assert sp.simplify(forms["gradient_rate"].expr - thm7) == 0


def test_lambda_G_vanishes_identically():
    assert moment_forms()["lambda_G"].expr == 0


# -- closed forms ----------------------------------------------------------------------------------


def test_relu_closed_forms_equal_theory():
    d = derive(activation("relu"))
    for name, oracle in relu_oracles().items():
        for b in (4, 5, 6, 7, 8, 12, 32, 100, 1000, 10**6):
            assert _close(d.closed[name].expr.subs(B, b), oracle.subs(B, b), 30), (name, b)


def test_relu_compact_forms():
    d = derive(activation("relu"))
    J, Jp = sp.symbols("J Jp")
    assert d.closed["c_star"].compact == J
    assert sp.simplify(d.closed["lambda_M"].compact - B * Jp / ((B + 1) * (1 - J))) == 0
    assert (
        sp.simplify(d.closed["gradient_rate"].compact - (B + J + Jp - 2) / ((B - 3) * (1 - J))) == 0
    )


def test_relu_checked_numbers():
    d = derive(activation("relu")).closed
    assert _close(d["lambda_M"].expr.subs(B, 6), sp.Float("0.481919714166", 15), 11)
    assert _close(d["lambda_L"].expr.subs(B, 6), sp.Float("0.667812514262", 15), 11)
    assert _close(d["gradient_rate"].expr.subs(B, 8), sp.Float("1.78818997665874", 18), 13)
    assert _close(d["gradient_rate"].expr.subs(B, 32), sp.Float("1.52195283055188", 18), 13)


def test_relu_gradient_rate_limit_is_pi_over_pi_minus_one():
    rate = derive(activation("relu")).closed["gradient_rate"]
    assert sp.simplify(rate.limit() - sp.pi / (sp.pi - 1)) == 0


def test_linear_closed_forms():
    d = derive(activation("linear")).closed
    assert sp.simplify(d["gradient_rate"].expr - (B - 2) / (B - 3)) == 0
    assert sp.simplify(d["c_star"].expr + 1 / (B - 1)) == 0
    assert sp.simplify(d["lambda_L"].expr - (B - 1) / (B + 1)) == 0
    assert sp.simplify(d["lambda_M"].expr - (B - 1) / (B + 1)) == 0
    assert d["q_star"].expr == 1


def test_step_has_infinite_gradient_rate():
    d = derive(activation("step")).closed
    assert d["gradient_rate"].expr is sp.oo
    assert d["depth_scale"].expr == 0


def test_every_closed_form_has_domain_and_provenance():
    for spec in ("relu", "abs", "leaky_relu:0.2", "alpha_relu:2", "alpha_relu:1.5"):
        d = derive(activation(spec))
        assert set(d.closed) == set(QUANTITIES), spec
        for q in d.closed.values():
            assert q.domain == sp.Ge(B, 4)
            assert "paper" in q.provenance.theorem
            assert q.provenance.route


def test_non_homogeneous_has_forms_only():
    d = derive(activation("tanh"))
    assert d.closed == {}
    assert set(d.forms) == set(QUANTITIES)
    assert len(d.moments) == 9


# -- invariants (hypothesis) ---------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(spec=st.sampled_from(["relu", "abs", "leaky_relu:0.3", "alpha_relu:2", "linear"]),
       b=st.integers(min_value=4, max_value=10**6))
def test_closed_form_invariants(spec, b):
    d = derive(activation(spec)).closed
    with mpmath.workdps(30):
        val = {k: mpmath.mpf(sp.N(q.expr.subs(B, b), 30)) for k, q in d.items()}
        assert val["q_star"] > 0
        assert abs(val["c_star"]) < 1
        assert val["lambda_G"] == 0
        # paper Thm 9: the gradient rate is at least the linear rate (B-2)/(B-3)
        linear = mpmath.mpf(b - 2) / (b - 3)
        assert val["gradient_rate"] >= linear * (1 - mpmath.mpf(10) ** -25)
        if spec != "linear":
            assert val["gradient_rate"] > linear


# -- symbolic parameters, dual kernels ------------------------------------------------------


def test_symbolic_families_specialise_to_numeric_closed_forms():
    from bnmft.derive.activation import symbolic_activation

    for family, value, spec in (("alpha_relu", sp.Rational(3, 2), "alpha_relu:1.5"),
                                ("leaky_relu", sp.Rational(1, 5), "leaky_relu:0.2")):
        sym = derive(symbolic_activation(family)).closed
        num = derive(activation(spec)).closed
        param = sp.Symbol("alpha" if family == "alpha_relu" else "slope", positive=True)
        for name in ("q_star", "c_star", "lambda_M", "gradient_rate"):
            for b in (5, 12, 300):
                a = sym[name].expr.evalf(30, subs={B: b, param: value})
                n = num[name].expr.evalf(30, subs={B: b})
                assert abs(a - n) < 1e-25 * abs(n), (family, name, b)
    rate = derive(symbolic_activation("alpha_relu")).closed["gradient_rate"]
    alpha = sp.Symbol("alpha", positive=True)
    assert rate.domain == sp.And(sp.Ge(B, 4), sp.Gt(alpha, sp.Rational(1, 2)))


@pytest.mark.parametrize(
    "spec", ["relu", "abs", "leaky_relu:0.2", "alpha_relu:2", "alpha_relu:1.5"]
)
def test_dual_kernel_against_polar_quadrature(spec):
    """E[phi(u) phi(v)] in closed form vs the brute-force module's independent quadrature."""
    import numpy as np

    from bnmft.numerics.bruteforce import DualKernel

    act = activation(spec)
    K = derive(act).dual_kernel
    numeric = DualKernel(act)
    for cv in (-0.6, 0.05, 0.7):
        exact = float(K.subs(c, sp.nsimplify(cv)))
        assert abs(exact - float(numeric(np.array([cv]))[0])) < 1e-11 * max(1, abs(exact))


@pytest.mark.parametrize("a,b", [(sp.sqrt(2), sp.sqrt(2)), (sp.sqrt(2), sp.sqrt(2) - 1)])
def test_orthant_moments_of_irrational_exponents(a, b):
    """Irrational exponents (``Max(x,0)**sqrt(2)`` and its derivative): the series is summed
    with symbolic exponents; against a plain 2-D quadrature of ``E[u_+^a v_+^b]``."""
    from scipy import integrate, stats

    for cv in (-0.4, 0.3):
        dens = stats.multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, cv], [cv, 1.0]]).pdf
        fa, fb = float(a), float(b)
        num, _ = integrate.dblquad(lambda v, u: u**fa * v**fb * dens([u, v]), 0, 12, 0, 12,
                                   epsabs=1e-13, epsrel=1e-11)
        got = float(orthant_moment_hyper(a, b, sp.Float(cv, 30)).evalf(30))
        assert abs(got - num) < 1e-9 * abs(num), (cv, got, num)


def test_cli_analyze_irrational_power(capsys):
    """``bnmft analyze 'Max(x,0)**sqrt(2)'`` (a traceback before): q* = E[phi(z1)^2] printed
    to 12 digits, against the one-coordinate sphere integral (density prop. (1 - x^2)^((B-4)/2)
    of x = z1 / sqrt(B - 1), THEORY.md)."""
    import json

    import mpmath

    from bnmft.cli import main

    assert main(["analyze", "Max(x,0)**sqrt(2)", "--batch-size", "8", "--digits", "12",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    with mpmath.workdps(30):
        e = 2 * mpmath.sqrt(2)
        num = mpmath.quad(lambda x: (mpmath.sqrt(7) * x) ** e * (1 - x * x) ** 2, [0, 1])
        den = mpmath.quad(lambda x: (1 - x * x) ** 2, [-1, 1])
        ref = mpmath.nstr(num / den, 12, strip_zeros=False)
    assert row["q_star"] == ref
