"""Vanilla networks (no batchnorm): derived maps against independent integrals, fixed points
against the maps, known phase boundaries, Monte Carlo of a wide random network, CLI.

References written here and used by no library code: scipy ``quad``/``dblquad`` and mpmath
``quad`` of the defining Gaussian integrals (Poole et al. 2016), finite differences of those
integrals for the slopes, and a simulated network of width 1000.
"""

import json
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from bnmft import pipeline
from bnmft.cli import main
from bnmft.derive import derive_vanilla
from bnmft.derive import parse_activation as activation
from bnmft.derive.symbols import c
from bnmft.derive.vanilla import SIGMA_B2, SIGMA_W2, q
from bnmft.numerics import gaussian_quadrature as gq
from bnmft.numerics.precision import agreeing_digits

PDF = 1 / math.sqrt(2 * math.pi)


def gauss(f):
    """``E[f(z)]``, ``z ~ N(0, 1)``, by scipy quad on [-14, 0] and [0, 14]."""
    g = lambda z: f(z) * math.exp(-z * z / 2) * PDF  # noqa: E731
    return sum(integrate.quad(g, a, b, epsabs=1e-16, epsrel=1e-13, limit=200)[0]
               for a, b in ((-14, 0), (0, 14)))


def length_map(phi, sw2, sb2, qv):
    """``sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2`` by scipy quad."""
    s = math.sqrt(qv)
    return sw2 * gauss(lambda z: phi(s * z) ** 2) + sb2


def correlation_map(phi, sw2, sb2, qv, cv):
    """``(sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q`` by scipy dblquad."""
    s, r = math.sqrt(qv), math.sqrt(1 - cv * cv)

    def f(z2, z1):
        return phi(s * z1) * phi(s * (cv * z1 + r * z2)) * math.exp(-(z1 * z1 + z2 * z2) / 2)

    val = integrate.dblquad(f, -13, 13, -13, 13, epsabs=1e-14, epsrel=1e-12)[0]
    return (sw2 * val / (2 * math.pi) + sb2) / qv


def value(num):
    return float(num.value)


# -- derivation ------------------------------------------------------------------------------


def J(cv):
    return (sp.sqrt(1 - cv**2) + (sp.pi - sp.acos(cv)) * cv) / sp.pi


def test_relu_maps_are_the_arccosine_kernel():
    """THEORY.md: V_relu = 1/2 sqrt(S11 S22) J(c), J'(c) = (pi - acos c)/pi."""
    vd = derive_vanilla(activation("relu"))
    assert sp.simplify(vd["length_map"].expr - (SIGMA_W2 * q / 2 + SIGMA_B2)) == 0
    expected = (SIGMA_W2 * q * J(c) / 2 + SIGMA_B2) / q
    assert sp.simplify(vd["correlation_map"].expr - expected) == 0
    assert sp.simplify(vd["chi_c"].expr - SIGMA_W2 * (sp.pi - sp.acos(c)) / (2 * sp.pi)) == 0
    assert vd["chi_1"].expr == SIGMA_W2 / 2
    assert sp.simplify(vd.q_star - SIGMA_B2 / (1 - SIGMA_W2 / 2)) == 0


@pytest.mark.parametrize("spec", ["relu", "abs", "leaky_relu:0.2", "alpha_relu:1.5", "linear"])
def test_slopes_from_moments_equal_derivatives_of_the_closed_maps(spec):
    """Two derivations of each slope agree exactly: differentiation under the integral sign
    (chi_q) and Price's theorem (chi_c), evaluated with the closed Gaussian moments, against
    SymPy's derivative of the closed map."""
    act = activation(spec)
    vd = derive_vanilla(act)
    for name in ("chi_q", "chi_c", "chi_1"):
        form = vd[name]
        closed_moments = form.moment_form.subs(
            {mo.symbol: mo.closed_form(act) for mo in form.moments})
        diff = closed_moments - vd[name].expr
        R = sp.Rational
        for qv, cv in ((R(3, 2), R(1, 3)), (R(1, 5), R(-1, 2))):
            at = diff.subs({q: qv, c: cv, SIGMA_W2: 2, SIGMA_B2: sp.Rational(1, 10)})
            assert abs(sp.N(at, 40)) < 1e-35, (spec, name)


