"""GP posterior (numerics/gp.py) against independent computations.

The kernel here is the depth-L ReLU NNGP (arccosine) kernel written out below from
THEORY.md's ``V_relu`` (no batchnorm, so nothing of bnmft's kernel code is involved); the
references are ``numpy.linalg.solve`` / ``inv`` on the same regularised matrix,
``scipy.stats.multivariate_normal`` for ``log p(y)``, and closed one-point formulas.
"""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.numerics.gp import DEFAULT_JITTER, MAX_JITTER, posterior


def relu_nngp(X, Z=None, depth=2, sigma_w=1.0, sigma_b=0.0):
    """Depth-L ReLU NNGP kernel: K_0 = X Z^T / d, K_{l+1} = sigma_w^2 V_relu(K_l) + sigma_b^2,
    V_relu(S)_ij = sqrt(S_ii S_jj)/2 * J(c_ij), J(c) = (sqrt(1-c^2) + (pi - arccos c) c)/pi."""
    Z = X if Z is None else Z  # rows of the block: X, columns: Z
    d = X.shape[1]
    kxz = X @ Z.T / d
    kxx = np.sum(X * X, axis=1) / d
    kzz = np.sum(Z * Z, axis=1) / d
    for _ in range(depth):
        norm = np.sqrt(np.outer(kxx, kzz))
        c = np.clip(kxz / norm, -1.0, 1.0)
        j = (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi
        kxz = sigma_w**2 * 0.5 * norm * j + sigma_b**2
        kxx = sigma_w**2 * 0.5 * kxx + sigma_b**2
        kzz = sigma_w**2 * 0.5 * kzz + sigma_b**2
    return kxz, kxx  # the kernel block and the prior variances of the rows of X


def problem(n=40, m=12, d=5, k=3, seed=0, depth=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Xt = rng.standard_normal((m, d))
    y = rng.standard_normal((n, k))
    K, _ = relu_nngp(X, depth=depth, sigma_b=0.1)
    Ks, kss = relu_nngp(Xt, X, depth=depth, sigma_b=0.1)
    return K, Ks, kss, y


def test_matches_numpy_solve_on_the_same_regularised_kernel():
    K, Ks, kss, y = problem()
    post = posterior(K, Ks, kss, y, jitter=1e-6)
    assert post.jitter == 1e-6 and post.jitter_tries == 1
    s = 1e-6 * np.mean(np.diag(K))
    assert post.noise == pytest.approx(s, rel=1e-15)
    A = K + s * np.eye(len(K))
    mean = Ks @ np.linalg.solve(A, y)
    var = kss - np.diag(Ks @ np.linalg.inv(A) @ Ks.T)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-9, atol=1e-9 * np.abs(mean).max())
    np.testing.assert_allclose(post.variance, var, rtol=1e-7, atol=1e-9 * kss.max())
    lml = sum(scipy.stats.multivariate_normal(np.zeros(len(K)), A).logpdf(y[:, j])
              for j in range(y.shape[1]))
    assert post.log_marginal_likelihood == pytest.approx(lml, rel=1e-10)
    # the digits reported are those on which the Cholesky and LU routes agree
    assert post.mean_digits >= 9 and post.variance_digits >= 6 and post.lml_digits >= 10


def test_one_training_point_closed_form():
    """n = 1: mean = k(x*, x) y / (k(x, x) + s), var = k(x*, x*) - k(x*, x)^2 / (k(x, x) + s)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4))
    Xt = rng.standard_normal((6, 4))
    K, _ = relu_nngp(x, depth=3)
    Ks, kss = relu_nngp(Xt, x, depth=3)
    y = np.array([0.7])
    post = posterior(K, Ks, kss, y, jitter=1e-3)
    s = 1e-3 * K[0, 0]
    np.testing.assert_allclose(post.mean, Ks[:, 0] * 0.7 / (K[0, 0] + s), rtol=1e-14)
    np.testing.assert_allclose(post.variance, kss - Ks[:, 0] ** 2 / (K[0, 0] + s),
                               rtol=1e-12)
    assert post.mean.shape == (6,)  # 1-D labels give a 1-D mean
    lml = -0.5 * 0.7**2 / (K[0, 0] + s) - 0.5 * math.log(2 * math.pi * (K[0, 0] + s))
    assert post.log_marginal_likelihood == pytest.approx(lml, rel=1e-14)


def test_noiseless_interpolation_of_training_labels():
    K, _, _, y = problem(n=30, d=8)
    post = posterior(K, K, np.diag(K), y, jitter=1e-12)
    np.testing.assert_allclose(post.mean, y, atol=1e-6)
    assert np.all(post.variance >= 0)
    assert post.variance.max() < 1e-8 * np.diag(K).max()


def test_singular_kernel_raises_jitter_geometrically_and_reports_it():
    """K with one eigenvalue -1e-8 (a kernel broken by rounding): Cholesky of K + s I fails
    for s < 1e-8; from jitter 0 the policy tries 0, 1e-14, ..., 1e-8 (s = 0.95e-8 fails)
    and succeeds at 1e-7, the value it reports."""
    n = 20
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((n, n)))
    eig = np.ones(n)
    eig[-1] = -1e-8
    K = (q * eig) @ q.T
    K = (K + K.T) / 2
    post = posterior(K, K[:4], np.diag(K)[:4] + 1, np.ones(n), jitter=0.0)
    assert post.jitter == pytest.approx(1e-7, rel=1e-12)
    assert post.jitter_tries == 9
    assert post.noise == pytest.approx(1e-7 * np.mean(np.diag(K)), rel=1e-12)
    # a jitter above the one needed is used as given
    assert posterior(K, K[:4], np.diag(K)[:4] + 1, np.ones(n), jitter=1e-5).jitter == 1e-5


def test_not_positive_semidefinite_is_refused():
    K = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3, -1
    with pytest.raises(ArithmeticError, match="not positive semi-definite"):
        posterior(K, K, np.diag(K), np.ones(2))
    with pytest.raises(ArithmeticError, match="not symmetric"):
        posterior(np.array([[1.0, 0.5], [0.4, 1.0]]), np.eye(2), np.ones(2), np.ones(2))
    with pytest.raises(ArithmeticError, match="NaN"):
        posterior(np.eye(2), np.full((1, 2), np.nan), np.ones(1), np.ones(2))
    with pytest.raises(ValueError, match="jitter"):
        posterior(np.eye(2), np.eye(2), np.ones(2), np.ones(2), jitter=2 * MAX_JITTER)
    with pytest.raises(ValueError, match="rows"):
        posterior(np.eye(2), np.eye(2), np.ones(2), np.ones(3))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), depth=st.integers(1, 4),
       jitter=st.sampled_from([0.0, DEFAULT_JITTER, 1e-6, 1e-2]))
def test_variance_between_zero_and_prior(seed, n, depth, jitter):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    Xt = np.vstack([rng.standard_normal((5, 3)), X[:1]])
    K, _ = relu_nngp(X, depth=depth)
    Ks, kss = relu_nngp(Xt, X, depth=depth)
    post = posterior(K, Ks, kss, rng.standard_normal(n), jitter=jitter)
    assert np.all(post.variance >= 0)
    assert np.all(post.variance <= kss * (1 + 1e-12))
    assert np.all(np.isfinite(post.mean))
    # a training point's posterior variance is at most its noise-free one-point bound
    s = post.noise
    assert post.variance[-1] <= kss[-1] - Ks[-1, 0] ** 2 / (K[0, 0] + s) + 1e-9 * kss[-1]


def test_summary_digits_and_undecided_argmax():
    """Mean entries known to 3 digits norm-wise (absolute 1e-3 here): a top-two gap below
    2e-3 leaves the argmax undecided, and the accuracy is bracketed by counting that row
    wrong and right; the MSE carries the error bound 2 sqrt(mse) dm + dm^2."""
    from bnmft.numerics.gp import GPPosterior, summarise

    mean = np.array([[1.0, 0.9995], [1.0, 0.0], [0.0, 1.0]])
    post = GPPosterior(mean=mean, variance=np.full(3, 0.5), jitter=1e-10, noise=1e-10,
                       jitter_tries=1, log_marginal_likelihood=-1.0, mean_digits=3.0,
                       variance_digits=5.0, lml_digits=9.0, variance_clipped=0)
    yt = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    res = summarise(post, {}, yt)
    assert (res.correct, res.ambiguous) == (1, 1)  # row 0 counted wrong, but undecided
    assert res.accuracy_bounds == (1 / 3, 2 / 3)
    mse = np.mean((mean - yt) ** 2)
    dm = 1e-3
    assert res.mse.value == mse
    assert res.mse.digits == pytest.approx(-np.log10((2 * np.sqrt(mse) * dm + dm**2) / mse))
    assert res.mean_summary["rms"].value == pytest.approx(np.sqrt(np.mean(mean**2)))
    assert res.variance_summary["mean"].digits == pytest.approx(5 + np.log10(0.5 / 0.5))


def test_kernels_by_depth_continue_the_recursion():
    """One pass over depths 1, 3 (continuing from depth 1 on inputs with the same covariance)
    gives the kernels of direct calls at depth 1 and 3, within their claimed errors; batchnorm
    and vanilla."""
    from bnmft.numerics.gp import kernels_by_depth
    from bnmft.numerics.kernel import kernel

    X = np.random.default_rng(11).standard_normal((16, 5))
    for B, opts in ((4, {}), (None, {"batchnorm": False, "sigma_b": 0.3})):
        ks = kernels_by_depth("relu", X, B, [3, 1], tol=1e-6, **opts)
        assert sorted(ks) == [1, 3]
        for L in (1, 3):
            direct = kernel("relu", X, B, depth=L, tol=1e-6 * L / 3, **opts)
            bound = ks[L].error + direct.error + 1e-13 * np.abs(direct.matrix).max()
            assert np.all(np.abs(ks[L].matrix - direct.matrix) <= bound), (B, L)
