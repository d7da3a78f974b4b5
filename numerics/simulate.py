"""Finite networks against the mean-field theory: sampled batchnorm networks, layer by layer.

The network (THEORY.md, setting; the paper's Sec 2): width ``N``, batch ``B``, depth ``L``,

    h^l = W^l x^{l-1},   W^l ~ N(0, sigma_w^2 / N) entrywise,
    y^l = (h^l - mean h^l) / sqrt(var h^l + eps)   (per neuron, over the batch; biased variance),
    x^l = phi(y^l)                                  (phi may be phi(gamma x + beta)).

The input ``x^0`` has rows ``N(0, Sigma_0)``, ``Sigma_0 = I + t (D_L/|D_L| + D_M/|D_M|)``:
a BSB1 matrix pushed along one eigenvector of the forward Jacobian in each of the spaces ``L``
and ``M`` (:func:`bnmft.numerics.montecarlo.eigen_directions`), so that the decay of each
component measures the forward eigenvalues ``lambda_L``, ``lambda_M``.

Measured per layer, on the batch covariance ``Sigma^l = sigma_w^2 x^l^T x^l / N`` (what the
next layer's pre-activations see; the theory's ``Sigma^l = V_Bphi(Sigma^{l-1})``):
``q`` (mean diagonal entry), ``c`` (mean off-diagonal entry / ``q``), the distance to the BSB1
matrices ``|Sigma - P Sigma|_F / |P Sigma|_F`` (``P``: the average over batch permutations,
the nearest BSB1 matrix), and the projections on ``D_L``, ``D_M``. Backward: an output
gradient ``delta^L ~ N(0, I)`` (``N x B``) is pushed through ``delta^{l-1} = J_l^T W^{l T}
delta^l`` with the exact batchnorm Jacobian ``J = diag(phi'(y)) (G - y y^T / B) / sigma_b``
(:func:`bnmft.numerics.montecarlo.layer_jacobian`, applied without forming it), and the
squared norms ``|delta^l|_F^2`` are recorded.

Estimators (means over ``S`` independently sampled networks; standard errors from their
spread):

* gradient rate: per network the geometric mean of the per-layer ratios
  ``|delta^l|^2 / |delta^{l+1}|^2`` over the layers past a burn-in at both ends, i.e.
  ``(|delta^a|^2 / |delta^b|^2)^{1/(b-a)}``. Each layer draws fresh weights, so the log ratios
  are close to independent increments of a random walk in ``log |delta|^2``; for such a walk
  the mean increment is the efficient drift estimate, while a least-squares fit of
  ``log |delta|^2`` against depth weighs the correlated walk badly (its variance is larger by
  6/5 for long walks). The burn-in drops the input layers, where the forward covariance is
  still off the BSB1 point (the rate depends on it), and the output layers, where the gradient
  covariance has not yet settled on the backward map's top eigenvector ``G``.
* forward rates: the projection of ``Sigma^l`` on ``D_L`` (``D_M``) averaged over networks
  decays as ``lambda_L^l`` (``lambda_M^l``) to first order; the rate is the exponential of
  the least-squares slope of its log over the layers before it drops into the noise (below
  4 standard errors), with a jackknife standard error over the networks. Here a fit is used
  because the mean curve carries independent noise per layer, not a random walk.
* ``q*``, ``c*``: the per-layer values averaged over the layers past the input burn-in.

Finite width biases every estimate by ``O(1/N)`` (the theory is the ``N -> oo`` limit; its
``1/N`` corrections, e.g. from the fluctuation of ``Sigma^l`` around ``Sigma*``, enter the
next layer's averages at second order). The bias can be measured with
:func:`bnmft.pipeline.width_bias`; README.md lists measured values: at L = 30, 16 networks,
``N (c* - theory)`` is about -0.75 for relu (B = 16) and ``N (q* - theory)`` about +0.28 for
tanh (B = 8) at N = 64 ... 512, constant as ``O(1/N)`` says, while the gradient rate's bias
stays below its standard error (``|N bias| <~ 2``).

Backends: ``numpy`` (float64), ``torch`` (float64 on the CPU; optional, ``pip install
bnmft[torch]``): matrix products and batchnorm steps in torch. Both draw their normals from
numpy's Generator (per-layer seeds ``numpy.random.SeedSequence(seed, spawn_key=(sample,
layer))``) and evaluate phi by the Activation's numpy function, so the two backends compute
the same networks (equal to rounding). torch runs with :data:`TORCH_THREADS` threads.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

from bnmft.derive import Activation, InvalidInput, check_defined
from bnmft.numerics.montecarlo import Estimate, eigen_directions

BACKENDS = ("numpy", "torch")
#: Amplitude ``t`` of the input's push along ``D_L`` and ``D_M`` (relative to ``I``).
INPUT_PUSH = 0.3
#: Weights of all layers are kept (not re-drawn for the backward pass) up to this many bytes.
WEIGHT_BUDGET = 256 * 2**20
#: A mean projection below this many standard errors is noise: the forward fit stops there.
NOISE_SIGMAS = 4.0
#: Intra-op threads of the torch backend while it simulates (BENCHMARKS.md: on two shared
#: cores one thread ran the N x N by N x B products several times faster than two).
TORCH_THREADS = 1


class SimulationFailure(ArithmeticError):
    """A measurement that could not be made (too few layers, no usable forward decay)."""


def check_network(batch_size, width, depth, samples, backend="numpy", epsilon=0.0,
                  sigma_w=1.0) -> None:
    """Refuse a network the simulation does not run: one line (:class:`InvalidInput`)."""
    for name, value, least in (("width", width, 2), ("depth", depth, 1),
                               ("samples", samples, 2), ("batch size", batch_size, 4)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidInput(f"{name} must be an integer (got {value!r})")
        if value < least:
            why = {"samples": "; a standard error needs at least 2 networks",
                   "batch size": "; B < 4 is degenerate"}.get(name, "")
            raise InvalidInput(f"{name} must be >= {least} (got {value}){why}")
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend '{backend}' (use numpy or torch)")
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise InvalidInput(f"eps must be >= 0 (got {epsilon})")
    if not (math.isfinite(sigma_w) and sigma_w > 0):
        raise InvalidInput(f"sigma_w must be > 0 (got {sigma_w})")


# -- backends ----------------------------------------------------------------------------------


def _seed(seed: int, sample: int, layer: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(sample, layer))


class _NumpyBackend:
    name = "numpy"

    def threads(self):
        return contextlib.nullcontext()

    def normal(self, ss, shape):
        return np.random.default_rng(ss).standard_normal(shape)

    def asarray(self, a):
        return np.asarray(a, dtype=np.float64)

    def numpy(self, a):
        return a

    def mean(self, a):
        return a.mean(axis=1, keepdims=True)

    def sum(self, a):
        return a.sum(axis=1, keepdims=True)

    def sqrt(self, a):
        return np.sqrt(a)

    def phi(self, fn, y):
        return np.asarray(fn(y), dtype=np.float64)


class _TorchBackend:
    name = "torch"

    def __init__(self):
        try:
            import torch
        except ImportError:
            raise InvalidInput("backend torch needs PyTorch (pip install 'bnmft[torch]')") from None
        self.torch = torch

    @contextlib.contextmanager
    def threads(self):
        """Run with :data:`TORCH_THREADS` intra-op threads, restoring the caller's setting."""
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(TORCH_THREADS)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    def normal(self, ss, shape):
        # numpy's Generator draws float64 normals about twice as fast as torch.randn here,
        # and the same stream makes both backends compute the same network
        return self.torch.from_numpy(np.random.default_rng(ss).standard_normal(shape))

    def asarray(self, a):
        return self.torch.as_tensor(np.asarray(a, dtype=np.float64))

    def numpy(self, a):
        return a.numpy()

    def mean(self, a):
        return a.mean(dim=1, keepdim=True)

    def sum(self, a):
        return a.sum(dim=1, keepdim=True)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def phi(self, fn, y):
        return self.torch.from_numpy(np.ascontiguousarray(fn(y.numpy()), dtype=np.float64))


