"""Monte Carlo of the batchnorm network's own maps with ``eps > 0`` and ``sigma_w``.

``BN_eps h = (h - mean h) / sqrt(var h + eps)``; the BSB1 fixed point solves ``S(s*) = s*``,
``S(s) = sigma_w^2 E[phi(y_1)^2 - phi(y_1) phi(y_2)]``, ``y = BN_eps(sqrt(s) g)``. The
references are computed here by other means: numbers of the eps = 0 code recorded before eps
was added, the derived eps = 0 closed forms, for relu the scalar map ``S(s) = sigma_w^2 F0
E[k / (k + B eps / s)]`` (``k ~ chi^2_{B-1}``, by quadrature) and its gradient analogue, an
independently sampled scalar map (tanh), and finite differences of ``phi(BN_eps h)``.
"""

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from bnmft.derive.activation import activation
from bnmft.numerics.montecarlo import (
    NoFixedPoint,
    batchnorm,
    layer_jacobian,
    network_fixed_point,
    network_forward_eigenvalues,
    network_gradient_rate,
    network_spectrum,
)
from bnmft.pipeline import analyze


def _within(est, value, k=5.0, ref_err=0.0, rel=0.0):
    """``est`` within ``k`` combined standard errors (plus a relative allowance) of ``value``."""
    return abs(est.mean - value) <= k * math.hypot(est.stderr, ref_err) + rel * abs(value)


# -- eps = 0 -----------------------------------------------------------------------------------

# tanh, B = 6, 20_000 samples in 5 blocks, recorded from the eps = 0 implementation before
# eps and sigma_w were added (seed 3: forward eigenvalues, 4: gradient rate, 5: spectra)
_RECORDED_FORWARD = {"lambda_G": -0.0004480887165772468, "lambda_L": 0.5037282828921251,
                     "lambda_M": 0.8065669029557088}
_RECORDED_RATE = 1.4748464451618528
_RECORDED_SPECTRUM = {
    "forward": {"G": {"kernel": -2.870589725755229e-06, "G": -0.0008141373957930946},
                "L": {"kernel": 0.0007352385623290991, "L": 0.5048829060828818},
                "M": {"M": 0.7958945181458497}},
    "backward": {"G": {"kernel": 0.0, "G": 1.4793675216989102},
                 "L": {"kernel": 0.0, "L": 1.3167257014684373},
                 "M": {"M": 0.9744572222257624}},
}


def _same(a, b):
    return abs(a - b) <= 1e-12 * abs(b) + 1e-14


def test_eps_zero_reproduces_the_recorded_numbers():
    act, kw = activation("tanh"), dict(samples=20_000, blocks=5, epsilon=0.0, sigma_w=1.0)
    fwd = network_forward_eigenvalues(act, 6, seed=3, **kw)
    for name, value in _RECORDED_FORWARD.items():
        assert _same(fwd[name].mean, value), (name, fwd[name], value)
    assert _same(network_gradient_rate(act, 6, seed=4, **kw).mean, _RECORDED_RATE)
    for direction, recorded in _RECORDED_SPECTRUM.items():
        for blk in network_spectrum(act, 6, direction, seed=5, **kw):
            for label, value in recorded[blk.space].items():
                assert _same(blk.eigenvalues[label].mean, value), (direction, blk.space, label)


@pytest.mark.parametrize("spec,B", [("tanh", 6), ("relu", 8)])
def test_eps_zero_fixed_point_is_the_derived_one_and_sigma_w_only_scales_it(spec, B):
    act = activation(spec)
    (an,) = analyze(act, [B], 12)
    q, c = float(an.numbers["q_star"].value), float(an.numbers["c_star"].value)
    one = network_fixed_point(act, B, samples=100_000, seed=2)
    assert _within(one.q_star, q) and _within(one.c_star, c), (one, q, c)
    assert _within(one.s_star, q * (1 - c))
    two = network_fixed_point(act, B, sigma_w=2.0, samples=100_000, seed=2)
    assert math.isclose(two.q_star.mean, 4 * one.q_star.mean, rel_tol=1e-13)
    assert math.isclose(two.s_star.mean, 4 * one.s_star.mean, rel_tol=1e-13)
    assert math.isclose(two.c_star.mean, one.c_star.mean, rel_tol=1e-13)
    # the maps are scale invariant: sigma_w changes no eigenvalue
    a = network_forward_eigenvalues(act, B, samples=20_000, seed=3)
    b = network_forward_eigenvalues(act, B, samples=20_000, seed=3, sigma_w=2.0)
    for name in a:
        assert abs(a[name].mean - b[name].mean) <= 1e-10, name
    ra = network_gradient_rate(act, B, samples=20_000, seed=4)
    rb = network_gradient_rate(act, B, samples=20_000, seed=4, sigma_w=2.0)
    assert math.isclose(ra.mean, rb.mean, rel_tol=1e-10)


