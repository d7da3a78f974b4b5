"""Batchnorm with eps > 0 and sigma_w (bnmft.derive.epsilon, bnmft.numerics.epsilon).

References, each a different route from the one checked:

* eps -> 0: every number of the regularised derivation against the scale-free (eps = 0)
  derivation, which has its own forms, closed forms and quadratures;
* ReLU: an in-test mpmath integral of the scale equation ``s = sigma_w^2 F0 E[k/(k + B eps/s)]``
  (``F0 = q0 (1 - c0)`` from tests/references.py, which imports nothing from bnmft);
* positive-homogeneous phi: the Tricomi closed forms against the radial quadrature;
* any phi: Monte Carlo of the network's own maps (tests/test_eps_monte_carlo.py tests those);
* the forward G eigenvalue against a finite difference of the scale map; the signal threshold
  of a phi smooth at 0 against ``sigma_w^2 phi'(0)^2``, of ReLU against ``sigma_w^2 F0 (B-1)/B``.
"""

from __future__ import annotations

import json

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import bnmft
from bnmft.cli import main
from bnmft.numerics import agreeing_digits
from bnmft.numerics.epsilon import (_float_numbers, analyze_regularised, epsilon_scan)

from references import digit_mismatch, reference


def _rd(spec):
    return bnmft.regularised_derivation(spec)


# -- derivation ------------------------------------------------------------------------------


def test_forward_G_is_the_slope_of_the_scale_equation():
    """``lambda_G = S'(s*)`` (the forward map on the trivial piece moves the scale only):
    the derived eigenvalue against a central difference of the derived scale map."""
    from bnmft.numerics.epsilon import _eval, _float_model

    for spec in ("tanh", "relu"):
        rd = _rd(spec)
        vals, _ = _float_numbers(rd, 8, 0.05, 1.3, 12)
        model = _float_model(rd, 8)

        def S(s):
            return _eval(rd.scale_map, model.radials(s, 0.05), 8, 0.05, 1.3, s)

        s, h = vals["s_star"], 1e-5 * vals["s_star"]
        slope = (S(s + h) - S(s - h)) / (2 * h)
        assert abs(slope - vals["forward_G"]) < 1e-8 * abs(slope), spec
        assert abs(S(s) - s) < 1e-13 * s


def test_forward_G_form_is_centred():
    """The O(B) terms of lambda_G cancel in the derived form, not in floating point."""
    from bnmft.derive.epsilon import radials_in

    form = _rd("tanh")["forward_G"].moment_form
    assert radials_in(form) and all(r.centred for r in radials_in(form))


def test_relu_closed_form_is_written_in_tricomi_u():
    from bnmft.derive import TricomiU

    rd = _rd("relu")
    assert rd["backward_G"].expr.has(TricomiU)
    assert rd["forward_L"].expr.has(TricomiU)
    assert _rd("tanh")["backward_G"].expr is None


# -- eps -> 0 reproduces the scale-free theory ------------------------------------------------------


@pytest.mark.parametrize("spec,B,digits", [("relu", 8, 30), ("alpha_relu:1.5", 6, 25),
                                           ("leaky_relu:0.2", 33, 25)])
def test_eps_to_zero_closed(spec, B, digits):
    (zero,) = bnmft.analyze(spec, [B], digits)
    (tiny,) = bnmft.analyze(spec, [B], digits, epsilon="1e-45")
    for name in ("q_star", "c_star", "lambda_L", "lambda_M", "gradient_rate", "depth_scale"):
        a, b = tiny.numbers[name], zero.numbers[name]
        assert a.reaches(digits) and b.reaches(digits), name
        assert agreeing_digits(a.value, b.value) >= digits, (name, a, b)
    assert abs(tiny.numbers["lambda_G"].value) < 1e-40


@pytest.mark.parametrize("spec,B", [("tanh", 8), ("gelu", 64), ("tanh(2*x) + 0.1", 5)])
def test_eps_to_zero_float(spec, B):
    (zero,) = bnmft.analyze(spec, [B], 12)
    (tiny,) = bnmft.analyze(spec, [B], 11, epsilon="1e-40")
    for name in ("q_star", "c_star", "lambda_L", "lambda_M", "gradient_rate"):
        assert agreeing_digits(tiny.numbers[name].value, zero.numbers[name].value) >= 11, name


def test_sigma_w_only_enters_through_eps_over_sigma_w_squared():
    (a,) = bnmft.analyze("tanh", [8], 11, epsilon="1/10", sigma_w="2")
    (b,) = bnmft.analyze("tanh", [8], 11, epsilon="1/40", sigma_w="1")
    for name in ("c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate"):
        assert agreeing_digits(a.numbers[name].value, b.numbers[name].value) >= 11, name
    for name in ("q_star", "s_star"):
        assert agreeing_digits(a.numbers[name].value, 4 * b.numbers[name].value) >= 11, name


