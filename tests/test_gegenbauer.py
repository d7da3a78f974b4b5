"""Gegenbauer engine (derive/gegenbauer.py, numerics/gegenbauer/): the second route.

References: the hyperspherical quadrature of numerics/sphere.py (``moments_float`` at level 6,
``moments_mp``), the Thm 7 moment form of derive(act), THEORY.md's ReLU closed form, and
exact SymPy/mpmath evaluations typed here.

Tolerances: two-point moments that are small at large B (``E[phi(z1) phi(z2)] ~ -1/B`` for
odd phi) are compared with an absolute floor relative to the O(1) moments, since the
quadrature reference itself is only accurate to ~1e-15 absolute there.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from bnmft.derive import gegenbauer as dg
from bnmft.derive.activation import activation
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B as B_SYM
from bnmft.numerics import gegenbauer as G
from bnmft.numerics.gaussian_limit import gradient_rate_limit, limit_moments
from bnmft.numerics.gegenbauer import grid as G_grid
from bnmft.numerics.sphere import moments_float, moments_mp

SMOOTH = ["tanh", "erf", "sin", "gelu"]


def relu_rate(B, dps=40):
    """THEORY.md (paper Thm 8 at alpha = 1)."""
    with mpmath.workdps(dps):
        c = -mpmath.mpf(1) / (B - 1)
        J = (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi
        Jp = (mpmath.pi - mpmath.acos(c)) / mpmath.pi
        return (Jp + B - 1) / ((B - 3) * (1 - J)) - mpmath.mpf(1) / (B - 3)


def thm7_rate(act, moment_values, B):
    deriv = derive(act)
    syms = [mo.symbol for mo in deriv.moments]
    fn = sp.lambdify([B_SYM, *syms], deriv.forms["gradient_rate"], "mpmath")
    return fn(B, *[moment_values[mo] for mo in deriv.moments])


def mp_basis(k, B):
    """e_k(t) from derive.gegenbauer.basis, as an mpmath function of t."""
    return sp.lambdify(dg.T, dg.basis(k).subs(B_SYM, B), "mpmath")


# -- symbolic derivation --------------------------------------------------------------------


def test_rodrigues_and_hypergeometric_forms():
    assert dg.check_rodrigues(4)
    assert dg.check_r_hyper(6)


def test_norm_and_orthonormal_factor_match_theory():
    k = dg.K
    ratio = dg._norm_squared_lambda() / (dg.LAM / (k + dg.LAM) * dg.at_one())
    assert sp.gammasimp(ratio) == 1
    for kk in range(6):
        for b in (4, 5, 8, 33):
            printed = dg.orthonormal_factor_binomial(kk).subs(B_SYM, b)
            derived = dg.orthonormal_factor(kk).subs(B_SYM, b)
            assert sp.N(printed - derived, 30) == pytest.approx(0, abs=1e-25)


def test_recurrence_coefficient_matches_numerics():
    for kk in (1, 2, 5, 17):
        for b in (4, 5, 9, 1000):
            sym = sp.N(dg.recurrence_coefficient(kk).subs(B_SYM, b), 30)
            assert float(sym) == pytest.approx(float(G.recurrence_beta(kk, (b - 3) / 2)), rel=1e-14)


def test_homogeneous_ratio_is_the_documented_factor():
    a, k, lam = dg.ALPHA, dg.K, dg.LAM
    typed = (a - k) / (a + k + 2 * lam + 2) * sp.sqrt(
        (k + lam + 2) * (k + 2 * lam) * (k + 2 * lam + 1) / ((k + lam) * (k + 1) * (k + 2))
    )
    vals = {a: sp.Rational(3, 2), k: 5, lam: sp.Rational(7, 2)}
    diff = sp.N(dg.homogeneous_ratio().subs(vals) - typed.subs(vals), 30)
    assert diff == pytest.approx(0, abs=1e-25)


@pytest.mark.parametrize("alpha", [0, sp.Rational(1, 2), 1, sp.Rational(23, 10)])
def test_half_line_moment_against_quadrature(alpha):
    b = 7
    lam = mpmath.mpf(b - 3) / 2
    with mpmath.workdps(30):
        norm = mpmath.quad(lambda t: (1 - t * t) ** (lam - mpmath.mpf(1) / 2), [-1, 1])
        for kk in range(6):
            expr = dg.half_line_moment(alpha, kk).subs(B_SYM, b)
            num = mpmath.quad(
                lambda t: t ** mpmath.mpf(alpha) * mpmath.gegenbauer(kk, lam, t)
                * (1 - t * t) ** (lam - mpmath.mpf(1) / 2),
                [0, 1],
            ) / norm
            assert float(sp.N(expr, 25)) == pytest.approx(float(num), rel=1e-12, abs=1e-15)


def test_power_moments_are_rational():
    assert dg.power_moment(2) == 1 / (B_SYM - 1)
    assert dg.power_moment(3) == 0
    assert sp.simplify(dg.power_moment(4) - 3 / ((B_SYM - 1) * (B_SYM + 1))) == 0


# -- orthonormality, r_k, c_k -------------------------------------------------------------------


@pytest.mark.parametrize("B", [4, 5, 8, 33, 1000])
def test_basis_orthonormal(B):
    lam = mpmath.mpf(B - 3) / 2
    K = 6
    es = [mp_basis(k, B) for k in range(K)]
    with mpmath.workdps(30):
        w = lambda t: (1 - t * t) ** (lam - mpmath.mpf(1) / 2)  # noqa: E731
        pts = [-1, -0.3, -0.1, 0, 0.1, 0.3, 1]
        norm = mpmath.quad(w, pts)
        for i in range(K):
            for j in range(i, K):
                val = mpmath.quad(lambda t: es[i](t) * es[j](t) * w(t), pts) / norm
                assert float(val) == pytest.approx(1.0 if i == j else 0.0, abs=1e-12)


@pytest.mark.parametrize("B", [4, 5, 8, 33, 1000])
def test_numeric_recurrence_orthonormal_on_the_grid(B):
    """e_k from the float recurrence, projected on the quadrature grid: Gram = identity; and
    the recurrence values equal SymPy's basis at the nodes."""
    act = activation("tanh")
    K = 24
    Bs = np.array([float(B)])
    # the rule production uses for this B (trapezoid where the window truncation is deep),
    # on a wider window: e_j e_k w for j, k ~ 20 is not small where w = 1e-36 (the a_k of phi
    # are, by Cauchy-Schwarz, but a Gram matrix is not)
    if B >= G.TRAPEZOID_MIN_B:
        grid = G_grid.trapezoid_grid(Bs, 60, window_digits=80)
    else:
        grid = G_grid.gauss_grid(act, Bs, 96)
    # e_j at the nodes by projecting the recurrence onto itself: build the values first
    lam = grid.lam[:, None]
    e = [np.ones_like(grid.t)]
    e_prev, beta_prev = np.zeros_like(grid.t), np.zeros((1, 1))
    for k in range(1, K):
        beta = G.recurrence_beta(k, lam)
        e.append((grid.t * e[-1] - beta_prev * e_prev) / beta)
        e_prev, beta_prev = e[-2], beta
    funcs = np.stack(e, axis=2)
    gram = G_grid.project(grid, funcs, K)[0, 0]
    np.testing.assert_allclose(gram, np.eye(K), atol=1e-13)
    t0 = grid.t[0, 40]
    for k in (0, 1, 4, 7):
        assert e[k][0, 40] == pytest.approx(float(mp_basis(k, B)(t0)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("B", [4, 5, 8, 33, 1000, 10**6])
def test_r_recurrence_against_mpmath_gegenbauer(B):
    K = 30
    r = G.r_coefficients([B], K)[0]
    with mpmath.workdps(40):
        lam = (mpmath.mpf(B) - 3) / 2
        rho = -1 / (mpmath.mpf(B) - 1)
        ref = [mpmath.gegenbauer(k, lam, rho) / mpmath.gegenbauer(k, lam, 1) for k in range(K)]
    for k in range(K):
        assert r[k] == pytest.approx(float(ref[k]), rel=1e-12, abs=1e-300)
    with mpmath.workdps(30):
        rm = G.r_coefficients_mp(B, K)
        assert all(abs(x - y) <= mpmath.mpf(10) ** -25 * (abs(y) + mpmath.mpf(10) ** -200)
                   for x, y in zip(rm, ref))


@pytest.mark.parametrize("B", [4, 5, 8, 33])
def test_c_hyper_form_against_ratio(B):
    with mpmath.workdps(30):
        r = G.r_coefficients_mp(B, 12)
        for k in range(12):
            hyper = 1 - (-1) ** k * mpmath.hyp2f1(-k, B - 3 + k, mpmath.mpf(B) / 2 - 1,
                                                  mpmath.mpf(B - 2) / (2 * (B - 1)))
            assert abs(hyper - (1 - r[k])) < mpmath.mpf(10) ** -25
            sym = sp.lambdify([], dg.c_hyper(k, sp.Integer(B)), "mpmath")()
            assert abs(sym - (1 - r[k])) < mpmath.mpf(10) ** -25


def test_c_positive():
    for B in (4, 5, 6, 8, 33, 1000, 10**6):
        c = G.c_coefficients([B], 400)[0]
        assert np.all(c[1:] > 0)


# -- exact coefficients ------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["relu", "abs", "linear", "x**3", "alpha_relu:1.5", "step"])
@pytest.mark.parametrize("B", [5, 8, 33])
def test_exact_coefficients_against_quadrature(spec, B):
    act = activation(spec)
    K = 8
    num = G.coefficients(act, [B], K)[0]
    for k in range(K):
        exact = dg.exact_coefficient(act, k, B)
        assert float(sp.N(exact, 25)) == pytest.approx(num[k], abs=2e-13 * max(1, abs(num[1])))
    fast = G.homogeneous_coefficients(act, [B], K)[0]
    np.testing.assert_allclose(fast, num, atol=2e-13 * max(1, abs(num[1])))


def test_polynomial_coefficients_agree_with_homogeneous_form():
    act = activation("x**3")
    poly = dg.polynomial_coefficients(act.expr)
    assert len(poly) == 4
    for k in range(4):
        hom = dg.homogeneous_coefficient(act.homogeneous, k)
        for b in (5, 8, 100):
            diff = float(sp.N(poly[k].subs(B_SYM, b) - hom.subs(B_SYM, b), 30))
            assert diff == pytest.approx(0, abs=1e-20)
    # a non-homogeneous polynomial: exact a_k vs quadrature
    act = activation("x**2 + x - 1")
    exact = dg.polynomial_coefficients(act.expr)
    num = G.coefficients(act, [9], 5)[0]
    for k in range(5):
        e = float(sp.N(exact[k].subs(B_SYM, 9), 25)) if k < len(exact) else 0.0
        assert e == pytest.approx(num[k], abs=1e-13)


def test_exact_coefficient_none_for_tanh():
    assert dg.exact_coefficient(activation("tanh"), 3) is None


# -- Funk-Hecke moments and Thm 9, float ------------------------------------------------------


@pytest.mark.parametrize("spec", SMOOTH)
def test_funk_hecke_moments_against_sphere_quadrature(spec):
    act = activation(spec)
    moments = list(derive(act).moments)
    Bs = [5, 8, 32, 1000, 10**6]
    values, errors = G.moments_gegenbauer(act, moments, Bs)
    for j, B in enumerate(Bs):
        ref = moments_float(act, moments, B, level=6)
        for mo in moments:
            assert values[mo][j] == pytest.approx(ref[mo], rel=1e-12, abs=1e-15), (B, mo.name)
            assert errors[mo][j] < 1e-12 * max(1.0, abs(values[mo][j]))


@pytest.mark.parametrize("spec", ["tanh", "erf", "sin"])
def test_thm9_equals_thm7(spec):
    act = activation(spec)
    moments = list(derive(act).moments)
    Bs = [8, 16, 32]
    rate, err = G.gradient_rate_thm9(act, Bs)
    for j, B in enumerate(Bs):
        ref = float(thm7_rate(act, moments_float(act, moments, B, level=6), B))
        assert rate[j] == pytest.approx(ref, rel=1e-12)
        assert err[j] < 1e-12 * rate[j]


@pytest.mark.parametrize("spec", ["tanh", "sin"])
def test_split_form_equals_truncated_series(spec):
    """The split form (Parseval + Dirichlet form) against the literal Thm 9 sum, at batch
    sizes where the a_k decay fast enough for the plain series to converge."""
    act = activation(spec)
    Bs = [8, 16, 32]
    series, _, _ = G.thm9_series(act, Bs, 160)
    split, _ = G.gradient_rate_thm9(act, Bs)
    np.testing.assert_allclose(series, split, rtol=1e-12)


def test_vectorised_1024_batch_sizes():
    act = activation("tanh")
    deriv = derive(act)
    moments = list(deriv.moments)
    Bs = np.linspace(8, 4096, 1024).round()
    info: dict = {}
    values, errors = G.moments_and_rate(act, moments, Bs, info=info)
    assert info["plan"].K.max() <= 64
    for j in (0, 37, 300, 1023):
        B = int(Bs[j])
        ref = moments_float(act, moments, B, level=6)
        for mo in moments:
            assert values[mo][j] == pytest.approx(ref[mo], rel=1e-12, abs=1e-15)
        rate7 = float(thm7_rate(act, ref, B))
        assert values["rate"][j] == pytest.approx(rate7, rel=1e-12)
    assert np.all(errors["rate"] < 1e-13 * values["rate"])


def test_error_estimates_are_honest():
    """The float estimates bound the true error (mpmath reference), tanh(2x) + 0.1."""
    act = activation("tanh(2*x) + 0.1")
    moments = list(derive(act).moments)
    Bs = [6, 40, 300]
    values, errors = G.moments_and_rate(act, moments, Bs)
    for j, B in enumerate(Bs):
        ref = G.moments_gegenbauer_mp(act, moments, B, 20)
        rate = G.gradient_rate_thm9_mp(act, B, 20)[0]
        for mo in moments:
            assert abs(values[mo][j] - float(ref[mo][0])) <= errors[mo][j]
        assert abs(values["rate"][j] - float(rate)) <= errors["rate"][j]


@pytest.mark.parametrize("spec", ["elu", "leaky_relu:0.2"])
def test_kinked_float_route(spec):
    act = activation(spec)
    moments = list(derive(act).moments)
    Bs = [8, 32]
    values, errors = G.moments_and_rate(act, moments, Bs)
    for j, B in enumerate(Bs):
        ref = moments_float(act, moments, B, level=6)
        rate7 = float(thm7_rate(act, ref, B))
        assert values["rate"][j] == pytest.approx(rate7, rel=1e-11)
        assert errors["rate"][j] < 1e-10 * values["rate"][j]
        for mo in moments:
            assert values[mo][j] == pytest.approx(ref[mo], rel=1e-11, abs=1e-14)


def test_relu_float_route_reports_its_tail():
    act = activation("relu")
    rate, err = G.gradient_rate_thm9(act, [5, 8, 32])
    for B, v, e in zip([5, 8, 32], rate, err):
        ref = float(relu_rate(B))
        assert abs(v - ref) <= max(e, 1e-15)
        assert e < 1e-8 * v


def test_step_has_infinite_rate():
    act = activation("step")
    rate, err = G.gradient_rate_thm9(act, [8])
    assert math.isinf(rate[0])
    with pytest.raises(G.GegenbauerError):
        G.moments_gegenbauer(act, list(derive(act).moments), [8])


# -- property tests -------------------------------------------------------------------------------


# examples are expensive (a SymPy activation each): no shrinking, no explain phase
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(
    gain=st.floats(0.3, 3.0),
    bias=st.floats(-1.0, 1.0),
    B=st.integers(5, 3000),
)
def test_property_parseval_funk_hecke(gain, bias, B):
    act = activation("tanh", gamma=round(gain, 3), beta=round(bias, 3))
    one, two = (derive(act).moments[0], derive(act).moments[1])
    assert one.name == "E[phi(z1)^2]" and two.name == "E[phi(z1)*phi(z2)]"
    values, _ = G.moments_gegenbauer(act, [one, two], [B])
    q, qc = values[one][0], values[two][0]
    # a_k of phi(sqrt(B-1) t) decay like a Hermite series (exp(-d sqrt(2k)), d = pi/(2 gain)):
    # ~500 terms for 1e-13 at gain 3
    K = 800
    a = G.coefficients(act, [B], K)[0]
    c = G.c_coefficients([B], K)[0]
    assert np.all(c[1:] > 0)
    assert float(np.sum(c[1:] * a[1:] ** 2)) == pytest.approx(q - qc, rel=1e-11, abs=1e-13)
    assert float(np.sum(a**2)) == pytest.approx(q, rel=1e-11)
    rate, _ = G.gradient_rate_thm9(act, [B])
    assert rate[0] >= (B - 2) / (B - 3) * (1 - 1e-12)  # linear phi is the minimum (THEORY.md)


# -- mpmath route ------------------------------------------------------------------------------


def test_mp_moments_tanh_many_digits():
    act = activation("tanh")
    moments = list(derive(act).moments)
    for B in (8, 10**6):
        info: dict = {}
        res = G.moments_gegenbauer_mp(act, moments, B, 30, info=info)
        assert info["converged"]
        float_vals, _ = G.moments_gegenbauer(act, moments, [B])
        for mo in moments:
            value, err = res[mo]
            assert err < mpmath.mpf(10) ** -30 * max(1, abs(value))
            assert float(value) == pytest.approx(float_vals[mo][0], rel=1e-13, abs=1e-16)
    rate, err = G.gradient_rate_thm9_mp(act, 10**6, 30)
    assert err < mpmath.mpf(10) ** -30 * rate


@pytest.mark.slow
@pytest.mark.parametrize("B", [8, 64])
def test_mp_moments_against_sphere_mp(B):
    act = activation("tanh")
    moments = list(derive(act).moments)
    res = G.moments_gegenbauer_mp(act, moments, B, 25)
    ref = moments_mp(act, moments, B, 22)
    for mo in moments:
        assert abs(res[mo][0] - ref[mo][0]) < mpmath.mpf(10) ** -21


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["tanh", "erf", "sin", "gelu", "swish", "softplus", "sigmoid"])
def test_mp_rate_against_thm7_sphere_mp(spec):
    act = activation(spec)
    B = 16
    moments = list(derive(act).moments)
    ref = moments_mp(act, moments, B, 22)
    with mpmath.workdps(30):
        rate7 = thm7_rate(act, {mo: ref[mo][0] for mo in moments}, B)
    rate9, err = G.gradient_rate_thm9_mp(act, B, 25)
    assert abs(rate9 - rate7) < mpmath.mpf(10) ** -19 * rate7
    assert err < mpmath.mpf(10) ** -25 * rate9


def test_relu_mp_split_form():
    act = activation("relu")
    for B in (8, 32):
        value, err = G.gradient_rate_thm9_mp(act, B, 30, strict=False)
        ref = relu_rate(B)
        assert abs(value - ref) <= err
        assert err < mpmath.mpf(10) ** -13 * ref


# -- acceleration of the kinked series -------------------------------------------------------------


@pytest.mark.parametrize("B", [8, 32])
def test_relu_accelerated_series(B):
    act = activation("relu")
    acc = G.thm9_accelerated_mp(act, B, dps=30)
    ref = relu_rate(B)
    assert acc.digits >= 6
    # the claimed digits are honest ...
    assert abs(acc.rate - ref) <= 10 * mpmath.mpf(10) ** (-acc.digits) * ref
    # ... and the plain truncated series is far worse (converges like 1/K)
    assert abs(acc.partial_rate - ref) > 1e3 * abs(acc.rate - ref)
    # the smooth part sums to the Dirichlet form (checks the extrapolation itself)
    assert abs(acc.details["smooth_numerator"] - acc.numerator_check) < mpmath.mpf(10) ** -8


def test_relu_known_values():
    assert float(relu_rate(8)) == pytest.approx(1.78818997665874, rel=1e-13)
    assert float(relu_rate(32)) == pytest.approx(1.52195283055188, rel=1e-13)


# -- B = infinity ---------------------------------------------------------------------------------


def test_gaussian_limit():
    relu = activation("relu")
    rate, err = gradient_rate_limit(relu, 25)
    with mpmath.workdps(30):
        assert abs(rate - mpmath.pi / (mpmath.pi - 1)) < mpmath.mpf(10) ** -22
    tanh = activation("tanh")
    moments = list(derive(tanh).moments)
    lim, _ = limit_moments(tanh, moments, 20)
    big, _ = G.moments_gegenbauer(tanh, moments, [10**6])
    for mo in moments:
        assert float(lim[mo]) == pytest.approx(big[mo][0], abs=1e-5)
    rate_inf, _ = gradient_rate_limit(tanh, 20)
    rate_big, _ = G.gradient_rate_thm9(tanh, [10**6])
    assert float(rate_inf) == pytest.approx(rate_big[0], abs=1e-5)


def test_gaussian_moment_relative_for_a_tiny_value():
    """E[phi(g)^2] = exp(-160)/sqrt(5) ~ 1.5e-70 for phi = exp(-(x-20)^2) (complete the square
    in exp(-2(g-20)^2 - g^2/2)): under mpmath's absolute error control alone the quadrature
    stops at once, without a correct digit."""
    from bnmft.derive.moments import Point
    from bnmft.numerics.gaussian_limit import gaussian_moment

    value, err = gaussian_moment(activation("exp(-(x-20)**2)"), Point(0, 2, 0), 25)
    with mpmath.workdps(40):
        exact = mpmath.exp(-160) / mpmath.sqrt(5)
        assert abs(value - exact) <= err <= mpmath.mpf(10) ** -25 * exact


@pytest.mark.slow
def test_mp_route_relative_for_cancelling_funk_hecke_sums():
    """tanh(x)^1000 at B = 8: two-point moments ~1e-39 whose Funk-Hecke terms are ~1e-14. The
    mpmath route must resolve them relative to themselves (it raises its working digits by the
    cancellation), against the hyperspherical quadrature."""
    act = activation("tanh(x)**1000")
    moments = [mo for mo in derive(act).moments if mo.arity == 2]
    info: dict = {}
    res = G.moments_gegenbauer_mp(act, moments, 8, 14, info=info)
    ref = moments_mp(act, moments, 8, 16)
    assert info["converged"]
    for mo in moments:
        value, err = res[mo]
        assert abs(value) < 1e-30
        assert err <= mpmath.mpf(10) ** -14 * abs(value)
        assert abs(value - ref[mo][0]) <= mpmath.mpf(10) ** -14 * abs(value), mo.name


# -- the table --------------------------------------------------------------------------------


def reference_coefficient(act, B, k, dps=26):
    """a_k = E_w[phi(sqrt(B-1) t) e_k(t)] by direct mpmath quadrature, with mpmath's own
    Gegenbauer polynomial and the norm ||C_k||^2 / ||1||^2 = lambda/(k+lambda) C_k(1)."""
    with mpmath.workdps(dps):
        lam = (mpmath.mpf(B) - 3) / 2
        root = mpmath.sqrt(mpmath.mpf(B) - 1)
        w = lambda t: (1 - t * t) ** (lam - mpmath.mpf(1) / 2)  # noqa: E731
        # breakpoints at the kinks and every 0.1: C_k oscillates k times on [-1, 1]
        pts = sorted({mpmath.mpf(j) / 10 for j in range(-10, 11)}
                     | {mpmath.mpf(float(kk)) / root for kk in act.kinks if abs(kk) < root})
        norm = mpmath.quad(w, pts)
        num = mpmath.quad(lambda t: act.mpmath(root * t) * mpmath.gegenbauer(k, lam, t) * w(t),
                          pts)
        at_one = mpmath.gegenbauer(k, lam, 1)
        return num / norm / mpmath.sqrt(lam / (k + lam) * at_one)


@pytest.mark.parametrize("spec, B", [("tanh", 100), ("elu", 8)])
def test_coefficients_mp_against_direct_quadrature(spec, B):
    """Arb recurrence (nested trapezoid levels at B = 100; Gauss-Legendre split at the kink
    for elu) against mpmath.gegenbauer in a plain quadrature."""
    act = activation(spec)
    a, err = G.coefficients_mp(act, B, 60, dps=20)
    for k in (1, 6, 59):
        ref = reference_coefficient(act, B, k)
        assert abs(a[k] - ref) <= err[k] + mpmath.mpf(10) ** -24, (k, a[k], ref)
        assert err[k] < mpmath.mpf(10) ** -19




def test_table_relu():
    tab = G.gegenbauer_table(activation("relu"), 8, 6, dps=20)
    assert [row["k"] for row in tab.rows] == list(range(6))
    assert tab.rows[1]["a_k_exact"] == "1/2"
    assert tab.rows[0]["a_k_exact"] == "5*sqrt(7)/32"
    assert tab.total["digits"] >= 12
    assert mpmath.mpf(tab.total["rate"]) == pytest.approx(float(relu_rate(8)), rel=1e-12)
    text, latex, js = tab.to_text(), tab.to_latex(), tab.to_json()
    assert "a_k" in text and r"\begin{tabular}" in latex and js["batch_size"] == 8
    assert "rate" in js["total"] and len(js["rows"]) == 6


def test_table_tanh_partial_sums():
    tab = G.gegenbauer_table(activation("tanh"), 8, 40, dps=20)
    q = G.moments_gegenbauer_mp(activation("tanh"), [derive(activation("tanh")).moments[0]], 8, 20)
    (value, _), = q.values()
    assert float(tab.partial["q_star (sum a_k^2)"]) == pytest.approx(float(value), rel=1e-15)
    assert tab.total["digits"] >= 18


def test_moments_and_rate_mp_one_pass():
    act = activation("gelu")
    moments = list(derive(act).moments)
    both = G.moments_and_rate_mp(act, moments, 8, 20)
    rate, _ = G.gradient_rate_thm9_mp(act, 8, 20)
    sep = G.moments_gegenbauer_mp(act, moments, 8, 20)
    with mpmath.workdps(30):
        assert abs(both["rate"][0] - rate) < mpmath.mpf(10) ** -19 * rate
        for mo in moments:
            assert abs(both[mo][0] - sep[mo][0]) < mpmath.mpf(10) ** -19 * max(1, abs(sep[mo][0]))


@pytest.mark.slow
@pytest.mark.parametrize("B", [4, 8, 100, 10**6])
def test_mp_reaches_32_digits(B):
    act = activation("tanh(2*x) + 0.1")
    moments = list(derive(act).moments)
    info: dict = {}
    out = G.moments_and_rate_mp(act, moments, B, 32, info=info)
    assert info["converged"]
    for key, (value, err) in out.items():
        assert err <= mpmath.mpf(10) ** -32 * max(1, abs(value))


@pytest.mark.parametrize("B, spec", [(32, "tanh"), (8, "gelu")])
def test_mp_pass_folded_on_symmetric_nodes_equals_the_unfolded_sums(B, spec):
    """On symmetric nodes the mpmath pass runs the e_k recurrence on half of them and sums
    folded weights (``e_k`` has the parity of ``k``); the same nodes in shuffled order are
    not recognised as symmetric and take every node: the moments, their scales and the rate
    agree to far below the route's tolerance (odd and even ``k`` both enter: a sign error in
    the fold would show at the first odd coefficient)."""
    import random

    from bnmft.numerics.gegenbauer import mp_route
    from bnmft.numerics.gegenbauer.mp_grid import trapezoid_nodes_mp, window_angle_mp

    deriv = derive(activation(spec))
    moments = list(deriv.moments)
    with mpmath.workdps(47):
        nodes, levels = trapezoid_nodes_mp(window_angle_mp(B, 76), 16)
        order = list(range(len(nodes)))
        random.Random(1).shuffle(order)
        shuffled = ([nodes[i] for i in order], [[w[i] for i in order] for w in levels])
        tol = mpmath.mpf(10) ** -35
        folded = mp_route._mp_pass(deriv.activation, B, nodes, levels, moments, True, tol, 40)
        plain = mp_route._mp_pass(deriv.activation, B, *shuffled, moments, True, tol, 40)
    for lev_f, lev_p in zip(folded, plain):
        for key in list(moments) + ["rate"]:
            value_f, _, scale = lev_f[key]
            value_p = lev_p[key][0]
            assert abs(value_f - value_p) <= mpmath.mpf(10) ** -42 * scale
        assert lev_f["_K"] == lev_p["_K"]


@pytest.mark.parametrize("spec", ["tanh", "sin"])
def test_many_batch_sizes_against_sphere_quadrature(spec, monkeypatch):
    """Hundreds of batch sizes at once (chunks, the first chunk's probe and node bisection,
    terms handed ahead): every estimate bounds the error against the 2-D sphere quadrature at
    20 digits, the moments keep >= 12 digits, and the bisected plan uses fewer nodes than the
    plain growth while agreeing with it within both estimates."""
    from bnmft.numerics.gegenbauer import float_route

    act = activation(spec)
    moments = list(derive(act).moments)
    checked = [4, 5, 47, 48, 90, 420, 2000, 10**5, 10**6]
    Bs = np.unique(np.concatenate([np.geomspace(4, 1e6, 300).astype(int), checked]))
    info: dict = {}
    values, errors = G.moments_gegenbauer(act, moments, Bs, info=info)
    for B in checked:
        j = int(np.searchsorted(Bs, B))
        ref = moments_mp(act, moments, int(B), 20)
        for mo in moments:
            exact = float(ref[mo][0])
            assert abs(values[mo][j] - exact) <= errors[mo][j], (B, mo)
            if abs(exact) > 1e-2:  # not the ~1/B cross moments of odd functions
                assert errors[mo][j] < 1e-12 * abs(exact), (B, mo)
    monkeypatch.setattr(float_route, "_PROBE_MIN", 10**9)
    plain_info: dict = {}
    plain_v, plain_e = G.moments_gegenbauer(act, moments, Bs, info=plain_info)
    trap = Bs >= G.TRAPEZOID_MIN_B
    assert info["plan"].nodes[trap].max() < plain_info["plan"].nodes[trap].max()
    for mo in moments:
        assert np.all(np.abs(values[mo] - plain_v[mo]) <= errors[mo] + plain_e[mo])