def test_tiny_eps_is_continuous_with_eps_zero():
    """eps = 1e-12 has a nonzero fixed point and every number agrees with eps = 0 within a
    standard error (same seed)."""
    act, B, kw = activation("tanh"), 6, dict(samples=40_000, blocks=10)
    f0, f1 = (network_fixed_point(act, B, e, seed=1, **kw) for e in (0.0, 1e-12))
    assert f1 is not None
    for name in ("s_star", "q_star", "c_star"):
        a, b = getattr(f0, name), getattr(f1, name)
        assert abs(a.mean - b.mean) <= a.stderr, name
    a, b = (network_forward_eigenvalues(act, B, seed=2, epsilon=e, **kw) for e in (0.0, 1e-12))
    for name in a:
        assert abs(a[name].mean - b[name].mean) <= a[name].stderr, name
    a, b = (network_gradient_rate(act, B, seed=3, epsilon=e, **kw) for e in (0.0, 1e-12))
    assert abs(a.mean - b.mean) <= a.stderr
    for direction in ("forward", "backward"):
        s0, s1 = (network_spectrum(act, B, direction, seed=4, epsilon=e, **kw)
                  for e in (0.0, 1e-12))
        for b0, b1 in zip(s0, s1):
            for label, est in b0.eigenvalues.items():
                diff = abs(est.mean - b1.eigenvalues[label].mean)
                assert diff <= max(est.stderr, 1e-12), (direction, b0.space, label)


# -- relu: the scalar map in closed form ---------------------------------------------------------


def _relu_f0(B):
    """``F0 = E[relu(z1)^2 - relu(z1) relu(z2)]`` on the sphere, from the derived q*, c*."""
    (an,) = analyze(activation("relu"), [B], 15)
    q, c = float(an.numbers["q_star"].value), float(an.numbers["c_star"].value)
    return q, q * (1 - c), c


def _chi2_mean(fn, B):
    """``E[fn(k)]``, ``k ~ chi^2_{B-1}``."""
    return integrate.quad(lambda k: fn(k) * stats.chi2.pdf(k, B - 1), 0, np.inf,
                          epsabs=0, epsrel=1e-12, limit=200)[0]


def _relu_scalar_map(B, eps, sigma_w):
    """``S(s) = sigma_w^2 F0 E[k / (k + B eps / s)]``: ``G g = sqrt(k) u`` with ``k`` and the
    direction ``u`` independent, and relu is positive-homogeneous, so ``phi(y) = sqrt(k / (k +
    B eps / s)) phi(sqrt(B) u)``."""
    _, f0, _ = _relu_f0(B)
    return lambda s: sigma_w**2 * f0 * _chi2_mean(lambda k: k / (k + B * eps / s), B)


def _relu_s_star(B, eps, sigma_w):
    S = _relu_scalar_map(B, eps, sigma_w)
    top = sigma_w**2 * _relu_f0(B)[1]  # S(s) < s0 for every s
    return S, optimize.brentq(lambda s: S(s) / s - 1, 1e-9 * top, top, xtol=1e-15, rtol=1e-14)