def test_sigma_w_at_eps_zero_scales_q_star_only():
    (a,) = bnmft.analyze("relu", [8], 20, sigma_w="3/2")
    (b,) = bnmft.analyze("relu", [8], 20)
    assert a.numbers["q_star"].text(20) == "1.1250000000000000000"
    assert a.numbers["gradient_rate"].text(20) == b.numbers["gradient_rate"].text(20)


# -- ReLU: an independent integral of the scale equation ---------------------------------------


def _relu_reference(B: int, eps, sw, dps: int = 45) -> dict:
    """``s*``, ``q*``, ``c*`` of ReLU at eps > 0: ``rho^2 = k/(k + B eps/s)`` and phi
    homogeneous of degree 1, so ``E[phi(rho z)^2] = rho^2 E[phi(z)^2]`` and the scale
    equation is ``s = sw^2 F0 E[k/(k + B eps/s)]`` with ``F0 = q0 (1 - c0)`` at eps = 0."""
    ref = reference("relu", B)
    with mpmath.workdps(dps):
        q0, c0 = ref["q_star"], ref["c_star"]
        eps, sw = mpmath.mpf(eps), mpmath.mpf(sw)
        n = mpmath.mpf(B - 1)

        def mean_rho2(s):
            a = B * eps / s
            dens = lambda k: mpmath.exp((n / 2 - 1) * mpmath.log(k) - k / 2  # noqa: E731
                                        - n / 2 * mpmath.log(2) - mpmath.loggamma(n / 2))
            return mpmath.quad(lambda k: dens(k) * k / (k + a), [0, n / 2, n, 2 * n, mpmath.inf])

        F0 = q0 * (1 - c0)
        s = mpmath.findroot(lambda t: sw**2 * F0 * mean_rho2(t) - t, sw**2 * F0)
        return {"s_star": s, "q_star": sw**2 * q0 * mean_rho2(s), "c_star": c0}


@pytest.mark.parametrize("B,eps,sw", [(8, "1/100", "1"), (5, "0.2", "1.5"), (1000, "0.001", "1")])
def test_relu_cli_digits_against_independent_integral(B, eps, sw, capsys):
    assert main(["analyze", "relu", "--batch-size", str(B), "--epsilon", eps, "--sigma-w", sw,
                 "--digits", "30", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    ref = _relu_reference(B, sp.Rational(eps), sp.Rational(sw))
    assert row["regime"] == "fixed point"
    for name in ("s_star", "q_star", "c_star"):
        assert digit_mismatch(row[name], ref[name], 30) is None, name


def test_relu_signal_threshold():
    """ReLU: ``S(s) = sw^2 F0 E[rho^2]`` is concave with slope ``sw^2 F0 (B-1)/(B eps)`` at
    0, so the nonzero fixed point exists iff ``eps < sw^2 F0 (B-1)/B``."""
    for B, sw in ((8, "1"), (32, "1.5")):
        ref = reference("relu", B)
        exact = mpmath.mpf(sp.Rational(sw)) ** 2 * ref["q_star"] * (1 - ref["c_star"]) * (
            B - 1) / B
        scan = epsilon_scan(_rd("relu"), B, sw)
        assert scan.eps_signal.digits >= 10
        assert agreeing_digits(scan.eps_signal.value, exact) >= scan.eps_signal.digits - 0.5
        assert scan.eps_gradient.value is None  # the rate stays above 1 on the branch
        assert scan.rate_at_signal.value > 1.3


@pytest.mark.parametrize("spec,sw,exact", [
    ("tanh", "1", 1),
    pytest.param("tanh(2*x)", "1", 4, marks=pytest.mark.slow),
    pytest.param("tanh", "1.5", 2.25, marks=pytest.mark.slow)])
def test_smooth_signal_threshold_is_sigma_w_squared_phi_prime_zero_squared(spec, sw, exact):
    """For phi smooth at 0, ``E[phi(rho z1)^2 - phi(rho z1) phi(rho z2)] ~ rho^2 phi'(0)^2
    B/(B-1)`` and ``E[rho^2] ~ s (B-1)/(B eps)``: the threshold is ``sw^2 phi'(0)^2``, for every
    B. There the gradient rate tends to 1 (paper: gradients stop exploding near eps ~ 1)."""
    scan = epsilon_scan(_rd(spec), 8, sw)
    assert scan.eps_signal.digits >= 5
    assert agreeing_digits(scan.eps_signal.value, exact) >= scan.eps_signal.digits
    assert abs(scan.rate_at_signal.value - 1) < 1e-2
    assert any("ends where the signal dies" in n for n in scan.notes)


# -- two routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["relu", pytest.param("alpha_relu:1.5", marks=pytest.mark.slow),
                                  pytest.param("leaky_relu:0.1", marks=pytest.mark.slow)])
