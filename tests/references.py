"""Independent references (to 40 or 60 digits) for the numbers bnmft prints (mpmath only).

Nothing here imports bnmft: every value comes from THEORY.md's closed forms or from a direct
quadrature of the defining sphere integrals, written out below.

* One coordinate: ``z1 = sqrt(B-1) x``, ``x`` with density ``prop. (1 - x^2)^((B-4)/2)`` on
  ``[-1, 1]``, normalised by ``Gamma((B-1)/2) / (Gamma((B-2)/2) sqrt(pi))`` (THEORY.md).
* Two coordinates: density ``prop. Z^((B-5)/2)``, ``Z = B(B-2) - B(z1^2 + z2^2) + (z1-z2)^2``
  (THEORY.md, Thm 7). Completing the square in ``z2``: ``Z = (B-1) (w^2 - (z2 - m)^2)`` with
  ``m = -z1/(B-1)``, ``w^2 = B(B-2)(B-1-z1^2)/(B-1)^2``, so given ``z1``,
  ``z2 = m + w t`` with ``t`` of density ``prop. (1 - t^2)^((B-5)/2)`` on ``[-1, 1]``, and
  ``Int Int Z^((B-5)/2) dz1 dz2 = 2 pi (B(B-2))^((B-4)/2) / (B-3)`` (area integral of a power
  of a quadratic form; a test checks it against a plain quadrature of ``Z^((B-5)/2)``).
* Quantities: ``q* = E[phi(z1)^2]``, ``q* c* = E[phi(z1) phi(z2)]``, the gradient rate from the
  Thm 7 integral as stated, ``depth_scale = 1/log(rate)``, ``max_trainable_depth = 16/log(rate)``.

Quadrature (THEORY.md's hyperspherical form, Thm 4): ``z1 = sqrt(B-1) sin f``,
``z2 = m + w sin g``, so the weights become ``cos^(B-3) f`` and ``cos^(B-4) g``, entire in
the angles. Gauss-Legendre on pieces: unit steps in ``z`` (the laws are close to a unit Gaussian
for large ``B``) and steps of ``pi/10`` in the angle, split at the kinks of phi and at the ``z1``
where a kink of ``phi(z2)`` enters the support of ``z2`` given ``z1`` (the inner integral is
not analytic there). A piece ending where the integrand behaves like a half-integer power is
mapped by ``x = a + (b - a) s^2``, which makes it analytic. The densities are written in logs
(``mp.loggamma`` for the normalisations), so ``B = 10^6`` is as easy as ``B = 8``; pieces of
negligible mass are dropped. Each quadrature reference is computed for a
tier of 40 or 60 digits at two resolutions and raises unless both agree to the tier's digits.

alpha_relu (positive-homogeneous): the radius decouples, and every moment reduces to a
Gaussian orthant moment ``E[X_+^a Y_+^b]``, summed as a series derived below (exact to the
working precision); a test checks it against the sphere quadrature.

Not covered: ``lambda_L`` and ``lambda_M`` of non-linear, non-piecewise-linear ``phi``
(alpha_relu, tanh, gelu, kinked ``phi``) -- they are four-coordinate sphere moments (a 4-D
integral), with no independent closed form; 60 digits of a 4-D quadrature in mpmath is out of
reach of a test run. The closed-form activations (relu, leaky_relu, linear) have all of them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy as np
from mpmath import mpf

#: Digits a reference is checked to: the closed forms are exact to WORK; a quadrature
#: reference is computed for one of these tiers and raises unless it reached it.
TIERS = (40, 60)
DIGITS = 60
#: Working precision of the references.
WORK = DIGITS + 20
#: Angles where the weight is below 10^-TAIL are cut off (integrands grow at most like |z|^3).
TAIL = DIGITS + 12
#: Gauss-Legendre nodes per piece at the two resolutions (coarse, fine) of each tier; the
#: fine value is used once it agrees with the coarse one to the tier's digits.
NODES = {40: (32, 40), 60: (46, 56)}

QUANTITIES = ("q_star", "c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate",
              "depth_scale", "max_trainable_depth")


class ReferenceError(ArithmeticError):
    """A reference quadrature did not reach its tier's digits."""


# -- activations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phi:
    """An activation as typed on the command line, with ``(phi(z), phi'(z))`` in mpmath.

    ``kinks``: points where phi or phi' is not analytic (quadratures are split there);
    ``root_kinks``: phi' behaves like a square root there (the pieces are then mapped so that
    the behaviour becomes analytic; a plain jump of phi' needs the split only).
    ``closed``: name of the closed-form family of THEORY.md (``relu``/``leaky``/``linear``),
    which has references for every quantity (lambda_L, lambda_M too); ``slope`` its slope.
    """

    spec: str
    both: Callable
    kinks: tuple = ()
    closed: str | None = None
    slope: object = 0
    root_kinks: bool = False


