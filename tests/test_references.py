"""The independent references (tests/references.py) checked against each other and against
exact identities, without bnmft: a wrong reference would make test_printed_digits meaningless.
"""

from __future__ import annotations

import mpmath
import pytest
import references as R
from mpmath import mpf


def close(a, b, digits):
    with mpmath.workdps(R.WORK):
        scale = max(abs(mpf(b)), mpf(10) ** -10)
        return abs(mpf(a) - mpf(b)) <= scale * mpf(10) ** -digits


def assert_close(got: dict, want: dict, digits, keys=None):
    keys = keys or [k for k in got if k in want]
    bad = {k: mpmath.nstr(got[k] - want[k], 3) for k in keys if not close(got[k], want[k], digits)}
    assert not bad, bad


# -- the quadrature against the closed forms (THEORY.md) and the alpha_relu series --------------

QUAD_KEYS = ["q_star", "c_star", "gradient_rate", "depth_scale"]


@pytest.mark.parametrize("spec, B", [
    ("relu", 5),
    pytest.param("relu", 8, marks=pytest.mark.slow),
    pytest.param("leaky_relu:0.2", 8, marks=pytest.mark.slow),
    pytest.param("alpha_relu:1.5", 5, marks=pytest.mark.slow),
    pytest.param("alpha_relu:1.5", 8, marks=pytest.mark.slow),
    pytest.param("relu", 33, marks=pytest.mark.slow),
    pytest.param("leaky_relu", 512, marks=pytest.mark.slow),
    pytest.param("alpha_relu:1.5", 10**6, marks=pytest.mark.slow),
])
def test_sphere_quadrature_reproduces_closed_forms(spec, B):
    """The same Thm 4 / Thm 7 quadrature that gives the tanh, gelu and kinked references
    reproduces ReLU's closed forms, the hand-derived leaky ReLU forms and the alpha-ReLU
    series to 38 digits."""
    assert_close(R.quadrature_reference(spec, B, 40), R.reference(spec, B), 38, QUAD_KEYS)


def test_alpha_relu_series_at_alpha_one_is_relu():
    for B in (5, 8, 10**6):
        assert_close(R._alpha_relu(1, B), R.reference("relu", B), 75, QUAD_KEYS)


def test_orthant_moments():
    with mpmath.workdps(R.WORK):
        c = mpf(-1) / 7
        assert close(R.orthant_moment(1, 1, c), R.J(c) / 2, 75)  # arccosine kernel
        assert close(R.orthant_moment(0, 0, c), mpf(1) / 4 + mpmath.asin(c) / (2 * mpmath.pi), 75)
    with mpmath.workdps(20):
        direct = mpmath.quad(lambda x: x**1.5 * mpmath.exp(-x * x / 2)
                             * mpmath.quad(lambda y: y**1.5 * mpmath.exp(
                                 -(y - c * x) ** 2 / (2 * (1 - c * c))), [0, mpmath.inf]),
                             [0, mpmath.inf]) / (2 * mpmath.pi * mpmath.sqrt(1 - c * c))
        assert close(R.orthant_moment(mpf(3) / 2, mpf(3) / 2, c), direct, 16)


def test_leaky_relu_slope_one_is_linear():
    act = R.Phi("leaky_relu:1", None, (), "leaky", mpf(1))
    for B in (5, 33, 10**6):
        # (depth: log of a rate 1 + O(1/B) loses log10(B) digits)
        assert_close(R._closed(act, B), R.reference("linear", B), 65)


# -- the sphere laws ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec, B", [
    ("tanh", 8),
    pytest.param("gelu", 512, marks=pytest.mark.slow),
])
def test_sphere_moment_identities(spec, B):
    """Both laws integrate to 1, ``E[z1^2] = 1`` and ``E[z1 z2] = -1/(B-1)`` (q* c* of linear)."""
    got = R.sphere_identities(spec, B, 40)
    with mpmath.workdps(R.WORK):
        want = {"E[z1^2]": mpf(1), "E[z1 z2]": mpf(-1) / (B - 1), "mass1": mpf(1),
                "mass2": mpf(1)}
    assert_close(got, want, 40)


