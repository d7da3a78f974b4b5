"""Numbers: requested digits honoured, routes agree, B = inf, Monte Carlo as a loose check."""

import math
from fractions import Fraction

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from bnmft.derive import InvalidInput
from bnmft.derive.activation import activation
from bnmft.numerics import sphere
from bnmft.pipeline import analyze
from bnmft.numerics.montecarlo import monte_carlo
from bnmft.numerics.precision import agreeing_digits, decimal_string
from bnmft.derive.derivation import derive


def test_relu_numbers_at_requested_digits():
    (an,) = analyze(activation("relu"), [32], 30)
    rate = an.numbers["gradient_rate"]
    assert rate.route == "closed form" and rate.digits >= 30
    assert decimal_string(rate.value, 15) == "1.52195283055188"
    assert an.bsb1_stable is True


def test_float_and_mpmath_routes_agree_for_a_kinked_activation():
    act = activation("Max(x + 1, 0)")
    (fast,) = analyze(act, [12], 12)
    (slow,) = analyze(act, [12], 25)
    for name, num in fast.numbers.items():
        assert num.digits >= 12, name
        assert slow.numbers[name].digits >= 25, name
        assert agreeing_digits(num.value, slow.numbers[name].value) >= 12, name


def test_sphere_quadrature_float_matches_mpmath_for_smooth_phi():
    act = activation("tanh(2*x) + 0.1")
    mos = list(derive(act).moments)
    for B in (5, 9, 64):
        lo, _ = sphere.moments_float_estimated(act, mos, B)
        hi = sphere.moments_mp(act, mos, B, 16)
        for mo in mos:
            assert agreeing_digits(lo[mo], hi[mo][0]) >= 12, (B, mo.name)


def test_batch_size_infinity_smooth_phi_against_gaussian_formulas():
    act = activation("tanh")
    (an,) = analyze(act, [math.inf], 12)
    pdf = stats.norm.pdf
    e = lambda f: integrate.quad(lambda g: f(g) * pdf(g), -40, 40, epsabs=1e-14, limit=200)[0]
    q = e(lambda g: math.tanh(g) ** 2)
    dphi2 = e(lambda g: (1 - math.tanh(g) ** 2) ** 2)
    mean = e(math.tanh)
    assert abs(float(an.numbers["q_star"].value) - q) < 1e-11
    assert abs(float(an.numbers["gradient_rate"].value) - dphi2 / (q - mean**2)) < 1e-10


def test_relu_limit_is_exact():
    (an,) = analyze(activation("relu"), [math.inf], 25)
    with mpmath.workdps(30):
        assert agreeing_digits(an.numbers["gradient_rate"].value, mpmath.pi / (mpmath.pi - 1)) >= 25
    # lambda_L -> 1 exactly: the BSB1 point becomes marginal, reported as undetermined
    assert an.bsb1_stable is None


def test_non_attracting_bsb1_is_reported_not_refused():
    (an,) = analyze(activation("alpha_relu:2"), [1000], 16)
    assert an.bsb1_stable is False
    assert mpmath.mpf(an.numbers["lambda_L"].value) > 1


def test_digits_shortfall_is_reported():
    (an,) = analyze(activation("tanh"), [8], 12)
    assert an.shortfalls(12) == []
    assert an.shortfalls(40)  # nobody claimed 40 digits


@pytest.mark.parametrize("spec,B", [("relu", 6), ("tanh", 8), ("gelu", 40)])
def test_monte_carlo_agrees_within_error_bars(spec, B):
    act = activation(spec)
    mc = monte_carlo(derive(act), B, samples=100_000, blocks=20, seed=1)
    (an,) = analyze(act, [B], 10)
    for name, est in mc.items():
        exact = float(an.numbers[name].value)
        if est.stderr == 0:
            assert est.mean == pytest.approx(exact, abs=1e-12), name
            continue
        assert abs(est.mean - exact) < 5 * est.stderr, name


@pytest.mark.parametrize("spec,B", [("Max(x + 1, 0)", 6), ("elu", 8), ("tanh", 7), ("relu", 40),
                                     ("alpha_relu:1.5", 5), ("exp(0.22*x**2)", 300)])
def test_cartesian_thm7_route_agrees_with_hyperspherical_route(spec, B):
    from bnmft.numerics.cartesian import moments_cartesian

    act = activation(spec)
    mos = list(derive(act).moments)
    a = sphere.moments_mp(act, mos, B, 20)
    b = moments_cartesian(act, mos, B, 20)
    for mo in mos:
        assert agreeing_digits(b[mo][0], a[mo][0]) >= 20, mo.name
        # each route's own error estimate covers the other's value
        assert abs(a[mo][0] - b[mo][0]) <= a[mo][1] + b[mo][1]


