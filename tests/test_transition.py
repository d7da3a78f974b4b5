"""The BSB1 -> BSB2 transition: alpha_transition(B) from the closed forms in symbolic alpha,
checked by independent routes on both sides (brute-force Jacobian of the Laplace map, mpmath
sphere quadrature of the moment forms, Monte Carlo of the network's own forward map); the
transition in beta for relu(x + beta); the block structure of the iterated covariance map."""

import json
import math

import mpmath
import numpy as np
import pytest

from bnmft import pipeline
from bnmft.cli import main
from bnmft.derive import derive, symbolic_activation
from bnmft.derive import parse_activation as activation
from bnmft.numerics import NoSignChange, bruteforce, numbers_from_moments, sphere
from bnmft.numerics.montecarlo import batchnorm, network_forward_eigenvalues


@pytest.fixture(scope="module")
def alpha_b8():
    (tr,) = pipeline.transition("alpha_relu", [8], digits=20)
    return tr


def closed(name: str, B: int, alpha: str) -> float:
    """A closed form of the derivation with symbolic alpha at (B, alpha)."""
    import sympy as sp

    q = derive(symbolic_activation("alpha_relu"))[name]
    (a,) = [s for s in q.parameters if str(s) == "alpha"]
    return float(q.expr.subs({q.parameters[0]: B, a: sp.Rational(alpha)}).evalf(30))


def largest_by_sphere_quadrature(alpha: str, B: int):
    """max(lambda_L, lambda_M) from the moment forms with float64 sphere quadrature split at
    the kink (no closed form involved), and its error estimate."""
    deriv = derive(activation(f"alpha_relu:{alpha}"))
    vals, errs = sphere.moments_float_estimated(deriv.activation, deriv.moments, B)
    with mpmath.workdps(30):
        nums = numbers_from_moments(deriv, B, {m: mpmath.mpf(v) for m, v in vals.items()},
                                    {m: mpmath.mpf(e) for m, e in errs.items()}, "sphere",
                                    names=("lambda_L", "lambda_M"))
    top = max((nums["lambda_L"], nums["lambda_M"]), key=lambda n: n.value)
    return top.value, abs(top.value) * mpmath.mpf(10) ** -top.digits


def test_alpha_transition_at_b8_is_where_lambda_L_crosses_1(alpha_b8):
    tr = alpha_b8
    assert tr.eigenspace == "L" and tr.value.digits >= 20
    at = tr.value.value
    assert 1.6 < at < 1.65
    # independent route: brute-force Jacobian of the Laplace-method map (finite differences,
    # accurate to ~1e-10), 0.01 either side (lambda_L - 1 ~ 0.38 (alpha - alpha_t) there)
    for alpha, below in ((at - mpmath.mpf("0.01"), True), (at + mpmath.mpf("0.01"), False)):
        spec = bruteforce.forward_spectrum(activation(f"alpha_relu:{mpmath.nstr(alpha, 12)}"), 8)
        top = max(s.eigenvalue for s in spec if s.space in ("L", "M"))
        assert (top < 1) is below and abs(top - 1) > 1e-3


@pytest.mark.slow
def test_alpha_transition_against_sphere_quadrature_of_the_moment_forms(alpha_b8):
    """The moment forms by sphere quadrature (no closed form), at exponents with small
    denominators (cheap kink substitutions) either side of the root."""
    at = alpha_b8.value.value
    lo, e_lo = largest_by_sphere_quadrature("1.6", 8)
    hi, e_hi = largest_by_sphere_quadrature("1.625", 8)
    assert lo + e_lo < 1 < hi - e_hi
    # the chord through them lands on the root to its curvature error
    chord = mpmath.mpf("1.6") + (1 - lo) / (hi - lo) * mpmath.mpf("0.025")
    assert abs(chord - at) < 2e-4


def test_alpha_transition_decreases_to_one_with_batch_size():
    trs = pipeline.transition("alpha_relu", [5, 6, 8, 16, 32, 1000, 10**6], digits=12)
    values = [float(t.value.value) for t in trs]
    assert all(t.value.digits >= 12 and t.eigenspace == "L" for t in trs)
    assert values == sorted(values, reverse=True)
    assert 0 < values[-1] - 1 < 1e-5  # lambda_L -> alpha as B -> oo