@pytest.mark.parametrize("B,eps,sigma_w", [(8, 0.05, 1.0), (8, 0.3, 1.5), (6, 0.01, 2.0)])
def test_relu_fixed_point_is_the_root_of_the_closed_scalar_map(B, eps, sigma_w):
    q0, _, c0 = _relu_f0(B)
    _, s = _relu_s_star(B, eps, sigma_w)
    q = sigma_w**2 * q0 * _chi2_mean(lambda k: k / (k + B * eps / s), B)
    est = network_fixed_point(activation("relu"), B, eps, sigma_w, samples=200_000, seed=8)
    assert _within(est.s_star, s), (est.s_star, s)
    assert _within(est.q_star, q), (est.q_star, q)
    assert _within(est.c_star, c0), (est.c_star, c0)  # homogeneity: c* does not move
    assert abs(s - sigma_w**2 * _relu_f0(B)[1]) > 5 * est.s_star.stderr  # eps is visible


def test_relu_without_a_nonzero_fixed_point():
    """``S`` is concave with ``S(0) = 0``, so a nonzero fixed point exists iff ``S'(0) =
    sigma_w^2 F0 (B - 1) / (B eps) > 1``; at ``sigma_w = 1``, ``B = 8``: ``eps < 0.328``."""
    act, B = activation("relu"), 8
    eps_c = _relu_f0(B)[1] * (B - 1) / B
    assert network_fixed_point(act, B, 10.0, samples=20_000) is None
    assert network_fixed_point(act, B, 1.3 * eps_c, samples=20_000) is None
    assert network_fixed_point(act, B, 0.7 * eps_c, samples=20_000) is not None
    assert network_fixed_point(act, B, 1e-3, samples=20_000) is not None
    for call in (lambda: network_forward_eigenvalues(act, B, samples=2_000, epsilon=10.0),
                 lambda: network_gradient_rate(act, B, samples=2_000, epsilon=10.0),
                 lambda: network_spectrum(act, B, "backward", samples=2_000, epsilon=10.0)):
        with pytest.raises(NoFixedPoint, match=r"eps = 10, sigma_w = 1\b"):
            call()


def test_relu_forward_G_eigenvalue_is_the_slope_of_the_scalar_map():
    B, eps, sigma_w = 8, 0.05, 1.0
    S, s = _relu_s_star(B, eps, sigma_w)
    slope = (S(s * (1 + 1e-4)) - S(s * (1 - 1e-4))) / (2e-4 * s)
    assert 0.1 < slope < 0.3
    act = activation("relu")
    est = network_forward_eigenvalues(act, B, samples=200_000, seed=9, epsilon=eps)["lambda_G"]
    assert _within(est, slope, rel=2e-3), (est, slope)
    (g_block, *_) = network_spectrum(act, B, "forward", samples=100_000, seed=10, epsilon=eps)
    assert _within(g_block.eigenvalues["G"], slope, rel=2e-3), (g_block, slope)
    kernel = g_block.eigenvalues["kernel"]  # F ignores 1 1^T: its column vanishes
    assert abs(kernel.mean) <= 5 * kernel.stderr + 1e-3, kernel
    # and 0 at eps = 0 (scale invariance)
    zero = network_forward_eigenvalues(act, B, samples=200_000, seed=9)["lambda_G"]
    assert abs(zero.mean) <= 5 * zero.stderr + 1e-3