def test_stein_form_of_chi_q_against_a_finite_difference_of_the_length_map():
    """chi_q as derived (E[phi'^2 + phi phi''], Schoenholz et al.) for tanh, by scipy, against
    the central difference of the scipy length map."""
    phi = math.tanh
    for qv in (0.3, 1.7):
        s = math.sqrt(qv)

        def stein(z, s=s):
            t = math.tanh(s * z)
            return (1 - t * t) ** 2 + t * (-2 * t * (1 - t * t))

        derived = gauss(stein)
        h = 1e-4
        fd = (length_map(phi, 1, 0, qv + h) - length_map(phi, 1, 0, qv - h)) / (2 * h)
        assert derived == pytest.approx(fd, rel=1e-7)


def test_limits_at_zero_are_exact():
    vd = derive_vanilla(activation("tanh"))
    assert vd.zero_limit("chi_1") == SIGMA_W2 and vd.zero_limit("length_map") == SIGMA_B2
    # relu + tanh has a kink at 0: chi_1 -> the mean of the one-sided phi'(0)^2 = (4 + 1)/2
    vd = derive_vanilla(activation("Max(x, 0) + tanh(x)"))
    assert vd.zero_limit("chi_1") == sp.Rational(5, 2) * SIGMA_W2


# -- quadrature ------------------------------------------------------------------------------


def _moments(*pts):
    from bnmft.derive import GaussianMoment, Point

    return GaussianMoment(tuple(Point(*p) for p in pts))


def test_gaussian_quadrature_of_relu_against_the_arccosine_kernel():
    """The kinked (Gauss-Legendre on pieces) Arb and float64 routes on relu, whose moments
    THEORY.md gives: E[relu(u1) relu(u2)] = q J(c)/2, and E[z relu(u) relu'(u)] = sqrt(q)/2."""
    one, two = _moments((1, 1, 1)), _moments((0, 1, 0), (0, 1, 0))
    act = activation("relu")
    qv, cv = mpmath.mpf(2), mpmath.mpf("0.7")
    with mpmath.workdps(30):
        kernel = (mpmath.sqrt(1 - cv**2) + (mpmath.pi - mpmath.acos(cv)) * cv) / mpmath.pi
        refs = {one: mpmath.sqrt(qv) / 2, two: qv * kernel / 2}
        hi = gq.moments_arb(act, [one, two], qv, cv, 16)
    lo, err = gq.moments_float(act, [one, two], 2.0, 0.7)
    for mo, ref in refs.items():
        assert agreeing_digits(hi[mo][0], ref) >= 16
        assert hi[mo][1] <= 1e-16 * abs(ref)
        assert abs(lo[mo] - float(ref)) <= 4 * err[mo] and err[mo] < 1e-13 * abs(lo[mo])


@pytest.mark.parametrize("spec, qv, cv, arb", [
    ("tanh", 1.3, 0.4, True), ("relu(x + 0.3)", 2.0, 0.7, False),
    pytest.param("relu(x + 0.3)", 2.0, 0.7, True, marks=pytest.mark.slow),
    pytest.param("tanh", 9.0, -0.3, True, marks=pytest.mark.slow)])