@pytest.mark.parametrize("B", [6, 9])
def test_thm7_normalisation_by_plain_quadrature(B):
    """``Int Int Z^((B-5)/2) dz1 dz2`` by nested tanh-sinh quadrature of Z itself."""
    with mpmath.workdps(30):
        Bm = mpf(B)

        def inner(z1):
            m = -z1 / (Bm - 1)
            w = mpmath.sqrt(Bm * (Bm - 2) * max(Bm - 1 - z1 * z1, 0)) / (Bm - 1)
            return mpmath.quad(lambda z2: max(Bm * (Bm - 2) - Bm * (z1 * z1 + z2 * z2)
                                              + (z1 - z2) ** 2, 0) ** ((Bm - 5) / 2),
                               [m - w, m, m + w])

        edge = mpmath.sqrt(Bm - 1)
        value = mpmath.quad(inner, [-edge, 0, edge])
        assert close(value, R.thm7_normalisation(B), 25)


# -- Gegenbauer coefficients (Thm 9) --------------------------------------------------------------


@pytest.mark.parametrize("B", [5, 8, 33])
def test_funk_hecke_matches_theory_hypergeometric(B):
    """``c_k = 1 - r_k`` equals THEORY.md's ``1 - (-1)^k 2F1(-k, B-3+k; B/2-1; (B-2)/(2(B-1)))``."""
    with mpmath.workdps(R.WORK):
        r = R.funk_hecke(B, 12)
        for k, rk in enumerate(r):
            theory = (-1) ** k * mpmath.hyp2f1(-k, B - 3 + k, mpf(B) / 2 - 1,
                                               mpf(B - 2) / (2 * (B - 1)))
            assert close(rk, theory, 70), k


def test_gegenbauer_sums_give_the_sphere_moments():
    """Parseval ``sum a_k^2 = q*`` and Funk-Hecke ``sum r_k a_k^2 = q* c*`` for tanh at B = 8
    (a_k fall geometrically): the 1-D coefficients against the 2-D quadrature."""
    table = R.gegenbauer_reference("tanh", 8, 90, 40)
    ref = R.reference("tanh", 8, 40)
    with mpmath.workdps(R.WORK):
        assert close(table["partial"]["q_star (sum a_k^2)"], ref["q_star"], 36)
        qc = ref["q_star"] * ref["c_star"]
        assert close(table["partial"]["q_star c_star (sum r_k a_k^2)"], qc, 36)


def test_relu_gegenbauer_coefficients_exact():
    """ReLU at B = 8: ``a_0 = 5 sqrt(7)/32``, ``a_1 = 1/2``, ``a_2 = 15 sqrt(21)/256``, odd
    ``k >= 3`` vanish (relu = x/2 + |x|/2)."""
    rows = R.gegenbauer_reference("relu", 8, 6, 40)["rows"]
    with mpmath.workdps(R.WORK):
        exact = [5 * mpmath.sqrt(7) / 32, mpf(1) / 2, 15 * mpmath.sqrt(21) / 256]
        for k, want in enumerate(exact):
            assert close(rows[k]["a_k"], want, 40), k
        assert abs(rows[3]["a_k"]) < mpf(10) ** -45 and abs(rows[5]["a_k"]) < mpf(10) ** -45


# -- correct rounding ----------------------------------------------------------------------------


def test_digit_mismatch_examples():
    with mpmath.workdps(R.WORK):
        j = R.J(mpf(-1) / 7)
        assert R.digit_mismatch("0.2501349328614511622517381", j, 25) is None
        assert R.digit_mismatch("0.2501349328614511646762253", j, 25)  # float64 expansion
        assert R.digit_mismatch("-0.1428571428571429", mpf(-1) / 7, 16) is None
        assert R.digit_mismatch("-0.1428571428571428", mpf(-1) / 7, 16)  # truncated
        assert R.digit_mismatch("-0.142857142857143", mpf(-1) / 7, 16)  # too few digits
        assert R.digit_mismatch("0.1428571428571429", mpf(-1) / 7, 16)  # sign
        assert R.digit_mismatch("1.000", mpf("0.99996"), 4) is None  # carry across a decade
        assert R.digit_mismatch("0.9999", mpf("0.99996"), 4)
        assert R.digit_mismatch("1.5e-8", mpf("1.5e-8")) is None
        assert R.digit_mismatch("1.5e-8", mpf("1.5e-9"))
        assert R.digit_mismatch("27.50", mpf("27.495"), 4) is None  # a tie: either way
        assert R.digit_mismatch("27.49", mpf("27.495"), 4) is None
        assert R.digit_mismatch("27.49", mpf("27.4951"), 4)
        assert R.digit_mismatch("0", mpf(0)) is None
        assert R.digit_mismatch("0", mpf("1e-70"), zero_below=mpf("1e-60")) is None
        assert R.digit_mismatch("0", mpf("1e-50"), zero_below=mpf("1e-60"))
