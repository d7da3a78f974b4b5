"""The kernel of a wide batch-normalized network on real inputs (THEORY.md "Two integral
transforms" and "Cross-batch kernel").

A layer maps the pre-activation covariance of its inputs to the next one,
``Sigma -> sigma_w^2 E[phi(BN_eps h) phi(BN_eps h)^T]``, ``h ~ N(0, Sigma)``, with batchnorm
``BN_eps h = G h / sqrt(|G h|^2 / B + eps)`` applied to each batch of ``B`` consecutive
inputs on its own (the conventions of :mod:`bnmft.numerics.montecarlo`). Two blocks of the
map are needed: the within-batch block ``V_Bphi(S)`` (:func:`bn_covariance`) and the
cross-batch block ``E[Bphi(h1) Bphi(h2)^T]`` of two batches (:func:`cross_covariance`).
:func:`kernel_matrix` iterates them over all pairs of batches of a data set.

Routes
------
* **Laplace** (``phi`` positive-homogeneous of degree ``a``; paper Thm 2, extended to
  ``eps`` and to two batches, derivation in :func:`cross_covariance`): one integral over the
  Schwinger parameter (within) or two, written in polar form as one over an angle and one
  over a radius (cross), each with the closed-form dual kernel ``V_phi`` inside (the
  arccosine kernel of :func:`bnmft.derive.homogeneous.dual_kernel` for integer ``a``, the
  Gauss-Jacobi arcs of :class:`bnmft.numerics.bruteforce.DualKernel` otherwise). Radius:
  trapezoid rule in ``y = log t`` (the integrand is analytic in a strip around the real
  axis, so the error falls like ``exp(-c/h)``) with fitted geometric tails, the error from
  the difference to the half rule through that exponential model, each pair of a stack on
  its own range (cross blocks: cut where a bound on the rest is below 5% of ``tol``, see
  :func:`_upper_cut`) and refined on its own; angle: nested Fejer rules
  (second kind) of 3, 7, 15, 31 nodes for integer ``a`` (each reuses the nodes of the one
  before), Gauss-Jacobi rules of 4, 6, 9, 14, 21 nodes otherwise, the error from three
  successive rules (safe for geometric and for algebraic convergence), then adaptive Gauss-Kronrod (``scipy.integrate.quad_vec``)
  for the pairs that are still short. Rules are refined until the error is below ``tol``
  times the entry's scale ``sqrt(V_ii V_jj)``; the tests compare every claimed error with
  the distance to a far more accurate computation.
* **Sphere** (any other ``phi``, or as a check): the expectation over the angular central
  Gaussian law of ``G h / |G h|`` (and the radius, for ``eps > 0``) by randomised
  quasi-Monte Carlo (scrambled Sobol points pushed through the normal quantile and the
  range root of ``G Sigma G``), the error claimed being 4 standard errors over independent
  scramblings. The Fourier form of paper Thm 3 is not used: as printed (THEORY.md) the
  matrix inside ``V_phi`` lacks an inverse, and even corrected it needs ``V_phi`` at complex
  covariances and an oscillatory inversion integral, which we could not make accurate.

Degenerate inputs: ``G Sigma G`` is used on its range (eigenvalues below ``RANK_TOL`` of the
largest are dropped), so rank-deficient batches (fewer input dimensions than ``B - 1``) and
batches with one input far larger than the others work; nearly collinear inputs only cost
radius nodes (the range of ``log t`` grows with the log of the condition number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.special import gammaln

from bnmft.derive import InvalidInput

__all__ = [
    "KernelResult",
    "bn_covariance",
    "bn_covariance_sphere",
    "cross_covariance",
    "cross_covariance_sphere",
    "kernel",
    "kernel_matrix",
    "vanilla_kernel",
]

#: Eigenvalues of ``G Sigma G`` below this fraction of the largest are taken as 0.
RANK_TOL = 1e-13
#: Default accuracy asked of each entry, relative to ``sqrt(V_ii V_jj)``.
TOL = 1e-10
#: The Laplace rules are never run looser than this: their error models are checked from
#: here down (tests/test_kernel.py), and coarser rules save little.
LOOSEST = 1e-6
MIN_BATCH_SIZE = 4


# -- activations ------------------------------------------------------------------------------


def _activation(act):
    if isinstance(act, str):
        from bnmft.derive import parse_activation

        return parse_activation(act)
    return act


@dataclass(frozen=True)
class _Dual:
    """``phi = A z^a`` (z > 0), ``C (-z)^a`` (z < 0): the unit dual kernel
    ``K(rho) = E[phi(g1) phi(g2)]`` (unit variances, correlation ``rho``) and ``E[phi(g)^2]``;
    ``V_phi(S)_pq = (S_pp S_qq)^{a/2} K(S_pq / sqrt(S_pp S_qq))``."""

    alpha: float
    A: float
    C: float
    K: object
    second: float
    route: str

    def value(self, cross, dp, dq):
        """``E[phi(x_p) phi(x_q)]`` for ``(x_p, x_q)`` of variances ``dp``, ``dq`` and
        covariance ``cross`` (arrays of one shape).

        ``a = 1``: with ``theta = arccos rho``, ``relu`` gives ``sqrt(dp dq) (sqrt(1 - rho^2) +
        (pi - theta) rho) / (2 pi)`` (``J(rho)/2``, THEORY.md) and ``phi = A relu(z) +
        C relu(-z)`` the sum over quadrants ``(A^2 + C^2) J(rho)/2 + A C J(-rho)`` (the same
        closed form as :func:`bnmft.derive.homogeneous.dual_kernel`, checked in the tests)."""
        dd = dp * dq
        norm = np.sqrt(dd)
        rho = np.clip(cross / np.maximum(norm, 1e-300), -1.0, 1.0)
        if self.alpha == 1.0:
            A, C = self.A, self.C
            th = np.arccos(rho)
            # sqrt(1 - rho^2) from the same rho as arccos: near rho = 1 both have infinite
            # slope and their errors cancel only if they see one rho (J'(1) = 1 is finite)
            root = norm * np.sqrt((1.0 - rho) * (1.0 + rho))
            lin = (A * A + C * C) * (np.pi - th) - 2 * A * C * th
            out = (A + C) ** 2 * root + lin * (norm * rho)
            return out / (2 * np.pi)
        return norm**self.alpha * self.K(rho)

    def value_norm(self, cross, norm):
        """:meth:`value` from the covariance ``cross`` and ``norm = sqrt(dp dq)``, with few
        temporaries (the radial integrand's inner loop). ``a = 1``: the same closed form,
        ``(A + C)^2 / (2 pi) (sqrt(dp dq - cross^2) + (c - theta) cross)`` with ``c = (A^2 +
        C^2) pi / (A + C)^2`` (``norm rho = cross`` up to rounding)."""
        rho = cross / np.maximum(norm, 1e-300)
        np.clip(rho, -1.0, 1.0, out=rho)
        if self.alpha != 1.0:
            return norm**self.alpha * self.K(rho)
        A, C = self.A, self.C
        s2 = (A + C) ** 2
        if s2 > 0:
            lin = np.arccos(rho)
            np.subtract((A * A + C * C) * np.pi / s2, lin, out=lin)
            lin *= cross
            root = 1.0 - rho
            rho += 1.0
            root *= rho
            np.sqrt(root, out=root)
            root *= norm
            root += lin
            root *= s2 / (2 * np.pi)
            return root
        lin = np.arccos(rho)
        lin *= -(A + C) ** 2
        lin += (A * A + C * C) * np.pi
        lin *= rho
        lin *= norm
        root = 1.0 - rho
        rho += 1.0
        root *= rho
        np.sqrt(root, out=root)
        root *= norm * ((A + C) ** 2 / (2 * np.pi))
        lin *= 1.0 / (2 * np.pi)
        root += lin
        return root


    def scaled_norm(self, cross, norm, inv, work):
        """``(U, c)`` with ``c U =`` :meth:`value_norm` ``(cross, norm)``, given also ``inv =
        1 / norm``, without new arrays: ``cross``, ``inv`` and ``work`` (of their shape) are
        overwritten, ``U`` is ``cross``'s memory, ``c`` a number. ``a = 1``: ``U = norm
        (sqrt((1 - rho)(1 + rho)) + (c0 - theta) rho)``, ``rho = cross inv``, ``theta =
        arccos rho``, ``c0 = (A^2 + C^2) pi / (A + C)^2``, ``c = (A + C)^2 / (2 pi)`` (the closed
        form of :meth:`value`); ``A + C = 0``: ``U = cross``, ``c = (A^2 + C^2) / 2``; other
        ``a``: ``(value_norm(cross, norm), 1)`` (a new array)."""
        if self.alpha != 1.0:
            return self.value_norm(cross, norm), 1.0
        A, C = self.A, self.C
        s2 = (A + C) ** 2
        if s2 == 0:
            return cross, (A * A + C * C) / 2.0
        rho = np.multiply(cross, inv, out=inv)
        np.clip(rho, -1.0, 1.0, out=rho)
        lin = np.arccos(rho, out=work)
        np.subtract((A * A + C * C) * np.pi / s2, lin, out=lin)
        lin *= rho
        root = np.subtract(1.0, rho, out=cross)
        rho += 1.0
        root *= rho
        np.sqrt(root, out=root)
        root += lin
        root *= norm
        return root, s2 / (2 * np.pi)


@lru_cache(maxsize=64)
def _dual_of(act) -> _Dual | None:
    hom = act.homogeneous
    if hom is None:
        return None
    import sympy as sp

    from bnmft.derive.homogeneous import dual_kernel
    from bnmft.derive.symbols import c as C_SYM

    from .bruteforce import DualKernel

    a = float(hom.alpha)
    if not a > 0:
        return None  # step: phi(BN h) is a sign pattern, the Laplace weight s^{a-1} diverges
    A, C = float(hom.A), float(hom.C)
    if a.is_integer():
        expr = sp.simplify(dual_kernel(hom, C_SYM))
        from bnmft.derive import numpy_function

        f = numpy_function(C_SYM, expr)
        second = float(expr.subs(C_SYM, 1))

        def K(rho, _f=f):
            rho = np.clip(rho, -1.0, 1.0)
            return np.broadcast_to(_f(rho), rho.shape)

        return _Dual(a, A, C, K, second, "closed-form dual kernel (arccosine family)")
    dk = DualKernel(act)
    return _Dual(a, A, C, dk, dk.second_moment, "dual kernel by Gauss-Jacobi arcs")


# -- results ----------------------------------------------------------------------------------


@dataclass
class KernelResult:
    """A covariance block or kernel matrix with its accuracy.

    ``error[p, q]`` bounds ``|matrix - exact|`` entry by entry (absolute); ``accuracy`` is
    the largest ``error[p, q] / sqrt(V_pp V_qq)`` (relative to the entry's scale), ``route``
    names the method."""

    matrix: np.ndarray
    error: np.ndarray
    route: str
    notes: list = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        d = np.sqrt(np.abs(np.diag(self.matrix))) if self.matrix.shape[0] == self.matrix.shape[1] \
            else None
        if d is None:
            return float(np.max(self.error) / max(np.max(np.abs(self.matrix)), 1e-300))
        scale = np.outer(d, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(scale > 0, self.error / scale, np.where(self.error > 0, np.inf, 0.0))
        return float(np.max(r))


# -- linear algebra ---------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _hyperplane(B: int) -> np.ndarray:
    """Orthonormal B x (B-1) basis of the zero-sum hyperplane (the range of G)."""
    return np.linalg.eigh(np.eye(B) - 1.0 / B)[1][:, 1:]


def _range_root(C: np.ndarray, what: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """``C = F F^T`` on its range for a stack of PSD matrices ``C`` (k, m, m): ``F`` (k, m, r)
    with ``r`` the largest rank in the stack (columns of smaller ranks are 0) and the kept
    eigenvalues ``lam`` (k, r). Eigenvalues below ``RANK_TOL`` times the largest are 0."""
    C = (C + np.swapaxes(C, -1, -2)) / 2
    lam, V = np.linalg.eigh(C)
    top = lam[..., -1:]
    if np.any(~(top > 0)):
        raise InvalidInput(f"a {what} has zero variance after centring (all its inputs equal)")
    keep = lam > RANK_TOL * top
    r = int(np.max(np.sum(keep, axis=-1)))
    lam, V, keep = lam[..., -r:], V[..., -r:], keep[..., -r:]
    lam = np.where(keep, lam, 0.0)
    return V * np.sqrt(lam)[..., None, :], lam


# -- quadrature rules -------------------------------------------------------------------------


def _step(tol: float) -> float:
    """Trapezoid step in ``log t``. The error of the rule falls like ``e(h) ~ exp(-2 pi d /
    h)`` for an integrand analytic in the strip ``|Im y| < d`` (``d ~ 2`` measured: relu,
    alpha_relu:1.5, random and ill-conditioned covariances, B = 4 ... 32), so ``e(h) ~
    e(2h)^2 / I``; the step makes the half rule's error ``~ sqrt(tol / SAFETY)``."""
    return min(0.5, 4.0 * math.pi / math.log(SAFETY / tol))


#: Margin (in log t) of the radial rule's lower end beyond the fitted tail's own needs.
L_MARGIN = 0.5

#: Factor on the error models ``e(h) = e(2h)^2 / I`` (radius) and ``e(G_n) = e(G_m)^{n/m}``
#: (angle, Gauss rules); the tests compare every claimed error with the actual one.
SAFETY = 10.0


def _claimed(delta, scale, power: float = 2.0):
    """Error claimed for the finer of two rules whose results differ by ``delta``: the
    geometric convergence model ``SAFETY |delta|^p / scale^(p-1)``, at least ``|delta|`` once
    the coarse rule is outside the asymptotic regime (``|delta| > scale``), plus rounding."""
    d = np.abs(delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        model = SAFETY * d**power / np.maximum(scale, 1e-300) ** (power - 1.0)
    model = np.where(d > scale, d, model)
    return model + 1e-14 * scale


# -- the Laplace integrals --------------------------------------------------------------------


def _radial(W: np.ndarray, mu: np.ndarray, pp: np.ndarray, qq: np.ndarray, dual: _Dual,
            B: int, eps: float, tol: float, scale=None, h: float | None = None, rows=None,
            steps=None):
    """``I_pq = Int_0^inf t^{a-1} e^{-eps B t / 2} prod_k (1 + t mu_k)^{-1/2}
    V_phi(C'(t))_pq dt`` with ``C'(t) = W diag(1/(1 + t mu)) W^T``, for stacks ``W`` (k, P, r),
    ``mu`` (k, r) >= 0 and pairs ``(pp, qq)`` of rows of ``W``.

    Trapezoid rule in ``y = log t`` from ``t mu_max = e^-L`` to ``t mu_min = e^U`` (mu_min
    the smallest positive ``mu``), plus the geometric tails ``~ e^{a y}`` below and ``~ e^{-r
    y / 2}`` above (r the number of positive ``mu``). Returns ``(I, err)`` (k, npairs), ``err``
    = :func:`_claimed` of the difference between the rule and its half (every other node) + a
    bound on the tails' error; the step is refined (to between h/2 and 0.8 h, from the
    convergence seen) for the elements of the stack still short, until ``err <= tol`` times
    the pair's scale (``scale``, or ``sqrt(I_pp I_qq)``) or ``h < 0.02``; each element's rule runs to its own ``mu_min``, or stops where
    :func:`_upper_cut` bounds the rest (given ``rows`` (k, P), ``scale = rows_p rows_q``).
    ``steps`` (k,), if given, receives the step at which each element was accepted.
    """
    a = dual.alpha
    k, P, r = W.shape
    pos = mu > 0
    nrank = np.sum(pos, axis=-1)  # (k,)
    mumax = np.max(mu, axis=-1)
    mumin = np.min(np.where(pos, mu, np.inf), axis=-1)
    logk = np.log(mumax / mumin)  # (k,): each element's rule ends at its own t mu_min = e^U
    # below t mu_max = e^-L the fitted tail's error (f2 term, claimed in tail_err) is ~
    # growth^2 e^{-(a+2) L}: at this L a few percent of tol (measured: relu, B = 10, 1e-9)
    L = math.log(1.0 / tol) / (a + 2.0) + math.log(float(np.max(nrank)) / 2.0 + a + 1.0) + L_MARGIN
    U = max(3.0, math.log(100.0 / tol) / (float(np.min(nrank)) / 2.0) + 2.0)
    h = _step(tol) if h is None else h
    grid = _grid(pp, qq)
    if grid is not None:  # all pairs (p, q) of two sets of rows: products by broadcasting
        u1, u2 = grid
        prod = (W[:, u1, None, :] * W[:, None, u2, :]).reshape(k, len(pp), r)
    else:
        prod = W[:, pp, :] * W[:, qq, :]  # (k, npairs, r)
    dpp = W * W  # (k, P, r)
    I_out, E_out = np.empty((k, len(pp))), np.empty((k, len(pp)))
    todo = np.arange(k)  # elements not yet within tol: only these go on to the next step
    while True:
        kk = len(todo)
        sel = slice(None) if kk == k else todo  # (no copies on the first step)
        nk = np.ceil((L + logk[sel] + U) / h).astype(np.int64)
        nk += nk % 2  # even: the half rule ends on the same node
        if rows is not None:
            nk, T, cut = _upper_cut(dpp[sel], mu[sel], mumax[sel], pp, qq, nk, L, h, a, eps, B,
                                    dual.second, rows[sel], 0.05 * tol)
        full, half = np.empty((kk, len(pp))), np.empty((kk, len(pp)))
        ends = np.empty((kk, len(pp), 3))  # integrand at the first two and the last node
        d = np.empty((kk, P)) if scale is None else None
        _radial_sums(dual, prod[sel], dpp[sel], mu[sel], mumax[sel], pp, qq, grid, nk, L, h, eps,
                     B, full, half, ends, d)
        nr = nrank[sel]
        g = ends
        # tails. Below: g = e^{a u} (f0 + f1 e^u + O(e^{2u})) (t -> 0 is regular), f0, f1 fitted
        # to the first two nodes, summed on the grid continued down; the f2 term left out is
        # ~ (r/2 + a) e^{-L} times the f1 term (Taylor coefficients of prod (1 + t mu)^{-1/2}).
        # Above: g ~ e^{-r u/2} (e^{-eps B t/2} only helps).
        G0, G1 = g[..., 0] * math.exp(a * L), g[..., 1] * math.exp(a * (L - h))
        e0, e1 = math.exp(-L), math.exp(-L + h)
        f1 = (G1 - G0) / (e1 - e0)
        f0 = G0 - f1 * e0

        def below(step):
            ra, rb = math.exp(-a * step), math.exp(-(a + 1) * step)
            one = f0 * math.exp(-a * L) * ra / (1 - ra)
            two = f1 * math.exp(-(a + 1) * L) * rb / (1 - rb)
            return step * (one + two), step * np.abs(two)

        ru = np.exp(-nr * h / 2.0)[:, None]
        g1 = g[..., -1]
        lo, lo_two = below(h)
        lo2, _ = below(2 * h)
        up = h * g1 * ru / (1 - ru)
        up2 = 2 * h * g1 * ru**2 / (1 - ru**2)
        growth = nr[:, None] / 2.0 + a + 1.0
        up_err = h * np.abs(g1) * math.exp(-U) * growth / (1 - ru)
        if rows is not None:  # rules cut short: no tail added, its bound (twice) claimed
            up, up2, up_err = (np.where(cut[:, None], 0.0, x) for x in (up, up2, up_err))
            up_err += 2.0 * T
        full += lo + up
        half += lo2 + up2
        tail_err = 2.0 * growth * math.exp(-L) * lo_two + up_err
        if scale is None:
            sc = np.sqrt(np.abs(d[:, pp] * d[:, qq]))
        else:
            sc = scale[sel]
        err = _claimed(full - half, sc) + tail_err
        done = np.all(err <= tol * sc, axis=-1) | (h < 0.02)
        I_out[todo[done]], E_out[todo[done]] = full[done], err[done]
        if steps is not None:
            steps[todo[done]] = h
        if np.all(done):
            return I_out, E_out
        # next step from the convergence seen: the half rule's error e(2h) ~ exp(-pi d / h)
        # is |full - half|, and the error claimed at step h' is SAFETY e(2h')^2; h' aims at
        # half the tolerance (between h/2 and 0.8 h; checked again like every step)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.max(np.abs(full - half)[~done] / sc[~done], axis=-1)
            aim = math.log(math.sqrt(tol / (2.0 * SAFETY)))
            shrink = np.where((delta > 0) & (delta < 1), aim / np.log(delta), 2.0)
        todo = todo[~done]
        h = _ladder(h * min(0.8, max(0.5, 1.0 / float(np.max(shrink)))))


def _ladder(h: float) -> float:
    """The largest step ``0.5 * 0.8^m`` not above ``h`` (refined steps from a few values, so
    that pairs starting from the step of a neighbouring angle share their calls)."""
    m = max(0, math.ceil(math.log(h / 0.5) / math.log(0.8) - 1e-9))
    return 0.5 * 0.8**m


def _grid(pp, qq):
    """``(u1, u2)`` if the pairs ``(pp, qq)`` are all ``(p, q)``, ``p`` in ``u1``, ``q`` in
    ``u2``, in row-major order; else None."""
    u1, u2 = np.unique(pp), np.unique(qq)
    if (len(u1) * len(u2) == len(pp) and np.array_equal(pp, np.repeat(u1, len(u2)))
            and np.array_equal(qq, np.tile(u2, len(u1)))):
        return u1, u2
    return None


def _upper_cut(dpp, mu, mumax, pp, qq, nk, L, h, a, eps, B, second, rows, frac):
    """Where each element's rule of :func:`_radial` may stop early: the first even node
    ``c`` (with ``t mu_max >= 1``) at which the bound ``T_pq`` on the rest of the integral,
    and on the rest of the rule and of its half, is below ``frac rows_p rows_q`` for every
    pair. From ``t_c`` on, ``|V_phi(C'(t))_pq| <= second (C'_pp C'_qq)^{a/2}`` at ``t_c``
    (Cauchy-Schwarz, ``C'(t)`` decreasing) and, by convexity of ``log(1 + mu e^y)`` in
    ``y``, ``prod_k (1 + t mu_k)^{-1/2} <= prod_k (1 + t_c mu_k)^{-1/2} (t/t_c)^{-gamma/2}``
    with ``gamma = sum_k t_c mu_k / (1 + t_c mu_k)``, so the integrand in ``y`` is at most
    ``g_c e^{-(gamma/2 - a)(y - y_c)}``: ``T = second (C'_pp C'_qq)^{a/2} w_c / (gamma/2 -
    a)``, ``w_c`` the weight at ``t_c`` (the rule's sums beyond ``c`` are bounded by the same
    ``T``). Returns ``(nk, T, cut)``: the new last nodes, ``T`` at them (0 where not cut)."""
    k = len(nk)
    j = np.arange(int(math.ceil(L / h)), int(np.max(nk)) + 1)
    j = j[j % 2 == 0]  # candidate nodes: even, t mu_max >= 1
    T = np.zeros((k, len(pp)))
    cut = np.zeros(k, dtype=bool)
    if not len(j):
        return nk, T, cut
    t = np.exp(-L + h * j)[None, :] / mumax[:, None]  # (k, nc)
    tm = t[:, :, None] * mu[:, None, :]
    f = 1.0 / (1.0 + tm)
    gamma = np.sum(tm * f, axis=-1)
    w = np.exp(a * np.log(t) - 0.5 * np.sum(np.log1p(tm), axis=-1) - 0.5 * eps * B * t)
    sd = dpp @ np.swapaxes(f, 1, 2)  # C'_pp at the candidates (k, P, nc)
    sd = np.sqrt(sd) if a == 1.0 else sd ** (a / 2.0)
    rate = gamma / 2.0 - a
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(rate > 0, second * w / rate, np.inf)  # (k, nc)
        rel = sd / rows[:, :, None]
    # max_pairs of (rel_p rel_q) <= max_pp rel_p * max_qq rel_q (equal for a grid of pairs)
    worst = np.max(rel[:, np.unique(pp), :], axis=1) * np.max(rel[:, np.unique(qq), :], axis=1)
    ok = (worst * coef <= frac) & (j[None, :] < nk[:, None])
    cut = np.any(ok, axis=-1)
    first = np.argmax(ok, axis=-1)
    new = np.where(cut, j[first], nk)
    ic, jc = np.flatnonzero(cut), first[cut]
    T[cut] = sd[ic[:, None], pp[None, :], jc[:, None]] * sd[ic[:, None], qq[None, :], jc[:, None]] \
        * coef[ic, jc][:, None]
    return new, T, cut


def _radial_sums(dual, prod, dpp, mu, mumax, pp, qq, grid, nk, L, h, eps, B, full, half, ends,
                 d):
    """The trapezoid sums of :func:`_radial`: ``full = h sum_j g_j``, ``half = 2 h sum_{j
    even} g_j`` over the nodes ``u_j = -L + j h``, ``j = 0 .. nk`` of each stack element,
    ``ends`` = ``g`` at ``j = 0, 1, nk``, ``d`` the diagonal ``h sum_j w_j V_phi(C'(t_j))_pp``
    (if not None); filled in place (``grid``: :func:`_grid` of the pairs). The stack is taken
    in order of ``nk``, in slices that stay in cache (a few times faster than whole arrays),
    each on the nodes of its longest element (the others' further nodes weighted 0), in
    arrays allocated once; the weighted sums over the nodes are one matrix product with the
    weights ``(h w_j, 2 h w_j [j even])``."""
    a = dual.alpha
    k = prod.shape[0]
    npairs = len(pp)
    order = np.argsort(nk, kind="stable")
    if grid is not None:  # sqrt(d_p d_q) as an outer product
        u1, u2 = grid
    nmax = int(np.max(nk))
    j = np.arange(nmax + 1)
    u = -L + h * j  # y + log mu_max
    t = np.exp(u)[None, :] / mumax[:, None]  # (k, nodes)
    tm = t[:, :, None] * mu[:, None, :]  # (k, nodes, r)
    fts = np.swapaxes(1.0 / (1.0 + tm), 1, 2)
    logw = a * np.log(t) - 0.5 * np.sum(np.log1p(tm), axis=-1) - 0.5 * eps * B * t
    ew = np.exp(logw)  # the weight of the integrand in y (dy = dt / t)
    ew[j[None, :] > nk[:, None]] = 0.0  # beyond an element's own last node
    step = max(1, _CACHED // (npairs * (nmax + 1)))
    # work arrays kept between calls (fresh arrays of this size cost page faults every time)
    size = min(step, k) * npairs * (nmax + 1)
    if _WORK[0].shape[1] < size:
        _WORK[0] = np.empty((4, size))
    work = _WORK[0]
    for s in range(0, k, step):
        idx = order[s:s + step]
        m = len(idx)
        last = nk[idx]
        n = int(last[-1])
        cross, norm, inv, tmp = (w[:m * npairs * (n + 1)].reshape(m, npairs, n + 1)
                                 for w in work)
        ft = fts[idx, :, :n + 1]
        we = ew[idx, :n + 1]
        np.matmul(prod[idx], ft, out=cross)
        diag = dpp[idx] @ ft  # (m, P, nodes)
        sd = np.sqrt(diag)
        isd = 1.0 / np.maximum(sd, 1e-150)  # a row that vanishes has cross = 0: rho = 0
        if grid is not None:
            g4 = (m, len(u1), len(u2), n + 1)
            np.multiply(sd[:, u1, None, :], sd[:, None, u2, :], out=norm.reshape(g4))
            np.multiply(isd[:, u1, None, :], isd[:, None, u2, :], out=inv.reshape(g4))
        else:
            np.multiply(sd[:, pp, :], sd[:, qq, :], out=norm)
            np.multiply(isd[:, pp, :], isd[:, qq, :], out=inv)
        G, c = dual.scaled_norm(cross, norm, inv, tmp)
        wts = np.empty((m, n + 1, 2))
        wts[:, :, 0] = (c * h) * we
        wts[:, :, 1] = (c * 2 * h) * we
        wts[:, 1::2, 1] = 0.0
        sums = G @ wts  # (m, npairs, 2)
        full[idx] = sums[..., 0]
        half[idx] = sums[..., 1]
        ar = np.arange(m)
        ends[idx, :, 0] = G[..., 0] * (c * we[:, None, 0])
        ends[idx, :, 1] = G[..., 1] * (c * we[:, None, 1])
        ends[idx, :, 2] = G[ar, :, last] * (c * we[ar, last])[:, None]
        if d is not None:
            d[idx] = np.einsum("mpj,mj->mp", diag**a, we) * (h * dual.second)


_CHUNK = 4_000_000  # doubles per intermediate array
#: Doubles per intermediate array of the radial integrand (a slice that stays in cache).
_CACHED = 100_000
#: The radial sums' work arrays (4, size), reused by every call in a process.
_WORK = [np.empty((4, 0))]


def _within_laplace(S: np.ndarray, dual: _Dual, eps: float, tol: float):
    """Within-batch blocks for a stack of covariances (k, B, B); returns (V, err) (k, B, B)
    without the ``sigma_w^2`` factor:

        V_Bphi(S) = (B/2)^a / Gamma(a) Int_0^inf t^{a-1} e^{-eps B t/2}
                    det(I + t S~)^{-1/2} V_phi(S~ (I + t S~)^{-1}) dt,   S~ = G S G,

    from ``(|x|^2/B + eps)^{-a} = Int s^{a-1} e^{-s(|x|^2/B + eps)} ds / Gamma(a)`` and the
    Gaussian tilt ``E[f(x) e^{-s|x|^2/B}] = det(I + 2 s S~/B)^{-1/2} E_{S~(I + 2sS~/B)^{-1}}[f]``
    (``t = 2s/B``; paper Thm 2 at ``eps = 0``)."""
    k, B, _ = S.shape
    tol = min(tol, LOOSEST)
    Q = _hyperplane(B)
    Sh = np.einsum("ia,kij,jb->kab", Q, S, Q)
    F, lam = _range_root(Sh)
    W = np.einsum("ia,kar->kir", Q, F)  # x = W xi, xi ~ N(0, I_r) tilted by diag(lam)
    # in the eigenbasis the tilt is diagonal: C'(t) = W diag(1/(1 + t lam)) W^T
    iu, ju = np.triu_indices(B)
    I, E = _radial(W, lam, iu, ju, dual, B, eps, tol)
    pref = math.exp(dual.alpha * math.log(B / 2.0) - gammaln(dual.alpha))
    V = np.empty((k, B, B))
    Err = np.empty((k, B, B))
    V[:, iu, ju] = V[:, ju, iu] = pref * I
    Err[:, iu, ju] = Err[:, ju, iu] = pref * E
    return V, Err


def _cross_laplace(S11, S12, S22, dual: _Dual, eps: float, tol: float, d1, d2):
    """Cross blocks for stacks (k, B, B), without ``sigma_w^2`` (formula and derivation in
    :func:`cross_covariance`); ``d1``, ``d2`` (k, B) are the diagonals of the two batches'
    within blocks, the scale ``sqrt(d1_i d2_j)`` the error is measured against."""
    k, B, _ = S11.shape
    tol = min(tol, LOOSEST)
    a = dual.alpha
    Q = _hyperplane(B)
    n = B - 1
    C = np.empty((k, 2 * n, 2 * n))
    C[:, :n, :n] = np.einsum("ia,kij,jb->kab", Q, S11, Q)
    C[:, :n, n:] = np.einsum("ia,kij,jb->kab", Q, S12, Q)
    C[:, n:, :n] = np.swapaxes(C[:, :n, n:], 1, 2)
    C[:, n:, n:] = np.einsum("ia,kij,jb->kab", Q, S22, Q)
    F, _ = _range_root(C, "pair of batches")  # (k, 2n, r): (x1, x2) = F xi, xi ~ N(0, I_r)
    Qb = np.zeros((2 * B, 2 * n))
    Qb[:B, :n] = Q
    Qb[B:, n:] = Q
    Wx = np.einsum("pa,kar->kpr", Qb, F)
    ii, jj = np.meshgrid(np.arange(B), np.arange(B), indexing="ij")
    pp, qq = ii.ravel(), B + jj.ravel()
    pref = 2.0 * math.exp(a * math.log(B / 2.0) - 2.0 * gammaln(a / 2.0))
    scale = np.sqrt(np.abs(d1[:, ii.ravel()] * d2[:, jj.ravel()])) / pref  # (k, B*B)
    rows = np.sqrt(np.abs(np.concatenate([d1, d2], axis=1)) / pref)  # scale = rows_p rows_q
    cache: dict = {}
    h0 = _step(tol / 2)

    def start(theta, todo):
        """Each pair's first radial step: the one it was accepted at, at the nearest angle
        already done (the rule converges alike at neighbouring angles), else the default."""
        h = np.full(len(todo), np.nan)
        for other in sorted(cache, key=lambda x: abs(x - theta)):
            free = np.isnan(h) & cache[other][2][todo]
            h[free] = cache[other][3][todo[free]]
        return np.where(np.isnan(h), h0, h)

    def at(theta, idx):
        """Radial integrals at one angle for the pairs ``idx`` (computed once per pair)."""
        if theta not in cache:
            cache[theta] = (np.zeros((k, len(pp))), np.zeros((k, len(pp))),
                            np.zeros(k, dtype=bool), np.full(k, np.nan))
        I, E, done, steps = cache[theta]
        todo = idx[~done[idx]]
        hs = start(theta, todo)
        s1, c1 = math.sin(theta), math.cos(theta)
        for h in np.unique(hs)[::-1]:  # the pairs that start from one step together
            grp = todo[hs == h]
            # tilt s1 |x1|^2 + s2 |x2|^2 = rho xi^T F^T D F xi, D = diag(sin^2 I, cos^2 I)
            Fd = F[grp].copy()
            Fd[:, :n, :] *= s1
            Fd[:, n:, :] *= c1
            R = np.swapaxes(Fd, 1, 2) @ Fd
            mu, Ev = np.linalg.eigh((R + np.swapaxes(R, 1, 2)) / 2)
            mu = np.where(mu > RANK_TOL * mu[:, -1:], mu, 0.0)
            got = np.empty(len(grp))
            I[grp], E[grp] = _radial(Wx[grp] @ Ev, mu, pp, qq, dual, B, eps, tol / 2,
                                     scale[grp], float(h), rows[grp], got)
            steps[grp] = got
            done[grp] = True
        return I[idx], E[idx]

    def rule(m, idx):
        x, w = _angle_rule(m, a)
        vals = [at(float(t), idx) for t in x]
        I = sum(wi * v[0] for wi, v in zip(w, vals))
        E = sum(abs(wi) * v[1] for wi, v in zip(w, vals))
        return I, E

    fine = np.zeros((k, len(pp)))
    err = np.full((k, len(pp)), np.inf)
    active = np.arange(k)
    hist = {}
    for step, m in enumerate(_angle_sizes(a)):
        I, rad_err = rule(m, active)
        full_I = np.zeros((k, len(pp)))
        full_I[active] = I
        hist[step] = full_I
        if step < 2:
            continue
        # Richardson-type estimate from three rules: the last difference times the ratio
        # of the last two differences (capped at 1/2), times 3. Safe for geometric and for
        # algebraic convergence m^-p with p >= 1 (odd B: an endpoint term th^(B-3) log th)
        d1 = np.abs(I - hist[step - 1][active])
        d0 = np.abs(hist[step - 1][active] - hist[step - 2][active])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d0 > 0, np.minimum(d1 / d0, 0.5), np.where(d1 > 0, 0.5, 0.0))
        fine[active] = I
        err[active] = 3.0 * d1 * ratio + rad_err + 1e-14 * scale[active]
        keep = ~np.all(err[active] <= tol * scale[active], axis=-1)
        active = active[keep]
        if not len(active) or step + 1 >= ADAPTIVE_AFTER:
            break
    for j in active:
        # endpoint singularities (odd B, rank-deficient pairs): adaptive Gauss-Kronrod
        # (QUADPACK's 21-point rule, scipy quad_vec) over the angle, its own error estimate
        from scipy.integrate import quad_vec

        one = np.array([j])
        rad: list = []

        def f(theta):
            I, E = at(float(theta), one)
            rad.append(float(np.max(E[0] / np.maximum(scale[j], 1e-300))))
            return (math.sin(theta) * math.cos(theta)) ** (a - 1.0) * I[0]

        goal = max(0.5 * tol, 1e-13) * float(np.min(scale[j]))
        fine[j], qerr = quad_vec(f, 0.0, math.pi / 2, epsabs=goal, epsrel=0.0, norm="max",
                                 limit=40)
        err[j] = qerr + (math.pi / 2) * max(rad) * scale[j] + 1e-14 * scale[j]
    return pref * fine.reshape(k, B, B), pref * err.reshape(k, B, B)


#: Gauss-Jacobi rules in the angle for non-integer ``a``, tried in turn (errors from three
#: successive rules).
ANGLE_RULES = (4, 6, 9, 14, 21, 32)
#: Nested Fejer rules (second kind) in the angle for integer ``a``: interior nodes of
#: ``n = 4, 8, 16, 32``, each rule reusing all nodes of the one before.
FEJER_RULES = (3, 7, 15, 31)
#: Rules tried before the adaptive rule takes over.
ADAPTIVE_AFTER = 5


def _angle_sizes(a: float):
    return FEJER_RULES if float(a).is_integer() else ANGLE_RULES


def _angle_rule(m: int, a: float):
    """The angle rule of ``m`` nodes: Fejer's second rule for integer ``a`` (the weight
    ``(sin th cos th)^{a-1}`` is smooth and goes into the weights), else Gauss-Jacobi."""
    if float(a).is_integer():
        return _fejer_angle(m, a)
    return _jacobi_angle(m, a)


@lru_cache(maxsize=64)
def _fejer_angle(m: int, a: float):
    """``Int_0^{pi/2} (sin th cos th)^{a-1} g(th) dth ~ sum_k w_k g(th_k)`` by Fejer's second
    rule on ``x = 4 th / pi - 1``: the ``m = n - 1`` interior Chebyshev extrema ``x_k = cos(k
    pi / n)``, weights ``w_k = (4 / n) sin(t_k) sum_{j <= n/2} sin((2j - 1) t_k) / (2j - 1)``
    (Davis and Rabinowitz, *Methods of Numerical Integration*, 2.5.5). Exact for polynomials
    of degree ``n - 1`` and, like Clenshaw-Curtis, about as accurate as Gauss with as many
    nodes for integrands analytic near the interval (Trefethen, SIAM Rev. 50, 2008); rules of
    ``n`` and ``2n`` share the ``n - 1`` nodes (``k pi / n`` is bitwise ``2k pi / 2n``)."""
    n = m + 1
    k = np.arange(1, n)
    t = (k * np.pi) / n
    j = np.arange(1, n // 2 + 1)
    w = (4.0 / n) * np.sin(t) * np.sum(np.sin(np.outer(t, 2 * j - 1)) / (2 * j - 1), axis=1)
    th = (np.pi / 4) * (1.0 + np.cos(t))
    return th, w * (np.pi / 4) * (np.sin(th) * np.cos(th)) ** (a - 1.0)


@lru_cache(maxsize=64)
def _jacobi_angle(m: int, a: float):
    """``Int_0^{pi/2} (sin th cos th)^{a-1} g(th) dth ~ sum_k w_k g(th_k)``: Gauss-Jacobi with
    the weight ``(th (pi/2 - th))^{a-1}`` (exact endpoint behaviour for non-integer ``a``)
    and the smooth factor ``(sin th cos th / (th (pi/2 - th)))^{a-1}`` in the weights."""
    from scipy.special import roots_jacobi

    x, w = roots_jacobi(m, a - 1.0, a - 1.0)
    th = (np.pi / 4) * (1.0 + x)
    ratio = np.sin(th) * np.cos(th) / (th * (np.pi / 2 - th))
    return th, w * (np.pi / 4) ** (2 * a - 1) * ratio ** (a - 1.0)


# -- the sphere route (any phi) ---------------------------------------------------------------

#: Scrambled Sobol points per replicate (first try, most) and independent replicates of
#: the sphere route; the points double until 4 standard errors are below the tolerance.
SPHERE_POINTS = 2**11
SPHERE_MAX_POINTS = 2**14
SPHERE_REPLICATES = 16


def _phi_numpy(act):
    f = act.numpy

    def phi(z):
        with np.errstate(invalid="ignore", over="ignore"):
            return np.asarray(f(z), dtype=float) * np.ones_like(z)

    return phi


def _sphere(act, C: np.ndarray, nbatch: int, eps: float, tol: float = 0.0,
            points: int = SPHERE_POINTS, max_points: int = SPHERE_MAX_POINTS,
            replicates: int = SPHERE_REPLICATES, seed: int = 0):
    """``E[phi(y) phi(y)^T]`` for stacks of joint covariances ``C`` (k, P, P) of ``nbatch``
    batches of ``B = P / nbatch``, ``y = G x / sqrt(|G x|^2/B + eps)`` per batch, ``x ~
    N(0, C)``: randomised QMC over the angular central Gaussian law of ``G x / |G x|`` and
    its radius (scrambled Sobol points through the normal quantile and the range root of
    ``G C G``). Returns ``(mean, 4 * stderr)`` over independent scramblings; the points per
    replicate double (up to ``max_points``) until the error is below ``tol sqrt(V_pp V_qq)``."""
    from scipy.special import ndtri
    from scipy.stats import qmc

    k, P, _ = C.shape
    B = P // nbatch
    G = np.eye(B) - 1.0 / B
    Gb = np.kron(np.eye(nbatch), G)
    F, _ = _range_root(Gb @ C @ Gb, "batch")
    r = F.shape[-1]
    phi = _phi_numpy(act)
    while True:
        rng = np.random.default_rng(seed)
        reps = []
        chunk = max(1, 4_000_000 // (points * P))
        for _ in range(replicates):
            u = qmc.Sobol(r, scramble=True, seed=rng).random(points)
            g = ndtri(np.clip(u, 1e-300, 1.0 - 2**-53))
            M = np.empty((k, P, P))
            for a in range(0, k, chunk):
                x = np.einsum("kpr,nr->knp", F[a:a + chunk], g)
                x = x.reshape(len(x), points, nbatch, B)
                x = x - x.mean(axis=-1, keepdims=True)
                y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
                f = phi(y).reshape(len(x), points, P)
                M[a:a + chunk] = np.einsum("knp,knq->kpq", f, f) / points
            reps.append(M)
        reps = np.array(reps)
        mean = reps.mean(axis=0)
        err = 4.0 * reps.std(axis=0, ddof=1) / math.sqrt(replicates)
        d = np.sqrt(np.abs(np.einsum("kii->ki", mean)))
        if np.all(err <= tol * d[:, :, None] * d[:, None, :]) or points >= max_points:
            return mean, err
        points *= 2


# -- public blocks ----------------------------------------------------------------------------


def _check_parameters(epsilon, sigma_w, tol):
    eps, sw = float(epsilon), float(sigma_w)
    if not (math.isfinite(eps) and eps >= 0):
        raise InvalidInput(f"eps must be a finite number >= 0 (got {epsilon!r})")
    if not (math.isfinite(sw) and sw > 0):
        raise InvalidInput(f"sigma_w must be a finite number > 0 (got {sigma_w!r})")
    if not (0 < float(tol) < 1):
        raise InvalidInput(f"tol must be in (0, 1) (got {tol!r})")
    return eps, sw


def _square(S, what: str) -> np.ndarray:
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise InvalidInput(f"{what} must be a square matrix (got shape {S.shape})")
    if S.shape[0] < MIN_BATCH_SIZE:
        raise InvalidInput(f"batch size must be >= {MIN_BATCH_SIZE} (got {S.shape[0]})")
    if not np.all(np.isfinite(S)):
        raise InvalidInput(f"{what} has non-finite entries")
    return S


def _route(act, route: str):
    dual = _dual_of(act)
    if route == "auto":
        return ("laplace", dual) if dual is not None else ("sphere", None)
    if route == "laplace":
        if dual is None:
            raise InvalidInput(f"{act.name}: the Laplace route needs a positive-homogeneous "
                               "phi of degree > 0")
        return "laplace", dual
    if route == "sphere":
        return "sphere", dual
    raise InvalidInput(f"route must be 'auto', 'laplace' or 'sphere' (got {route!r})")


ROUTE_LAPLACE = "Laplace (Schwinger parameter, trapezoid in log t)"
ROUTE_SPHERE = "sphere (randomised QMC over the angular central Gaussian law)"


def bn_covariance(act, Sigma, epsilon=0, sigma_w=1, *, tol: float = TOL, route: str = "auto",
                  full: bool = False):
    """``V_Bphi(Sigma) = sigma_w^2 E[phi(BN_eps h) phi(BN_eps h)^T]``, ``h ~ N(0, Sigma)``
    (B x B), the next layer's covariance of a batch (paper Thm 2 for positive-homogeneous
    ``phi``, extended to ``eps``):

        V = sigma_w^2 (B/2)^a / Gamma(a) Int_0^inf t^{a-1} e^{-eps B t/2}
            det(I + t S)^{-1/2} V_phi(S (I + t S)^{-1}) dt,      S = G Sigma G,

    with the closed dual kernel ``V_phi`` (route ``laplace``; entries to ``tol`` relative to
    ``sqrt(V_ii V_jj)``, by the error estimate of the nested rules); any other ``phi`` by the
    sphere route (``sphere``; error 4 standard errors of scrambled-Sobol replicates). Returns
    the matrix, or a :class:`KernelResult` with the error if ``full``.
    """
    act = _activation(act)
    eps, sw = _check_parameters(epsilon, sigma_w, tol)
    S = _square(Sigma, "Sigma")
    kind, dual = _route(act, route)
    if kind == "laplace":
        V, E = _within_laplace(S[None], dual, eps, tol)
        res = KernelResult(sw * sw * V[0], sw * sw * E[0], ROUTE_LAPLACE)
    else:
        V, E = _sphere(act, S[None], 1, eps, tol)
        res = KernelResult(sw * sw * V[0], sw * sw * E[0], ROUTE_SPHERE)
    return res if full else res.matrix


def bn_covariance_sphere(act, Sigma, epsilon=0, sigma_w=1, **kw):
    """:func:`bn_covariance` by the sphere route (a check of the Laplace route)."""
    return bn_covariance(act, Sigma, epsilon, sigma_w, route="sphere", **kw)


def cross_covariance(act, S11, S12, S22, epsilon=0, sigma_w=1, *, tol: float = TOL,
                     route: str = "auto", full: bool = False):
    """Cross-batch block ``sigma_w^2 E[phi(BN_eps h1) phi(BN_eps h2)^T]`` for
    ``(h1, h2) ~ N(0, [[S11, S12], [S12^T, S22]])``, each batch normalised on its own.

    Derivation (positive-homogeneous ``phi`` of degree ``a``): with ``x_b = G h_b``,
    ``phi(BN_eps h_b) = phi(x_b) (|x_b|^2/B + eps)^{-a/2}`` and
    ``u^{-a/2} = Int_0^inf s^{a/2-1} e^{-s u} ds / Gamma(a/2)``, so

        E = 1/Gamma(a/2)^2 Int Int (s1 s2)^{a/2-1} e^{-eps(s1+s2)}
            E[phi(x1) phi(x2)^T e^{-(s1|x1|^2 + s2|x2|^2)/B}] ds1 ds2.

    The Gaussian tilt by ``e^{-x^T T x}`` (``T = diag(s1 I, s2 I)/B``) multiplies by
    ``det(I + 2 T C)^{-1/2}`` and replaces the joint covariance ``C`` of ``(x1, x2)`` by
    ``C' = (C^{-1} + 2T)^{-1}`` (on the range of ``C``: ``C = F F^T``, ``C' = F (I + 2 F^T T
    F)^{-1} F^T``). Polar coordinates ``s1 = rho sin^2 th``, ``s2 = rho cos^2 th``
    (``ds1 ds2 = 2 rho sin th cos th drho dth``) and ``t = 2 rho / B`` give

        E = 2 (B/2)^a / Gamma(a/2)^2 Int_0^{pi/2} (sin th cos th)^{a-1} dth
            Int_0^inf t^{a-1} e^{-eps B t/2} prod_k (1 + t mu_k)^{-1/2} V_phi(C'(t))_{x1, x2} dt,

    ``mu_k(th)`` the eigenvalues of ``F^T D_th F``, ``D_th = diag(sin^2 th I, cos^2 th I)``:
    at each angle the inner integral is the within-batch integral of :func:`bn_covariance`
    for the ``2(B-1)``-dimensional pair. Two batches that coincide (``S11 = S12 = S22``)
    give back ``V_Bphi(S11)``, by ``Int_0^{pi/2} 2 (sin cos)^{a-1} dth = Gamma(a/2)^2 /
    Gamma(a)``. Angle by nested Fejer or Gauss-Jacobi rules (error from three successive rules),
    radius as in :func:`bn_covariance`.
    """
    act = _activation(act)
    eps, sw = _check_parameters(epsilon, sigma_w, tol)
    S11, S22 = _square(S11, "S11"), _square(S22, "S22")
    S12 = np.asarray(S12, dtype=float)
    if S12.shape != S11.shape or S22.shape != S11.shape:
        raise InvalidInput("S11, S12, S22 must be B x B matrices of one size")
    kind, dual = _route(act, route)
    if kind == "laplace":
        d1 = np.einsum("kii->ki", _within_laplace(S11[None], dual, eps, tol)[0])
        d2 = np.einsum("kii->ki", _within_laplace(S22[None], dual, eps, tol)[0])
        V, E = _cross_laplace(S11[None], S12[None], S22[None], dual, eps, tol, d1, d2)
        res = KernelResult(sw * sw * V[0], sw * sw * E[0], ROUTE_LAPLACE)
    else:
        B = S11.shape[0]
        C = np.block([[S11, S12], [S12.T, S22]])
        V, E = _sphere(act, C[None], 2, eps, tol)
        res = KernelResult(sw * sw * V[0, :B, B:], sw * sw * E[0, :B, B:], ROUTE_SPHERE)
    return res if full else res.matrix


def cross_covariance_sphere(act, S11, S12, S22, epsilon=0, sigma_w=1, **kw):
    """:func:`cross_covariance` by the sphere route (a check of the Laplace route)."""
    return cross_covariance(act, S11, S12, S22, epsilon, sigma_w, route="sphere", **kw)


# -- vanilla (no batchnorm) -------------------------------------------------------------------

#: Trapezoid step and half-width (in standard deviations) of the vanilla route for phi
#: that is not homogeneous; the half rule (step 2h) is nested.
GAUSS_STEP = 0.25
GAUSS_WIDTH = 8.5


def _vanilla_layer(act, K: np.ndarray, sw: float, sb: float, dual):
    """``sigma_w^2 V_phi(K) + sigma_b^2`` (Poole et al. 2016; ``numerics/vanilla.py``):
    closed dual kernel for homogeneous phi (exact to rounding), else the trapezoid rule on
    ``|z| <= 8.5`` (Gaussian weight below 1e-15 beyond) in the Cholesky coordinates of each
    pair, ``u1 = sqrt(q1) z1``, ``u2 = sqrt(q2)(c z1 + sqrt(1-c^2) z2)``. For an analytic
    phi the trapezoid error falls like ``exp(-2 pi d / h)`` and the error claimed is the
    model :func:`_claimed` of the difference to the half rule; for a phi with kinks that
    difference itself (second-order convergence)."""
    q = np.clip(np.diag(K), 0.0, None)
    d = np.sqrt(q)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.clip(np.where(np.outer(d, d) > 0, K / np.outer(d, d), 0.0), -1.0, 1.0)
    if dual is not None:
        V = dual.value(K, q[:, None] * np.ones_like(K), q[None, :] * np.ones_like(K))
        err = 1e-15 * np.sqrt(np.outer(V.diagonal(), V.diagonal()))
        return sw * sw * V + sb * sb, sw * sw * err
    phi = _phi_numpy(act)
    iu, ju = np.triu_indices(len(K))
    # singularities of phi(sqrt(q) z) off the real axis come closer as q grows: step ~ q^-1/2
    hz = GAUSS_STEP / max(1.0, math.sqrt(float(np.max(q))))
    m = int(math.ceil(GAUSS_WIDTH / hz / 2)) * 2
    z = hz * np.arange(-m, m + 1)
    w = hz * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    w2 = 2 * hz * np.exp(-z[::2] ** 2 / 2) / math.sqrt(2 * math.pi)
    fine = np.empty(len(iu))
    half = np.empty(len(iu))
    step = max(1, 400_000 // (len(z) ** 2))
    for s in range(0, len(iu), step):
        i, j = iu[s:s + step], ju[s:s + step]
        cc = c[i, j]
        f1 = phi(d[i, None] * z[None, :])
        u2 = d[j, None, None] * (cc[:, None, None] * z[None, :, None]
                                 + np.sqrt(1 - cc * cc)[:, None, None] * z[None, None, :])
        f2 = phi(u2)
        fine[s:s + step] = (f1 * (f2 @ w)) @ w
        half[s:s + step] = (f1[:, ::2] * (f2[:, ::2, ::2] @ w2)) @ w2
    V = np.empty_like(K)
    D = np.empty_like(K)
    V[iu, ju] = V[ju, iu] = fine
    D[iu, ju] = D[ju, iu] = fine - half
    scale = np.sqrt(np.abs(np.outer(V.diagonal(), V.diagonal())))
    err = np.abs(D) if act.kinks else _claimed(D, scale)
    return sw * sw * V + sb * sb, sw * sw * err


# -- the depth-L kernel -----------------------------------------------------------------------


def _check_inputs(X, batch_size, depth, batchnorm: bool) -> tuple[np.ndarray, int, int]:
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise InvalidInput(f"inputs must be a numeric array (got dtype {X.dtype})")
    if np.iscomplexobj(X):
        raise InvalidInput("inputs must be real (got a complex array)")
    if X.ndim != 2:
        raise InvalidInput(f"inputs must be an n x d matrix (got {X.ndim} dimensions, "
                           f"shape {X.shape})")
    n, dim = X.shape
    if n == 0 or dim == 0:
        raise InvalidInput(f"inputs are empty (shape {X.shape})")
    X = X.astype(float)
    bad = ~np.all(np.isfinite(X), axis=1)
    if np.any(bad):
        raise InvalidInput(f"input row {int(np.argmax(bad))} has NaN or infinite entries")
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise InvalidInput(f"depth must be an integer >= 1 (got {depth!r})")
    if not batchnorm:
        return X, n if batch_size is None else int(batch_size), int(depth)
    if isinstance(batch_size, bool) or batch_size is None or int(batch_size) != batch_size:
        raise InvalidInput(f"batch size must be an integer (got {batch_size!r})")
    B = int(batch_size)
    if B < MIN_BATCH_SIZE:
        raise InvalidInput(f"batch size must be >= {MIN_BATCH_SIZE} (got {B}); B < 4 is "
                           "degenerate (B = 2 leaves one direction, +-1 after batchnorm; the "
                           "theory and every other command use B >= 4)")
    if n % B:
        raise InvalidInput(f"the number of inputs ({n}) is not a multiple of the batch size "
                           f"({B})")
    for b in range(n // B):
        xb = X[b * B:(b + 1) * B]
        if np.all(xb == xb[0]):
            raise InvalidInput(f"batch {b} (inputs {b * B} to {(b + 1) * B - 1}) has zero "
                               "variance: all its inputs are equal")
    return X, B, int(depth)


#: Block pairs per task (a chunk of work done at once, locally or on one Dask worker).
PAIRS_PER_TASK = 64


def _layer_tasks(nb: int, per_task: int = PAIRS_PER_TASK):
    pairs = [(b, c) for b in range(nb) for c in range(b + 1, nb)]
    return [pairs[i:i + per_task] for i in range(0, len(pairs), per_task)]


def _task_blocks(K, B, pairs):
    """The batches ``bs``, ``cs`` of a task's pairs and their blocks ``S11, S12, S22``."""
    bs = np.array([p[0] for p in pairs])
    cs = np.array([p[1] for p in pairs])
    blk = lambda i, j: np.array([K[x * B:(x + 1) * B, y * B:(y + 1) * B]  # noqa: E731
                                 for x, y in zip(i, j)])
    return bs, cs, blk(bs, bs), blk(bs, cs), blk(cs, cs)


def _cross_task(act_spec, K, B, pairs, kind, eps, tol, diag):
    """Cross blocks of one task: ``[(b, c, V, E), ...]`` (without ``sigma_w^2``)."""
    bs, cs, S11, S12, S22 = _task_blocks(K, B, pairs)
    return _cross_blocks(act_spec, B, bs, cs, S11, S12, S22, kind, eps, tol, diag[bs],
                         diag[cs])


def _cross_blocks(act_spec, B, bs, cs, S11, S12, S22, kind, eps, tol, d1, d2):
    """:func:`_cross_task` from the blocks themselves (what a worker process is sent)."""
    act = _activation(act_spec)
    if kind == "laplace":
        dual = _dual_of(act)
        V, E = _cross_laplace(S11, S12, S22, dual, eps, tol, d1, d2)
    else:
        C = np.concatenate([np.concatenate([S11, S12], 2),
                            np.concatenate([np.swapaxes(S12, 1, 2), S22], 2)], 1)
        V, E = _sphere(act, C, 2, eps, tol)
        V, E = V[:, :B, B:], E[:, :B, B:]
    return bs, cs, V, E


def _spec_of(act):
    """What a Dask worker needs to rebuild ``act``: its name when that parses back to the
    same activation, else the object itself."""
    try:
        if _activation(act.name).key == act.key:
            return act.name
    except ValueError:
        pass
    return act


def _bn_layer(act, K, B, kind, eps, sw, tol, client=None, desc="layer", pool=None):
    from bnmft.progress import progress

    n = K.shape[0]
    nb = n // B
    blocks = np.array([K[b * B:(b + 1) * B, b * B:(b + 1) * B] for b in range(nb)])
    if kind == "laplace":
        Vw, Ew = _within_laplace(blocks, _dual_of(act), eps, tol)
    else:
        Vw, Ew = _sphere(act, blocks, 1, eps, tol)
    out, err = np.empty_like(K), np.empty_like(K)
    for b in range(nb):
        sl = slice(b * B, (b + 1) * B)
        out[sl, sl], err[sl, sl] = Vw[b], Ew[b]
    diag = np.einsum("kii->ki", Vw)
    tasks = _layer_tasks(nb)
    spec = _spec_of(act)
    if pool is not None:
        from concurrent.futures import as_completed

        futures = []
        for t in tasks:
            bs, cs, S11, S12, S22 = _task_blocks(K, B, t)
            futures.append(pool.submit(_cross_blocks, spec, B, bs, cs, S11, S12, S22, kind,
                                       eps, tol, diag[bs], diag[cs]))
        results = (f.result() for f in progress(as_completed(futures), desc, len(futures)))
    elif client is None:
        results = (_cross_task(act, K, B, t, kind, eps, tol, diag)
                   for t in progress(tasks, desc))
    else:
        Kf, df = client.scatter(K, broadcast=True), client.scatter(diag, broadcast=True)
        futures = [client.submit(_cross_task, spec, Kf, B, t, kind, eps, tol, df, pure=False)
                   for t in tasks]
        from dask.distributed import as_completed

        results = (f.result() for f in progress(as_completed(futures), desc, len(futures)))
    for bs, cs, V, E in results:
        for b, c, v, e in zip(bs, cs, V, E):
            sb, sc = slice(b * B, (b + 1) * B), slice(c * B, (c + 1) * B)
            out[sb, sc], out[sc, sb] = v, v.T
            err[sb, sc], err[sc, sb] = e, e.T
    return sw * sw * out, sw * sw * err


def kernel(act, X, batch_size, depth: int = 1, epsilon=0, sigma_w=1, batchnorm: bool = True,
           sigma_b=0, *, tol: float = TOL, route: str = "auto", scheduler=None,
           workers: int = 1) -> KernelResult:
    """The depth-``L`` kernel of a wide network on the rows of ``X`` (n x d) as a
    :class:`KernelResult` (``matrix`` n x n float64, ``error``, ``accuracy``, ``route``).

    ``Sigma_0 = X X^T / d``; each layer maps ``K -> sigma_w^2 E[phi(BN_eps h) phi(BN_eps
    h)^T]``, ``h ~ N(0, K)``, batchnorm acting on each batch of ``batch_size`` consecutive rows
    (within blocks by :func:`bn_covariance`, cross blocks by :func:`cross_covariance`);
    ``batchnorm=False`` gives the vanilla NNGP recursion ``K -> sigma_w^2 V_phi(K) +
    sigma_b^2`` of the same network (``batch_size`` ignored). ``depth`` layers are applied.
    Each layer is computed to ``tol / depth``; ``error`` adds up each layer's quadrature
    error bound (relative to its entries' scale, times the final entries' scale). How an
    earlier layer's error propagates through the later maps is not bounded; the maps contract
    towards the BSB1 point, and the tests compare depth-2 and depth-3 kernels with ones
    computed at a 1000 times smaller tolerance. ``scheduler``: the address of a Dask
    scheduler (or a ``dask.distributed.Client``); the cross blocks of each layer run there.
    ``workers``: local worker processes for the cross blocks (``concurrent.futures``; the
    same values as one process, each task being computed the same way).
    """
    act = _activation(act)
    eps, sw = _check_parameters(epsilon, sigma_w, tol)
    sb = float(sigma_b)
    if not (math.isfinite(sb) and sb >= 0):
        raise InvalidInput(f"sigma_b must be a finite number >= 0 (got {sigma_b!r})")
    X, B, L = _check_inputs(X, batch_size, depth, batchnorm)
    nw = _workers(workers)
    K = X @ X.T / X.shape[1]
    rel = 0.0
    from bnmft.progress import progress

    if not batchnorm:
        dual = _dual_of(act)
        for _ in progress(range(L), "layers"):
            K, E = _vanilla_layer(act, K, sw, sb, dual)
            d = np.sqrt(np.abs(np.diag(K)))
            rel += float(np.max(E / np.maximum(np.outer(d, d), 1e-300)))
        route_name = ("closed dual kernel" if dual is not None
                      else "trapezoid rule in Gaussian coordinates") + " (no batchnorm)"
    else:
        kind, _ = _route(act, route)
        client = _client(scheduler)
        pool = None
        if nw > 1 and client is None and (X.shape[0] // B) > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(nw)
        try:
            for layer in range(L):
                K, E = _bn_layer(act, K, B, kind, eps, sw, tol / L, client,
                                 f"layer {layer + 1}/{L}", pool)
                d = np.sqrt(np.abs(np.diag(K)))
                rel += float(np.max(E / np.maximum(np.outer(d, d), 1e-300)))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        route_name = ROUTE_LAPLACE if kind == "laplace" else ROUTE_SPHERE
    d = np.sqrt(np.abs(np.diag(K)))
    return KernelResult(K, rel * np.outer(d, d), route_name)


def _workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InvalidInput(f"workers must be an integer >= 1 (got {workers!r})")
    return int(workers)


def _client(scheduler):
    if scheduler is None:
        return None
    try:
        from dask.distributed import Client
    except ImportError as err:  # an optional extra
        raise InvalidInput("--scheduler needs dask.distributed: pip install 'bnmft[dask]'") \
            from err
    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise InvalidInput(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from err


def kernel_matrix(act, X, batch_size, depth: int = 1, epsilon=0, sigma_w=1,
                  batchnorm: bool = True, sigma_b=0, **kw) -> np.ndarray:
    """The n x n float64 kernel matrix of :func:`kernel` (same arguments)."""
    return kernel(act, X, batch_size, depth, epsilon, sigma_w, batchnorm, sigma_b, **kw).matrix


def vanilla_kernel(act, X, depth: int = 1, sigma_w=1, sigma_b=0) -> np.ndarray:
    """The NNGP kernel of the network without batchnorm (:func:`kernel`, ``batchnorm=False``)."""
    return kernel_matrix(act, X, None, depth, 0, sigma_w, False, sigma_b)