def test_two_point_gaussian_quadrature_against_scipy(spec, qv, cv, arb):
    """Float64 (and Arb) routes of E[phi(u1) phi(u2)] and E[phi'(u1) phi'(u2)] against scipy
    dblquad split along the kink lines (relative accuracy about 1e-11)."""
    act = activation(spec)
    phi, dphi = act.numpy, act.numpy_derivative
    s, r = math.sqrt(qv), math.sqrt(1 - cv * cv)
    kinks = list(act.kink_floats)  # split at u1 = k and along the lines u2 = k
    outer = sorted({-13.0, 13.0, *(k / s for k in kinks)})
    for mo, f in ((_moments((0, 1, 0), (0, 1, 0)), phi), (_moments((0, 0, 1), (0, 0, 1)), dphi)):
        def g(z2, z1, f=f):
            return float(f(s * z1) * f(s * (cv * z1 + r * z2))) * math.exp(-(z1**2 + z2**2) / 2)

        ref = 0.0
        for a, b in zip(outer[:-1], outer[1:]):
            lines = [lambda z1, k=k: min(13.0, max(-13.0, (k / s - cv * z1) / r)) for k in kinks]
            ends = [lambda z1: -13.0, *lines, lambda z1: 13.0]
            for lo_f, hi_f in zip(ends[:-1], ends[1:]):
                ref += integrate.dblquad(g, a, b, lo_f, hi_f, epsabs=1e-14, epsrel=1e-11)[0]
        ref /= 2 * math.pi
        lo, err = gq.moments_float(act, [mo], qv, cv)
        assert lo[mo] == pytest.approx(ref, rel=1e-10, abs=1e-13)
        if arb:
            with mpmath.workdps(25):
                hi = gq.moments_arb(act, [mo], qv, cv, 15)
            assert float(hi[mo][0]) == pytest.approx(ref, rel=1e-10, abs=1e-13)
            assert abs(hi[mo][0] - lo[mo]) <= 2 * err[mo] + 1e-15 * abs(lo[mo])