def backend(name: str):
    """The array backend ``name`` (``numpy`` or ``torch``)."""
    if name == "numpy":
        return _NumpyBackend()
    if name == "torch":
        return _TorchBackend()
    raise InvalidInput(f"unknown backend '{name}' (use numpy or torch)")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- one network --------------------------------------------------------------------------------


def input_covariance(B: int, push: float = INPUT_PUSH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Sigma_0 = I + t (D_L/|D_L| + D_M/|D_M|)`` and the two directions ``D_L``, ``D_M``."""
    dirs = eigen_directions(B)
    DL, DM = dirs["lambda_L"], dirs["lambda_M"]
    sigma0 = np.eye(B) + push * (DL / np.linalg.norm(DL) + DM / np.linalg.norm(DM))
    return sigma0, DL, DM


def layer_forward(bk, W, x, epsilon: float, phi):
    """One layer: ``h = W x``, ``y = BN_eps(h)`` per row, ``x' = phi(y)``; returns
    ``(x', y, sigma_b)`` with ``sigma_b = sqrt(var h + eps)`` per row."""
    h = W @ x
    ch = h - bk.mean(h)
    sb = bk.sqrt(bk.mean(ch * ch) + epsilon)
    y = ch / sb
    return bk.phi(phi, y), y, sb


def layer_backward(bk, W, delta, y, sb, dphi):
    """``J^T W^T delta`` row by row, ``J = diag(phi'(y)) (G - y y^T / B) / sigma_b``:
    ``u = phi'(y) v``, ``J^T v = (u - mean u - y <y, u> / B) / sigma_b``."""
    v = W.T @ delta
    u = bk.phi(dphi, y) * v
    B = y.shape[1]
    return (u - bk.mean(u) - y * bk.sum(y * u) / B) / sb


def _one_network(bk, act: Activation, B, N, L, epsilon, sigma_w, seed, sample, push):
    """Per-layer rows of one sampled network (layers 1..L): q, c, distance to BSB1, the
    linear response of the projections on ``D_L``, ``D_M`` to the input push, and the squared
    gradient norm; and the last layer's batch covariance.

    The network is run on the inputs ``z R_+^T`` and ``z R_-^T`` (``R_+- R_+-^T = I +- t
    (D_L/|D_L| + D_M/|D_M|)``, the same normal rows ``z`` and the same weights); the
    projections enter as ``(p_+ - p_-)/2``: the width noise common to both runs cancels (common
    random numbers), and so does the second-order response. q, c, distance and gradients are
    those of the ``+`` run."""
    scale = sigma_w / math.sqrt(N)
    keep = L * N * N * 8 <= WEIGHT_BUDGET
    weights = []

    def W(layer):
        if keep and len(weights) >= layer:
            return weights[layer - 1]
        w = bk.normal(_seed(seed, sample, layer), (N, N)) * scale
        if keep:
            weights.append(w)
        return w

    sigma_p, DL, DM = input_covariance(B, push)
    sigma_m, _, _ = input_covariance(B, -push)
    z = bk.normal(_seed(seed, sample, 0), (N, B))
    nDL, nDM = float(np.sum(DL * DL)), float(np.sum(DM * DM))
    off = ~np.eye(B, dtype=bool)
    rows = np.zeros((L, 6))
    ys, sbs = [], []
    for sign, sigma0 in ((1.0, sigma_p), (-1.0, sigma_m)):
        x = z @ bk.asarray(np.linalg.cholesky(sigma0).T)
        for layer in range(1, L + 1):
            x, y, sb = layer_forward(bk, W(layer), x, epsilon, act.numpy)
            xn = bk.numpy(x)
            sigma = sigma_w**2 * (xn.T @ xn) / N
            rows[layer - 1, 3] += sign * 0.5 * float(np.sum(sigma * DL)) / nDL
            rows[layer - 1, 4] += sign * 0.5 * float(np.sum(sigma * DM)) / nDM
            if sign < 0:
                continue
            ys.append(y)
            sbs.append(sb)
            q = float(np.mean(np.diag(sigma)))
            qc = float(np.mean(sigma[off]))
            nearest = (q - qc) * np.eye(B) + qc
            dist = float(np.linalg.norm(sigma - nearest) / np.linalg.norm(nearest))
            rows[layer - 1, :3] = (q, qc / q, dist)
            sigma_last = sigma
    delta = bk.normal(_seed(seed, sample, L + 1), (N, B))
    for layer in range(L, 0, -1):
        if layer < L:
            delta = layer_backward(bk, W(layer + 1), delta, ys[layer - 1], sbs[layer - 1],
                                   act.numpy_derivative)
        d = bk.numpy(delta)
        rows[layer - 1, 5] = float(np.sum(d * d))
    return rows, sigma_last


# -- many networks ------------------------------------------------------------------------------


@dataclass
class Measurement:
    """A sampled quantity: mean and standard error over networks, the theory's value (None
    if not available) and the deviation ``(mean - theory) / stderr``."""

    mean: float | None
    stderr: float | None
    theory: float | None = None
    note: str = ""
    #: the theory's :class:`~bnmft.numerics.precision.Number` (for printing its digits)
    theory_number: object = None

    @property
    def deviation(self) -> float | None:
        if self.mean is None or self.theory is None or not self.stderr:
            return None
        return (self.mean - self.theory) / self.stderr


@dataclass
class Simulation:
    """What :func:`simulate` measured (means over ``samples`` networks)."""

    activation: Activation
    batch_size: int
    width: int
    depth: int
    samples: int
    seed: int
    epsilon: float
    sigma_w: float
    backend: str
    burn_in: int
    #: per layer 1..L: q, c, distance to BSB1, |delta^l|^2 / |delta^L|^2 (Estimates)
    q: list = field(default_factory=list)
    c: list = field(default_factory=list)
    distance: list = field(default_factory=list)
    gradient_norm: list = field(default_factory=list)
    gradient_rate: Measurement | None = None
    forward_rate_L: Measurement | None = None
    forward_rate_M: Measurement | None = None
    q_star: Measurement | None = None
    c_star: Measurement | None = None
    #: the last layer's batch covariance of every network, shape (S, B, B)
    final_covariance: np.ndarray | None = None
    #: where the theory has no value (e.g. no nonzero fixed point at this eps)
    theory_notes: list = field(default_factory=list)
    estimator: str = ("geometric mean of per-layer ratios |delta^l|^2/|delta^(l+1)|^2 "
                      "past the burn-in")

    def measurements(self) -> dict:
        return {"gradient_rate": self.gradient_rate, "forward_rate_L": self.forward_rate_L,
                "forward_rate_M": self.forward_rate_M, "q_star": self.q_star,
                "c_star": self.c_star}


def default_burn_in(depth: int) -> int:
    """Layers dropped at each end of the gradient fit: 5, fewer for shallow networks (at least
    one ratio must remain)."""
    return max(0, min(5, (depth - 2) // 3))


def _stats(data: np.ndarray) -> list[Estimate]:
    mean = data.mean(axis=0)
    err = data.std(axis=0, ddof=1) / math.sqrt(len(data))
    return [Estimate(float(m), float(e)) for m, e in zip(mean, err)]


def _forward_rate(proj: np.ndarray) -> Measurement:
    """Rate of the mean projection's decay (see the module docstring), jackknife stderr."""
    S = len(proj)
    m = proj.mean(axis=0)
    e = proj.std(axis=0, ddof=1) / math.sqrt(S)
    usable = 0
    while usable < len(m) and abs(m[usable]) > NOISE_SIGMAS * e[usable] and (
            usable == 0 or m[usable] * m[0] > 0):
        usable += 1
    if usable < 3:
        return Measurement(None, None, note=f"only {usable} layer(s) above the noise "
                                            f"({NOISE_SIGMAS:g} standard errors); need 3")
    layers = np.arange(usable)

    def rate(mean):
        if np.any(mean[:usable] * mean[0] <= 0):
            return math.nan
        return math.exp(np.polyfit(layers, np.log(np.abs(mean[:usable])), 1)[0])

    full = rate(m)
    jack = np.array([rate(np.delete(proj, i, axis=0).mean(axis=0)) for i in range(S)])
    if not np.all(np.isfinite(jack)):
        return Measurement(None, None, note="the projection changes sign when one network is "
                                            "left out (too noisy)")
    err = math.sqrt((S - 1) / S * np.sum((jack - jack.mean()) ** 2))
    return Measurement(full, err, note=f"fit over layers 1..{usable}")


def simulate(act: Activation, batch_size: int, width: int, depth: int, samples: int,
             seed: int = 0, epsilon: float = 0.0, sigma_w: float = 1.0,
             backend_name: str = "numpy", burn_in: int | None = None,
             progress=None) -> Simulation:
    """Sample ``samples`` networks (module docstring) and measure every quantity, without any
    theory value (:func:`attach_theory` adds those)."""
    check_network(batch_size, width, depth, samples, backend_name, epsilon, sigma_w)
    check_defined(act, [int(batch_size)])
    bk = backend(backend_name)
    B, N, L = int(batch_size), int(width), int(depth)
    burn = default_burn_in(L) if burn_in is None else int(burn_in)
    if burn < 0:
        raise InvalidInput(f"burn-in must be >= 0 (got {burn})")
    it = range(samples) if progress is None else progress(range(samples))
    with bk.threads():
        nets = [_one_network(bk, act, B, N, L, float(epsilon), float(sigma_w), int(seed), i,
                             INPUT_PUSH) for i in it]
    data = np.stack([rows for rows, _ in nets])
    sim = Simulation(act, B, N, L, samples, seed, float(epsilon), float(sigma_w), bk.name, burn)
    sim.final_covariance = np.stack([sigma for _, sigma in nets])
    sim.q = _stats(data[:, :, 0])
    sim.c = _stats(data[:, :, 1])
    sim.distance = _stats(data[:, :, 2])
    g = data[:, :, 5]
    sim.gradient_norm = _stats(g / g[:, -1:])
    a, b = burn, L - 1 - burn  # 0-based layer indices kept: a..b
    if b <= a:
        sim.gradient_rate = Measurement(None, None, note=f"depth {L} leaves no layer ratio "
                                                         f"past a burn-in of {burn} at each end")
    else:
        per_net = (g[:, a] / g[:, b]) ** (1.0 / (b - a))
        (est,) = _stats(per_net[:, None])
        sim.gradient_rate = Measurement(est.mean, est.stderr,
                                        note=f"layers {a + 1}..{b + 1}")
    sim.forward_rate_L = _forward_rate(data[:, :, 3])
    sim.forward_rate_M = _forward_rate(data[:, :, 4])
    start = min(burn, L - 1)
    for name, col in (("q_star", 0), ("c_star", 1)):
        (est,) = _stats(data[:, start:, col].mean(axis=1)[:, None])
        setattr(sim, name, Measurement(est.mean, est.stderr, note=f"layers {start + 1}..{L}"))
    return sim
