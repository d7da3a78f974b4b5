"""Monte Carlo over the batch sphere: a third, loose route for every BSB1 quantity.

``z = sqrt(B) G g / |G g|`` with ``g ~ N(0, I_B)`` is exactly the BSB1 law of a batch after
batchnorm (THEORY.md, the sphere picture). Sphere moments are sample means over the
``B`` (one-point) or ``B(B-1)`` (two-point, all ordered pairs) coordinates of each sample;
their standard errors come from the spread over independent blocks of samples, and the
quantities' standard errors from the spread of the quantities over those blocks.

The network's own maps (forward covariance map, backward gradient map) are sampled directly,
also with a regularised batchnorm ``(h - mean h) / sqrt(var h + eps)`` and weight scale
``sigma_w``; with ``eps > 0`` their BSB1 fixed point is a root of the sampled scalar map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from bnmft.derive import QUANTITIES
from bnmft.derive import B as B_SYM
from bnmft.derive import Activation, Derivation, numpy_function


@dataclass
class Estimate:
    mean: float
    stderr: float


def batchnorm(h: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """``BN_eps(h) = (h - mean h) / sqrt(var h + eps)`` row by row, with the biased batch
    variance ``var h = |G h|^2 / B``; at ``eps = 0`` this is ``sqrt(B) G h / |G h|``."""
    c = h - h.mean(axis=1, keepdims=True)
    if eps == 0:
        return np.sqrt(h.shape[1]) * c / np.linalg.norm(c, axis=1, keepdims=True)
    return c / np.sqrt(np.mean(c * c, axis=1, keepdims=True) + eps)


def sample_sphere(B: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` batches ``z`` (shape ``(n, B)``) uniform on the BSB1 sphere of radius ``sqrt(B)``."""
    return batchnorm(rng.standard_normal((n, B)))


def _estimates(rows) -> list[Estimate]:
    """Mean and standard error (spread over independent blocks) of each column of ``rows``."""
    data = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    mean = data.mean(axis=0)
    err = data.std(axis=0, ddof=1) / np.sqrt(len(rows))
    return [Estimate(float(m), float(e)) for m, e in zip(mean, err)]


def _point(pt, z, f, df):
    out = np.ones_like(z)
    if pt.m:
        out = out * z**pt.m
    if pt.p:
        out = out * f**pt.p
    if pt.q:
        out = out * df**pt.q
    return out


def _block_moments(act: Activation, moments, z: np.ndarray) -> list[float]:
    f = act.numpy(z)
    df = act.numpy_derivative(z) if any(p.q for mo in moments for p in mo.points) else None
    B = z.shape[1]
    out = []
    for mo in moments:
        if mo.arity == 1:
            out.append(float(_point(mo.points[0], z, f, df).mean()))
        else:
            a = _point(mo.points[0], z, f, df)
            b = _point(mo.points[1], z, f, df)
            # sum over ordered pairs i != j: (sum a)(sum b) - sum(a b)
            pair = a.sum(axis=1) * b.sum(axis=1) - (a * b).sum(axis=1)
            out.append(float(pair.mean() / (B * (B - 1))))
    return out


def monte_carlo(deriv: Derivation, B: int, samples: int = 200_000, blocks: int = 20,
                seed: int = 0) -> dict[str, Estimate]:
    """Every quantity of ``deriv`` by sampling the sphere (its moments, through the moment
    forms), with a standard error from the spread over blocks."""
    act = deriv.activation
    moments = list(deriv.moments)
    fns = {
        n: numpy_function([B_SYM, *[mo.symbol for mo in moments]], deriv.forms[n])
        for n in QUANTITIES
    }
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 1)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(blocks):
            vals = _block_moments(act, moments, sample_sphere(B, per_block, rng))
            rows.append([float(fns[n](B, *vals)) for n in QUANTITIES])
    return dict(zip(QUANTITIES, _estimates(rows)))


# -- the forward map of the network itself ---------------------------------------------------


#: The forward eigenvalues, one per invariant subspace (G, L, M).
FORWARD = ("lambda_G", "lambda_L", "lambda_M")


def _pair_moments(f: np.ndarray) -> tuple[float, float]:
    """``E[f_1^2]`` over all diagonal entries and ``E[f_1 f_2]`` over all ordered pairs."""
    n, B = f.shape
    q = float(np.mean(f * f))
    qc = float((np.sum(f.sum(axis=1) ** 2) - np.sum(f * f)) / (n * B * (B - 1)))
    return q, qc