def test_no_transition_at_b4_is_a_clear_error(capsys):
    with pytest.raises(NoSignChange):
        pipeline.transition("alpha_relu", [4], digits=10)
    status = main(["transition", "alpha_relu", "--batch-size", "4"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no sign change" in err


@pytest.fixture(scope="module")
def relu_beta_b8():
    (tr,) = pipeline.transition("relu", [8], digits=8, vary="beta", bracket=(-1, 0))
    return tr


def test_beta_transition_of_relu_against_network_monte_carlo(relu_beta_b8):
    """relu(x + beta) at B = 8: the root in beta by the float routes, against the batchnorm
    network's own forward map sampled either side (no moment form involved)."""
    tr = relu_beta_b8
    beta = float(tr.value.value)
    assert tr.value.digits >= 8 and tr.eigenspace == "L" and -0.65 < beta < -0.5
    for shift, below in ((0.1, True), (-0.1, False)):
        est = network_forward_eigenvalues(activation("relu", beta=f"{beta + shift:.6f}"), 8,
                                          samples=100_000, seed=3)
        lam = est["lambda_L"]
        assert (lam.mean < 1) is below and abs(lam.mean - 1) > 4 * lam.stderr


def test_gamma_transition_follows_from_the_beta_transition_by_homogeneity(relu_beta_b8):
    """relu(gamma x + beta) = gamma relu(x + beta/gamma) and the eigenvalues do not see the
    factor gamma, so at beta = -1/2 the gamma transition is -1/2 / beta_transition."""
    (tr,) = pipeline.transition("relu", [8], digits=8, vary="gamma", beta="-0.5")
    expected = -0.5 / float(relu_beta_b8.value.value)
    assert tr.eigenspace == "L" and tr.value.digits >= 8
    assert float(tr.value.value) == pytest.approx(expected, rel=1e-7)


# -- the block structure ----------------------------------------------------------------------


def test_structure_below_the_transition_is_the_bsb1_point(alpha_b8):
    alpha = f"{float(alpha_b8.value.value) - 0.13:.6f}"
    st = pipeline.transition_structure("alpha_relu", 8, "alpha", alpha)
    assert st.form == "BSB1" and st.converged and st.residual < 1e-12
    q, c = closed("q_star", 8, alpha), closed("c_star", 8, alpha)
    (block,) = st.blocks
    assert block.diagonal == pytest.approx(q, rel=1e-10)
    assert block.off_diagonal == pytest.approx(q * c, rel=1e-9)


def test_structure_above_the_transition_has_two_blocks(alpha_b8):
    alpha = f"{float(alpha_b8.value.value) + 0.13:.6f}"
    st = pipeline.transition_structure("alpha_relu", 8, "alpha", alpha)
    assert st.form == "BSB2" and st.converged and st.residual < 1e-12
    big, small = st.blocks
    assert sorted(big.indices + small.indices) == list(range(8))
    assert big.diagonal > 10 * small.diagonal  # winner-take-all: one block carries the signal
    S = st.covariance
    # the block form exactly: equal rows within each block
    for blk in st.blocks:
        sub = S[np.ix_(blk.indices, blk.indices)]
        assert np.ptp(np.diag(sub)) < 1e-12 * S.max()
    # an independent map: E[phi(BN h) phi(BN h)^T] sampled at the reported fixed point
    act = activation(f"alpha_relu:{alpha}")
    rng = np.random.default_rng(11)
    w, V = np.linalg.eigh(S)
    h = rng.standard_normal((400_000, 8)) @ (V * np.sqrt(np.clip(w, 0, None))).T
    y = act.numpy(batchnorm(h))
    sampled = y.T @ y / len(y)
    assert np.max(np.abs(sampled - S)) < 0.02 * S.max()
    # ... and BSB1 itself is no longer attracting there
    assert closed("lambda_L", 8, alpha) > 1


def test_partition_groups_equal_rows():
    from bnmft.numerics.transition import partition

    S = np.full((5, 5), 0.1)
    S[np.ix_([0, 3], [0, 3])] = 0.5
    np.fill_diagonal(S, [2.0, 1.0, 1.0, 2.0, 1.0])
    # rows 0 and 3 are equal (up to swapping their own entries), and rows 1, 2, 4
    assert partition(S, 1e-9) == [[0, 3], [1, 2, 4]]
    S[1, 1] += 1e-3
    assert partition(S, 1e-9) == [[0, 3], [1], [2, 4]]


# -- command line ----------------------------------------------------------------------------


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_transition_json(capsys, alpha_b8):
    status, out, err = run(capsys, "transition", "alpha_relu", "--batch-size", "8,16",
                           "--digits", "15", "--json")
    assert status == 0 and err == ""
    rows = json.loads(out)
    assert [list(r) for r in rows] == [["batch_size", "alpha_transition", "eigenspace"]] * 2
    assert rows[0]["batch_size"] == 8 and rows[0]["eigenspace"] == "L"
    assert rows[0]["alpha_transition"] == alpha_b8.value.text(15)


@pytest.mark.parametrize("argv", [
    ["transition", "alpha_relu", "--batch-size", "8", "--bracket", "1,1.5"],  # no sign change
    ["transition", "alpha_relu", "--batch-size", "8", "--bracket", "2,1"],
    ["transition", "alpha_relu", "--batch-size", "8", "--bracket", "1"],
    ["transition", "alpha_relu", "--batch-size", "8", "--bracket", "a,2"],
    ["transition", "alpha_relu", "--batch-size", "inf"],
    ["transition", "tanh", "--batch-size", "8"],  # alpha needs alpha_relu
    ["transition", "alpha_relu", "--batch-size", "8", "--gamma", "2"],
    ["transition", "tanh", "--batch-size", "8", "--vary", "delta"],
])
def test_cli_transition_bad_input(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")


@pytest.mark.slow
def test_cli_show_structure(capsys):
    status, out, err = run(capsys, "transition", "alpha_relu", "--batch-size", "8",
                           "--digits", "12", "--show-structure", "--json")
    assert status == 0
    (row,) = json.loads(out)
    below, above = row["structure"]
    assert below["side"] == "below" and below["form"] == "BSB1"
    assert above["side"] == "above" and above["form"] == "BSB2"
    assert math.isclose(float(above["alpha"]) - float(below["alpha"]),
                        2 * 0.08 * float(row["alpha_transition"]), rel_tol=1e-4)
