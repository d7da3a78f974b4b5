"""The kernel of a wide BN network (numerics/kernel.py, `bnmft kernel`).

References: Monte Carlo of the network's own map (sampled h ~ N(0, Sigma), batchnorm with eps
from numerics/montecarlo.py, phi), the project's BSB1 fixed point (closed forms, `analyze`),
the brute-force Laplace map of numerics/bruteforce.py (another quadrature of the dual kernel
and of the Schwinger integral), scipy quadrature for the vanilla dual kernel, and the sphere
route against the Laplace route.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnmft
from bnmft.cli import main
from bnmft.numerics import kernel as K
from bnmft.numerics.montecarlo import batchnorm

HOMOGENEOUS = ["relu", "leaky_relu:0.2", "alpha_relu:1.5"]
OTHER = ["tanh", "erf", "gelu"]


def _phi(spec):
    act = bnmft.activation(spec)

    def f(z):
        with np.errstate(invalid="ignore"):
            return np.asarray(act.numpy(z), dtype=float) * np.ones_like(z)

    return f


def _covariances(B: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Covariances far from BSB1: random, nearly collinear inputs, one input much larger
    than the others, and fewer input dimensions than B - 1 (G Sigma G rank-deficient)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, 2 * B))
    out = {"random": X @ X.T / X.shape[1]}
    base = rng.standard_normal(2 * B)
    Xc = base + 0.05 * rng.standard_normal((B, 2 * B))
    out["collinear"] = Xc @ Xc.T / Xc.shape[1]
    Xl = rng.standard_normal((B, 2 * B))
    Xl[0] *= 30.0
    out["one large"] = Xl @ Xl.T / Xl.shape[1]
    Xr = rng.standard_normal((B, 2))
    out["rank 2"] = Xr @ Xr.T / 2
    return out


def _monte_carlo(spec, C, nbatch, eps=0.0, sw=1.0, samples=400_000, blocks=25, seed=1):
    """Mean and standard error of ``sigma_w^2 phi(BN(h)) phi(BN(h))^T`` over sampled
    ``h ~ N(0, C)`` (C joint over ``nbatch`` batches; batchnorm on each)."""
    phi = _phi(spec)
    rng = np.random.default_rng(seed)
    P = C.shape[0]
    B = P // nbatch
    w, V = np.linalg.eigh(C)
    root = V * np.sqrt(np.clip(w, 0, None))
    per = samples // blocks
    rows = []
    for _ in range(blocks):
        h = rng.standard_normal((per, P)) @ root.T
        f = np.concatenate([phi(batchnorm(h[:, b * B:(b + 1) * B], eps)) for b in range(nbatch)],
                           axis=1)
        rows.append(sw * sw * f.T @ f / per)
    rows = np.array(rows)
    return rows.mean(axis=0), rows.std(axis=0, ddof=1) / math.sqrt(blocks)


def _assert_within(value, err, mc, se, z=5.0):
    """``|value - mc| <= z`` combined standard errors (the route's error counts as 4 se)."""
    dev = np.abs(value - mc) / np.sqrt(se**2 + (err / 4.0) ** 2)
    assert np.max(dev) <= z, f"max deviation {np.max(dev):.1f} standard errors"
    # the test means something: the standard errors are small against the values
    assert np.max(se) < 0.02 * np.max(np.abs(mc))


# -- within-batch block against Monte Carlo of the network map --------------------------------


@pytest.mark.parametrize("spec", HOMOGENEOUS)
@pytest.mark.parametrize("case", ["random", "collinear", "one large", "rank 2"])
def test_laplace_block_vs_monte_carlo(spec, case):
    B = 6
    S = _covariances(B)[case]
    res = K.bn_covariance(spec, S, full=True)
    assert res.route == K.ROUTE_LAPLACE and res.accuracy <= K.TOL
    mc, se = _monte_carlo(spec, S, 1)
    _assert_within(res.matrix, res.error, mc, se)


@pytest.mark.parametrize("spec", ["relu", "tanh"])
def test_eps_and_sigma_w_vs_monte_carlo(spec):
    B = 5
    S = _covariances(B, seed=3)["random"]
    res = K.bn_covariance(spec, S, epsilon=0.3, sigma_w=1.3, full=True, tol=1e-2)
    mc, se = _monte_carlo(spec, S, 1, eps=0.3, sw=1.3)
    _assert_within(res.matrix, res.error, mc, se)
    # eps matters here: the eps = 0 map differs by far more than the errors
    assert np.max(np.abs(K.bn_covariance(spec, S, sigma_w=1.3, tol=1e-2) - res.matrix)) > 0.05


@pytest.mark.parametrize("spec", OTHER)
@pytest.mark.parametrize("case", ["random", "one large", "rank 2"])
def test_sphere_block_vs_monte_carlo(spec, case):
    B = 6
    S = _covariances(B, seed=2)[case]
    res = K.bn_covariance(spec, S, full=True, tol=1e-3)
    assert res.route == K.ROUTE_SPHERE
    mc, se = _monte_carlo(spec, S, 1, seed=7)
    _assert_within(res.matrix, res.error, mc, se)


# -- two routes -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", HOMOGENEOUS)
@pytest.mark.parametrize("case", ["random", "collinear", "one large", "rank 2"])
def test_laplace_vs_bruteforce_laplace_map(spec, case):
    """The brute-force map (Gauss-Jacobi arcs for the dual kernel, its own y grid, no range
    restriction) agrees to 1e-11 relative where it applies (G Sigma G of full rank)."""
    from bnmft.numerics.bruteforce import laplace_map

    S = _covariances(6)[case]
    if case == "rank 2":
        pytest.skip("the brute-force map needs G Sigma G of full rank")
    ours = K.bn_covariance(spec, S, tol=1e-13)
    ref = laplace_map(S, bnmft.activation(spec))
    d = np.sqrt(np.diag(ref))
    assert np.max(np.abs(ours - ref) / np.outer(d, d)) < 1e-11


@pytest.mark.parametrize("spec", ["relu", "alpha_relu:1.5"])
def test_laplace_vs_sphere_route(spec):
    """Two routes for a homogeneous phi: Laplace (1e-12) and the sampled sphere route agree
    within the sphere route's own error (which is small enough to mean something)."""
    S = _covariances(6)["collinear"]
    lap = K.bn_covariance(spec, S, full=True, tol=1e-12)
    sph = K.bn_covariance_sphere(spec, S, full=True, tol=1e-3)
    assert np.all(np.abs(lap.matrix - sph.matrix) <= sph.error + 1e-12)
    assert sph.accuracy < 5e-3


@pytest.mark.parametrize("B", [6, 7])
def test_claimed_errors_hold(B):
    """The error each entry claims bounds its distance to a computation at a far smaller
    tolerance (random, collinear, one large and rank-deficient covariances; within and cross
    blocks; even and odd B)."""
    for case, S in _covariances(B, seed=5).items():
        for spec in ("relu", "alpha_relu:1.5"):
            ref = K.bn_covariance(spec, S, tol=1e-13)
            for tol in (1e-5, 1e-8):
                res = K.bn_covariance(spec, S, tol=tol, full=True)
                assert np.all(np.abs(res.matrix - ref) <= res.error), (case, spec, tol)
    for seed, rank in ((6, None), (7, 3)):
        _, S11, S12, S22 = _pair(B, seed=seed, rank=rank)
        ref = K.cross_covariance("relu", S11, S12, S22, tol=1e-11)
        for tol in (1e-4, 1e-7):
            res = K.cross_covariance("relu", S11, S12, S22, tol=tol, full=True)
            assert np.all(np.abs(res.matrix - ref) <= res.error), (seed, rank, tol)


def test_dual_kernel_fast_path_is_the_derived_closed_form():
    """The a = 1 dual kernel (arccos, sqrt(1 - rho^2)) equals the SymPy closed form of
    derive.homogeneous.dual_kernel (lambdified) on [-1, 1]."""
    rho = np.linspace(-1, 1, 201)
    for spec in ("relu", "leaky_relu:0.2", "abs", "linear"):
        dual = K._dual_of(bnmft.activation(spec))
        one = np.ones_like(rho)
        assert np.allclose(dual.value(rho, one, one), dual.K(rho), rtol=0, atol=1e-15)



def test_scaled_dual_kernel_is_the_dual_kernel():
    """The in-place form of the a = 1 dual kernel used by the radial sums (U, c with c U =
    E[phi phi]) equals the closed form of _Dual.value, also for A + C = 0 (linear)."""
    rng = np.random.default_rng(3)
    dp, dq = rng.uniform(0.1, 2.0, (2, 500))
    rho = np.concatenate([rng.uniform(-1, 1, 494), [-1, -1 + 1e-12, 0, 1 - 1e-12, 1, 1]])
    cross = rho * np.sqrt(dp * dq)
    for spec in ("relu", "leaky_relu:0.2", "abs", "linear"):
        dual = K._dual_of(bnmft.activation(spec))
        norm = np.sqrt(dp) * np.sqrt(dq)
        U, c = dual.scaled_norm(cross.copy(), norm, 1.0 / norm, np.empty_like(norm))
        ref = dual.value(cross, dp, dq)
        assert np.all(np.abs(c * U - ref) <= 1e-15 * norm), spec


def _radial_case(seed, k=6, B=5):
    """A stack of tilted cross-batch radial problems (W, mu, pp, qq, scale, rows) at one angle."""
    rng = np.random.default_rng(seed)
    n = B - 1
    F = rng.standard_normal((k, 2 * n, 2 * n)) * rng.uniform(0.2, 3.0, (k, 1, 2 * n))
    th = rng.uniform(0.002, 0.3, k)  # near an end of the angle range: a long rule
    Fd = F.copy()
    Fd[:, :n] *= np.sin(th)[:, None, None]
    Fd[:, n:] *= np.cos(th)[:, None, None]
    mu, Ev = np.linalg.eigh(np.swapaxes(Fd, 1, 2) @ Fd)
    W = F @ Ev
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pp, qq = ii.ravel(), n + jj.ravel()
    rows = np.sqrt(np.einsum("kpr,kpr->kp", W, W))  # scale of the pairs: sqrt(S_pp S_qq)
    return W, mu, pp, qq, rows[:, pp] * rows[:, qq], rows


@pytest.mark.parametrize("seed", [0, 1])
def test_radial_rule_cut_short_keeps_its_error_bound(seed):
    """Cutting the radial rule where the bound on the rest is small (_upper_cut) stops
    earlier than the rule to mu_min and stays within its claimed error of a rule run to
    mu_min at a far smaller tolerance and step."""
    dual = K._dual_of(bnmft.activation("relu"))
    W, mu, pp, qq, scale, rows = _radial_case(seed)
    ref, _ = K._radial(W, mu, pp, qq, dual, 5, 0.0, 1e-13, scale, h=0.1)
    for tol in (1e-6, 1e-10):
        full, err_full = K._radial(W, mu, pp, qq, dual, 5, 0.0, tol, scale)
        cut, err_cut = K._radial(W, mu, pp, qq, dual, 5, 0.0, tol, scale, rows=rows)
        assert np.all(np.abs(cut - ref) <= err_cut), tol
        assert np.all(np.abs(full - ref) <= err_full), tol
        assert np.all(err_cut <= tol * scale)
    # the cut happens, and the bound it claims is a bound
    L, h = 10.0, 0.5
    nk = np.full(len(W), 120)
    new, T, was = K._upper_cut(W * W, mu, mu.max(-1), pp, qq, nk, L, h, 1.0, 0.0, 5,
                               dual.second, rows, 1e-10)
    assert np.all(was) and np.all(new < nk)
    t_c = np.exp(-L + h * new) / mu.max(-1)
    # the integral from t_c on, by the same rule on [t_c, inf): rescale t = t_c s
    rest = _radial_from(W, mu, pp, qq, dual, t_c)
    assert np.all(np.abs(rest) <= T)
    assert np.all(T <= 1e-10 * scale)


def _radial_from(W, mu, pp, qq, dual, t_c, m=4000):
    """Int_{t_c}^inf of the radial integrand (a = 1, eps = 0) by a fine trapezoid in log t."""
    out = np.empty((len(W), len(pp)))
    y = np.log(t_c)[:, None] + np.linspace(0, 60, m)[None, :]
    for e in range(len(W)):
        t = np.exp(y[e])
        f = 1.0 / (1.0 + t[:, None] * mu[e][None, :])
        w = t * np.exp(-0.5 * np.sum(np.log1p(t[:, None] * mu[e][None, :]), axis=-1))
        C = np.einsum("pr,jr,qr->jpq", W[e], f, W[e])
        g = dual.value(C[:, pp, qq], C[:, pp, pp], C[:, qq, qq]) * w[:, None]
        dy = y[e, 1] - y[e, 0]
        out[e] = dy * (np.sum(g, axis=0) - 0.5 * (g[0] + g[-1]))
    return out


def test_radial_grid_and_listed_pairs_agree():
    """The radial sums for all pairs of two sets of rows (products by broadcasting) and for
    the same pairs listed in another order (gathers) give the same integrals."""
    dual = K._dual_of(bnmft.activation("relu"))
    W, mu, pp, qq, scale, rows = _radial_case(4)
    I, E = K._radial(W, mu, pp, qq, dual, 5, 0.0, 1e-9, scale)
    perm = np.random.default_rng(0).permutation(len(pp))
    Ip, Ep = K._radial(W, mu, pp[perm], qq[perm], dual, 5, 0.0, 1e-9, scale[:, perm])
    assert np.allclose(Ip, I[:, perm], rtol=0, atol=1e-15 * np.max(scale))


# -- the BSB1 point --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", HOMOGENEOUS)
def test_bsb1_point_is_the_projects_fixed_point(spec):
    """V_Bphi(I) is the BSB1 point: q*, c* of `analyze` (closed forms) to 1e-12."""
    B = 8
    an = bnmft.analyze(spec, [B], digits=15)[0]
    q, c = float(an.numbers["q_star"].value), float(an.numbers["c_star"].value)
    V = K.bn_covariance(spec, np.eye(B), sigma_w=1.5, tol=1e-13)
    star = 2.25 * q * ((1 - c) * np.eye(B) + c * np.ones((B, B)))
    assert np.max(np.abs(V - star)) < 1e-12 * 2.25 * q


def test_eps_fixed_point_reproduced():
    """With eps > 0 the project's fixed point (numerics/epsilon.py, Tricomi closed forms) is
    a fixed point of the map: the radial part of the Laplace integral is right."""
    an = bnmft.analyze("relu", [6], digits=14, epsilon="1/100", sigma_w="1.2")[0]
    q, c = float(an.numbers["q_star"].value), float(an.numbers["c_star"].value)
    star = q * ((1 - c) * np.eye(6) + c * np.ones((6, 6)))
    V = K.bn_covariance("relu", star, epsilon=0.01, sigma_w=1.2, tol=1e-13)
    assert np.max(np.abs(V - star)) < 1e-11 * q


def test_depth_kernel_of_one_batch_converges_to_bsb1():
    """A single batch of rank-3 inputs: K_L -> Sigma* (relu's BSB1 point is attracting),
    the distance decaying geometrically with depth."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    an = bnmft.analyze("relu", [6], digits=15)[0]
    q, c = float(an.numbers["q_star"].value), float(an.numbers["c_star"].value)
    star = q * ((1 - c) * np.eye(6) + c * np.ones((6, 6)))
    dist = [np.max(np.abs(K.kernel_matrix("relu", X, 6, depth=L) - star)) for L in (5, 10, 20, 40)]
    assert all(b < a for a, b in zip(dist, dist[1:]))
    assert dist[0] > 0.05 and dist[-1] < 1e-6


# -- cross-batch block ---------------------------------------------------------------------


def _pair(B, seed=0, rank=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * B, rank or 2 * B))
    X[0] *= 10.0
    C = X @ X.T / X.shape[1]
    return C, C[:B, :B], C[:B, B:], C[B:, B:]


@pytest.mark.parametrize("spec, rank, B", [
    ("relu", None, 6), ("relu", 3, 6), ("relu", None, 5),
    pytest.param("alpha_relu:1.5", None, 6, marks=pytest.mark.slow)])
def test_cross_block_vs_monte_carlo(spec, rank, B):
    C, S11, S12, S22 = _pair(B, seed=4, rank=rank)
    res = K.cross_covariance(spec, S11, S12, S22, full=True)
    # odd B: the angle integrand has an endpoint term th^(B-3) log th, Gauss rules converge
    # algebraically there and 1e-10 is not always reached (the accuracy says what was)
    assert res.accuracy <= 1e-6
    mc, se = _monte_carlo(spec, C, 2)
    _assert_within(res.matrix, res.error, mc[:B, B:], se[:B, B:])


def test_cross_block_sphere_route_vs_monte_carlo():
    B = 5
    C, S11, S12, S22 = _pair(B, seed=8)
    res = K.cross_covariance("tanh", S11, S12, S22, full=True, tol=1e-3)
    mc, se = _monte_carlo("tanh", C, 2, seed=9)
    _assert_within(res.matrix, res.error, mc[:B, B:], se[:B, B:])


def test_cross_block_of_a_batch_with_itself_is_the_within_block():
    """``h1 = h2``: the two-parameter integral collapses to V_Bphi (the angle integral is
    Gamma(a/2)^2/Gamma(a)), entries with correlation 1 included."""
    S = _covariances(6)["random"]
    for spec in ("relu",):
        cross = K.cross_covariance(spec, S, S, S, tol=1e-10)
        assert np.max(np.abs(cross - K.bn_covariance(spec, S, tol=1e-13))) < 1e-9


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 10**6), st.permutations(range(5)))
def test_cross_block_is_equivariant(seed, perm):
    """Permuting the inputs of batch 2 permutes the columns of the cross block; swapping
    the two batches transposes it."""
    C, S11, S12, S22 = _pair(5, seed=seed)
    p = np.array(perm)
    V = K.cross_covariance("relu", S11, S12, S22, tol=1e-9)
    Vp = K.cross_covariance("relu", S11, S12[:, p], S22[np.ix_(p, p)], tol=1e-9)
    assert np.allclose(Vp, V[:, p], atol=1e-8)
    Vt = K.cross_covariance("relu", S22, S12.T, S11, tol=1e-9)
    assert np.allclose(Vt, V.T, atol=1e-8)


# -- the depth-L kernel on a data set ----------------------------------------------------------


def test_kernel_matrix_blocks_are_the_block_maps():
    """One layer of kernel_matrix on 3 batches: each block is bn_covariance/cross_covariance
    of Sigma_0 = X X^T / d, times sigma_w^2."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 5))
    S0 = X @ X.T / 5
    Km = bnmft.kernel("relu", X, 4, depth=1, sigma_w=1.3).matrix
    assert Km.shape == (12, 12) and Km.dtype == np.float64 and np.allclose(Km, Km.T)
    for b in range(3):
        sb = slice(4 * b, 4 * b + 4)
        assert np.allclose(Km[sb, sb], K.bn_covariance("relu", S0[sb, sb], sigma_w=1.3),
                           atol=1e-12)
        for c in range(b + 1, 3):
            sc = slice(4 * c, 4 * c + 4)
            ref = K.cross_covariance("relu", S0[sb, sb], S0[sb, sc], S0[sc, sc], sigma_w=1.3)
            assert np.allclose(Km[sb, sc], ref, atol=1e-12)


def test_depth_two_kernel_vs_monte_carlo_of_a_wide_network():
    """Depth 2, two batches: the kernel against a sampled wide network (width 1000, 20
    networks; finite width adds O(1/width), within the tolerance used)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((8, 3))
    Km = K.kernel_matrix("relu", X, 4, depth=2)
    width, nets = 1000, 20
    est = []
    for _ in range(nets):
        h = rng.standard_normal((width, 3)) @ X.T / math.sqrt(3)  # (width, n): Sigma_0
        for _layer in range(2):
            f = np.concatenate([np.maximum(batchnorm(h[:, 4 * b:4 * b + 4]), 0)
                                for b in range(2)], axis=1)
            est_K = f.T @ f / width
            h = rng.standard_normal((width, width)) @ f / math.sqrt(width)
        est.append(est_K)
    est = np.array(est)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(nets)
    assert np.max(np.abs(mean - Km) / np.sqrt(se**2 + (0.01 * Km.max()) ** 2)) < 5


def test_vanilla_kernel_relu_and_tanh():
    """--no-batchnorm: relu by the arccosine kernel of THEORY.md (q* preserved at
    sigma_w^2 = 2, the critical line); tanh against scipy dblquad of the dual kernel."""
    from scipy.integrate import dblquad

    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 4))
    K0 = X @ X.T / 4
    Kr = K.vanilla_kernel("relu", X, depth=3, sigma_w=math.sqrt(2))
    assert np.allclose(np.diag(Kr), np.diag(K0), rtol=1e-13)
    J = lambda c: (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi  # noqa: E731
    Kk = K0.copy()
    for _ in range(3):
        d = np.sqrt(np.diag(Kk))
        Kk = np.array([[d[i] * d[j] * J(min(1.0, Kk[i, j] / (d[i] * d[j])))
                        for j in range(5)] for i in range(5)])
    assert np.allclose(Kr, Kk, rtol=1e-13, atol=1e-14)
    res = bnmft.kernel("tanh", X, None, depth=1, sigma_w=1.4, sigma_b=0.1, batchnorm=False)
    for i, j in ((0, 1), (2, 4), (3, 3)):
        q1, q2, c12 = K0[i, i], K0[j, j], K0[i, j]
        L = np.linalg.cholesky(np.array([[q1, c12], [c12, q2]]) + 1e-300 * np.eye(2)) \
            if i != j else None
        if i == j:
            from scipy.integrate import quad
            val = quad(lambda z: math.tanh(math.sqrt(q1) * z) ** 2 * math.exp(-z * z / 2),
                       -12, 12, epsabs=1e-14)[0] / math.sqrt(2 * math.pi)
        else:
            f = lambda z2, z1: (math.tanh(L[0, 0] * z1) * math.tanh(L[1, 0] * z1 + L[1, 1] * z2)  # noqa: E731
                                * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi))
            val = dblquad(f, -10, 10, -10, 10, epsabs=1e-13)[0]
        ref = 1.96 * val + 0.01
        assert abs(res.matrix[i, j] - ref) <= max(res.error[i, j], 1e-12) + 1e-11
    assert res.accuracy < 1e-10


# -- command line ----------------------------------------------------------------------------


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "X.npy"
    np.save(path, rng.standard_normal((12, 4)))
    return path


def _digits(text: str) -> int:
    return len(text.replace("-", "").replace(".", "").lstrip("0"))


def test_cli_summary_digit_by_digit(inputs, capsys):
    """Every number of the text summary is the correctly rounded reference (a 1e-11 run) to
    the digits printed, and no more digits are printed than the error bound allows."""
    assert main(["kernel", "relu", "--inputs", str(inputs), "--batch-size", "6",
                 "--depth", "2", "--tol", "1e-8"]) == 0
    out = capsys.readouterr().out.splitlines()
    X = np.load(inputs)
    ref = K.kernel_matrix("relu", X, 6, depth=2, tol=1e-11)
    batch = np.arange(12) // 6
    same = (batch[:, None] == batch[None, :]) & ~np.eye(12, dtype=bool)
    expect = {"diagonal min": np.diag(ref).min(), "diagonal mean": np.diag(ref).mean(),
              "diagonal max": np.diag(ref).max(), "within-batch off-diagonal mean": ref[same].mean(),
              "cross-batch mean": ref[batch[:, None] != batch[None, :]].mean()}
    seen = 0
    for line in out:
        for name, value in expect.items():
            if line.strip().startswith(name):
                text = line.strip()[len(name):].strip()
                n = _digits(text)
                assert 6 <= n <= 15
                assert text == f"{float(f'{value:.{n}g}'):.{n}g}" or \
                    float(text) == float(f"{value:.{n}g}")
                seen += 1
    assert seen == len(expect)
    assert any(line.split()[:1] == ["accuracy"] for line in out)


def test_cli_json_and_out(inputs, tmp_path, capsys):
    out = tmp_path / "K.npy"
    assert main(["kernel", "leaky_relu:0.2", "--inputs", str(inputs), "--batch-size", "6",
                 "--depth", "3", "--out", str(out), "--json", "--tol", "1e-8"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["out"] == str(out) and row["n"] == 12 and row["depth"] == 3
    assert row["accuracy"] <= 1e-8
    Kf = np.load(out, allow_pickle=False)
    ref = K.kernel_matrix("leaky_relu:0.2", np.load(inputs), 6, depth=3, tol=1e-11)
    assert Kf.dtype == np.float64 and np.max(np.abs(Kf - ref)) < 1e-8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    assert main(["kernel", "relu", "--inputs", str(inputs), "--batch-size", "6", "--json",
                 "--tol", "1e-8"]) == 0
    row = json.loads(capsys.readouterr().out)
    M = np.array(row["matrix"])
    ref = K.kernel_matrix("relu", np.load(inputs), 6, tol=1e-11)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    # each entry rounded to the digits its error bound leaves (half a unit in the last place)
    assert M.shape == (12, 12) and np.max(np.abs(M - ref) / scale) < 1e-6


def test_cli_sphere_route_reports_its_accuracy(inputs, capsys):
    """A phi that is not homogeneous: the sampled sphere route, to 1e-2 by default; numbers
    are printed only to the digits the error leaves."""
    status = main(["kernel", "tanh", "--inputs", str(inputs), "--batch-size", "6", "--json"])
    row = json.loads(capsys.readouterr().out)
    assert row["route"] == K.ROUTE_SPHERE
    assert status == (0 if row["accuracy"] <= 1e-2 else 1)
    assert all(len(repr(v).replace(".", "").replace("-", "").lstrip("0")) <= 6
               for r in row["matrix"] for v in r if v is not None)


@pytest.mark.parametrize("make, args, message", [
    (None, ["--batch-size", "4"], "does not exist"),
    ("object", ["--batch-size", "2"], "not a numeric .npy array"),
    ("text", ["--batch-size", "4"], "not a numeric .npy array"),
    ("strings", ["--batch-size", "4"], "numeric array"),
    ("nan", ["--batch-size", "4"], "NaN or infinite"),
    ("equal", ["--batch-size", "4"], "zero variance"),
    ("ok", ["--batch-size", "3"], "batch size must be >= 4"),
    ("ok", ["--batch-size", "5"], "not a multiple of the batch size"),
    ("ok", ["--batch-size", "4", "--depth", "0"], "--depth must be >= 1"),
    ("ok", ["--batch-size", "4", "--epsilon", "-1"], "eps"),
    ("ok", ["--batch-size", "4", "--sigma-w", "0"], "sigma_w"),
    ("ok", ["--no-batchnorm", "--sigma-b", "-1"], "sigma_b"),
    ("ok", ["--batch-size", "4", "--out", "/nonexistent-dir/K.npy"], "cannot write"),
    ("ok", [], "--batch-size is required"),
    ("vector", ["--batch-size", "4"], "n x d"),
    ("ok", ["--batch-size", "4", "--workers", "0"], "--workers must be >= 1"),
    ("ok", ["--batch-size", "4", "--workers", "two"], "--workers must be an integer"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, make, args, message):
    path = tmp_path / "X.npy"
    rng = np.random.default_rng(0)
    if make == "object":
        np.save(path, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    elif make == "text":
        path.write_text("not an array")
    elif make == "strings":
        np.save(path, np.array([["a", "b"], ["c", "d"]]))
    elif make == "nan":
        X = rng.standard_normal((8, 3))
        X[5, 2] = np.nan
        np.save(path, X)
    elif make == "equal":
        X = rng.standard_normal((8, 3))
        X[4:] = X[4]
        np.save(path, X)
    elif make == "vector":
        np.save(path, rng.standard_normal(8))
    elif make == "ok":
        np.save(path, rng.standard_normal((8, 3)))
    assert main(["kernel", "relu", "--inputs", str(path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnmft: error:") and message in err[0]


# -- Dask ------------------------------------------------------------------------------------


def test_dask_cluster_gives_the_same_kernel():
    distributed = pytest.importorskip("dask.distributed")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((12, 5))
    local = K.kernel_matrix("relu", X, 4, depth=2, tol=1e-8)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        remote = bnmft.kernel("relu", X, 4, depth=2, tol=1e-8,
                              scheduler=cluster.scheduler_address).matrix
    assert np.array_equal(local, remote)


# -- worker processes ------------------------------------------------------------------------


@pytest.mark.slow  # about 70 s
def test_worker_processes_give_the_same_kernel_and_printed_digits(tmp_path, capsys):
    """Two worker processes compute each task as one process does: the same matrix, bit for
    bit, and the same printed summary."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((16, 5))
    one = K.kernel("relu", X, 4, depth=2, tol=1e-8)
    two = K.kernel("relu", X, 4, depth=2, tol=1e-8, workers=2)
    assert np.array_equal(one.matrix, two.matrix) and np.array_equal(one.error, two.error)
    path = tmp_path / "X.npy"
    np.save(path, X)
    args = ["kernel", "relu", "--inputs", str(path), "--batch-size", "4", "--depth", "2",
            "--tol", "1e-8"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args + ["--workers", "2"]) == 0
    assert capsys.readouterr().out == first
    with pytest.raises(ValueError, match="workers"):
        K.kernel("relu", X, 4, workers=0)
