"""Brute-force reference for the forward spectrum at the BSB1 fixed point.

Independent of the symbolic derivation in :mod:`bnmft.derive`: the batchnorm covariance map
``V_Bphi`` of a positive-homogeneous ``phi`` is evaluated by the Laplace method (paper Thm 2,
THEORY.md "Two integral transforms"), the dual kernel ``V_phi`` by 1-D quadrature of the
polar-coordinate integral, the Jacobian at ``Sigma*`` by central finite differences on
symmetric B x B matrices, and the eigenvalues are read off block by block on the invariant
subspaces (kernel, RG, L, M; THEORY.md "Forward linearisation at the fixed point").

Only ``phi`` itself is taken from :mod:`bnmft.derive.activation` (``act.numpy`` and the
degree ``act.homogeneous.alpha``); no closed form of the project is used.

API
---
``DualKernel(act)``                 ``K(rho) = E[phi(g1) phi(g2)]``, unit variances, correlation rho
``laplace_map(Sigma, act)``         ``V_Bphi(Sigma)`` (B x B)
``bsb1_fixed_point(act, B)``        ``(q*, c*)``
``forward_jacobian(act, B, h)``     dV/dSigma at Sigma*, orthonormal basis of Sym(B)
``forward_spectrum(act, B)``        list of :class:`Eigenspace` (kernel, G, L, M)
``forward_eigenvalues(act, B)``     raw sorted eigenvalues of the Jacobian
``cluster_eigenvalues(ev, tol)``    raw eigenvalues grouped into (value, multiplicity, spread)
``backward_operator(act, B)``       Pi -> E[J_h^T Pi J_h] at Sigma*, entrywise Gaussian integrals
``operator_spectrum(T, B)``         every eigenvalue of an operator on Sym(B), with dimensions
``spectrum(act, B, direction)``     :func:`operator_spectrum` of the forward Jacobian or the
                                    backward operator
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
from scipy.special import gammaln, roots_jacobi

__all__ = [
    "DualKernel",
    "Eigenspace",
    "backward_operator",
    "bsb1_fixed_point",
    "cluster_eigenvalues",
    "forward_eigenvalues",
    "forward_jacobian",
    "forward_spectrum",
    "invariant_subspaces",
    "laplace_map",
    "operator_spectrum",
    "smat",
    "spectrum",
    "svec",
    "sym_basis",
]

# -- the activation ------------------------------------------------------------------------


def _as_activation(act):
    if isinstance(act, str):
        from bnmft.derive import parse_activation as activation

        return activation(act)
    return act


@dataclass(frozen=True)
class _HomogeneousPhi:
    """``phi(z) = A z^alpha`` (z > 0), ``C (-z)^alpha`` (z < 0), read off ``phi`` numerically."""

    alpha: float
    A: float
    C: float
    name: str


def _homogeneous_phi(act) -> _HomogeneousPhi:
    """Degree from the activation's metadata; ``A = phi(1)``, ``C = phi(-1)`` from ``phi``.

    Homogeneity is re-checked on ``phi`` itself (``phi(t z) = t^alpha phi(z)``), so that the
    kernel below rests on ``act.numpy`` and not on the symbolic coefficients.
    """
    act = _as_activation(act)
    hom = getattr(act, "homogeneous", None)
    if hom is None:
        raise ValueError(f"{act.name}: not positive-homogeneous; the Laplace method needs it")
    alpha = float(hom.alpha)
    if not alpha > 0:
        raise ValueError(f"{act.name}: degree alpha = {alpha}; the Laplace formula needs alpha > 0")
    def phi(z):
        # lambdified Piecewise evaluates every branch, e.g. x**1.5 at x < 0 (NaN, discarded
        # by select) -- silence that, the selected values are what we check
        with np.errstate(invalid="ignore"):
            return np.asarray(act.numpy(z), dtype=float)

    A, C = (float(v) for v in phi(np.array([1.0, -1.0])))
    z = np.array([0.3, 1.7, 4.0, -0.3, -1.7, -4.0])
    expected = np.where(z > 0, A, C) * np.abs(z) ** alpha
    for t in (0.5, 3.0):
        got = phi(t * z)
        if not np.allclose(got, t**alpha * expected, rtol=1e-12, atol=1e-300):
            raise ValueError(f"{act.name}: phi is not homogeneous of degree {alpha} numerically")
    if A == 0 and C == 0:
        raise ValueError(f"{act.name}: phi vanishes identically")
    return _HomogeneousPhi(alpha, A, C, act.name)


# -- dual kernel ---------------------------------------------------------------------------


class DualKernel:
    """Dual kernel ``K(rho) = E[phi(g1) phi(g2)]``, ``g`` unit Gaussians of correlation rho.

    Polar coordinates (``g = R (cos t, cos(t - theta))`` in a frame where the correlation is
    ``cos theta``) and homogeneity give

        K(rho) = E[R^{2 alpha}]/(2 pi) Int_0^{2 pi} phi(cos t) phi(cos(t - theta)) dt,
        E[R^{2 alpha}] = 2^alpha Gamma(alpha + 1),   theta = arccos rho.

    The circle splits at the kinks ``cos t = 0`` and ``cos(t - theta) = 0`` into two arcs of
    length ``pi - theta`` where the two cosines have equal signs (weights ``A^2``, ``C^2``)
    and two of length ``theta`` with opposite signs (weight ``2 A C``). With
    ``cos t cos(t - theta) = (cos theta + cos(2t - theta))/2`` each arc becomes

        I+(theta) = Int_0^{pi-theta} [sin(w/2) sin(w/2 + theta)]^alpha dw,
        I-(theta) = Int_0^{theta}    [sin(v/2) sin(theta - v/2)]^alpha dv,

    so ``K = E[R^{2 alpha}]/(2 pi) ((A^2 + C^2) I+ + 2 A C I-)``. Both integrands vanish like
    ``w^alpha`` at the lower end (the kink) and are smooth elsewhere on the interval, so a
    Gauss-Jacobi rule with weight ``w^alpha`` is exact up to the smooth factor; for
    non-integer ``alpha`` the factor ``sin(w/2 + theta)^alpha`` of ``I+`` has a branch point at
    ``w = -2 theta``, close to the interval when ``theta`` is small, so there (rho > cos 0.05)
    the rule is replaced by mpmath tanh-sinh.
    """

    #: Gauss-Jacobi nodes per arc. For integer alpha the smooth factor is entire and 20
    #: nodes reach rounding level for every theta; for non-integer alpha 32 nodes reach
    #: 1e-15 relative for theta >= 0.05 (both checked against mpmath for alpha = 1, 1.25,
    #: 1.5, 2 at theta from 0.005 to 3.1).
    n_nodes_integer = 20
    n_nodes = 32
    #: below this theta (non-integer alpha only) I+ is done by mpmath.
    theta_small = 0.05

    def __init__(self, act):
        self.phi = _homogeneous_phi(act)
        a = self.phi.alpha
        self._integer_alpha = float(a).is_integer()
        n = self.n_nodes_integer if self._integer_alpha else self.n_nodes
        x, w = roots_jacobi(n, 0.0, a)  # weight (1 + x)^alpha on [-1, 1]
        # Int_0^L w^a g(w) dw = L^(a+1) sum_k W_k g(L u_k)
        self._u = (1.0 + x) / 2.0
        self._w = w / 2.0 ** (a + 1.0)
        self._pref = math.exp(a * math.log(2.0) + gammaln(a + 1.0)) / (2.0 * math.pi)
        A, C = self.phi.A, self.phi.C
        self._cp = A * A + C * C
        self._cm = 2.0 * A * C
        # E[phi(g)^2] = (A^2 + C^2)/2 E|g|^{2 alpha}
        #             = (A^2 + C^2) 2^(alpha-1) Gamma(alpha + 1/2) / sqrt(pi)
        self.second_moment = self._cp * math.exp(
            (a - 1.0) * math.log(2.0) + gammaln(a + 0.5) - 0.5 * math.log(math.pi)
        )

    def _power(self, x):
        a = self.phi.alpha
        if a == 1.0:
            return x
        if a == 2.0:
            return x * x
        return x**a

    def arcs(self, theta, minus: bool = True):
        """``(I+, I-)`` at angles ``theta`` in [0, pi] (any array shape); ``I- = 0`` is
        returned without computing it when ``minus`` is false."""
        theta = np.asarray(theta, dtype=float)
        th = theta[..., None]
        a = self.phi.alpha
        u, w = self._u, self._w
        with np.errstate(invalid="ignore", divide="ignore"):
            # I+: w in (0, pi - theta); sin(w/2)/w is the smooth part of the w^alpha factor.
            # theta = pi (I+ = 0) gives 0/0 here, theta = 0 gives 0/0 in I-: masked below.
            L = np.pi - th
            x = L * u
            ip = L[..., 0] ** (a + 1.0) * (
                self._power(np.sin(x / 2) / x * np.sin(x / 2 + th)) @ w
            )
            if minus:
                L = th
                x = L * u
                im = L[..., 0] ** (a + 1.0) * (
                    self._power(np.sin(x / 2) / x * np.sin(th - x / 2)) @ w
                )
                im = np.where(theta > 0, im, 0.0)
            else:
                im = np.zeros_like(theta)
        ip = np.where(theta < np.pi, ip, 0.0)
        if not self._integer_alpha:
            small = (theta < self.theta_small) & (theta > 0)
            if np.any(small):
                ip = np.array(ip, dtype=float)
                ip[small] = [self._ip_mpmath(t) for t in theta[small]]
            ip = np.where(theta == 0, self._ip_zero(), ip)
        return ip, im

    def _ip_mpmath(self, theta: float) -> float:
        """``I+`` by tanh-sinh, split at ``w = 2 theta`` (scale of the nearby branch point)."""
        with mpmath.workdps(25):
            th = mpmath.mpf(theta)
            a = mpmath.mpf(self.phi.alpha)
            end = mpmath.pi - th
            f = lambda w: (mpmath.sin(w / 2) * mpmath.sin(w / 2 + th)) ** a  # noqa: E731
            return float(mpmath.quad(f, [0, min(2 * th, end / 2), end]))

    def _ip_zero(self) -> float:
        # I+(0) = Int_0^pi sin(w/2)^{2 alpha} dw = B(alpha + 1/2, 1/2)
        a = self.phi.alpha
        return math.exp(gammaln(a + 0.5) + 0.5 * math.log(math.pi) - gammaln(a + 1.0))

    def of_theta(self, theta):
        # relu-like (C = 0): the mixed-sign arcs carry weight 0, skip them
        ip, im = self.arcs(theta, minus=self._cm != 0.0)
        return self._pref * (self._cp * ip + self._cm * im)

    def __call__(self, rho):
        """``K(rho)``; rho is clipped to [-1, 1] (rounding can push |rho| a hair above 1)."""
        rho = np.clip(np.asarray(rho, dtype=float), -1.0, 1.0)
        return self.of_theta(np.arccos(rho))

    def quad_reference(self, rho: float, phi=None) -> float:
        """``K(rho)`` straight from the polar integral of ``phi(cos t) phi(cos(t - theta))``
        with scipy quad split at the four kinks (slow; a check of the arc reduction)."""
        from scipy.integrate import quad

        phi = phi if phi is not None else _phi_from_coefficients(self)
        theta = math.acos(max(-1.0, min(1.0, rho)))
        kinks = sorted({(k * math.pi / 2 + s) % (2 * math.pi)
                        for k in (1, 3) for s in (0.0, theta)} | {0.0, 2 * math.pi})

        def f(t):
            return float(phi(np.cos(t)) * phi(np.cos(t - theta)))

        total = sum(quad(f, lo, hi, epsabs=0, epsrel=1e-13, limit=200)[0]
                    for lo, hi in zip(kinks[:-1], kinks[1:]) if hi > lo)
        return self._pref * total


def _phi_from_coefficients(kernel: DualKernel):
    A, C, a = kernel.phi.A, kernel.phi.C, kernel.phi.alpha
    return lambda z: np.where(z > 0, A, C) * np.abs(z) ** a


# -- Laplace map ---------------------------------------------------------------------------


def _hyperplane_basis(B: int) -> np.ndarray:
    """Orthonormal B x (B-1) basis of the zero-sum hyperplane (range of G)."""
    # eigh sorts ascending: eigenvalue 0 (the vector 1) first, then B-1 ones
    return np.linalg.eigh(np.eye(B) - 1.0 / B)[1][:, 1:]


@dataclass(frozen=True)
class LaplaceGrid:
    """Trapezoid nodes in ``y = log s`` for the Laplace integral (fixed, so that a finite
    difference of the discrete map is the derivative of a smooth function)."""

    y: np.ndarray
    h: float


#: step in y = log s. The integrand is analytic in a strip around the real y axis (nearest
#: singularities: det(I + 2 s S) = 0 at Im y = pi); the trapezoid error ~ exp(-2 pi d / h).
#: h = 0.5 already gives ~1e-13 (B = 5, 8, relu, alpha_relu:1.5 and 2, identity, random and
#: ill-conditioned Sigma with eigenvalues over 6 decades); h = 0.25 is at rounding level (1e-15).
Y_STEP = 0.25
#: relative size below which the integrand tails are dropped
TAIL = 1e-18


def laplace_grid(eigs: np.ndarray, alpha: float, B: int, step: float = Y_STEP) -> LaplaceGrid:
    """Nodes covering both tails: the integrand in y is ``~ (s lmax)^alpha`` for small s and
    ``~ prod_k (2 s l_k)^{-1/2} <= (2 s lmin)^{-(B-1)/2}`` for large s."""
    lmax, lmin = float(np.max(eigs)), float(np.min(eigs))
    if not lmin > 0:
        raise ValueError("G Sigma G must be positive definite on the zero-sum hyperplane")
    y_lo = math.log(TAIL) / alpha - math.log(lmax)
    y_hi = -2.0 * math.log(TAIL) / (B - 1) - math.log(2.0 * lmin)
    n = int(math.ceil((y_hi - y_lo) / step))
    return LaplaceGrid(y_lo + step * np.arange(n + 1), step)


def _centred_eigs(Sigmas: np.ndarray):
    """Eigen-decomposition of ``S = G Sigma G`` restricted to the hyperplane.

    S is singular (S 1 = 0); working in an orthonormal basis Q of 1^perp avoids a spurious
    eigenvalue ~1e-16 (possibly negative) that would enter log(1 + 2 s l) at s ~ 1e8.
    """
    B = Sigmas.shape[-1]
    Q = _hyperplane_basis(B)
    Sh = np.einsum("ia,...ij,jb->...ab", Q, Sigmas, Q)
    Sh = (Sh + np.swapaxes(Sh, -1, -2)) / 2
    lam, V = np.linalg.eigh(Sh)
    U = np.einsum("ia,...ab->...ib", Q, V)
    return lam, U


def _laplace_batch(Sigmas: np.ndarray, kernel: DualKernel, grid: LaplaceGrid) -> np.ndarray:
    """``V_Bphi`` for a stack of covariances (k, B, B) on a fixed y grid (paper Thm 2):

        V_Bphi(Sigma) = B^a / Gamma(a) Int ds s^{a-1} V_phi(S (I + 2 s S)^{-1})
                                                      / sqrt(det(I + 2 s S))
    """
    a = kernel.phi.alpha
    k, B, _ = Sigmas.shape
    lam, U = _centred_eigs(Sigmas)  # (k, B-1), (k, B, B-1)
    s = np.exp(grid.y)  # (n,)
    # S (I + 2 s S)^{-1} = U diag(l / (1 + 2 s l)) U^T
    two_sl = 2.0 * s[None, :, None] * lam[:, None, :]  # (k, n, B-1)
    d = lam[:, None, :] / (1.0 + two_sl)
    # log det(I + 2 s S) with log1p: the small-s end needs it
    logdet = np.sum(np.log1p(two_sl), axis=-1)  # (k, n)
    weight = grid.h * np.exp(a * grid.y[None, :] - 0.5 * logdet)  # s^{a-1} ds = s^a dy
    M = np.einsum("kia,kna,kja->knij", U, d, U)  # (k, n, B, B)
    diag = np.einsum("knii->kni", M)
    iu, ju = np.triu_indices(B, 1)
    mij = M[..., iu, ju]
    norm = np.sqrt(diag[..., iu] * diag[..., ju])
    Kij = kernel(mij / norm)
    V = np.empty((k, B, B))
    scale = np.exp(a * math.log(B) - gammaln(a))
    off = scale * np.einsum("kn,knp->kp", weight, norm**a * Kij)
    V[:, iu, ju] = off
    V[:, ju, iu] = off
    V[:, np.arange(B), np.arange(B)] = scale * kernel.second_moment * np.einsum(
        "kn,kni->ki", weight, diag**a
    )
    return V


def laplace_map(Sigma, act, *, step: float = Y_STEP, grid: LaplaceGrid | None = None) -> np.ndarray:
    """``V_Bphi(Sigma) = E[Bphi(h) Bphi(h)^T]``, ``h ~ N(0, Sigma)``, by the Laplace method
    (paper Thm 2); ``phi`` positive-homogeneous of degree ``alpha > 0``.

    ``Sigma`` is B x B symmetric with ``G Sigma G`` positive definite on the zero-sum
    hyperplane (a stack (k, B, B) is accepted too). Accuracy ~1e-14 relative.
    """
    kernel = act if isinstance(act, DualKernel) else _kernel(act)
    S = np.asarray(Sigma, dtype=float)
    single = S.ndim == 2
    S = S[None] if single else S
    B = S.shape[-1]
    if B < 3:
        raise ValueError("batch size B >= 3 needed")
    if grid is None:
        lam, _ = _centred_eigs(S)
        grid = laplace_grid(lam, kernel.phi.alpha, B, step)
    # the kernel quadrature holds (matrices x y nodes x pairs x arc nodes) doubles at once
    per_matrix = len(grid.y) * B * (B - 1) // 2 * len(kernel._u)
    chunk = max(1, _CHUNK_ELEMENTS // per_matrix)
    out = np.concatenate(
        [_laplace_batch(S[i : i + chunk], kernel, grid) for i in range(0, len(S), chunk)]
    )
    return out[0] if single else out


_CHUNK_ELEMENTS = 2_000_000
_KERNELS: dict = {}


def _kernel(act) -> DualKernel:
    act = _as_activation(act)
    key = act.key
    if key not in _KERNELS:
        _KERNELS[key] = DualKernel(act)
    return _KERNELS[key]


# -- fixed point ---------------------------------------------------------------------------


def bsb1_fixed_point(act, B: int) -> tuple[float, float]:
    """``(q*, c*)`` of ``Sigma* = q*((1 - c*) I + c* 11^T)``.

    One application of the map to the identity: ``G I G = G`` is isotropic on the hyperplane,
    so ``V_Bphi(I)`` is already the BSB1 fixed point (THEORY.md). Raises if the result is not
    BSB1 (which would mean the map is wrong).
    """
    V = laplace_map(np.eye(B), act)
    q = float(np.mean(np.diag(V)))
    off = V[~np.eye(B, dtype=bool)]
    qc = float(np.mean(off))
    if np.max(np.abs(np.diag(V) - q)) > 1e-12 * abs(q) or np.max(np.abs(off - qc)) > 1e-12 * abs(q):
        raise RuntimeError("V_Bphi(I) is not BSB1: map inaccurate")
    return q, qc / q


def bsb1_matrix(q: float, c: float, B: int) -> np.ndarray:
    return q * ((1.0 - c) * np.eye(B) + c * np.ones((B, B)))


# -- symmetric matrices --------------------------------------------------------------------


def sym_basis(B: int) -> np.ndarray:
    """Orthonormal (Frobenius) basis of Sym(B): ``E_ii``, then ``(E_ij + E_ji)/sqrt 2``, i < j.
    Shape (B(B+1)/2, B, B)."""
    mats = []
    for i in range(B):
        E = np.zeros((B, B))
        E[i, i] = 1.0
        mats.append(E)
    r = 1.0 / math.sqrt(2.0)
    for i, j in zip(*np.triu_indices(B, 1)):
        E = np.zeros((B, B))
        E[i, j] = E[j, i] = r
        mats.append(E)
    return np.array(mats)


def svec(X: np.ndarray) -> np.ndarray:
    """Coordinates of symmetric X (..., B, B) in :func:`sym_basis`."""
    B = X.shape[-1]
    iu, ju = np.triu_indices(B, 1)
    return np.concatenate([np.einsum("...ii->...i", X), math.sqrt(2.0) * X[..., iu, ju]], axis=-1)


def smat(v: np.ndarray, B: int) -> np.ndarray:
    """Inverse of :func:`svec`."""
    return np.tensordot(v, sym_basis(B), axes=([-1], [0]))


def _orthonormal(cols: np.ndarray, rank: int) -> np.ndarray:
    u, sv, _ = np.linalg.svd(cols, full_matrices=False)
    if rank < len(sv) and sv[rank] > 1e-10 * sv[0]:
        raise RuntimeError("spanning set has larger rank than expected")
    return u[:, :rank]


def invariant_subspaces(B: int) -> dict[str, np.ndarray]:
    """Orthonormal bases (columns, in svec coordinates) of the four invariant subspaces of
    Sym(B) under simultaneous permutations, mutually orthogonal and together spanning Sym(B):

    * ``kernel`` = {v 1^T + 1 v^T} = {Sigma : G Sigma G = 0}, dim B;
    * ``G``      = span(G), dim 1;
    * ``L``      = {G diag(v) G : sum v = 0}, dim B-1;
    * ``M``      = {zero diagonal, zero row sums}, dim B(B-3)/2.
    """
    if B < 4:
        raise ValueError("B >= 4 needed for the four-space decomposition")
    G = np.eye(B) - 1.0 / B
    one = np.ones(B)
    I = np.eye(B)
    ker = np.array([svec(np.outer(I[i], one) + np.outer(one, I[i])) for i in range(B)]).T
    gsp = svec(G)[:, None] / np.linalg.norm(svec(G))
    lsp = np.array([svec(G @ np.diag(I[i] - 1.0 / B) @ G) for i in range(B)]).T
    # M: zero-diagonal, zero-row-sum matrices = null space of the linear constraints
    D = B * (B + 1) // 2
    basis = sym_basis(B)
    constraints = np.concatenate([
        np.array([[basis[k][i, i] for k in range(D)] for i in range(B)]),
        np.array([[basis[k][i].sum() for k in range(D)] for i in range(B)]),
    ])
    _, sv, vt = np.linalg.svd(constraints)
    rank = int(np.sum(sv > 1e-10 * sv[0]))
    msp = vt[rank:].T
    spaces = {
        "kernel": _orthonormal(ker, B),
        "G": gsp,
        "L": _orthonormal(lsp, B - 1),
        "M": msp,
    }
    dims = {"kernel": B, "G": 1, "L": B - 1, "M": B * (B - 3) // 2}
    for name, Q in spaces.items():
        if Q.shape[1] != dims[name]:
            raise RuntimeError(f"subspace {name} has dimension {Q.shape[1]}, not {dims[name]}")
    allq = np.concatenate(list(spaces.values()), axis=1)
    if np.max(np.abs(allq.T @ allq - np.eye(D))) > 1e-12:
        raise RuntimeError("invariant subspaces are not an orthonormal decomposition")
    return spaces


# -- Jacobian ------------------------------------------------------------------------------

#: central-difference stencils f'(0) ~ sum_k w_k f(k h) / h, by order
STENCILS = {
    2: ((-1, -1.0 / 2), (1, 1.0 / 2)),
    4: ((-2, 1.0 / 12), (-1, -8.0 / 12), (1, 8.0 / 12), (2, -1.0 / 12)),
    6: ((-3, -1.0 / 60), (-2, 9.0 / 60), (-1, -45.0 / 60), (1, 45.0 / 60), (2, -9.0 / 60),
        (3, 1.0 / 60)),
}
#: default step relative to s* = q*(1 - c*), the eigenvalue of G Sigma* G on the hyperplane
#: (the map is singular where G Sigma G degenerates, so s* sets the scale of its derivatives).
#: Error = truncation ~ h^order + rounding ~ 1e-15 / h; scanning h for relu at B = 5, 8
#: against the closed forms: order 4 is best (~1e-12 abs. in lambda_L, lambda_M) for
#: h/s* in [1e-3, 2e-3], order 6 (~1e-13) for h/s* in [5e-3, 1e-2].
H_REL = {2: 1e-5, 4: 2e-3, 6: 7e-3}

_JACOBIANS: dict = {}


def forward_jacobian(act, B: int, h: float | None = None, order: int = 4) -> np.ndarray:
    """Matrix of ``Delta -> dV_Bphi/dSigma[Delta]`` at ``Sigma*`` in :func:`sym_basis`
    (``J[a, b] = <E_a, dV[E_b]>``, size B(B+1)/2), by a central difference of the given
    order (default 4th) with step ``h`` (default ``H_REL[order] * q*(1 - c*)``).

    The y grid of the Laplace integral is fixed at ``Sigma*`` for all stencil points, so the
    difference quotient differentiates one smooth discrete map (moving nodes would add
    quadrature noise of size eps_quad / h). Cached; a copy is returned.
    """
    act = _as_activation(act)
    kernel = _kernel(act)
    stencil = STENCILS[order]
    q, c = bsb1_fixed_point(act, B)
    h = H_REL[order] * q * (1.0 - c) if h is None else float(h)
    key = (act.key, B, h, order)
    if key not in _JACOBIANS:
        Sstar = bsb1_matrix(q, c, B)
        lam, _ = _centred_eigs(Sstar[None])
        grid = laplace_grid(lam[0], kernel.phi.alpha, B)
        basis = sym_basis(B)
        pts = np.array([Sstar + k * h * E for E in basis for k, _ in stencil])
        V = laplace_map(pts, kernel, grid=grid).reshape(len(basis), len(stencil), B, B)
        coef = np.array([w for _, w in stencil])
        dV = np.einsum("s,bsij->bij", coef, V) / h  # (basis b, B, B)
        _JACOBIANS[key] = svec(dV).T  # column b = image of basis element b
    return _JACOBIANS[key].copy()


# -- spectrum ------------------------------------------------------------------------------


@dataclass
class Eigenspace:
    """One invariant subspace and the Jacobian's eigenvalue(s) on it.

    ``eigenvalue`` is the mean of the eigenvalues of the compressed block ``Q^T J Q``;
    ``spread`` = max - min of those (0 in exact arithmetic, by Schur's lemma: it measures
    the finite-difference error); ``leak`` = norm of the block's coupling to the other
    subspaces of ``H`` (also 0 in exact arithmetic). For the kernel, ``eigenvalue`` is 0 by
    construction and ``spread = leak = ||J Q_ker||`` (0 in exact arithmetic).
    ``raw_multiplicity`` counts the eigenvalues of the full Jacobian within ``tol`` of
    ``eigenvalue`` (equal eigenvalues on different spaces are counted for each, e.g.
    linear phi has lambda_L = lambda_M, and the kernel and G share 0).
    Iterates as ``(space, dim, eigenvalue)``.
    """

    space: str
    dim: int
    eigenvalue: float
    spread: float
    leak: float
    raw_multiplicity: int
    eigenvalues: np.ndarray = field(repr=False)

    def __iter__(self):
        return iter((self.space, self.dim, self.eigenvalue))


def forward_spectrum(
    act, B: int, h: float | None = None, order: int = 4, tol: float = 1e-6
) -> list[Eigenspace]:
    """Forward eigenvalues per invariant subspace (kernel, G, L, M) at the BSB1 point.

    Since V_Bphi depends on Sigma only through G Sigma G, ``J = J P`` with ``P X = G X G``
    (orthogonal projector onto H = G-space + L + M), so ``J`` kills the kernel and in the
    basis (kernel, H) is block upper-triangular ``[[0, *], [0, P J P]]``; ``P J P`` commutes
    with permutations and is block-diagonal on G, L, M, a multiple of identity on each
    (distinct irreducible representations of S_B, B >= 4). The eigenvalue of each space is
    read from its block; the raw eigenvalues (:func:`forward_eigenvalues`) are matched to
    it within ``tol`` as a cross-check of the multiplicities.
    """
    J = forward_jacobian(act, B, h, order)
    raw = np.sort(_real_eigvals(J))
    spaces = invariant_subspaces(B)

    def count(value):
        return int(np.sum(np.abs(raw - value) <= tol))

    names = ["G", "L", "M"]
    kerval = float(np.linalg.norm(J @ spaces["kernel"]))
    out = [Eigenspace("kernel", B, 0.0, kerval, kerval, count(0.0), np.zeros(B))]
    for n in names:
        Q = spaces[n]
        block = Q.T @ J @ Q
        ev = _real_eigvals(block)
        others = np.concatenate([spaces[m] for m in names if m != n], axis=1)
        leak = float(max(np.linalg.norm(others.T @ J @ Q), np.linalg.norm(Q.T @ J @ others)))
        value = float(np.mean(ev))
        out.append(Eigenspace(n, Q.shape[1], value, float(ev.max() - ev.min()), leak,
                              count(value), np.sort(ev)))
    return out


def _real_eigvals(M: np.ndarray) -> np.ndarray:
    """Eigenvalues of a matrix that is real-diagonalisable up to finite-difference noise."""
    ev = np.linalg.eigvals(M)
    if np.max(np.abs(ev.imag), initial=0.0) > 1e-6 * max(1.0, float(np.max(np.abs(ev)))):
        raise RuntimeError(f"unexpected complex eigenvalues: {ev}")
    return ev.real


def forward_eigenvalues(act, B: int, h: float | None = None, order: int = 4) -> np.ndarray:
    """All B(B+1)/2 eigenvalues of the Jacobian (numpy.linalg.eigvals), sorted; imaginary
    parts (finite-difference noise, checked small) are dropped."""
    return np.sort(_real_eigvals(forward_jacobian(act, B, h, order)))


def cluster_eigenvalues(ev, tol: float = 1e-6) -> list[tuple[float, int, float]]:
    """Group sorted eigenvalues whose consecutive gaps are below ``tol``:
    ``[(mean, multiplicity, max - min), ...]``."""
    ev = np.sort(np.asarray(ev, dtype=float))
    groups: list[list[float]] = [[ev[0]]]
    for x in ev[1:]:
        if x - groups[-1][-1] <= tol:
            groups[-1].append(x)
        else:
            groups.append([x])
    return [(float(np.mean(g)), len(g), float(max(g) - min(g))) for g in groups]


# -- backward operator ---------------------------------------------------------------------


def _homogeneous_derivative(act, hom: _HomogeneousPhi):
    """``phi'`` from ``act.numpy_derivative``, re-checked to be homogeneous of degree
    ``alpha - 1`` (as :func:`_homogeneous_phi` checks ``phi``)."""
    act = _as_activation(act)

    def dphi(z):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(act.numpy_derivative(z), dtype=float) * np.ones_like(z)

    z = np.array([0.3, 1.7, 4.0, -0.3, -1.7, -4.0])
    a = hom.alpha - 1.0
    base = np.where(z > 0, dphi(np.array([1.0]))[0], dphi(np.array([-1.0]))[0]) * np.abs(z) ** a
    for t in (0.5, 3.0):
        if not np.allclose(dphi(t * z), t**a * base, rtol=1e-12, atol=1e-300):
            raise ValueError(f"{hom.name}: phi' is not homogeneous of degree {a} numerically")
    return dphi


def _chi_moment(B: int, e: float) -> float:
    """``E[|x|^e]`` for ``|x|^2 ~ chi^2_{B-1}``."""
    n = B - 1
    return math.exp(0.5 * e * math.log(2.0) + gammaln((n + e) / 2) - gammaln(n / 2))


class _GaussianPairs:
    """``E[phi'(y1) phi'(y2) y1^p1 y2^p2]`` for a bivariate normal ``y`` (covariance ``C``)
    and ``E[phi'(y)^2 y^p]`` for ``y ~ N(0, var)``, for homogeneous ``phi'`` (degree
    ``alpha - 1``).

    Polar coordinates of the whitened pair, ``y = L R (cos t, sin t)``: the radial part is
    ``E[R^k] = 2^{k/2} Gamma(1 + k/2)`` (``k`` the degree of the integrand), the angular part
    ``1/(2 pi) Int_0^{2 pi} F(L (cos t, sin t)) dt`` is done by adaptive quadrature (QUADPACK)
    on the four arcs between the kinks ``y1 = 0``, ``y2 = 0``. One coordinate:
    ``E|w|^k = 2^{k/2} Gamma((k+1)/2)/sqrt(pi)`` times ``(F(1) + F(-1))/2``.
    """

    def __init__(self, dphi, alpha: float):
        self.dphi, self.alpha = dphi, alpha
        self._cache: dict = {}

    def _f(self, y):
        return float(self.dphi(np.array([float(y)]))[0])

    def two(self, C: np.ndarray, p1: int, p2: int) -> float:
        key = ("two", round(C[0, 0], 15), round(C[0, 1], 15), round(C[1, 1], 15), p1, p2)
        if key in self._cache:
            return self._cache[key]
        from scipy.integrate import quad

        L = np.linalg.cholesky(C)
        k = 2 * (self.alpha - 1) + p1 + p2

        def F(t):
            y1 = L[0, 0] * math.cos(t)
            y2 = L[1, 0] * math.cos(t) + L[1, 1] * math.sin(t)
            return self._f(y1) * self._f(y2) * y1**p1 * y2**p2

        t2 = math.atan2(-L[1, 0], L[1, 1]) % math.pi  # y2 = 0
        cuts = sorted({0.0, math.pi / 2, 3 * math.pi / 2, t2, t2 + math.pi, 2 * math.pi})
        ang = sum(quad(F, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)[0]
                  for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo)
        radial = math.exp(0.5 * k * math.log(2.0) + gammaln(1 + k / 2))
        self._cache[key] = value = radial * ang / (2 * math.pi)
        return value

    def one(self, var: float, p: int) -> float:
        k = 2 * (self.alpha - 1) + p
        if not k > -1:
            raise ValueError("E[phi'(z)^2] diverges (alpha <= 1/2)")
        fp, fm = self._f(1.0) ** 2, self._f(-1.0) ** 2 * (-1) ** p
        absk = math.exp(0.5 * k * math.log(2.0) + gammaln((k + 1) / 2)) / math.sqrt(math.pi)
        return var ** (k / 2) * absk * (fp + fm) / 2


def _gaussian_entry(pairs: _GaussianPairs, C: np.ndarray, c: int, d: int, mono) -> float:
    """``E[phi'(x_c) phi'(x_d) prod_{m in mono} x_m]`` for ``x ~ N(0, C)``.

    Conditioning on ``y = (x_c, x_d)``: the other coordinates of ``mono`` (at most two) are
    Gaussian with mean ``W y`` and covariance ``S``, so their product is replaced by its
    conditional mean, a polynomial in ``y``; what is left is a 1- or 2-D Gaussian integral.
    """
    Y = [c] if c == d else [c, d]
    others = [m for m in mono if m not in Y]
    pw = [sum(1 for m in mono if m == yv) for yv in Y]
    Cyy = C[np.ix_(Y, Y)]
    W = np.linalg.solve(Cyy, C[np.ix_(Y, others)]).T if others else np.zeros((0, len(Y)))
    S = C[np.ix_(others, others)] - W @ C[np.ix_(Y, others)] if others else None
    # polynomial in y: {exponents: coefficient}
    poly: dict = {}
    if not others:
        poly[tuple(pw)] = 1.0
    elif len(others) == 1:
        for r in range(len(Y)):
            e = list(pw)
            e[r] += 1
            poly[tuple(e)] = poly.get(tuple(e), 0.0) + W[0, r]
    else:
        poly[tuple(pw)] = S[0, 1]
        for r1 in range(len(Y)):
            for r2 in range(len(Y)):
                e = list(pw)
                e[r1] += 1
                e[r2] += 1
                poly[tuple(e)] = poly.get(tuple(e), 0.0) + W[0, r1] * W[1, r2]
    total = 0.0
    for e, coef in poly.items():
        if coef == 0.0:
            continue
        if len(Y) == 1:
            total += coef * pairs.one(Cyy[0, 0], e[0])
        else:
            total += coef * pairs.two(Cyy, e[0], e[1])
    return total


_BACKWARD: dict = {}


def backward_operator(act, B: int) -> np.ndarray:
    """Matrix of the backward map ``Pi -> E[J_h^T Pi J_h]`` at ``Sigma*`` in :func:`sym_basis`
    (size B(B+1)/2), for positive-homogeneous ``phi`` of degree ``alpha > 1/2``.

    Every entry ``T_{ab,cd} = E[(J_h)_ca (J_h)_db]`` of the ``B^4`` tensor is computed on its
    own: ``J_h = diag(phi'(z)) sqrt(B)/|G h| (G - u u^T)``, ``G h = sqrt(s) x`` with
    ``x ~ N(0, G)``, ``s = q*(1 - c*)`` from :func:`bsb1_fixed_point`. Homogeneity of ``phi'``
    and the independence of ``|x|`` and ``u = x/|x|`` (Laplace method) turn each of the four
    terms of ``(G_ca - u_c u_a)(G_db - u_d u_b)`` into
    ``E[|x|^-2] E[Q(x)] / E[|x|^e]`` for a Gaussian expectation of a degree-``e`` function
    ``Q`` of four coordinates, done by :func:`_gaussian_entry`. Nothing here uses a sphere
    moment or a derived formula. Cached; a copy is returned.
    """
    act = _as_activation(act)
    key = (act.key, B)
    if key not in _BACKWARD:
        hom = _homogeneous_phi(act)
        a = hom.alpha
        if not a > 0.5:
            raise ValueError(f"{act.name}: E[phi'(z)^2] diverges for alpha <= 1/2")
        pairs = _GaussianPairs(_homogeneous_derivative(act, hom), a)
        q, c = bsb1_fixed_point(act, B)
        s = q * (1.0 - c)
        G = np.eye(B) - 1.0 / B
        pref = B**a / (s * (B - 3))
        e = [2 * (a - 1) + 2 * j for j in range(3)]
        norm = [_chi_moment(B, ej) for ej in e]
        T = np.empty((B, B, B, B))
        for ia, ib, ic, id_ in np.ndindex(B, B, B, B):
            terms = (
                G[ic, ia] * G[id_, ib] * _gaussian_entry(pairs, G, ic, id_, ()) / norm[0]
                - G[ic, ia] * _gaussian_entry(pairs, G, ic, id_, (id_, ib)) / norm[1]
                - G[id_, ib] * _gaussian_entry(pairs, G, ic, id_, (ic, ia)) / norm[1]
                + _gaussian_entry(pairs, G, ic, id_, (ic, ia, id_, ib)) / norm[2]
            )
            T[ia, ib, ic, id_] = pref * terms
        basis = sym_basis(B)
        images = np.einsum("abcd,ncd->nab", T, basis)
        _BACKWARD[key] = svec(images).T  # column n = image of basis element n
    return _BACKWARD[key].copy()


# -- every eigenvalue of an operator on Sym(B) ---------------------------------------------


def _isotypic_bases(B: int) -> dict[str, np.ndarray]:
    """Orthonormal bases (svec columns) of ``K_triv = R 11^T``, ``K_std`` (the rest of the
    kernel-type space ``{v 1^T + 1 v^T}``), ``G``, ``L`` and ``M``."""
    spaces = invariant_subspaces(B)
    one = svec(np.ones((B, B)))
    one = one / np.linalg.norm(one)
    Qk = spaces["kernel"]
    rest = Qk - np.outer(one, one @ Qk)
    return {"K_triv": one[:, None], "K_std": _orthonormal(rest, B - 1), "G": spaces["G"],
            "L": spaces["L"], "M": spaces["M"]}


def operator_spectrum(T: np.ndarray, B: int, tol: float = 1e-6) -> list[Eigenspace]:
    """Every eigenvalue of an operator on Sym(B) that commutes with permutations, with its
    space and dimension (THEORY.md spectrum table; ``T`` in :func:`sym_basis` coordinates).

    The trivial isotypic part ``span(11^T, G)`` and the standard part ``K_std + L`` are
    compressed to their blocks ``[[a, b], [c, d]]`` (kernel-type copy first; on the standard
    part each entry is a multiple of the identity, the scalar read off the trace). If a block
    is triangular within ``tol`` (the forward map kills the kernel, the backward map has its
    range in the hyperplane matrices), ``a`` is the ``kernel`` eigenvalue and ``d`` the ``G``
    or ``L`` one, and the two kernel eigenvalues merge into one entry of dimension ``B``
    when they agree within ``tol``; otherwise both eigenvalues of the block carry the block's
    name. ``M`` is a scalar block. ``spread`` measures the departure of each compressed
    piece from a multiple of the identity, ``leak`` the coupling of its isotypic part to the
    others (both 0 in exact arithmetic); ``raw_multiplicity`` counts the eigenvalues of
    ``T`` itself within ``tol`` of the value.
    """
    Q = _isotypic_bases(B)
    raw = np.sort(_real_eigvals(T))
    parts = {"G": np.hstack([Q["K_triv"], Q["G"]]), "L": np.hstack([Q["K_std"], Q["L"]]),
             "M": Q["M"]}

    def count(value):
        return int(np.sum(np.abs(raw - value) <= tol))

    def leak(name):
        P = parts[name]
        others = np.hstack([parts[m] for m in parts if m != name])
        return float(max(np.linalg.norm(others.T @ T @ P), np.linalg.norm(P.T @ T @ others)))

    out: list[Eigenspace] = []
    kernels = []
    for name, kname, dim in (("G", "K_triv", 1), ("L", "K_std", B - 1)):
        Qk, Qh = Q[kname], Q[name]
        blocks = [[Qk.T @ T @ Qk, Qk.T @ T @ Qh], [Qh.T @ T @ Qk, Qh.T @ T @ Qh]]
        a, d = (float(np.trace(blocks[i][i])) / dim for i in (0, 1))
        spread = float(max(np.linalg.norm(blocks[i][i] - np.eye(dim) * v)
                           for i, v in ((0, a), (1, d))))
        lk = leak(name)
        off = min(np.linalg.norm(blocks[0][1]), np.linalg.norm(blocks[1][0])) / math.sqrt(dim)
        if off <= tol:
            kernels.append((dim, a, spread, lk))
            out.append(Eigenspace(name, dim, d, spread, lk, count(d), np.array([d])))
            continue
        ev = np.sort(_real_eigvals(parts[name].T @ T @ parts[name]))
        for half in (ev[dim:], ev[:dim]):  # larger eigenvalue first
            value = float(np.mean(half))
            out.append(Eigenspace(name, dim, value, float(half.max() - half.min()), lk,
                                  count(value), half))
    QM = Q["M"]
    ev = _real_eigvals(QM.T @ T @ QM)
    value = float(np.mean(ev))
    out.append(Eigenspace("M", QM.shape[1], value, float(ev.max() - ev.min()), leak("M"),
                          count(value), np.sort(ev)))
    if len(kernels) == 2 and abs(kernels[0][1] - kernels[1][1]) <= tol:
        (d1, a1, s1, l1), (d2, a2, s2, l2) = kernels
        value = (d1 * a1 + d2 * a2) / (d1 + d2)
        kernels = [(B, value, max(s1, s2, abs(a1 - a2)), max(l1, l2))]
    head = [Eigenspace("kernel", dim, a, spread, lk, count(a), np.array([a]))
            for dim, a, spread, lk in kernels]
    return head + out


def spectrum(act, B: int, direction: str = "forward", tol: float = 1e-6) -> list[Eigenspace]:
    """:func:`operator_spectrum` of the forward Jacobian (finite differences of the Laplace
    map) or of the backward operator (entrywise Gaussian integrals) at the BSB1 point."""
    if direction == "forward":
        T = forward_jacobian(act, B)
    elif direction == "backward":
        T = backward_operator(act, B)
    else:
        raise ValueError(f"direction must be 'forward' or 'backward' (got {direction!r})")
    return operator_spectrum(T, B, tol)