def _relu(z):
    return (z, mpf(1)) if z > 0 else (mpf(0), mpf(0))


def _leaky(slope):
    def both(z):
        return (z, mpf(1)) if z > 0 else (slope * z, slope)
    return both


def _alpha_relu_15(z):
    if z <= 0:
        return mpf(0), mpf(0)
    r = mpmath.sqrt(z)
    return z * r, 3 * r / 2


def _tanh(z):
    t = mpmath.tanh(z)
    return t, 1 - t * t


def _gelu(z):  # x Phi(x), Phi the standard normal distribution function
    cdf = mpmath.erfc(-z / mpmath.sqrt(2)) / 2
    pdf = mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    return z * cdf, cdf + z * pdf


def _shifted_relu(z):  # relu(x + 1/2)
    return (z + mpf(1) / 2, mpf(1)) if z > -mpf(1) / 2 else (mpf(0), mpf(0))


def _relu_plus_tanh(z):  # Max(x, 0) + 0.1*tanh(x); the CLI reads 0.1 as 1/10
    t = mpmath.tanh(z) / 10
    d = 1 / mpf(10) - 10 * t * t
    return (z + t, 1 + d) if z > 0 else (t, d)


def _phis():
    half = mpf(-1) / 2
    return {
        "relu": Phi("relu", _relu, (0,), "relu"),
        "leaky_relu": Phi("leaky_relu", _leaky(mpf(1) / 100), (0,), "leaky", mpf(1) / 100),
        "leaky_relu:0.2": Phi("leaky_relu:0.2", _leaky(mpf(1) / 5), (0,), "leaky", mpf(1) / 5),
        "linear": Phi("linear", lambda z: (z, mpf(1)), (), "linear"),
        "alpha_relu:1.5": Phi("alpha_relu:1.5", _alpha_relu_15, (0,), root_kinks=True),
        "tanh": Phi("tanh", _tanh),
        "gelu": Phi("gelu", _gelu),
        "relu(x + 0.5)": Phi("relu(x + 0.5)", _shifted_relu, (half,)),
        "Max(x, 0) + 0.1*tanh(x)": Phi("Max(x, 0) + 0.1*tanh(x)", _relu_plus_tanh, (0,)),
    }


def phi(spec: str) -> Phi:
    with mpmath.workdps(WORK):
        return _phis()[spec]


# -- Gauss-Legendre on pieces -------------------------------------------------------------------


