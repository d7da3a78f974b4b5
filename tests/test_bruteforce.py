"""Brute-force forward spectrum (numerics/bruteforce.py) against THEORY.md.

Achieved accuracy (4th-order differences, default step): lambda_L, lambda_M of relu agree
with the closed forms to ~1e-12 absolute for B = 5..8; the tests assert 1e-10.
"""

import math

import numpy as np
import pytest

from bnmft.derive.activation import activation
from bnmft.numerics import bruteforce as bf


def J(c):
    return (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi


def Jp(c):
    return (np.pi - np.arccos(c)) / np.pi


def relu_closed_forms(B):
    c = -1.0 / (B - 1)
    lam_m = B * Jp(c) / ((B + 1) * (1 - J(c)))
    lam_l = (B - 2) / (B + 1) + B * Jp(c) / ((B - 1) * (B + 1) * (1 - J(c)))
    return lam_l, lam_m


def random_covariance(B, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, B))
    return X @ X.T / B + 0.5 * np.eye(B) + 0.3 * np.ones((B, B))


def sampled_map(phi, S, n, chunks, seed):
    """``E[phi(z) phi(z)^T]``, ``z = sqrt(B) G h / |G h|``, ``h ~ N(0, S)``, by direct
    sampling: ``(estimate, standard error)`` elementwise."""
    B = S.shape[0]
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(S)
    s1 = np.zeros((B, B))
    s2 = np.zeros((B, B))
    for _ in range(chunks):
        h = rng.normal(size=(n // chunks, B)) @ chol.T
        g = h - h.mean(axis=1, keepdims=True)
        f = phi(math.sqrt(B) * g / np.linalg.norm(g, axis=1, keepdims=True))
        s1 += f.T @ f
        s2 += (f * f).T @ (f * f)
    est = s1 / n
    return est, np.sqrt((s2 / n - est**2) / n)


def phi_numpy(spec):
    act = activation(spec)

    def phi(z):
        with np.errstate(invalid="ignore"):  # lambdified Piecewise evaluates all branches
            return np.asarray(act.numpy(z), dtype=float)

    return phi


# -- dual kernel ---------------------------------------------------------------------------


def test_dual_kernel_relu_is_arccos_kernel():
    K = bf.DualKernel(activation("relu"))
    c = np.array([-1.0, -0.999, -0.7, -1 / 7, -0.2, 0.0, 0.3, 0.8, 0.99, 1.0])
    np.testing.assert_allclose(K(c), J(c) / 2, rtol=1e-14, atol=1e-16)
    assert K.second_moment == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize(
    "spec", ["leaky_relu:0.2", "alpha_relu:2", "alpha_relu:1.5", "abs", "linear"]
)
def test_dual_kernel_against_polar_quadrature(spec):
    """Arc reduction vs scipy quad of phi(cos t) phi(cos(t - theta)) with phi = act.numpy."""
    K = bf.DualKernel(activation(spec))
    phi = phi_numpy(spec)
    for rho in (-0.95, -0.25, 0.1, 0.6, 0.97, 0.9995):
        assert K(rho) == pytest.approx(K.quad_reference(rho, phi), rel=1e-12, abs=1e-14)
    # rho -> 1 gives E[phi(g)^2]
    assert K(1.0) == pytest.approx(K.second_moment, rel=1e-14)


def test_dual_kernel_linear_and_abs_closed_forms():
    rho = np.linspace(-1, 1, 21)
    np.testing.assert_allclose(bf.DualKernel(activation("linear"))(rho), rho, atol=1e-15)
    # |g1||g2|: (2/pi)(sqrt(1 - rho^2) + rho arcsin rho)
    expect = 2 / np.pi * (np.sqrt(1 - rho**2) + rho * np.arcsin(rho))
    np.testing.assert_allclose(bf.DualKernel(activation("abs"))(rho), expect, atol=1e-15)


def test_dual_kernel_small_angle_fallback_is_continuous():
    """Non-integer alpha switches I+ to mpmath below theta = 0.05: no jump there."""
    K = bf.DualKernel(activation("alpha_relu:1.5"))
    t = K.theta_small
    left, right = K.of_theta(np.array([t * (1 - 1e-13), t * (1 + 1e-13)]))
    assert left == pytest.approx(right, rel=1e-12)
    phi = phi_numpy("alpha_relu:1.5")
    for theta in (0.001, 0.02, 0.049):
        rho = math.cos(theta)
        assert K(rho) == pytest.approx(K.quad_reference(rho, phi), rel=1e-12)


@pytest.mark.parametrize("spec", ["tanh", "step", "relu(x) + 1"])
def test_refuses_non_homogeneous_or_degree_zero(spec):
    with pytest.raises(ValueError):
        bf.DualKernel(activation(spec))


# -- the Laplace map -----------------------------------------------------------------------


@pytest.mark.parametrize("B", [5, 6, 7, 8])
def test_fixed_point_relu(B):
    q, c = bf.bsb1_fixed_point("relu", B)
    assert q == pytest.approx(0.5, rel=1e-13)
    assert c == pytest.approx(J(-1 / (B - 1)), rel=1e-13)


@pytest.mark.parametrize("B", [5, 8])
def test_fixed_point_linear(B):
    q, c = bf.bsb1_fixed_point("linear", B)
    assert q == pytest.approx(1.0, rel=1e-13)
    assert c == pytest.approx(-1 / (B - 1), rel=1e-12)


@pytest.mark.parametrize("spec", ["relu", "alpha_relu:1.5", "abs"])
def test_map_permutation_equivariant(spec):
    B = 6
    S = random_covariance(B, 1)
    P = np.eye(B)[np.random.default_rng(2).permutation(B)]
    V = bf.laplace_map(S, spec)
    assert not np.allclose(V, V[0, 0] * np.eye(B) + V[0, 1] * (1 - np.eye(B)))  # not BSB1
    np.testing.assert_allclose(bf.laplace_map(P @ S @ P.T, spec), P @ V @ P.T, rtol=0, atol=1e-14)


def test_map_invariances_and_stack():
    """V depends on Sigma only through G Sigma G up to scale: adding v 1^T + 1 v^T or scaling
    Sigma changes nothing; a stack gives the same as single calls."""
    B = 5
    S = random_covariance(B, 3)
    v = np.arange(B) / 7.0
    V = bf.laplace_map(S, "relu")
    shifted = S + np.outer(v, np.ones(B)) + np.outer(np.ones(B), v)
    np.testing.assert_allclose(bf.laplace_map(shifted, "relu"), V, atol=1e-14)
    np.testing.assert_allclose(bf.laplace_map(3.7 * S, "relu"), V, atol=1e-14)
    stack = bf.laplace_map(np.array([S, 2 * S, np.eye(B)]), "relu")
    np.testing.assert_allclose(stack[0], V, atol=1e-15)
    with pytest.raises(ValueError):
        bf.laplace_map(np.ones((B, B)), "relu")  # G Sigma G = 0


def test_map_quadrature_converged():
    """Halving the y step changes nothing at rounding level (trapezoid on an analytic strip)."""
    S = random_covariance(6, 4)
    for spec in ("relu", "alpha_relu:1.5"):
        fine = bf.laplace_map(S, spec, step=bf.Y_STEP / 2)
        atol = 1e-14 * np.abs(fine).max()
        np.testing.assert_allclose(bf.laplace_map(S, spec), fine, rtol=0, atol=atol)


def test_map_against_monte_carlo_relu():
    """Direct sampling h ~ N(0, Sigma), z = sqrt(B) G h / |G h| at a random covariance."""
    S = random_covariance(5, 5)
    est, se = sampled_map(lambda z: np.maximum(z, 0), S, 2_000_000, 10, seed=6)
    V = bf.laplace_map(S, "relu")
    assert np.max(np.abs(V - est)) < 1.5e-3
    assert np.max(np.abs(V - est) / se) < 5.0


# -- invariant subspaces -------------------------------------------------------------------


@pytest.mark.parametrize("B", [4, 5, 7])
def test_invariant_subspaces(B):
    sp = bf.invariant_subspaces(B)
    dims = {k: v.shape[1] for k, v in sp.items()}
    assert dims == {"kernel": B, "G": 1, "L": B - 1, "M": B * (B - 3) // 2}
    G = np.eye(B) - 1.0 / B
    P = np.eye(B)[np.roll(np.arange(B), 1)]
    for name, Q in sp.items():
        mats = bf.smat(Q.T, B)
        if name == "kernel":
            np.testing.assert_allclose(G @ mats @ G, 0, atol=1e-14)
        else:
            np.testing.assert_allclose(G @ mats @ G, mats, atol=1e-14)
        if name == "M":
            np.testing.assert_allclose(np.einsum("kii->ki", mats), 0, atol=1e-14)
            np.testing.assert_allclose(mats.sum(axis=2), 0, atol=1e-14)
        # invariant under a permutation: projector commutes with it
        permuted = bf.svec(P @ mats @ P.T).T
        np.testing.assert_allclose(Q @ (Q.T @ permuted), permuted, atol=1e-13)


# -- forward spectrum ----------------------------------------------------------------------


def by_space(spectrum):
    return {e.space: e for e in spectrum}


@pytest.mark.parametrize("B", [5, 6, 7, 8])
def test_relu_multiplicities(B):
    sp = by_space(bf.forward_spectrum("relu", B))
    assert [(e.space, e.dim) for e in sp.values()] == [
        ("kernel", B), ("G", 1), ("L", B - 1), ("M", B * (B - 3) // 2)
    ]
    clusters = bf.cluster_eigenvalues(bf.forward_eigenvalues("relu", B), tol=1e-8)
    lam_l, lam_m = relu_closed_forms(B)
    found = sorted((round(v, 6), m) for v, m, _ in clusters)
    assert found == sorted([(0.0, B + 1), (round(lam_m, 6), B * (B - 3) // 2),
                            (round(lam_l, 6), B - 1)])
    assert sp["L"].raw_multiplicity == B - 1
    assert sp["M"].raw_multiplicity == B * (B - 3) // 2
    assert sp["kernel"].raw_multiplicity == B + 1


@pytest.mark.parametrize("B", [5, 6, 7, 8])
def test_relu_eigenvalues_closed_form(B):
    sp = by_space(bf.forward_spectrum("relu", B))
    lam_l, lam_m = relu_closed_forms(B)
    assert sp["L"].eigenvalue == pytest.approx(lam_l, abs=1e-10)
    assert sp["M"].eigenvalue == pytest.approx(lam_m, abs=1e-10)
    assert abs(sp["G"].eigenvalue) < 1e-10
    for e in sp.values():
        assert e.spread < 1e-10 and e.leak < 1e-10


def test_relu_b6_reference_digits():
    sp = by_space(bf.forward_spectrum("relu", 6))
    assert sp["M"].eigenvalue == pytest.approx(0.481919714166, abs=2e-12)
    assert sp["L"].eigenvalue == pytest.approx(0.667812514262, abs=2e-12)


def test_finite_difference_orders_agree():
    """4th-order (default step) vs 6th-order differences: an honest error estimate."""
    a = by_space(bf.forward_spectrum("relu", 6))
    b = by_space(bf.forward_spectrum("relu", 6, order=6))
    for name in ("L", "M"):
        assert a[name].eigenvalue == pytest.approx(b[name].eigenvalue, abs=1e-11)


@pytest.mark.parametrize("B", [5, 6, 7, 8])
def test_linear_eigenvalues(B):
    sp = by_space(bf.forward_spectrum("linear", B))
    for name in ("L", "M"):
        assert sp[name].eigenvalue == pytest.approx((B - 1) / (B + 1), abs=1e-10)
        assert sp[name].raw_multiplicity == (B - 1) + B * (B - 3) // 2
    assert abs(sp["G"].eigenvalue) < 1e-10


@pytest.mark.parametrize("spec", ["leaky_relu:0.2", "alpha_relu:2", "abs"])
@pytest.mark.parametrize("B", [5, 6])
def test_multiplicity_pattern_other_activations(spec, B):
    spectrum = bf.forward_spectrum(spec, B)
    sp = by_space(spectrum)
    print(spec, B, [tuple(e) for e in spectrum])
    assert sp["L"].raw_multiplicity == B - 1
    assert sp["M"].raw_multiplicity == B * (B - 3) // 2
    assert sp["kernel"].raw_multiplicity == B + 1
    assert abs(sp["G"].eigenvalue) < 1e-10
    for e in sp.values():
        assert e.spread < 1e-10 and e.leak < 1e-10
    space, dim, value = spectrum[2]  # iterates as (space, dim, eigenvalue)
    assert (space, dim, value) == ("L", B - 1, sp["L"].eigenvalue)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["abs", "alpha_relu:2", "leaky_relu:0.2"])
def test_non_relu_eigenvalues_against_sphere_monte_carlo(spec):
    """THEORY.md derivative formula J{D} = E_u[phi phi^T ((B-1) u^T D u - tr D)]/(2 s),
    s = q*(1-c*), for D in L and in M, by sampling u on the sphere (8e6 samples, ~5e-4)."""
    B, n = 6, 8_000_000
    q, c = bf.bsb1_fixed_point(spec, B)
    sp = bf.invariant_subspaces(B)
    phi = phi_numpy(spec)
    rng = np.random.default_rng(7)
    got = {"L": 0.0, "M": 0.0}
    chunks = 8
    for _ in range(chunks):
        g = rng.normal(size=(n // chunks, B))
        g -= g.mean(axis=1, keepdims=True)
        u = g / np.linalg.norm(g, axis=1, keepdims=True)
        f = phi(math.sqrt(B) * u)
        for name in got:
            D = bf.smat(sp[name][:, 0], B)
            w = (B - 1) * np.einsum("ni,ij,nj->n", u, D, u) - np.trace(D)
            JD = np.einsum("n,ni,nj->ij", w, f, f) / (2 * q * (1 - c))
            got[name] += np.sum(JD * D) / np.sum(D * D) / n
    spec_bf = by_space(bf.forward_spectrum(spec, B))
    for name in got:
        assert got[name] == pytest.approx(spec_bf[name].eigenvalue, abs=3e-3)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["alpha_relu:1.5", "abs", "leaky_relu:0.2", "alpha_relu:2"])
def test_map_against_monte_carlo_other_activations(spec):
    S = random_covariance(6, 8)
    est, se = sampled_map(phi_numpy(spec), S, 4_000_000, 16, seed=9)
    V = bf.laplace_map(S, spec)
    assert np.max(np.abs(V - est) / se) < 5.0