def test_closed_forms_against_radial_quadrature(spec):
    checks, notes = bnmft.verify_regularised(spec, [5, 64], 25, "1/10", "1.2")
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok][:3]
    closed = [c for c in checks if c.route.startswith("closed form")
              and c.reference_route.startswith("radial quadrature")]
    assert len(closed) == 2 * 9 and min(c.digits for c in closed) >= 25


def test_float_route_against_network_monte_carlo():
    checks, _ = bnmft.verify_regularised("tanh", [8], 12, "0.1", "1.2")
    mc = [c for c in checks if "Monte Carlo" in c.reference_route]
    assert len(mc) == 9 and all(c.ok for c in mc)
    assert min(c.required for c in mc) > 1.2  # at least ~1e-2 relative: a real check


def test_large_batch_uses_radial_quadrature():
    (res,) = analyze_regularised(_rd("relu"), [10**6], "1/100", "1", 20)
    assert res.numbers["gradient_rate"].route.startswith("radial quadrature")
    assert res.numbers["gradient_rate"].reaches(20)
    # the forward G eigenvalue keeps its digits: its O(B) terms cancel in the form
    assert res.numbers["lambda_G"].reaches(20)


# -- regimes, stability, bad input ------------------------------------------------------------------


def test_dead_signal_is_a_regime(capsys):
    assert main(["analyze", "relu", "--batch-size", "8", "--epsilon", "1"]) == 0
    out, err = capsys.readouterr()
    assert "regime                 no nonzero fixed point" in out
    assert err.count("\n") == 1 and "no nonzero fixed point" in err
    assert main(["analyze", "relu", "--batch-size", "8", "--epsilon", "1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["regime"] == "no nonzero fixed point" and row["gradient_rate"] is None
    assert main(["spectrum", "relu", "--batch-size", "8", "--epsilon", "5"]) == 0
    assert "regime no nonzero fixed point" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["analyze", "relu", "--batch-size", "8", "--epsilon", "-1e-3"], "eps must be >= 0"),
    (["analyze", "relu", "--batch-size", "8", "--epsilon", "inf"], "eps must be a finite"),
    (["analyze", "relu", "--batch-size", "8", "--epsilon", "x"], "finite real number"),
    (["analyze", "relu", "--batch-size", "8", "--epsilon", "1e-3", "--sigma-w", "0"],
     "sigma_w must be > 0"),
    (["spectrum", "tanh", "--batch-size", "8", "--sigma-w", "-2"], "sigma_w must be > 0"),
    (["analyze", "relu", "--no-batchnorm", "--epsilon", "0.1"], "no meaning with"),
    (["analyze", "relu", "--batch-size", "3", "--epsilon", "0.1"], "batch size must be >= 4"),
    (["epsilon-scan", "relu", "--batch-size", "8", "--sigma-w", "0"], "sigma_w must be > 0"),
])
def test_bad_input_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_cli_printed_digits_agree_with_api(capsys):
    """What the CLI prints is the library's number, correctly rounded (no float detour)."""
    assert main(["spectrum", "relu", "--batch-size", "8", "--epsilon", "1/100", "--digits",
                 "25", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    (res,) = analyze_regularised(_rd("relu"), [8], "1/100", "1", 25)
    for e in row["backward"][1:]:
        num = res.numbers[f"backward_{e['space']}"]
        assert digit_mismatch(e["eigenvalue"], num.value, 25) is None
    assert [e["dim"] for e in row["forward"]] == [8, 1, 7, 20]


def test_epsilon_scan_cli(capsys):
    assert main(["epsilon-scan", "tanh", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    import re

    assert re.search(r"eps_signal\s+1\.0000\d*\s", out)  # as many digits as were achieved
    assert "the explosion ends where the signal dies" in out


@settings(max_examples=12, deadline=None)
@given(B=st.integers(4, 64), eps=st.floats(1e-6, 0.3), sw=st.floats(0.8, 2.0))
def test_invariants_relu(B, eps, sw):
    """q* > 0, |c*| < 1, 0 < lambda_G < 1 on the branch (the scale is attracting), kernel
    eigenvalues 0, and the dimensions add up to B(B+1)/2 in each direction."""
    (res,) = analyze_regularised(_rd("relu"), [B], repr(eps), repr(sw), 12, route="float")
    if res.regime != "fixed point":
        assert eps * 1.0001 > sw * sw * 0.3  # only near or beyond the threshold (~0.33 sw^2)
        return
    n = res.numbers
    assert n["q_star"].value > 0 and abs(n["c_star"].value) < 1
    assert 0 < n["lambda_G"].value < 1
    assert n["forward_kernel"].value == 0 and n["backward_kernel"].value == 0
    spec = res.spectrum(_rd("relu"))
    for direction in ("forward", "backward"):
        assert sum(e.dim for e in getattr(spec, direction)) == B * (B + 1) // 2