def test_paper_integrals_for_a_python_callable():
    """numerics.references: Thm 4 and Thm 7 as written, with phi given as a plain function."""
    from bnmft.numerics.references import fixed_point, gradient_rate

    relu = lambda z: z if z > 0 else mpmath.mpf(0)  # noqa: E731
    step = lambda z: mpmath.mpf(1) if z > 0 else mpmath.mpf(0)  # noqa: E731
    q, cs = fixed_point(relu, 6, 16, kinks=[0])
    (an,) = analyze(activation("relu"), [6], 16)
    assert agreeing_digits(q, mpmath.mpf(1) / 2) >= 15
    assert agreeing_digits(cs, an.numbers["c_star"].value) >= 15
    rate = gradient_rate(relu, step, 8, 12, kinks=[0])
    assert agreeing_digits(rate, mpmath.mpf("1.78818997665874")) >= 12


# -- invariants for any phi (hypothesis) -------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    base=st.sampled_from(["tanh", "sin", "gelu", "Max(x, 0)", "erf", "elu"]),
    gain=st.floats(min_value=0.3, max_value=3.0),
    bias=st.floats(min_value=-1.0, max_value=1.0),
    b=st.integers(min_value=4, max_value=10**5),
)
def test_any_phi_invariants(base, gain, bias, b):
    """q* > 0, |c*| < 1, lambda_G = 0 and the gradient rate at least the linear rate
    (B-2)/(B-3) (paper Thm 9), for phi(gain x + bias) on the float route."""
    gain_t, bias_t = f"{gain:.6g}", f"{bias:.6g}"
    act = activation(base, gamma=gain_t, beta=bias_t)
    # relu(gain x + bias) is identically 0 on the sphere |z| <= sqrt(B-1) when its kink
    # -bias/gain lies beyond it: no BSB1 point, refused as input (kink compared exactly)
    kink = -Fraction(bias_t) / Fraction(gain_t)
    if base == "Max(x, 0)" and kink > 0 and kink**2 >= b - 1:
        with pytest.raises(InvalidInput, match="no BSB1 point"):
            analyze(act, [b], 10)
        return
    (an,) = analyze(act, [b], 10)
    val = {k: float(n.value) for k, n in an.numbers.items()}
    assert val["q_star"] > 0
    assert abs(val["c_star"]) < 1
    assert val["lambda_G"] == 0
    assert val["gradient_rate"] >= (b - 2) / (b - 3) * (1 - 1e-9)


@pytest.mark.parametrize("spec", ["tanh", "elu"])
def test_float_route_relations_match_their_definition_in_mpmath(spec):
    """On the float64 moment route the depth scale and the trainable depth are evaluated
    vectorised over B; each must equal its definition (xi = 1/log(rate), 16 xi) computed in
    mpmath from the printed rate, to the digits claimed, and claim no more than the rate has
    plus the first-order amplification."""
    Bs = [4, 7, 33, 1000, 123457]
    for an in analyze(spec, Bs, digits=12):
        rate = an.numbers["gradient_rate"]
        with mpmath.workdps(40):
            r = mpmath.mpf(rate.value)
            want = {"depth_scale": 1 / mpmath.log(r), "max_trainable_depth": 16 / mpmath.log(r)}
            for name, ref in want.items():
                num = an.numbers[name]
                assert num.digits >= 12, (an.batch_size, name, num)
                assert agreeing_digits(mpmath.mpf(num.value), ref) >= 14.5
                # a rate known to d digits gives xi to d - log10(|1/log r|) digits at best
                amplification = mpmath.log10(abs(1 / (r * mpmath.log(r))) * r)
                assert num.digits <= rate.digits - float(amplification) + 1.5


def test_analyze_restores_the_garbage_collector():
    """analyze pauses automatic collection during the call and leaves its state as found,
    also when the call fails."""
    import gc

    assert gc.isenabled()
    analyze("tanh", [8], digits=6)
    assert gc.isenabled()
    with pytest.raises(InvalidInput):
        analyze("tanh", [2], digits=6)
    assert gc.isenabled()
    gc.disable()
    try:
        analyze("tanh", [8], digits=6)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_relation_short_on_the_float_route_goes_to_mpmath(capsys):
    """elu at B = 1000, 13 digits: the float64 gradient rate has 13 digits, but
    ``max_trainable_depth = 16/log(rate)`` loses a digit (rate near 1); the batch size must then
    go to the mpmath moments, not print null. The printed value is the 20-digit mpmath one
    rounded to 13."""
    import json

    from bnmft.cli import main

    assert main(["analyze", "elu", "--batch-size", "1000", "--digits", "13", "--json"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert "not converged" not in captured.err
    ref = analyze("elu", [1000], digits=20)[0].numbers
    for name in ("gradient_rate", "depth_scale", "max_trainable_depth"):
        assert row[name] == mpmath.nstr(ref[name].value, 13, strip_zeros=False), name