def _bsb1_point(act: Activation, g: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``q*``, ``c*`` and ``Sigma* = q* ((1 - c*) I + c* 1 1^T)`` sampled from normal draws
    ``g`` (``BN(g)`` has the BSB1 law, so ``phi(BN g)`` samples ``F(I)``)."""
    B = g.shape[1]
    q, qc = _pair_moments(act.numpy(batchnorm(g)))
    c = qc / q
    return q, c, q * ((1.0 - c) * np.eye(B) + c * np.ones((B, B)))


def _root(sigma: np.ndarray, q: float) -> np.ndarray:
    """A square root of ``sigma`` as far as batchnorm sees it: ``BN`` depends on ``Sigma``
    only through ``G Sigma G``, so ``q 1 1^T / B`` is added first (this keeps the Cholesky
    factor defined where ``Sigma*`` itself is singular, e.g. ``c* = -1/(B-1)`` for linear phi)."""
    B = sigma.shape[0]
    return np.linalg.cholesky(sigma + q * np.ones((B, B)) / B)


# -- the BSB1 fixed point with eps > 0 and sigma_w ----------------------------------------------


class NoFixedPoint(ArithmeticError):
    """The covariance map has no nonzero BSB1 fixed point (the batch covariance decays to 0)."""


@dataclass
class FixedPointEstimate:
    """The BSB1 fixed point ``Sigma* = q* ((1 - c*) I + c* 1 1^T)``, ``G Sigma* G = s* G``."""

    s_star: Estimate
    q_star: Estimate
    c_star: Estimate


@dataclass
class _Point:
    """The fixed point found on one block of samples."""

    s: float
    q: float
    c: float
    sigma: np.ndarray


def _fixed_point(act: Activation, g: np.ndarray, epsilon: float = 0.0,
                 sigma_w: float = 1.0) -> _Point | None:
    """The BSB1 fixed point on the normal samples ``g`` (common random numbers for every
    ``s``), or None if there is no nonzero one.

    ``BN_eps h`` depends on ``h`` only through ``G h``, and ``G Sigma* G = s* G``, so
    ``h = sqrt(s) g`` has the right law: ``s*`` solves ``S(s) = s`` with
    ``S(s) = sigma_w^2 E[phi(y_1)^2 - phi(y_1) phi(y_2)]``, ``y = BN_eps(sqrt(s) g)``;
    then ``q* = sigma_w^2 E[phi(y_1)^2]``, ``c* = E[phi(y_1) phi(y_2)] / E[phi(y_1)^2]``.
    At ``eps = 0``, ``S`` is constant (``s* = s0``); otherwise the root of ``S(s)/s - 1`` in
    ``log s`` is bracketed by scanning from ``s0`` by factors of 2 (down to ``1e-12 s0``).
    """
    if epsilon < 0:
        raise ValueError(f"eps must be >= 0 (got {epsilon!r})")
    w2 = sigma_w**2
    q0, c0, _ = _bsb1_point(act, g)
    if epsilon == 0:
        q, c = w2 * q0, c0
        s = q * (1.0 - c)
    else:
        s0 = w2 * q0 * (1.0 - c0)
        if not s0 > 0:
            return None

        def f(u):
            m1, m2 = _pair_moments(act.numpy(batchnorm(math.sqrt(math.exp(u)) * g, epsilon)))
            return w2 * (m1 - m2) / math.exp(u) - 1.0

        u0 = math.log(s0)
        f0 = f(u0)
        u, step = u0, (math.log(2.0) if f0 > 0 else -math.log(2.0))
        while f0 != 0:
            un = u + step
            if abs(un - u0) > 12 * math.log(10.0):
                return None
            fn = f(un)
            if fn == 0 or (fn > 0) != (f0 > 0):
                u = brentq(f, min(u, un), max(u, un), xtol=1e-13)
                break
            u = un
        s = math.exp(u)
        m1, m2 = _pair_moments(act.numpy(batchnorm(math.sqrt(s) * g, epsilon)))
        q, c = w2 * m1, m2 / m1
    B = g.shape[1]
    return _Point(s, q, c, q * ((1.0 - c) * np.eye(B) + c * np.ones((B, B))))


def _fixed_point_or_raise(act, g, epsilon, sigma_w) -> _Point:
    point = _fixed_point(act, g, epsilon, sigma_w)
    if point is None:
        raise NoFixedPoint(f"no nonzero BSB1 fixed point at eps = {epsilon:g}, "
                           f"sigma_w = {sigma_w:g} (the batch covariance decays to 0)")
    return point


def network_fixed_point(act: Activation, B: int, epsilon: float = 0.0, sigma_w: float = 1.0,
                        samples: int = 200_000, blocks: int = 20,
                        seed: int = 0) -> FixedPointEstimate | None:
    """``s*``, ``q*``, ``c*`` of the batchnorm network's covariance map ``Sigma -> sigma_w^2
    E[phi(BN_eps h) phi(BN_eps h)^T]`` by Monte Carlo (see :func:`_fixed_point`), the root
    found block by block; standard errors from the spread over blocks. None if some block
    has no nonzero fixed point (e.g. relu with ``sigma_w^2 / eps`` small)."""
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 2)
    rows = []
    for _ in range(blocks):
        point = _fixed_point(act, rng.standard_normal((per_block, B)), epsilon, sigma_w)
        if point is None:
            return None
        rows.append([point.s, point.q, point.c])
    return FixedPointEstimate(*_estimates(rows))


def layer_jacobian(act: Activation, h: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """``J[n] = d phi(BN_eps h[n]) / d h[n]`` for each row ``h[n]``: with ``y = BN_eps h`` and
    ``sigma_b = sqrt(|G h|^2 / B + eps)``, ``J = diag(phi'(y)) (G - (G h)(G h)^T / (B
    sigma_b^2)) / sigma_b = diag(phi'(y)) (G - y y^T / B) / sigma_b`` (at ``eps = 0``:
    ``diag(phi'(y)) sqrt(B)/|G h| (G - u u^T)``, ``u = G h/|G h|``). ``J[n, c, a] = dy_c/dh_a``."""
    B = h.shape[1]
    ch = h - h.mean(axis=1, keepdims=True)
    sigma_b = np.sqrt(np.mean(ch * ch, axis=1) + epsilon)
    y = batchnorm(h, epsilon)
    P = (np.eye(B) - 1.0 / B)[None] - y[:, :, None] * y[:, None, :] / B
    return (act.numpy_derivative(y) / sigma_b[:, None])[:, :, None] * P


def _at_fixed_point(point: _Point, g: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
    """Pre-activations ``h ~ N(0, sigma)`` (default ``Sigma*``) from the normal rows ``g``."""
    return g @ _root(point.sigma if sigma is None else sigma, point.q).T


def eigen_directions(B: int) -> dict[str, np.ndarray]:
    """One eigenvector of each forward eigenspace (THEORY.md, forward linearisation):
    ``G`` itself; ``G diag(e_1 - 1/B) G`` in L; ``(e1-e2)(e3-e4)^T + sym`` in M."""
    G = np.eye(B) - 1.0 / B
    v = np.full(B, -1.0 / B)
    v[0] += 1.0
    a = np.zeros(B)
    a[:2] = (1.0, -1.0)
    b = np.zeros(B)
    b[2:4] = (1.0, -1.0)
    return dict(zip(FORWARD, (G, G @ np.diag(v) @ G, np.outer(a, b) + np.outer(b, a))))


def network_forward_eigenvalues(act: Activation, B: int, samples: int = 200_000,
                                blocks: int = 20, seed: int = 0, rel_step: float = 1e-2,
                                epsilon: float = 0.0, sigma_w: float = 1.0
                                ) -> dict[str, Estimate]:
    """``lambda_G``, ``lambda_L``, ``lambda_M`` of the batchnorm network's covariance map
    ``F(Sigma) = sigma_w^2 E_{h ~ N(0, Sigma)}[phi(BN_eps h) phi(BN_eps h)^T]`` at its BSB1
    fixed point, by Monte Carlo: no moment form and no derived formula is used.

    ``Sigma* = q* ((1 - c*) I + c* 1 1^T)`` is found on each block's samples
    (:func:`_fixed_point`; at ``eps = 0`` sampled from the BSB1 law); for an eigenvector ``D``
    of the Jacobian, ``lambda = <D, F(Sigma* + tD) - F(Sigma* - tD)> / (2 t <D, D>)``
    (``<D, J{D}> = lambda <D, D>`` because the rest of ``J{D}`` lies in the kernel
    ``{v 1^T + 1 v^T}``, orthogonal to ``D``). Both sides use the same normal samples (common
    random numbers, Cholesky square roots), so the difference quotient carries sampling noise
    of order ``1/sqrt(samples)``, not ``1/t``. ``lambda_G = dS/ds`` at ``s*``: 0 at ``eps = 0``
    (scale invariance), not with ``eps > 0``. Raises :class:`NoFixedPoint` if there is none.
    """
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 2)
    dirs = eigen_directions(B)
    w2 = sigma_w**2
    rows = []
    for _ in range(blocks):
        g = rng.standard_normal((per_block, B))
        point = _fixed_point_or_raise(act, g, epsilon, sigma_w)
        t = rel_step * point.q * (1.0 - point.c)
        row = []
        for name in FORWARD:
            D = dirs[name]
            side = []
            for sign in (1.0, -1.0):
                h = _at_fixed_point(point, g, point.sigma + sign * t * D)
                y = act.numpy(batchnorm(h, epsilon))
                side.append(w2 * np.einsum("ni,ij,nj->", y, D, y) / per_block)
            row.append((side[0] - side[1]) / (2.0 * t * float(np.sum(D * D))))
        rows.append(row)
    return dict(zip(FORWARD, _estimates(rows)))


def network_gradient_rate(act: Activation, B: int, samples: int = 200_000, blocks: int = 20,
                          seed: int = 0, epsilon: float = 0.0,
                          sigma_w: float = 1.0) -> Estimate:
    """Gradient explosion rate of the batchnorm network by Monte Carlo of its backward map.

    ``delta^l = J^T W^T delta^{l+1}`` with ``J = d phi(BN_eps h)/dh`` (:func:`layer_jacobian`).
    Averaging over weights (variance ``sigma_w^2 / N``), the gradient covariance evolves by
    ``Pi -> sigma_w^2 E_h[J^T Pi J]``, ``h ~ N(0, Sigma*)`` (at ``eps = 0`` the ``sigma_w^2``
    cancels against the scale of ``h``; with ``eps > 0`` it does not); its top eigenvector is
    ``G``, so the rate is ``sigma_w^2 E||G J G||_F^2 / (B - 1)``. ``Sigma*`` is found as in
    :func:`network_forward_eigenvalues`. No moment form and no derived formula is used.
    """
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 2)
    w2 = sigma_w**2
    rows = []
    for _ in range(blocks):
        g = rng.standard_normal((per_block, B))
        point = _fixed_point_or_raise(act, g, epsilon, sigma_w)
        J = layer_jacobian(act, _at_fixed_point(point, g), epsilon)
        GJ = J - J.mean(axis=1, keepdims=True)  # G J = G J G (J 1 = 0)
        frob = np.einsum("nij,nij->n", GJ, GJ)
        rows.append(w2 * float(frob.mean()) / (B - 1))
    return _estimates(rows)[0]


# -- the whole spectrum of the network's forward and backward maps ------------------------------


def isotypic_directions(B: int) -> dict[str, np.ndarray]:
    """One matrix per copy of each irreducible piece of Sym(B) (the representatives of
    :mod:`bnmft.derive.ultrasymmetric`, built here as arrays): ``K_triv = 11^T`` and ``G``;
    ``K_std = 1 v^T + v 1^T`` and ``L = G diag(v) G`` with ``v = e1 - e2``;
    ``M = a b^T + b a^T`` with ``a = e1 - e2``, ``b = e3 - e4``. The kernel-type copies lie in
    ``{S : G S G = 0}``, the others in ``{S : G S G = S}``; the two are Frobenius-orthogonal."""
    G = np.eye(B) - 1.0 / B
    one = np.ones(B)
    v = np.zeros(B)
    v[:2] = (1.0, -1.0)
    b = np.zeros(B)
    b[2:4] = (1.0, -1.0)
    return {
        "K_triv": np.outer(one, one),
        "G": G,
        "K_std": np.outer(one, v) + np.outer(v, one),
        "L": G @ np.diag(v) @ G,
        "M": np.outer(v, b) + np.outer(b, v),
    }


#: The blocks: (space, kernel-type copy or None, hyperplane copy).
_PIECES = (("G", "K_triv", "G"), ("L", "K_std", "L"), ("M", None, "M"))


@dataclass
class BlockEstimate:
    """The map on one isotypic piece: ``entries[r][c]`` is the coordinate along basis matrix
    ``r`` of the image of basis matrix ``c`` (basis: kernel-type copy, hyperplane copy; for
    ``M`` the single matrix), and ``eigenvalues`` the block's eigenvalues, labelled
    ``"kernel"`` (the one nearer the kernel-type diagonal entry) and the piece's name."""

    space: str
    dim: int
    entries: list
    eigenvalues: dict


def _block_rows(images: dict, dirs: dict) -> list[float]:
    """Block coordinates ``<E_r, T(E_c)> / <E_r, E_r>`` (the basis of each piece is
    Frobenius-orthogonal) and the labelled eigenvalues of each block, as one row."""
    row = []
    for _, kname, hname in _PIECES:
        names = [hname] if kname is None else [kname, hname]
        blk = np.array([[np.sum(dirs[r] * images[c]) / np.sum(dirs[r] * dirs[r])
                         for c in names] for r in names])
        row.extend(blk.ravel())
        if kname is None:
            row.append(blk[0, 0])
            continue
        ev = np.linalg.eigvals(blk).real
        # label by the nearer diagonal entry (kernel-type copy first)
        if abs(ev[0] - blk[0, 0]) + abs(ev[1] - blk[1, 1]) > abs(ev[1] - blk[0, 0]) + abs(
                ev[0] - blk[1, 1]):
            ev = ev[::-1]
        row.extend(ev)
    return row


def _forward_images(act: Activation, g: np.ndarray, point: _Point, dirs: dict,
                    rel_step: float, epsilon: float, w2: float) -> dict:
    """``J{D} ~ (F(Sigma* + tD) - F(Sigma* - tD)) / 2t`` for every direction, ``F(Sigma) =
    sigma_w^2 E[phi(BN_eps h) phi(BN_eps h)^T]``, common random numbers ``g`` on both sides."""
    t = rel_step * point.q * (1.0 - point.c)
    n = len(g)
    out = {}
    for name, D in dirs.items():
        side = []
        for sign in (1.0, -1.0):
            y = act.numpy(batchnorm(_at_fixed_point(point, g, point.sigma + sign * t * D),
                                    epsilon))
            side.append(w2 * (y.T @ y) / n)
        out[name] = (side[0] - side[1]) / (2.0 * t)
    return out


def _backward_images(act: Activation, g: np.ndarray, point: _Point, dirs: dict,
                     epsilon: float, w2: float) -> dict:
    """``sigma_w^2 E[J^T D J]`` for every direction, ``J = d phi(BN_eps h)/dh``
    (:func:`layer_jacobian`), ``h ~ N(0, Sigma*)``."""
    J = layer_jacobian(act, _at_fixed_point(point, g), epsilon)  # J[n, c, a]
    Jt = np.ascontiguousarray(np.swapaxes(J, 1, 2))
    return {name: w2 * np.mean(Jt @ D @ J, axis=0) for name, D in dirs.items()}


def network_spectrum(act: Activation, B: int, direction: str = "forward",
                     samples: int = 100_000, blocks: int = 20, seed: int = 0,
                     rel_step: float = 1e-2, epsilon: float = 0.0,
                     sigma_w: float = 1.0) -> list[BlockEstimate]:
    """Every eigenvalue of the batchnorm network's forward covariance map (Jacobian at the
    BSB1 point, by common-random-number differences as in :func:`network_forward_eigenvalues`)
    or of its backward map ``Pi -> sigma_w^2 E[J^T Pi J]`` (as in :func:`network_gradient_rate`), by
    Monte Carlo, piece by piece.

    The map is applied to one matrix of each copy of each irreducible piece
    (:func:`isotypic_directions`) and its image projected back: the 2 x 2 blocks of the
    trivial (``G``) and standard (``L``) parts and the scalar on ``M``, each entry and each
    block eigenvalue with a standard error from the spread over blocks of samples. No moment
    form, no derived formula, and no assumption on the shape of the blocks is used. With
    ``eps > 0`` the fixed point is found on each block's samples (:func:`_fixed_point`);
    raises :class:`NoFixedPoint` if there is none.
    """
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward' (got {direction!r})")
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 2)
    dirs = isotypic_directions(B)
    rows = []
    for _ in range(blocks):
        g = rng.standard_normal((per_block, B))
        point = _fixed_point_or_raise(act, g, epsilon, sigma_w)
        if direction == "forward":
            images = _forward_images(act, g, point, dirs, rel_step, epsilon, sigma_w**2)
        else:
            images = _backward_images(act, g, point, dirs, epsilon, sigma_w**2)
        rows.append(_block_rows(images, dirs))
    est = iter(_estimates(rows))
    out = []
    dims = {"G": 1, "L": B - 1, "M": B * (B - 3) // 2}
    for space, kname, _ in _PIECES:
        size = 1 if kname is None else 2
        entries = [[next(est) for _ in range(size)] for _ in range(size)]
        labels = [space] if kname is None else ["kernel", space]
        out.append(BlockEstimate(space, dims[space], entries,
                                 {label: next(est) for label in labels}))
    return out