@functools.cache
def _gauss_legendre(n: int):
    """Nodes and weights on ``[0, 1]`` to WORK + 10 digits (Newton from numpy's float nodes)."""
    x0, _ = np.polynomial.legendre.leggauss(n)
    nodes, weights = [], []
    with mpmath.workdps(WORK + 10):
        eps = mpf(10) ** (-(WORK + 8))
        for guess in x0:
            x = mpf(float(guess))
            for _ in range(20):
                p0, p1 = mpf(1), x
                for k in range(2, n + 1):
                    p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
                dp = n * (x * p1 - p0) / (x * x - 1)
                step = p1 / dp
                x -= step
                if abs(step) < eps:
                    break
            p0, p1 = mpf(1), x
            for k in range(2, n + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = n * (x * p1 - p0) / (x * x - 1)
            nodes.append((x + 1) / 2)
            weights.append(1 / ((1 - x * x) * dp * dp))  # 2/((1-x^2)P'^2), halved for [0, 1]
    return tuple(nodes), tuple(weights)


def _piece_nodes(a, b, singular_a: bool, singular_b: bool, n: int):
    """Nodes/weights for ``Int_a^b``; an endpoint flagged singular gets ``x = a + (b-a) s^2``
    (which doubles the degree of the integrand: 3n/2 nodes)."""
    if singular_a or singular_b:
        n = (3 * n + 1) // 2
    if singular_a and singular_b:
        mid = (a + b) / 2
        xa, wa = _piece_nodes(a, mid, True, False, n)
        xb, wb = _piece_nodes(mid, b, False, True, n)
        return xa + xb, wa + wb
    s, ws = _gauss_legendre(n)
    h = b - a
    if singular_a:
        return [a + h * si * si for si in s], [2 * h * si * wi for si, wi in zip(s, ws)]
    if singular_b:
        return [b - h * si * si for si in s], [2 * h * si * wi for si, wi in zip(s, ws)]
    return [a + h * si for si in s], [h * wi for wi in ws]


def _pieces(lo, hi, grid, special):
    """Pieces ``(a, b, a_flagged, b_flagged)`` of ``[lo, hi]`` split at the points of ``grid``
    and at the ``special`` points, given as ``(point, flagged)`` (flagged: behaves like a
    half-integer power there)."""
    grid = sorted(p for p in grid if lo < p < hi)
    # a flagged point is a branch point of the integrand on either side: keep the grid points
    # at least one grid step away from it, so that no unflagged piece has it close by
    for p, flagged in special:
        if flagged and lo < p < hi:
            step = min((b - a for a, b in zip([lo, *grid], [*grid, hi]) if a <= p <= b))
            grid = [g for g in grid if abs(g - p) >= step]
    points = {lo: False, hi: False}
    for p in grid:
        points.setdefault(p, False)
    for p, flagged in special:
        if lo < p < hi:
            points[p] = points.get(p, False) or flagged
    xs = sorted(points)
    return [(xs[i], xs[i + 1], points[xs[i]], points[xs[i + 1]]) for i in range(len(xs) - 1)]


def _angle_range(power):
    """``[-A, A]`` outside which ``cos^power`` is below ``10^-TAIL`` (``A = pi/2`` unless that
    cuts off a real part of the range)."""
    half_pi = mpmath.pi / 2
    if power <= 0:
        return half_pi
    cut = mpmath.acos(mpmath.exp(-TAIL * mpmath.log(10) / power))
    return cut if cut < 1 else half_pi


def _unit_angles(scale, limit):
    """Angles ``asin(j/scale)``, ``|j| < scale``, within ``[-limit, limit]``: unit steps in
    ``z = scale * sin(angle)``; and steps of ``pi/10`` in the angle (small B)."""
    out, j = [], 0
    while j < scale:
        a = mpmath.asin(j / scale)
        if a >= limit:
            break
        out += [a, -a] if j else [a]
        j += 1
    step = mpmath.pi / 10
    out += [k * step for k in range(-4, 5) if abs(k * step) < limit]
    return sorted(set(out))


def _sphere_law(B: int):
    """The one- and two-coordinate laws in THEORY.md's hyperspherical form (Thm 4).

    ``z1 = sqrt(B-1) sin(f)``: density of ``f`` ``cos^(B-3) f / N1`` on ``[-pi/2, pi/2]``,
    ``N1 = sqrt(pi) Gamma((B-2)/2) / Gamma((B-1)/2)``; given ``z1``, ``z2 = m + w sin(g)``
    with ``g`` of density ``cos^(B-4) g / N2``, ``N2 = sqrt(pi) Gamma((B-3)/2) / Gamma((B-2)/2)``
    (``t = sin g`` has the density ``prop. (1-t^2)^((B-5)/2)`` of the module docstring).
    Both weights are entire in the angle, so only kinks of phi need splitting.
    """
    Bm = mpf(B)
    log_n1 = (mpmath.log(mpmath.pi) / 2 + mpmath.loggamma((Bm - 2) / 2)
              - mpmath.loggamma((Bm - 1) / 2))
    log_n2 = (mpmath.log(mpmath.pi) / 2 + mpmath.loggamma((Bm - 3) / 2)
              - mpmath.loggamma((Bm - 2) / 2))
    edge = mpmath.sqrt(Bm - 1)
    outer_cut, inner_cut = _angle_range(Bm - 3), _angle_range(Bm - 4)
    return {
        "edge": edge,
        "log_n1": log_n1,
        "log_n2": log_n2,
        "outer_cut": outer_cut,
        "inner_cut": inner_cut,
        "outer_grid": _unit_angles(edge, outer_cut),
        "inner_grid": _unit_angles(edge, inner_cut),  # w is close to sqrt(B-1) at the mass
        "outer_weight": lambda f: mpmath.exp((Bm - 3) * mpmath.log(mpmath.cos(f)) - log_n1),
        "inner_weight": lambda g: mpmath.exp((Bm - 4) * mpmath.log(mpmath.cos(g)) - log_n2),
    }


def _piece_nodes_count(n: int, log10_mass, digits: int) -> int:
    """Nodes for a piece carrying at most ``10^log10_mass`` of the probability: ``n``, or 0
    (the piece is dropped) below ``10^-(digits+8)``. (Fewer nodes on pieces of small but
    non-negligible mass do not pay: far out the weight varies too fast.)"""
    return n if log10_mass > -(digits + 8) else 0


def _log10_mass(piece, power, log_norm):
    """``log10`` of an upper bound of ``Int cos^power / exp(log_norm)`` over the piece."""
    a, b = piece[0], piece[1]
    near = 0 if a < 0 < b else min(abs(a), abs(b))
    return (power * mpmath.log(mpmath.cos(near)) - log_norm + mpmath.log(b - a)) / mpmath.log(10)


def _kink_specials(act: Phi, B: int, edge):
    """Outer split points (angles of z1): the kinks of phi(z1), and the z1 at which a kink k
    of phi(z2) meets the edge of the support of z2 given z1 (the points of the ellipse Z = 0
    with z2 = k). There the inner integral gains a term (z1 - z1*)^((B-1)/2) (phi) or
    ^((B-3)/2) (phi'), each times (z1 - z1*)^(1/2) if phi' has a root-type kink: a
    half-integer power for even B (odd B with root-type kinks), flagged."""
    Bm = mpf(B)
    kinks = [mpf(k) for k in act.kinks]
    special = [(mpmath.asin(k / edge), act.root_kinks) for k in kinks if k * k < Bm - 1]
    entry_root = act.root_kinks == (B % 2 == 1)
    for k in kinks:
        if k * k < Bm - 1:
            r = mpmath.sqrt(Bm * (Bm - 2) * (Bm - 1 - k * k))
            special += [(mpmath.asin((-k + sign * r) / ((Bm - 1) * edge)), entry_root)
                        for sign in (-1, 1)]
    return special


class _Inner:
    """``E[. | z1]`` over ``z2 = m + w sin(g)``: nodes and weights per piece, cached."""

    def __init__(self, act: Phi, B: int, n: int, digits: int):
        self.act, self.B, self.n, self.digits = act, mpf(B), n, digits
        self.law = _sphere_law(B)
        self.kinks = [mpf(k) for k in act.kinks]
        self.cache: dict = {}

    def nodes(self, piece, count):
        if (piece, count) not in self.cache:
            gs, ws = _piece_nodes(*piece, count)
            weight = self.law["inner_weight"]
            self.cache[piece, count] = ([mpmath.sin(g) for g in gs],
                                        [wg * weight(g) for g, wg in zip(gs, ws)])
        return self.cache[piece, count]

    def __call__(self, f, log10_mass1):
        """``(E[phi(z2)], E[phi'(z2)], E[z2 phi'(z2)], E[1], E[z2])`` given ``z1 = edge sin f``
        (``log10_mass1``: mass of the outer piece, for the node counts)."""
        Bm, law = self.B, self.law
        z1 = law["edge"] * mpmath.sin(f)
        m = -z1 / (Bm - 1)
        w = mpmath.sqrt(Bm * (Bm - 2) / (Bm - 1)) * mpmath.cos(f)
        kinks = [(mpmath.asin((k - m) / w), self.act.root_kinks) for k in self.kinks
                 if abs(k - m) < w]
        ts, wts = [], []
        lim = law["inner_cut"]
        for piece in _pieces(-lim, lim, law["inner_grid"], kinks):
            mass2 = _log10_mass(piece, Bm - 4, law["log_n2"])
            count = _piece_nodes_count(self.n, log10_mass1 + mass2, self.digits)
            if count:
                t_nodes, t_weights = self.nodes(piece, count)
                ts += t_nodes
                wts += t_weights
        if not ts:  # every inner piece carries negligible joint mass at this z1
            return (mpf(0),) * 5
        z2s = [m + w * t for t in ts]
        f2s, d2s = zip(*map(self.act.both, z2s))
        mass = mpmath.fsum(wts)
        return (mpmath.fdot(wts, f2s), mpmath.fdot(wts, d2s),
                mpmath.fdot(wts, [z * d for z, d in zip(z2s, d2s)]), mass,
                m * mass + w * mpmath.fdot(wts, ts))


@functools.cache
def _sphere_moments(spec: str, B: int, n: int, digits: int):
    """``(q*, E[phi phi], E1[(B-1-z1^2) phi'^2], E2[(1+z1 z2) phi' phi'], E[z1^2], E[z1 z2],
    mass1, mass2)`` over the sphere at ``B``; up to ``n`` Gauss-Legendre nodes per piece
    (fewer where the mass is small, for ``digits`` digits)."""
    act = phi(spec)
    with mpmath.workdps(WORK):
        Bm = mpf(B)
        law = _sphere_law(B)
        inner = _Inner(act, B, n, digits)
        lim = law["outer_cut"]
        sums = [mpf(0)] * 8
        for piece in _pieces(-lim, lim, law["outer_grid"], _kink_specials(act, B, law["edge"])):
            mass1 = _log10_mass(piece, Bm - 3, law["log_n1"])
            count = _piece_nodes_count(n, mass1, digits)
            if not count:
                continue
            for f, wf in zip(*_piece_nodes(*piece, count)):
                rho = wf * law["outer_weight"](f)
                z1 = law["edge"] * mpmath.sin(f)
                f1, d1 = act.both(z1)
                g_f, g_d, g_zd, mass, g_z = inner(f, mass1)
                sums[0] += rho * f1 * f1
                sums[1] += rho * f1 * g_f
                sums[2] += rho * (Bm - 1 - z1 * z1) * d1 * d1
                sums[3] += rho * d1 * (g_d + z1 * g_zd)
                sums[4] += rho * z1 * z1
                sums[5] += rho * z1 * g_z
                sums[6] += rho
                sums[7] += rho * mass
        return tuple(sums)


def _converged(spec: str, B: int, digits: int):
    """Sphere moments at the finer resolution of the tier ``digits``, after checking them
    against the coarser one."""
    tier = _tier(digits)
    coarse, fine = (_sphere_moments(spec, B, n, tier) for n in NODES[tier])
    with mpmath.workdps(WORK):
        for c, f in zip(coarse, fine):
            if abs(c - f) > mpf(10) ** (-tier) * max(abs(f), 1):
                raise ReferenceError(f"{spec}, B={B}: quadrature moved by {mpmath.nstr(c - f, 3)}"
                                     f" between {NODES[tier]} nodes per piece")
    return fine


def _tier(digits: int) -> int:
    for tier in TIERS:
        if digits <= tier:
            return tier
    raise ValueError(f"no reference tier for {digits} digits")


def thm7_normalisation(B: int):
    """``Int Int_{Z>0} Z^((B-5)/2) dz1 dz2 = 2 pi (B(B-2))^((B-4)/2) / (B-3)``."""
    with mpmath.workdps(WORK):
        Bm = mpf(B)
        return 2 * mpmath.pi * (Bm * (Bm - 2)) ** ((Bm - 4) / 2) / (Bm - 3)


# -- references ---------------------------------------------------------------------------------


def J(c):
    """Arccosine kernel ``J(c) = (sqrt(1-c^2) + (pi - arccos c) c) / pi`` (THEORY.md)."""
    return (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi


def Jp(c):
    """``J'(c) = (pi - arccos c) / pi``."""
    return (mpmath.pi - mpmath.acos(c)) / mpmath.pi


def _depth(out: dict) -> dict:
    logr = mpmath.log(out["gradient_rate"])
    out["depth_scale"] = 1 / logr
    out["max_trainable_depth"] = 16 / logr
    return out


def _closed(act: Phi, B: int) -> dict:
    """THEORY.md's ReLU and linear closed forms, and leaky ReLU derived from them.

    Leaky ReLU with slope ``a`` is ``phi = (1+a)/2 x + (1-a)/2 |x|``. Its dual kernel (unit
    Gaussians, correlation ``c``) is ``K(c) = ((1-a)^2 J(c) + 2 a c) / 2`` (from
    ``E[relu(u) relu(v)] = J(c)/2`` and ``J(-c) = J(c) - c``); on the sphere the homogeneous
    ``phi`` decouples from the radius, so ``q* = K(1) = (1+a^2)/2`` and ``q* c* = K(-1/(B-1))``.
    Rate (Thm 7): ``E[phi'(z)^2] = E[z^2 phi'(z)^2] = (1+a^2)/2``, ``E[z1 z2 phi' phi'] =
    E[phi phi] = K(c)`` (Euler: ``z phi'(z) = phi(z)``), ``E[phi'(z1) phi'(z2)] = a + (1-a)^2
    P(z1>0, z2>0) = a + (1-a)^2 J'(c)/2``. Forward spectrum: in THEORY.md's derivative
    formula ``J{D} = E[phi phi^T w_D(u)] / (2 s)`` the cross terms ``x |x|`` are odd in ``u`` and
    drop out, so ``2 s lambda`` is ``a (2 s lambda)_linear + (1-a)^2 (2 s lambda)_relu`` (the
    eigenvalues on L and M are linear in the operator: one copy of each in the image). For
    linear phi ``E[u_i u_j u_k u_l]`` over the unit sphere of the hyperplane gives
    ``lambda_L = lambda_M = (B-1)/(B+1)``, ``s = B/(B-1)``.
    """
    with mpmath.workdps(WORK):
        Bm = mpf(B)
        c = -1 / (Bm - 1)
        j, jp = J(c), Jp(c)
        relu_m = Bm * jp / ((Bm + 1) * (1 - j))
        relu_l = (Bm - 2) / (Bm + 1) + Bm * jp / ((Bm - 1) * (Bm + 1) * (1 - j))
        relu_rate = (jp + Bm - 1) / ((Bm - 3) * (1 - j)) - 1 / (Bm - 3)
        lin = (Bm - 1) / (Bm + 1)
        if act.closed == "relu":
            out = {"q_star": mpf(1) / 2, "c_star": j, "lambda_L": relu_l, "lambda_M": relu_m,
                   "gradient_rate": relu_rate}
        elif act.closed == "linear":
            out = {"q_star": mpf(1), "c_star": c, "lambda_L": lin, "lambda_M": lin,
                   "gradient_rate": (Bm - 2) / (Bm - 3)}
        else:
            a = mpf(act.slope)
            q = (1 + a * a) / 2
            qc = ((1 - a) ** 2 * j + 2 * a * c) / 2
            s = q - qc
            two_s_lin, two_s_relu = 2 * Bm / (Bm - 1), 1 - j

            def lam(relu_value):
                return (a * two_s_lin * lin + (1 - a) ** 2 * two_s_relu * relu_value) / (2 * s)

            cross = a + (1 - a) ** 2 * jp / 2
            out = {"q_star": q, "c_star": qc / q, "lambda_L": lam(relu_l),
                   "lambda_M": lam(relu_m),
                   "gradient_rate": ((Bm - 2) * q + cross + qc) / ((Bm - 3) * s)}
        out["lambda_G"] = mpf(0)
        return _depth(out)


def _rate(B: int, q, qc, first, second):
    """THEORY.md Thm 7 as stated, ``(B(B-2))^(2-B/2) / (q*(1-c*) 2 pi) Int_{Z>0}
    [(B-1-z1^2) phi'(z1)^2 + (1+z1 z2) phi'(z1) phi'(z2)] Z^((B-5)/2) dz1 dz2``, from the two
    expectations ``first``, ``second`` of the bracket's terms under the normalised density."""
    Bm = mpf(B)
    integral = thm7_normalisation(B) * (first + second)
    return (Bm * (Bm - 2)) ** (2 - Bm / 2) / ((q - qc) * 2 * mpmath.pi) * integral


def _quadrature(act: Phi, B: int, digits: int) -> dict:
    """q*, c*, gradient rate (and depth) from the sphere quadrature; lambda_G = 0 (THEORY)."""
    q, qc, first, second, *_ = _converged(act.spec, B, digits)
    with mpmath.workdps(WORK):
        return _depth({"q_star": q, "c_star": qc / q, "lambda_G": mpf(0),
                       "gradient_rate": _rate(B, q, qc, first, second)})


def orthant_moment(a, b, rho):
    """``E[X_+^a Y_+^b]`` for unit Gaussians of correlation ``|rho| < 1``: expanding
    ``exp(rho x y / (1 - rho^2))`` in the density gives
    ``(2 s^2)^((a+b)/2) s / (4 pi) sum_n (2 rho)^n Gamma((a+n+1)/2) Gamma((b+n+1)/2) / n!``,
    ``s^2 = 1 - rho^2`` (terms fall like ``|rho|^n``)."""
    s2 = 1 - rho * rho
    total, n, term_scale = mpf(0), 0, mpf(1)
    eps = mpf(10) ** (-WORK)
    while True:
        term = term_scale * mpmath.gamma((a + n + 1) / 2) * mpmath.gamma((b + n + 1) / 2)
        total += term
        if n > 4 and abs(term) < eps * abs(total):
            break
        n += 1
        term_scale *= 2 * rho / n
    return (2 * s2) ** ((a + b) / 2) * mpmath.sqrt(s2) / (4 * mpmath.pi) * total


def _decoupled(B: int, d):
    """Sphere moment / Gaussian moment for a phi of degree ``d``: on the hyperplane
    ``h = r u`` (``h ~ N(0, G)``, ``r^2 ~ chi^2_{B-1}`` independent of ``u``), so
    ``E_sphere[f(z)] = ((B-1)/2)^(d/2) Gamma((B-1)/2) / Gamma((B-1+d)/2) E[f(g)]`` for unit
    Gaussians ``g`` of correlation ``-1/(B-1)`` (``h_i`` have variance ``(B-1)/B``)."""
    Bm = mpf(B)
    return mpmath.exp(d / 2 * mpmath.log((Bm - 1) / 2) + mpmath.loggamma((Bm - 1) / 2)
                      - mpmath.loggamma((Bm - 1 + d) / 2))


def _alpha_relu(alpha, B: int) -> dict:
    """``phi = relu^alpha`` by decoupling the radius: every sphere moment in q*, c* and the
    Thm 7 bracket is homogeneous (``phi^2``, ``z^2 phi'^2``, ``z1 z2 phi' phi'`` of degree
    ``2 alpha``; ``phi'^2``, ``phi' phi'`` of degree ``2 alpha - 2``) and reduces to
    ``E[X_+^a Y_+^b]`` (:func:`orthant_moment`; ``E[X_+^p] = 2^(p/2-1) Gamma((p+1)/2)/sqrt(pi)``).
    A test compares this with the direct sphere quadrature."""
    with mpmath.workdps(WORK):
        al = mpf(alpha)
        c = -1 / (mpf(B) - 1)
        s_hi, s_lo = _decoupled(B, 2 * al), _decoupled(B, 2 * al - 2)

        def single(p):
            return 2 ** (p / 2 - 1) * mpmath.gamma((p + 1) / 2) / mpmath.sqrt(mpmath.pi)

        q = s_hi * single(2 * al)
        qc = s_hi * orthant_moment(al, al, c)
        first = al**2 * ((mpf(B) - 1) * s_lo * single(2 * al - 2) - s_hi * single(2 * al))
        second = al**2 * (s_lo * orthant_moment(al - 1, al - 1, c) + qc)
        return _depth({"q_star": q, "c_star": qc / q, "lambda_G": mpf(0),
                       "gradient_rate": _rate(B, q, qc, first, second)})


@functools.cache
def reference(spec: str, B: int, digits: int = DIGITS) -> dict:
    """``{quantity: mpf}`` at batch size ``B``, good to ``digits`` (only the quantities that
    have a reference; closed forms are exact to WORK whatever ``digits``)."""
    act = phi(spec)
    if act.closed:
        return _closed(act, B)
    if spec.startswith("alpha_relu:"):
        return _alpha_relu(mpf(spec.split(":")[1]), B)
    return _quadrature(act, B, digits)


def quadrature_reference(spec: str, B: int, digits: int) -> dict:
    """The sphere quadrature for any activation (to cross-check the closed forms)."""
    return _quadrature(phi(spec), B, digits)


def sphere_identities(spec: str, B: int, digits: int) -> dict:
    """Quadrature values of ``E[z1^2] (= 1)``, ``E[z1 z2] (= -1/(B-1))`` and the masses (= 1)."""
    *_, z11, z12, mass1, mass2 = _converged(spec, B, digits)
    return {"E[z1^2]": z11, "E[z1 z2]": z12, "mass1": mass1, "mass2": mass2}


# -- Gegenbauer coefficients (paper Thm 9) -------------------------------------------------------


@functools.cache
def _gegenbauer_coefficients(spec: str, B: int, K: int, n: int, digits: int):
    """``a_k = E[phi(z) e_k(z/sqrt(B-1))]``, ``k < K``, by the one-coordinate quadrature."""
    act = phi(spec)
    with mpmath.workdps(WORK):
        Bm = mpf(B)
        lam = (Bm - 3) / 2
        law = _sphere_law(B)
        edge, lim = law["edge"], law["outer_cut"]
        special = [(mpmath.asin(mpf(k) / edge), act.root_kinks) for k in act.kinks
                   if k * k < Bm - 1]
        norms = [mpmath.sqrt((Bm - 3 + 2 * k) / ((Bm - 3) * mpmath.binomial(Bm - 4 + k, k)))
                 for k in range(K)]
        sums = [mpf(0)] * K
        for piece in _pieces(-lim, lim, law["outer_grid"], special):
            count = _piece_nodes_count(n, _log10_mass(piece, Bm - 3, law["log_n1"]), digits)
            if not count:
                continue
            for f, wf in zip(*_piece_nodes(*piece, count)):
                x = mpmath.sin(f)
                fz = act.both(edge * x)[0] * wf * law["outer_weight"](f)
                for k, ck in enumerate(_gegenbauer_values(K, lam, x)):
                    sums[k] += fz * ck
        return tuple(s * nk for s, nk in zip(sums, norms))


def _gegenbauer_values(K: int, lam, x) -> list:
    """``C_k^lam(x)`` for ``k < K`` by the three-term recurrence."""
    out = [mpf(1), 2 * lam * x]
    for k in range(2, K):
        out.append((2 * x * (k + lam - 1) * out[-1] - (k + 2 * lam - 2) * out[-2]) / k)
    return out[:K]


def funk_hecke(B: int, K: int):
    """``r_k = C_k(-1/(B-1)) / C_k(1)`` (Funk-Hecke: the two coordinates' directions in the
    hyperplane have inner product ``-1/(B-1)``), so that ``E[phi(z1) phi(z2)] = sum r_k a_k^2``."""
    with mpmath.workdps(WORK):
        lam = (mpf(B) - 3) / 2
        at_c = _gegenbauer_values(K, lam, -1 / (mpf(B) - 1))
        at_one = _gegenbauer_values(K, lam, mpf(1))
        return tuple(u / v for u, v in zip(at_c, at_one))


def gegenbauer_reference(spec: str, B: int, K: int, digits: int = DIGITS) -> dict:
    """Every number of ``bnmft gegenbauer SPEC --batch-size B --terms K``: per row ``a_k``,
    ``c_k = 1 - r_k``, ``c_k a_k^2`` (0 for k = 0), the Thm 9 term ``k(B-3+k)/(B-3) c_k a_k^2``
    and the running sums; the partial sums at ``K`` and the rate (the ``gradient_rate``
    reference)."""
    tier = _tier(digits)
    # 1-D, cheap: more nodes than the 2-D laws, for the degree-K polynomials in the integrand
    coarse, fine = (_gegenbauer_coefficients(spec, B, K, 3 * n // 2, tier) for n in NODES[tier])
    with mpmath.workdps(WORK):
        scale = max(abs(x) for x in fine)
        for c, f in zip(coarse, fine):
            if abs(c - f) > mpf(10) ** (-tier) * scale:
                raise ReferenceError(f"{spec}, B={B}: a_k moved by {mpmath.nstr(c - f, 3)}")
        Bm = mpf(B)
        r = funk_hecke(B, K)
        rows = []
        den = num = parseval = funk = mpf(0)
        for k, (ak, rk) in enumerate(zip(fine, r)):
            ck = 1 - rk
            cd = ck * ak * ak if k else mpf(0)
            cn = k * (Bm - 3 + k) / (Bm - 3) * cd
            den, num = den + cd, num + cn
            parseval += ak * ak
            funk += rk * ak * ak
            rows.append({"k": k, "a_k": ak, "c_k": ck, "c_ak2": cd, "thm9_term": cn,
                         "partial_denominator": den, "partial_numerator": num})
        partial = {"q_star (sum a_k^2)": parseval, "q_star c_star (sum r_k a_k^2)": funk,
                   "sum c_k a_k^2": den, "Thm 9 numerator": num, "rate": num / den}
        return {"rows": rows, "partial": partial, "scale": scale,
                "rate": reference(spec, B, digits)["gradient_rate"]}


# -- correctly rounded decimal strings ------------------------------------------------------------


@dataclass(frozen=True)
class Decimal:
    """A decimal number ``sign * 0.d1 d2 ... * 10^(exponent+1)``: ``digits`` without leading zeros,
    ``exponent`` the power of ten of the first digit (``digits == ''``: zero)."""

    negative: bool
    digits: str
    exponent: int


def parse_decimal(text: str) -> Decimal:
    """``-0.00123``, ``27.5``, ``1.5e-8`` -> sign, significant digits, exponent of the first."""
    m = re.fullmatch(r"(-?)(\d+)(?:\.(\d*))?(?:e([+-]?\d+))?", text)
    if not m:
        raise ValueError(f"not a decimal number: {text!r}")
    sign, whole, frac, exp = m.group(1), m.group(2), m.group(3) or "", int(m.group(4) or 0)
    allnum = whole + frac
    stripped = allnum.lstrip("0")
    if not stripped:
        return Decimal(sign == "-", "", 0)
    lead = len(allnum) - len(stripped)
    return Decimal(sign == "-", stripped, len(whole) - 1 - lead + exp)


def correctly_rounded(value, digits: int) -> tuple[Decimal, float]:
    """``value`` rounded to nearest at ``digits`` significant digits, and how far (in ulps of
    the last digit) ``value`` lies from the nearest rounding boundary (0: on a tie)."""
    with mpmath.workdps(WORK + 20):
        v = mpf(value)
        if v == 0:
            return Decimal(False, "", 0), 0.5
        a = abs(v)
        e = int(mpmath.floor(mpmath.log10(a)))
        scaled = a * mpf(10) ** (digits - 1 - e)
        if scaled >= mpf(10) ** digits:  # log10 rounded up across a power of ten
            e, scaled = e + 1, scaled / 10
        elif scaled < mpf(10) ** (digits - 1):
            e, scaled = e - 1, scaled * 10
        n = int(mpmath.floor(scaled))
        frac = scaled - n
        boundary = float(abs(frac - mpf(1) / 2))
        if frac > mpf(1) / 2:
            n += 1
        if n == 10**digits:
            n, e = 10 ** (digits - 1), e + 1
        return Decimal(v < 0, str(n), e), boundary


def decimal_value(d: Decimal):
    """The exact value of a parsed decimal, as an mpf at high precision."""
    with mpmath.workdps(WORK + 20):
        if not d.digits:
            return mpf(0)
        v = mpf(int(d.digits)) * mpf(10) ** (d.exponent - len(d.digits) + 1)
        return -v if d.negative else v


def digit_mismatch(text: str, value, digits: int | None = None, *, zero_below=None) -> str | None:
    """Why ``text`` (a printed number) is not ``value`` correctly rounded to the number of
    significant digits printed (or to ``digits``, which the text must then have); ``None``
    if it is. One ulp of the last digit is tolerated only if ``value`` lies within 1e-3 ulp of
    a rounding boundary. A printed ``0`` is accepted when ``|value| <= zero_below``."""
    printed = parse_decimal(text)
    if not printed.digits:
        if value == 0 or (zero_below is not None and abs(value) <= zero_below):
            return None
        return f"printed {text!r}, reference {mpmath.nstr(value, 25)} is not zero"
    shown = len(printed.digits)
    if digits is not None and shown != digits:
        return f"printed {text!r} has {shown} significant digits, asked for {digits}"
    want, boundary = correctly_rounded(value, shown)
    if want == printed:
        return None
    off = abs(decimal_value(printed) - decimal_value(want))
    with mpmath.workdps(WORK):
        ulp = mpf(10) ** (want.exponent - shown + 1)
        if boundary < 1e-3 and off <= ulp * (1 + mpf(10) ** -30):
            return None
    return (f"printed {text!r}, correctly rounded to {shown} digits: "
            f"{format_decimal(want)} (reference {mpmath.nstr(value, shown + 5)})")


def format_decimal(d: Decimal) -> str:
    if not d.digits:
        return "0"
    sign = "-" if d.negative else ""
    return f"{sign}{d.digits[0]}.{d.digits[1:]}e{d.exponent}"