@pytest.mark.slow
def test_two_point_arb_quadrature_of_tanh_against_mehler_series():
    """E[tanh(u1) tanh(u2)] = sum_k c^k/k! a_k^2 (Mehler), a_k = E[tanh(s z) He_k(z)] by
    mpmath.quad: an independent 20-digit reference for the trapezoid route."""
    mo = _moments((0, 1, 0), (0, 1, 0))
    qv, cv = mpmath.mpf("1.3"), mpmath.mpf("0.4")
    with mpmath.workdps(35):
        s = mpmath.sqrt(qv)
        total = mpmath.mpf(0)
        for k in range(1, 72, 2):  # tanh is odd: even coefficients vanish
            he = lambda z, k=k: mpmath.hermite(k, z / mpmath.sqrt(2)) / mpmath.sqrt(2) ** k  # noqa: E731
            a = mpmath.quad(lambda z, he=he: mpmath.tanh(s * z) * he(z) * mpmath.exp(-z * z / 2),
                            [-mpmath.inf, -4, 0, 4, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
            total += cv**k / mpmath.factorial(k) * a * a
        hi = gq.moments_arb(activation("tanh"), [mo], qv, cv, 20)
    assert agreeing_digits(hi[mo][0], total) >= 20


# -- fixed points ----------------------------------------------------------------------------


def test_tanh_chaotic_phase_against_scipy_maps():
    phi, sw, sb = math.tanh, 1.5, 0.1
    res = pipeline.vanilla("tanh", "1.5", "0.1", digits=12)
    n = res.numbers
    assert res.phase == "chaotic" and res.fixed_point == "attracting"
    assert all(num.digits >= 12 for num in n.values())
    qs, cs = value(n["q_star"]), value(n["c_star"])
    sw2, sb2 = sw * sw, sb * sb
    assert length_map(phi, sw2, sb2, qs) == pytest.approx(qs, rel=1e-13)
    assert correlation_map(phi, sw2, sb2, qs, cs) == pytest.approx(cs, rel=1e-11)
    # slopes against finite differences of the independent maps
    h = 1e-4
    chi_q = (length_map(phi, sw2, sb2, qs + h) - length_map(phi, sw2, sb2, qs - h)) / (2 * h)
    assert value(n["chi_q"]) == pytest.approx(chi_q, rel=1e-7)
    chi_c = (correlation_map(phi, sw2, sb2, qs, cs + h)
             - correlation_map(phi, sw2, sb2, qs, cs - h)) / (2 * h)
    assert value(n["chi_c"]) == pytest.approx(chi_c, rel=1e-6)
    s = math.sqrt(qs)
    chi_1 = sw2 * gauss(lambda z: (1 - math.tanh(s * z) ** 2) ** 2)
    assert value(n["chi_1"]) == pytest.approx(chi_1, rel=1e-12)
    assert value(n["xi_c"]) == pytest.approx(-1 / math.log(chi_c), rel=1e-6)
    assert value(n["xi_q"]) == pytest.approx(-1 / math.log(chi_q), rel=1e-6)


def test_high_precision_fixed_point_against_mpmath_findroot():
    """Arb route at 22 digits (ordered phase) against mpmath.findroot on the mpmath.quad
    length map."""
    res = pipeline.vanilla("tanh", "1.2", "0.3", digits=22)
    n = res.numbers
    assert res.phase == "ordered" and n["c_star"].digits == math.inf
    with mpmath.workdps(40):
        sw2, sb2 = mpmath.mpf("1.44"), mpmath.mpf("0.09")

        def L(qv):
            s = mpmath.sqrt(qv)
            mean = mpmath.quad(lambda z: mpmath.tanh(s * z) ** 2 * mpmath.exp(-z * z / 2),
                               [-mpmath.inf, 0, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
            return sw2 * mean + sb2

        qs = mpmath.findroot(lambda qv: L(qv) - qv, (0.1, 1), solver="anderson")
        s = mpmath.sqrt(qs)
        chi_1 = sw2 * mpmath.quad(lambda z: (1 - mpmath.tanh(s * z) ** 2) ** 2
                                  * mpmath.exp(-z * z / 2),
                                  [-mpmath.inf, 0, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
    for name, ref in (("q_star", qs), ("chi_1", chi_1)):
        assert n[name].digits >= 22
        assert agreeing_digits(n[name].value, ref) >= 22, name


def test_relu_closed_forms_and_criticality():
    res = pipeline.vanilla("relu", "1.2", "0.1", digits=30)
    n = res.numbers
    # sigma_b^2 / (1 - sigma_w^2/2) = 0.01/0.28 = 1/28: exact, but not a binary fraction, so it
    # claims the digits it was rounded to (at least the 30 asked for), not "exact"
    assert n["q_star"].digits >= 30
    with mpmath.workdps(50):
        assert n["q_star"].text(30) == mpmath.nstr(mpmath.mpf(1) / 28, 30, strip_zeros=False)
    assert n["chi_1"].text(5) == "0.72000" and n["c_star"].text(3) == "1.00"
    # sigma_w^2 = 2, sigma_b = 0: critical; the length map is the identity (q* = q0)
    res = pipeline.vanilla("relu", "sqrt(2)", "0", digits=20, q0="0.7")
    assert res.phase == "critical" and res.fixed_point == "identity"
    assert res.numbers["chi_1"].text(20) == "1.0000000000000000000"
    assert res.numbers["q_star"].text(3) == "0.700"
    assert res.numbers["xi_c"].is_infinite and res.numbers["xi_q"].is_infinite
    # beyond it there is no fixed point; below it (sigma_b = 0) the signal dies
    assert pipeline.vanilla("relu", "1.5", "0").fixed_point == "unbounded"
    dead = pipeline.vanilla("relu", "1.3", "0")
    assert dead.fixed_point == "zero" and dead.numbers["q_star"].value == 0
    assert dead.numbers["chi_1"].text(10) == "0.8450000000"


def test_tanh_order_to_chaos_boundary_at_sigma_b_zero():
    """sigma_b = 0: chi_1 = sigma_w^2 exactly as long as the signal dies (sigma_w <= 1);
    sigma_w = 1 is the boundary; above it q* > 0, c* = 0 and chi_1 > 1."""
    at = pipeline.vanilla("tanh", "1", "0", digits=16)
    assert at.phase == "critical" and at.fixed_point == "zero"
    assert at.numbers["chi_1"].digits == math.inf and at.numbers["chi_1"].value == 1
    below = pipeline.vanilla("tanh", "0.99", "0", digits=12)
    assert below.phase == "ordered" and below.numbers["chi_1"].text(6) == "0.980100"
    above = pipeline.vanilla("tanh", "1.01", "0", digits=12)
    assert above.phase == "chaotic" and above.numbers["c_star"].value == 0
    assert value(above.numbers["chi_1"]) > 1 and value(above.numbers["q_star"]) > 0


def test_chaotic_homogeneous_phi_by_closed_forms():
    """alpha-relu with alpha = 3/4 has a chaotic phase; c* from the closed correlation map
    (hypergeometric dual kernel) against the scipy map."""
    res = pipeline.vanilla("alpha_relu:0.75", "2", "0.1", digits=20)
    n = res.numbers
    assert res.phase == "chaotic" and n["c_star"].digits >= 20
    phi = lambda u: max(u, 0.0) ** 0.75  # noqa: E731
    qs, cs = value(n["q_star"]), value(n["c_star"])
    assert length_map(phi, 4, 0.01, qs) == pytest.approx(qs, rel=1e-10)
    assert correlation_map(phi, 4, 0.01, qs, cs) == pytest.approx(cs, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(spec=st.sampled_from(["relu", "leaky_relu:0.3", "abs", "alpha_relu:0.75"]),
       sw=st.floats(0.3, 2.5), sb=st.floats(0.01, 1.0))
def test_fixed_point_is_the_limit_of_the_iterated_length_map(spec, sw, sb):
    """Invariant for homogeneous phi: q* (if any) is where L(q) iterated from q0 = 1 goes,
    the phase follows chi_1, and c* = 1 exactly in the ordered phase."""
    sw_t, sb_t = f"{sw:.6f}", f"{sb:.6f}"
    res = pipeline.vanilla(spec, sw_t, sb_t, digits=12)
    vd = derive_vanilla(activation(spec))
    L = sp.lambdify(q, vd["length_map"].expr.subs({SIGMA_W2: float(sw_t) ** 2,
                                                   SIGMA_B2: float(sb_t) ** 2}), "math")
    qv, step, prev = 1.0, 0.0, 0.0
    for _ in range(200000):
        q_next = L(qv)
        prev, step, qv = step, q_next - qv, q_next
        if qv > 1e12 or abs(step) <= 1e-14 * qv:
            break
    if res.fixed_point == "unbounded":
        # diverging: past 10^12, or still rising by steps that do not shrink (sigma_w at the
        # critical value 1 for abs: q grows by sigma_b^2 per layer)
        assert qv > 1e12 or (step > 0 and step >= prev * (1 - 1e-9) and qv > 1e4)
        return
    # the iteration's own error: step * r / (1 - r), r = step / prev the contraction rate
    r = abs(step / prev) if prev else 0.0
    assert r < 1
    err = abs(step) * r / (1 - r)
    qs = res.numbers["q_star"]
    assert qs.digits >= 12 and abs(qv - qs.value) <= 1e-9 * qs.value + 2 * err
    chi_1 = res.numbers["chi_1"]
    assert res.phase == ("ordered" if chi_1.value < 1 else "chaotic")
    if res.phase == "ordered":
        assert res.numbers["c_star"].value == 1 and res.numbers["c_star"].digits == math.inf


# -- Monte Carlo of a wide random network ----------------------------------------------------


def test_wide_random_tanh_network_reaches_the_fixed_point():
    """Width 1000, 30 layers, 48 inputs of pairwise correlation 0.5: the empirical length and
    mean pairwise correlation of the last 10 layers against q* and c* (xi_q ~ 0.7, xi_c ~ 5.1:
    far past the transient; sampling error ~ 1/sqrt(N)), and the growth of squared gradient
    norms per layer (backpropagation through the sampled layers) against chi_1."""
    sw, sb = 2.5, 0.3
    res = pipeline.vanilla("tanh", "2.5", "0.3", digits=8)
    N, M, depth = 1000, 48, 30
    rng = np.random.default_rng(7)
    qs, cs, growth = [], [], []
    iu = np.triu_indices(M, 1)
    for _ in range(1):
        h = math.sqrt(0.5) * (rng.standard_normal((N, 1)) + rng.standard_normal((N, M)))
        layers = []
        for layer in range(depth):
            W = rng.standard_normal((N, N), dtype=np.float32) * (sw / math.sqrt(N))
            pre = h
            h = W @ np.tanh(pre) + rng.standard_normal(N)[:, None] * sb
            layers.append((W, pre))
            if layer >= depth - 10:
                Q = h.T @ h / N
                d = np.sqrt(np.diag(Q))
                qs.append(np.mean(d * d))
                cs.append(np.mean((Q / np.outer(d, d))[iu]))
        g = rng.standard_normal((N, 8))  # gradients w.r.t. the last pre-activations
        for W, pre in reversed(layers[-12:]):
            new = (1 - np.tanh(pre[:, :1]) ** 2) * (W.T @ g)  # J^T g, J = W diag(phi'(h))
            growth.append(np.sum(new**2) / np.sum(g**2))
            g = new
    assert np.mean(qs) == pytest.approx(value(res.numbers["q_star"]), rel=0.02)
    assert np.mean(cs) == pytest.approx(value(res.numbers["c_star"]), abs=0.02)
    # the per-layer growth follows that layer's own sampled length (about 1% off q*), so the
    # check is loose
    assert np.mean(growth) == pytest.approx(value(res.numbers["chi_1"]), rel=0.05)


# -- command line ----------------------------------------------------------------------------


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_no_batchnorm_json(capsys):
    status, out, err = run(capsys, "analyze", "relu", "--no-batchnorm", "--sigma-w", "1.2",
                           "--sigma-b", "0.1", "--json")
    assert status == 0 and err == ""
    row = json.loads(out)
    assert list(row) == ["activation", "sigma_w", "sigma_b", "phase", "fixed_point", "q_star",
                         "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c", "notes"]
    assert row["phase"] == "ordered" and row["chi_1"] == "0.7200000000000000"
    assert row["q_star"] == "0.03571428571428571"  # 0.01 / (1 - 0.72), exact


def test_cli_no_fixed_point_is_one_note_and_exit_0(capsys):
    status, out, err = run(capsys, "analyze", "relu", "--no-batchnorm", "--sigma-w", "1.5",
                           "--sigma-b", "0.1", "--json")
    assert status == 0 and json.loads(out)["q_star"] is None
    assert len(err.strip().splitlines()) == 1 and "grows without bound" in err


@pytest.mark.parametrize("argv", [
    ["--sigma-w", "0"], ["--sigma-w", "-1"], ["--sigma-b", "-0.1"], ["--sigma-w", "inf"],
    ["--sigma-b", "nan"], ["--sigma-w", "1e400"], ["--sigma-w", "x"], ["--batch-size", "8"],
])
def test_cli_no_batchnorm_bad_input(capsys, argv):
    status, out, err = run(capsys, "analyze", "tanh", "--no-batchnorm", *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")


def test_cli_sigma_b_without_no_batchnorm_is_bad_input(capsys):
    """Biases before batchnorm drop out: --sigma-b (and --q0) need --no-batchnorm. --sigma-w
    is a parameter of the batchnorm network too (tests/test_epsilon.py)."""
    status, _, err = run(capsys, "analyze", "relu", "--batch-size", "8", "--sigma-b", "2")
    assert status == 2 and "--no-batchnorm" in err
    status, _, err = run(capsys, "analyze", "relu", "--batch-size", "8", "--q0", "2")
    assert status == 2 and "--no-batchnorm" in err