def test_relu_gradient_rate_with_eps_factorises():
    """With ``G h = sqrt(s* k) u`` and ``rho = s* k / (s* k + B eps)``: ``y y^T / B = rho u
    u^T``, ``1/sigma_b^2 = B / (s* k + B eps)`` and ``||G D (G - rho u u^T)||^2 = A - (2 rho -
    rho^2) C`` with ``A = ||G D G||^2``, ``C = |G D u|^2``, ``D = diag(1[u > 0])``; so the
    rate ``sigma_w^2 E||G J||^2 / (B - 1)`` is chi-square quadratures times two sphere means
    (sampled here without the layer Jacobian)."""
    B, eps, sigma_w = 8, 0.05, 1.3
    _, s = _relu_s_star(B, eps, sigma_w)
    rng = np.random.default_rng(123)
    rows = []
    for _ in range(10):
        u = batchnorm(rng.standard_normal((50_000, B))) / math.sqrt(B)
        d = (u > 0).astype(float)
        m = d.sum(axis=1)
        A = m - 2 * m / B + m**2 / B**2  # ||G D G||^2 = tr((D - d d^T / B)^2)
        du = d * u
        C = np.sum(du * du, axis=1) - du.sum(axis=1) ** 2 / B
        rows.append((A.mean(), C.mean()))
    (EA, EC), (eA, eC) = np.mean(rows, axis=0), np.std(rows, axis=0, ddof=1) / math.sqrt(10)
    k1 = _chi2_mean(lambda k: B / (s * k + B * eps), B)

    def k2_term(k):
        rho = s * k / (s * k + B * eps)
        return B * (2 * rho - rho**2) / (s * k + B * eps)

    k2 = _chi2_mean(k2_term, B)
    scale = sigma_w**2 / (B - 1)
    ref, ref_err = scale * (k1 * EA - k2 * EC), scale * math.hypot(k1 * eA, k2 * eC)
    est = network_gradient_rate(activation("relu"), B, samples=200_000, seed=11, epsilon=eps,
                                sigma_w=sigma_w)
    assert _within(est, ref, ref_err=ref_err), (est, ref, ref_err)
    # the same G-block eigenvalue from the whole backward spectrum
    (g_block, *_) = network_spectrum(activation("relu"), B, "backward", samples=100_000,
                                     seed=12, epsilon=eps, sigma_w=sigma_w)
    assert _within(g_block.eigenvalues["G"], ref, ref_err=ref_err)
    # eps visibly changes it: the eps = 0 rate, sigma_w-independent
    zero = network_gradient_rate(activation("relu"), B, samples=200_000, seed=11)
    assert abs(zero.mean - est.mean) > 5 * math.hypot(zero.stderr, est.stderr)


# -- any phi: an independently sampled scalar map ------------------------------------------------


def test_tanh_forward_G_eigenvalue_is_the_slope_of_the_sampled_scalar_map():
    """Reference: ``S(s) = sigma_w^2 E[sum_i (f_i - mean f)^2] / (B - 1)``, ``f = phi(BN_eps(
    sqrt(s) g))``, on fresh samples, its root and central difference per block."""
    act, B, eps, sigma_w = activation("tanh"), 6, 0.1, 1.2
    rng = np.random.default_rng(77)
    rows = []
    for _ in range(10):
        g = rng.standard_normal((40_000, B))

        def S(s):
            f = act.numpy(batchnorm(math.sqrt(s) * g, eps))
            return sigma_w**2 * np.mean(np.sum((f - f.mean(axis=1, keepdims=True)) ** 2,
                                               axis=1)) / (B - 1)

        s = optimize.brentq(lambda s: S(s) - s, 1e-3, 10.0, xtol=1e-14)
        rows.append((s, (S(s * 1.001) - S(s * 0.999)) / (0.002 * s)))
    (s_ref, slope), (s_err, slope_err) = (np.mean(rows, axis=0),
                                          np.std(rows, axis=0, ddof=1) / math.sqrt(10))
    fp = network_fixed_point(act, B, eps, sigma_w, samples=200_000, seed=13)
    assert _within(fp.s_star, s_ref, ref_err=s_err), (fp.s_star, s_ref, s_err)
    est = network_forward_eigenvalues(act, B, samples=200_000, seed=14, epsilon=eps,
                                      sigma_w=sigma_w)["lambda_G"]
    assert _within(est, slope, ref_err=slope_err, rel=2e-3), (est, slope, slope_err)
    assert est.mean > 10 * est.stderr  # not 0 as at eps = 0


# -- the layer Jacobian ------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_layer_jacobian_is_the_derivative_of_phi_bn(eps):
    act, B = activation("tanh"), 6
    h = 0.3 + 0.8 * np.random.default_rng(5).standard_normal((1, B))
    J = layer_jacobian(act, h, eps)[0]
    step = 1e-6
    numeric = np.empty((B, B))
    for a in range(B):
        e = np.zeros((1, B))
        e[0, a] = step
        numeric[:, a] = (act.numpy(batchnorm(h + e, eps)) -
                         act.numpy(batchnorm(h - e, eps)))[0] / (2 * step)
    assert np.max(np.abs(J - numeric)) < 1e-6, np.max(np.abs(J - numeric))
    assert np.max(np.abs(J @ np.ones(B))) < 1e-12  # BN_eps ignores a common shift
