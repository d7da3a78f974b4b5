"""Sphere moments by quadrature in hyperspherical angles (paper Thm 4 form).

At the BSB1 point ``z = sqrt(B) u`` with ``u`` uniform on the unit sphere of the zero-sum
hyperplane. Two coordinates are parametrised by independent angles (THEORY.md, Thm 4,
with ``theta = pi/2 + delta`` so that large-``B`` arithmetic keeps its digits):

    z1 = sqrt(B-1) sin d1,
    z2 = sqrt(B-1) (rho sin d1 + sqrt(1-rho^2) cos d1 sin d2),      rho = -1/(B-1),

with weights ``cos^{B-3} d1`` and ``cos^{B-4} d2`` on ``[-pi/2, pi/2]``. Moments are ratios
of integrals with the same rule (self-normalising: no Gamma functions, no overflow at any
``B``). For large ``B`` the weights are truncated where they fall below the target accuracy
(``cos^n d <= 10^-P``), which keeps the number of nodes independent of ``B``.

Kinks of ``phi`` (``z = k``) are quadrature breakpoints: ``d1 = asin(k/sqrt(B-1))`` for the
outer angle, and for the inner angle the point where ``z2 = k`` at the current ``d1``. Where
that inner kink enters the disk (``sin(d1 +- psi) = k/sqrt(B-1)``, ``cos psi = rho``) the
inner integral is not smooth in ``d1``, so those points are outer breakpoints too.

Two implementations share the geometry: :func:`moments_mp` (mpmath, adaptive degree, error
estimate from two degrees) and :func:`moments_float` (numpy float64, fixed nodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
import mpmath
import numpy as np
from flint import arb_mat

from sympy import N as sp_N
from sympy import ilcm as sp_lcm

from bnmft.derive import Activation

from . import arbmath
from .arbmath import point_evaluator
from .inner import line_sums
from .rules import gauss_legendre_float_count, gl_count, rule_float, rule_mp


class QuadratureError(ArithmeticError):
    """A quadrature did not reach the requested accuracy."""


# -- geometry (mpmath numbers; a handful per batch size) ------------------------------


def truncation_angle(power, digits) -> mpmath.mpf:
    """Smallest ``d`` with ``cos(d)^power <= 10^-digits`` (``pi/2`` if none is needed)."""
    if power <= 0:
        return mpmath.pi / 2
    # cos d = exp(-digits ln10 / power)
    t = -digits * mpmath.log(10) / power
    if t < -50:
        return mpmath.pi / 2
    cosd = mpmath.exp(t)
    return mpmath.acos(cosd)


def effective_digits(act: Activation, B: int, digits) -> mpmath.mpf:
    """Digits at which to truncate the sphere weight so that weight x integrand is negligible.

    The weight ``(1 - z^2/(B-1))^((B-3)/2)`` is cut where it drops below ``10^-d``; the
    integrands carry ``phi^2``, ``phi'^2`` and ``z^4``, which may grow (``e^{a z}``,
    ``e^{b z^2}`` with ``b < 1/4``). ``d`` is raised by the envelope's size at the cut until
    the product is below ``10^-digits`` (a few fixed-point steps).
    """
    return _effective_digits(act.expr, act.derivative, int(B), int(digits))


@lru_cache(maxsize=4096)
def _effective_digits(expr, derivative, B: int, digits: int) -> mpmath.mpf:
    if B <= 4:
        return mpmath.mpf(digits)
    phi = arbmath_free_mpmath(expr)
    dphi = arbmath_free_mpmath(derivative)
    n = mpmath.mpf(B - 3) / 2
    d = mpmath.mpf(digits)
    with mpmath.workdps(30):
        for _ in range(6):
            frac = 1 - mpmath.exp(-d * mpmath.log(10) / n)
            z = mpmath.sqrt((B - 1) * frac)
            env = mpmath.mpf(1)
            for t in (z, -z):
                try:
                    env = max(env, (1 + abs(phi(t)) ** 2 + abs(dphi(t)) ** 2) * (1 + t * t) ** 2)
                except (ArithmeticError, ValueError, TypeError):
                    continue
            new = digits + mpmath.log10(env)
            if abs(new - d) < 0.5:
                return new
            d = new
    return d


@lru_cache(maxsize=256)
def arbmath_free_mpmath(expr):
    import sympy

    from bnmft.derive import x

    return sympy.lambdify(x, expr, "mpmath")


@dataclass(frozen=True)
class Geometry:
    """Constants of the two-angle parametrisation for one batch size."""

    B: int
    root: mpmath.mpf  # sqrt(B-1)
    rho: mpmath.mpf  # -1/(B-1)
    sigma: mpmath.mpf  # sqrt(1 - rho^2) = sqrt(B(B-2))/(B-1)
    psi: mpmath.mpf  # acos(rho)
    window1: mpmath.mpf
    window2: mpmath.mpf
    #: Largest B whose tangency singularities (d1 - d_t)^{(B-3)/2} need breakpoints: above it
    #: they are smooth enough for Gauss-Legendre at the requested digits.
    tangency_limit: int = 0

    @classmethod
    def make(cls, B: int, digits) -> Geometry:
        Bm = mpmath.mpf(B)
        rho = -1 / (Bm - 1)
        sigma = mpmath.sqrt(Bm * (Bm - 2)) / (Bm - 1)
        return cls(
            B=B,
            root=mpmath.sqrt(Bm - 1),
            rho=rho,
            sigma=sigma,
            psi=mpmath.acos(rho),
            window1=truncation_angle(Bm - 3, digits),
            window2=truncation_angle(Bm - 4, digits),
            tangency_limit=int(3 + digits),
        )

    def outer_pieces(self, kinks, kink_power: int = 1) -> list[tuple]:
        """Pieces ``(a, b, p_a, p_b)`` of the outer angle ``d1`` in ``[-W1, W1]``.

        Breakpoints are the kinks ``asin(k/sqrt(B-1))`` and the points where the inner kink
        (``z2 = k``) leaves the inner window ``|d2| <= W2``:
        ``rho sin d1 +- sigma sin(W2) cos d1 = k/sqrt(B-1)``. There the inner integral
        behaves like a power of ``sqrt(d1 - d_t)`` (at ``W2 = pi/2``, where the kink line is
        tangent to the disk) or of ``(d1 - d_t)``; those ends get substitution power 2 (see
        :func:`_pieces`), kinks get ``kink_power`` (power singularities of ``phi``).
        """
        W1 = self.window1
        pts = {-W1: 1, W1: 1}
        s2 = self.sigma * mpmath.sin(self.window2)
        radius = mpmath.sqrt(self.rho**2 + s2**2)
        eps = mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
        for k in kinks:
            kappa = mpmath.mpf(k) / self.root
            if abs(kappa) < 1:
                a = mpmath.asin(kappa)
                pts[a] = int(sp_lcm(pts.get(a, 1), kink_power))
            if self.B > self.tangency_limit or abs(kappa) > 1 + eps:
                continue
            s2k, radius_k = s2, radius
            if abs(kappa) >= radius:
                # The kink line misses the truncated window but meets the closed disk; at
                # |kappa| = 1 (a kink at +-sqrt(B-1), the end of the marginal's support) it
                # touches the disk at one point, within 10^-digits of the window's corner,
                # and the inner integral is not smooth in d1 there: the disk's own tangency
                # (s2 = sigma, radius 1) is a breakpoint.
                s2k, radius_k = self.sigma, mpmath.mpf(1)
            # rho sin d + s2 cos d = R sin(d + psi'),  rho sin d - s2 cos d = R sin(d - psi')
            psi = mpmath.atan2(s2k, self.rho)
            base = mpmath.asin(max(-1, min(1, kappa / radius_k)))
            for root in (base, mpmath.pi - base):
                for cand in (root - psi, root + psi):
                    for shift in (-2 * mpmath.pi, 0, 2 * mpmath.pi):
                        t = cand + shift
                        if -W1 < t < W1:
                            pts[t] = int(sp_lcm(pts.get(t, 1), 2 * kink_power))
        return merged_pieces(pts)

    def inner_pieces(self, kinks, sin1, cos1, kink_power: int = 1) -> list[tuple]:
        """Pieces ``(a, b, p_a, p_b)`` of the inner angle at one outer node."""
        W2 = self.window2
        pts = [(-W2, 1), (W2, 1)]
        if cos1 != 0:
            sW2 = mpmath.sin(W2)
            for k in kinks:
                s = (mpmath.mpf(k) / self.root - self.rho * sin1) / (self.sigma * cos1)
                if -sW2 < s < sW2:
                    pts.append((mpmath.asin(s), kink_power))
        pts.sort()
        return [(a, b, pa, pb) for (a, pa), (b, pb) in zip(pts[:-1], pts[1:]) if b > a]


def merged_pieces(points: dict) -> list[tuple]:
    """Pieces between sorted breakpoints ``{point: power}``.

    Breakpoints that coincide up to rounding (a kink sitting exactly where another kink line
    meets the boundary, e.g. ``B = 4, k = -1``) are merged, keeping the larger power: a
    sliver piece between two copies of one point would hide the singularity's true type.
    """
    eps = mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
    keys = sorted(points)
    merged: list = []
    for k in keys:
        if merged and abs(k - merged[-1][0]) <= eps * max(1, abs(k)):
            merged[-1][1] = max(merged[-1][1], points[k])
        else:
            merged.append([k, points[k]])
    if len(merged) > 1:  # keep the window ends exact
        merged[0][0], merged[-1][0] = keys[0], keys[-1]
    return [(a, b, pa, pb) for (a, pa), (b, pb) in zip(merged[:-1], merged[1:]) if b > a]


def graded_pieces(pieces, ratio: float = 4.0) -> list[tuple]:
    """``pieces`` with each one next to a piece shorter by more than ``ratio`` split
    geometrically towards it (breakpoints at ``d + 2^j delta``, ``delta`` the short width, up
    to half its own width, power 1).

    Two singular points closer than the rule can resolve (a kink line meeting the boundary
    next to another kink, e.g. hardtanh's ``phi(rho z)`` just past a corner entry) bound a
    short piece; its neighbours see a singularity just outside their end, at a distance
    ``delta`` much smaller than their width, and converge only algebraically without this.
    The ratio 4 is needed: with 32, neighbours 4-32 times shorter (near, not at, a corner
    entry) cost hardtanh's eps > 0 table 4e-10 in ``lambda_G`` at B = 4; at eps = 0 the
    grading costs the generated hardtanh module about 25% (neighbours 4-19 times shorter
    occur at ordinary batch sizes).
    """
    widths = [b - a for a, b, _, _ in pieces]
    out = []
    for i, (a, b, pa, pb) in enumerate(pieces):
        w = widths[i]
        inner = []
        if i > 0 and w > ratio * widths[i - 1]:
            t = 2 * widths[i - 1]
            while t < w / 2:
                inner.append(a + t)
                t *= 2
        if i + 1 < len(pieces) and w > ratio * widths[i + 1]:
            t = 2 * widths[i + 1]
            while t < w / 2:
                inner.append(b - t)
                t *= 2
        seq = [(a, pa), *((x, 1) for x in sorted(inner)), (b, pb)]
        out.extend((x, y, px, py) for (x, px), (y, py) in zip(seq[:-1], seq[1:]) if y > x)
    return out


# -- integrands -----------------------------------------------------------------------


def _ipow(x, n: int):
    """``x**n`` by multiplication: also for arb balls containing 0 (arb's pow gives NaN)."""
    out = x
    for _ in range(n - 1):
        out = out * x
    return out


def _point_value(pt, z, f, df):
    """``z^m phi^p phi'^q`` at one coordinate (numpy arrays, mpmath or arb numbers)."""
    val = 1
    if pt.m:
        val = val * _ipow(z, pt.m)
    if pt.p:
        val = val * _ipow(f, pt.p)
    if pt.q:
        val = val * _ipow(df, pt.q)
    return val


# -- mpmath route ------------------------------------------------------------------------


def _pieces(pieces, rule):
    """Nodes and weights of ``rule`` (on [0, 1]) mapped onto each piece ``(a, b, p_a, p_b)``.

    An end with power ``p > 1`` gets the substitution ``d = a + (b-a) s^p``, under which
    ``(d - a)^{r/p}`` times an analytic function becomes analytic in ``s`` (so Gauss-Legendre
    converges geometrically again); a piece with two such ends is halved first. Nodes near
    an end are measured from that end.
    """
    for a, b, pa, pb in pieces:
        if pa > 1 and pb > 1:
            m = (a + b) / 2
            yield from _pieces([(a, m, pa, 1), (m, b, 1, pb)], rule)
            continue
        span = b - a
        for u, v, w in rule:
            if pa > 1:
                yield a + span * u**pa, pa * span * u ** (pa - 1) * w
            elif pb > 1:
                yield b - span * v**pb, pb * span * v ** (pb - 1) * w
            else:
                yield (a + span * u if u < 0.5 else b - span * v), span * w


def _rule_kind(act: Activation) -> tuple[str, int]:
    """Gauss-Legendre with power substitutions, or tanh-sinh for irrational exponents."""
    if act.kink_power is None:
        return "ts", 1
    return "gl", act.kink_power


def _rule_arb(kind: str, level: int, bits: int) -> tuple:
    if kind == "gl":
        return arbmath.gauss_legendre(gl_count(level), bits)
    return tuple(tuple(arbmath.from_mpf(t) for t in node) for node in rule_mp(kind, level, bits))


def _arb_pieces(pieces):
    return [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb) for a, b, pa, pb in pieces]


#: Outer nodes from which the inner integrals of smooth ``phi`` are interpolated
#: (:mod:`.chebyshev`) rather than computed at every outer node.
INTERPOLATE_MIN_NODES = 48


def interpolation_error_ratio(errors: dict, values: dict, absolutes: dict, dps: int):
    """Largest ratio of an interpolation error to ``10^-(dps+3)`` of its moment's scale, the
    scale of :func:`adaptive_levels` (``|value|``, floored at the resolvable part of
    ``absolute``): at most 1 when the interpolant is good enough."""
    resolvable = mpmath.mpf(10) ** (dps + 3 - mpmath.mp.dps)
    tol = mpmath.mpf(10) ** (-dps - 3)
    worst = mpmath.mpf(0)
    for mo in errors:
        allowed = tol * max(abs(values[mo]), resolvable * absolutes[mo])
        if errors[mo] == 0:
            continue
        if allowed == 0:
            return mpmath.inf
        worst = max(worst, errors[mo] / allowed)
    return worst


def phi_parity(act: Activation) -> int:
    """``phi``'s parity (:func:`.arbmath.parity`: 1 even, -1 odd, else 0) where ``phi'`` has
    the opposite one, else 0: the smooth passes' lines are symmetric under ``z -> -z``
    (:func:`.inner.mirrored`), so half of the point values follow from the others."""
    par = arbmath.parity(act.expr)
    return par if par and arbmath.parity(act.derivative) == -par else 0


def smooth_layout(moments, pair, use_dphi: bool):
    """The bookkeeping shared by the smooth-``phi`` passes: the sorted distinct first points
    ``firsts`` and second points ``seconds`` (of the two-point moments), the generated
    evaluator of the first points' values, each second point's column, their number ``P``,
    and ``fg(z) = (phi(z), phi'(z))`` (``phi'`` as 0 where no moment needs it)."""
    firsts = sorted({mo.points[0] for mo in moments})
    seconds = sorted({mo.points[1] for mo in moments if mo.arity == 2})
    zero = arbmath.arb(0)

    def fg(z):
        if use_dphi:
            return pair(z)
        return pair(z)[0], zero

    return (firsts, seconds, point_evaluator(firsts), {pt: i for i, pt in enumerate(seconds)},
            len(seconds), fg)


def _mp_pass_smooth(act: Activation, moments, geo: Geometry, level: int, prec: int, dps: int):
    """:func:`_mp_pass` for ``phi`` without kinks: one piece per angle, so the inner rule is
    the same at every outer node (its sines and weights are computed once), and the inner
    integrals, analytic in ``d1``, are interpolated from Chebyshev points (:mod:`.chebyshev`)
    with the interpolation error estimated from nested point sets and returned as a third
    entry ``(value, absolute, interpolation_error)``; if the interpolant does not reach
    ``10^-(dps+3)`` of the moments it falls back to the inner integral at every outer node.
    """
    with arbmath.precision(prec):
        pair = arbmath.arb_function_pair(act.expr, act.derivative, prec)
        use_dphi = any(p.q for mo in moments for p in mo.points)
        two = [mo for mo in moments if mo.arity == 2]
        one = [mo for mo in moments if mo.arity == 1]
        rule = _rule_arb("gl", level, prec)
        B = geo.B
        root, rho, sigma = (arbmath.from_mpf(v) for v in (geo.root, geo.rho, geo.sigma))
        W1, W2 = arbmath.from_mpf(geo.window1), arbmath.from_mpf(geo.window2)
        zero = arbmath.arb(0)
        firsts, seconds, first_values, col, P, fg = smooth_layout(moments, pair, use_dphi)
        # outer nodes d1 = W1 t, t the Gauss-Legendre nodes on [-1, 1] (as _pieces maps them)
        xs = [2 * u - 1 if u < 0.5 else 1 - 2 * v for u, v, _ in rule]
        outer = []
        sums = {mo: zero for mo in moments}
        sums_abs = {mo: zero for mo in moments}
        norm1 = zero
        for d1, w1 in _pieces([(-W1, W1, 1, 1)], rule):
            s1, c1 = d1.sin_cos()
            wt1 = w1 * c1 ** (B - 3)
            z1 = root * s1
            f1, g1 = fg(z1)
            vals = dict(zip(firsts, first_values(z1, f1, g1)))
            norm1 += wt1
            for mo in one:
                val = wt1 * vals[mo.points[0]]
                sums[mo] += val
                sums_abs[mo] += abs(val)
            outer.append((d1, s1, c1, wt1, vals))
        interp_err = {mo: zero for mo in two}
        norm2 = zero
        if two:
            sines, weights2 = [], []
            for d2, w2 in _pieces([(-W2, W2, 1, 1)], rule):
                sn2, cs2 = d2.sin_cos()
                sines.append(sn2)
                weights2.append(w2 * cs2 ** (B - 4))
            inner_norm = sum(weights2, zero)
            root_rho, root_sigma = root * rho, root * sigma

            def inner_sc(sin_cos):
                # z2 = sqrt(B-1) (rho s1 + sigma c1 sin d2) along each outer node's line
                return line_sums(pair, seconds, [root_rho * s1 for s1, _ in sin_cos],
                                 [root_sigma * c1 for _, c1 in sin_cos], sines, weights2,
                                 use_dphi, parity=phi_parity(act))

            def inner_many(d1s):
                return inner_sc([d1.sin_cos() for d1 in d1s])

            left = left_matrices(outer, two)
            found = _interpolated_inner(inner_many, W1, xs, prec, ("sphere", level),
                                        left, two, col, P, dps)
            interp_err.update(add_two_point_sums(
                found, left, lambda: inner_sc([(s1, c1) for _, s1, c1, _, _ in outer]),
                two, col, P, sums, sums_abs))
            norm2 = norm1 * inner_norm
        out = {}
        for mo in moments:
            norm = norm1 if mo.arity == 1 else norm2
            err = arbmath.to_mpf(interp_err[mo] / norm) if mo in interp_err else mpmath.mpf(0)
            out[mo] = (arbmath.to_mpf(sums[mo] / norm), arbmath.to_mpf(sums_abs[mo] / norm),
                       abs(err))
        return out


@dataclass
class OuterFactors:
    """The outer factor of each two-point moment at each outer node (weight times the
    first point's value) as the rows of an arb matrix ``signed``, and their moduli in
    float64 scaled by ``2^-exps[r]`` per row (sizes only): outer sums are matrix products."""

    signed: arb_mat
    moduli: np.ndarray
    exps: list


def left_matrices(outer, two) -> OuterFactors:
    """:class:`OuterFactors` from ``outer[i] = (..., weight, first-point values)``."""
    rows = [[entry[-2] * entry[-1][mo.points[0]] for entry in outer] for mo in two]
    moduli, exps = arbmath.scaled_columns(list(zip(*rows)))
    return OuterFactors(arb_mat(rows), np.abs(moduli.T), exps)


def _sizes(left: OuterFactors, floats: np.ndarray, col_exps, two, col) -> dict:
    """``sum_i |left_i| |A_k(i)|`` per moment from scaled floats (``|A| 2^-col_exps``), as
    mpmath numbers."""
    prod = left.moduli @ np.abs(floats)
    return {mo: mpmath.ldexp(mpmath.mpf(float(prod[r, col[mo.points[1]]])),
                             left.exps[r] + col_exps[col[mo.points[1]]])
            for r, mo in enumerate(two)}


def moment_sums(left: OuterFactors, rows, two, col, P) -> tuple[dict, dict]:
    """``sum_i left_i S_k(i)`` (arb) and ``sum_i |left_i| |A_k(i)|`` (mpmath) of each
    two-point moment, ``rows[i]`` the inner integrals at outer node ``i`` (``S_k``, then the
    absolute ``A_k``)."""
    signed = left.signed * arb_mat([row[:P] for row in rows])
    floats, exps = arbmath.scaled_columns([row[P:] for row in rows])
    return ({mo: signed[r, col[mo.points[1]]] for r, mo in enumerate(two)},
            _sizes(left, floats, exps, two, col))


def add_two_point_sums(found, left: OuterFactors, rows, two, col, P, sums, sums_abs) -> dict:
    """Add each two-point moment's outer sum ``sum_i left_i S_k(i)`` to ``sums[moment]`` and
    its size ``sum_i |left_i| |A_k(i)|`` to ``sums_abs[moment]`` (arbs): from the accepted
    interpolation ``found`` (:func:`_interpolated_inner`), or, if it is None, from the inner
    integrals at every outer node, ``rows()`` (:func:`moment_sums`). Returns the
    interpolation's error bound per moment (arb; empty without interpolation)."""
    errors = {}
    if found is None:
        values, absolutes = moment_sums(left, rows(), two, col, P)
    else:
        values, absolutes = found.values, found.absolutes
        errors = {mo: arbmath.from_mpf(found.errors[mo]) for mo in two}
    for mo in two:
        sums[mo] += values[mo]
        sums_abs[mo] += arbmath.from_mpf(absolutes[mo])
    return errors


@dataclass
class Interpolated:
    """The outer sums of accepted interpolated inner integrals (``values`` arb,
    ``absolutes`` and ``errors`` mpmath, per two-point moment) and the interpolation."""

    values: dict
    absolutes: dict
    errors: dict
    interpolation: object

    def fine(self) -> arb_mat:
        """The interpolated inner integrals at the outer nodes (``n x 2P``)."""
        return self.interpolation.evaluate()[0]


def _interpolated_inner(inner_many, W, xs, prec, key, left, two, col, P, dps):
    """Inner integrals at the outer nodes from a Chebyshev interpolant in the outer angle,
    summed with the outer factors ``left`` (:func:`left_matrices`): an :class:`Interpolated`
    whose ``errors[moment]`` bound the interpolation's effect on the (unnormalised)
    moment; or None when the outer rule is too small to gain or the interpolant does not
    converge before ``m`` reaches three quarters of the outer nodes. ``inner_many(points)``:
    the rows of inner integrals (``P`` signed columns, then ``P`` sizes) at a list of outer
    points.

    The error of the interpolant on ``m`` points is extrapolated from the differences of
    the last three point sets (``m``, ``(m+1)/2``, ``(m+3)/4``) as the quadrature levels are
    (:func:`_extrapolated_error`: doubling ``m`` squares a geometric error), relative to
    each moment's scale; with two point sets it is their difference. The differences and
    sizes are summed in float64 (they are errors and sizes, not values).
    """
    from .chebyshev import Interpolation

    n = len(xs)
    if n < INTERPOLATE_MIN_NODES:
        return None
    interp = Interpolation(lambda v: inner_many([v])[0], W, xs, prec, cache_key=key,
                           many=inner_many)
    history = []  # (m, log10 of the worst error/allowed ratio)
    previous = None  # weighted differences of the previous refinement
    while True:
        signed, (spread, spread_e), (sizes, sizes_e) = interp.weighted(left.signed, P)
        vals = {mo: arbmath.to_mpf(signed[r, col[mo.points[1]]]) for r, mo in enumerate(two)}
        diffs = _sizes(left, spread, spread_e, two, col)
        absl = _sizes(left, sizes, sizes_e, two, col)
        errs = dict(diffs)
        if previous is not None:
            for mo in two:
                scale = max(abs(vals[mo]), absl[mo] * mpmath.mpf(10) ** (dps + 3 - mpmath.mp.dps))
                if scale and previous[mo] > diffs[mo]:
                    # as a sequence I_{k-2}, I_{k-1}, I_k with |I_k - I_{k-1}| = diffs and
                    # |I_k - I_{k-2}| = previous (the error of the interpolant before)
                    d1, d0 = diffs[mo] / scale, previous[mo] / scale
                    errs[mo] = scale * _extrapolated_error([mpmath.mpf(0), d0 - d1, d0], 1)
        ratio = interpolation_error_ratio(errs, vals, absl, dps)
        if ratio <= 1:
            return Interpolated({mo: signed[r, col[mo.points[1]]] for r, mo in enumerate(two)},
                                absl, errs, interp)
        previous = diffs
        history.append((interp.m, float(mpmath.log10(ratio))))
        limit = 3 * n // 4
        if len(history) >= 2:
            # geometric convergence: digits gained per point so far predict the m needed
            (m1, l1), (m2, l2) = history[-2:]
            gain = (l1 - l2) / (m2 - m1)
            if gain <= 0 or m2 + l2 / gain > limit:
                return None
        if 2 * interp.m - 1 > limit:
            return None
        interp.refine()


def _mp_pass(act: Activation, moments, geo: Geometry, level: int, prec: int,
             dps: int | None = None):
    """One quadrature level at ``prec`` bits; integrand points in arb ball arithmetic.

    Returns ``{moment: (value, absolute)}``, ``absolute`` being the same quadrature of the
    integrand's modulus (the size against which cancellation is measured). Smooth ``phi``
    (given ``dps``) takes :func:`_mp_pass_smooth`.
    """
    if dps is not None and not act.kinks and _rule_kind(act)[0] == "gl":
        return _mp_pass_smooth(act, moments, geo, level, prec, dps)
    with arbmath.precision(prec):
        phi = arbmath.arb_function(act.expr, prec)
        dphi = arbmath.arb_function(act.derivative, prec)
        kinks = [mpmath.mpf(sp_N(k, prec)) for k in act.kinks]
        use_dphi = any(p.q for mo in moments for p in mo.points)
        two = [mo for mo in moments if mo.arity == 2]
        kind, power = _rule_kind(act)
        rule = _rule_arb(kind, level, prec)
        B = geo.B
        root, rho, sigma = (arbmath.from_mpf(v) for v in (geo.root, geo.rho, geo.sigma))
        zero = arbmath.arb(0)
        sums = {mo: zero for mo in moments}
        sums_abs = {mo: zero for mo in moments}
        norm1 = norm2 = zero  # norm2: inner normalisation, accumulated with the outer weight
        for d1, w1 in _pieces(_arb_pieces(geo.outer_pieces(kinks, power)), rule):
            s1, c1 = d1.sin_cos()
            wt1 = w1 * c1 ** (B - 3)
            z1 = root * s1
            f1 = phi(z1)
            g1 = dphi(z1) if use_dphi else 0
            norm1 += wt1
            for mo in moments:
                if mo.arity == 1:
                    val = wt1 * _point_value(mo.points[0], z1, f1, g1)
                    sums[mo] += val
                    sums_abs[mo] += abs(val)
            if not two:
                continue
            inner = [zero] * len(two)
            inner_abs = [zero] * len(two)
            inner_norm = zero
            ipieces = geo.inner_pieces(kinks, arbmath.to_mpf(s1), arbmath.to_mpf(c1), power)
            shift, scale = root * rho * s1, root * sigma * c1
            for d2, w2 in _pieces(_arb_pieces(ipieces), rule):
                sn2, cs2 = d2.sin_cos()
                wt2 = w2 * cs2 ** (B - 4)
                z2 = shift + scale * sn2
                f2 = phi(z2)
                g2 = dphi(z2) if use_dphi else 0
                inner_norm += wt2
                for i, mo in enumerate(two):
                    val = wt2 * _point_value(mo.points[1], z2, f2, g2)
                    inner[i] += val
                    inner_abs[i] += abs(val)
            norm2 += wt1 * inner_norm
            for i, mo in enumerate(two):
                left = wt1 * _point_value(mo.points[0], z1, f1, g1)
                sums[mo] += left * inner[i]
                sums_abs[mo] += abs(left) * inner_abs[i]
        out = {}
        for mo in moments:
            norm = norm1 if mo.arity == 1 else norm2
            out[mo] = (arbmath.to_mpf(sums[mo] / norm), arbmath.to_mpf(sums_abs[mo] / norm))
        return out


def _extrapolated_error(history, scale, counts=None, model=False):
    """Error of the last of a geometrically converging sequence of integrals, relative to
    ``scale`` (the moment's magnitude, see :func:`adaptive_levels`).

    Doubling the nodes of a Gauss rule roughly squares its error once in the asymptotic
    regime, so with ``D1 = log|I_k - I_{k-1}|`` and ``D2 = log|I_k - I_{k-2}|`` (relative)
    the error of ``I_k`` is about ``10^(D1^2/D2)`` (mpmath's ``estimate_error``). Before that
    regime the squaring is incomplete, so the estimate is never taken below ``10^(1.5 D1)``.

    ``counts = (n_{k-2}, n_{k-1}, n_k)``: the rules' node counts when they do not double.
    With the error ``~ rho^-n`` the digits grow in proportion to ``n``: the observed ratio
    ``D1/D2`` (an estimate of ``n_{k-1}/n_{k-2}``) is raised to the power
    ``log(n_k/n_{k-1}) / log(n_{k-1}/n_{k-2})``, and the floor is ``10^((1 + (r-1)/2) D1)``
    with ``r = n_k/n_{k-1}`` (half the gain the model expects, as ``1.5 D1`` is for ``r = 2``);
    doublings give the formulas above. ``model=True`` returns the model's estimate without
    the floor (to choose the next rule size, never to accept a result).
    """
    e1 = abs(history[-1] - history[-2]) / scale
    e2 = abs(history[-1] - history[-3]) / scale
    if e1 == 0:
        return mpmath.mpf(0)
    if e2 == 0 or e1 >= 1 or e2 >= 1:
        return max(e1, e2)
    d1, d2 = mpmath.log10(e1), mpmath.log10(e2)
    if d1 >= d2:
        return e1
    if counts is None:
        counts = (1, 2, 4)
    n0, n1, n2 = (mpmath.mpf(n) for n in counts)
    r = n2 / n1
    estimate = mpmath.mpf(10) ** (d1 * (d1 / d2) ** (mpmath.log(r) / mpmath.log(n1 / n0)))
    if model:
        return estimate
    return max(estimate, mpmath.mpf(10) ** ((1 + (r - 1) / 2) * d1))


#: Moments below ``10^-SMALL_MOMENT_DIGITS`` (in modulus of the integrand) widen the window.
SMALL_MOMENT_DIGITS = 3


def window_shift(absolutes) -> int:
    """Extra window digits so that dropped tails are small *relative* to each moment.

    The window drops weight x integrand below ``10^-(dps+10)`` in absolute terms, which is
    ``10^-(dps+10)/m`` relative to a moment of size ``m`` (``E|integrand|``): for
    ``tanh(x)^1000`` at ``B = 8`` the two-point moments are ``~1e-39``. Returns
    ``ceil(-log10 m) + 2`` for the smallest nonzero ``m`` below ``10^-3`` (2 digits of margin
    for a coarse-level estimate of ``m``), else 0.
    """
    sizes = [a for a in absolutes if a > 0]
    if not sizes or min(sizes) >= mpmath.mpf(10) ** -SMALL_MOMENT_DIGITS:
        return 0
    return int(mpmath.ceil(-mpmath.log10(min(sizes)))) + 2


def moments_mp(act: Activation, moments, B: int, dps: int, max_level: int = 9):
    """Sphere moments at ``mpmath`` precision ``dps`` with an error estimate.

    Gauss-Legendre per smooth piece, with power substitutions at singular ends (see
    :func:`_pieces`); the level (nodes doubling) is raised until the extrapolated error of
    every moment is below ``10^-dps`` of its magnitude (:func:`adaptive_levels`). Returns
    ``{moment: (value, abs_error_estimate)}``; raises :class:`QuadratureError` if that is not
    reached by ``max_level``.
    """
    moments = list(moments)
    with mpmath.workdps(dps + 15):
        prec = mpmath.mp.prec

        def make_pass(window_digits):
            geo = Geometry.make(B, effective_digits(act, B, window_digits))
            return lambda level: _mp_pass(act, moments, geo, level, prec, dps)

        return relative_levels(make_pass, moments, dps, max_level, f"sphere quadrature at B={B}")


def relative_levels(make_pass, moments, dps: int, max_level: int, what: str,
                    sizes: bool = False) -> dict:
    """:func:`adaptive_levels` on a window wide enough for the moments' magnitudes.

    ``make_pass(window_digits)`` gives ``run_level`` on a window that drops weight x integrand
    below ``10^-window_digits``. A coarse level measures the moments (``E|integrand|``);
    tiny ones widen the window by :func:`window_shift` digits, so the dropped tails stay below
    ``10^-(dps+10)`` of every moment; the converged sizes are checked once more.
    ``sizes``: ``run_level`` takes a node count, chosen by :func:`adaptive_levels`.
    """
    digits = dps + 10
    run = make_pass(digits)
    probe = run(gl_count(2) if sizes else 2)
    shift = window_shift(entry[1] for entry in probe.values())
    for _ in range(2):
        if shift:
            run, probe = make_pass(digits + shift), None
        result, absolutes = adaptive_levels(run, moments, dps, max_level, what,
                                            mpmath.mpf(10) ** -(digits + shift), first=probe,
                                            sizes=sizes)
        needed = window_shift(absolutes.values())
        if needed <= shift:
            break
        shift = needed
    return result


#: Smallest growth of the rule between two adaptive sizes (see :func:`adaptive_levels`).
MIN_GROWTH = mpmath.mpf(5) / 4


def _next_size(n: int, model_digits, target) -> int:
    """Node count after ``n``: the smallest growth ``r`` (between :data:`MIN_GROWTH` and 2)
    under which the floor of :func:`_extrapolated_error` at the next size, ``(1 + (r-1)/2)``
    times the digits of the current rule (``model_digits``, the model's estimate), reaches
    ``target`` digits."""
    if model_digits <= 0:
        return 2 * n
    r = 1 + 2 * (target / model_digits - 1)
    r = min(max(r, MIN_GROWTH), mpmath.mpf(2))
    return int(mpmath.ceil(r * n))


def adaptive_levels(run_level, moments, dps: int, max_level: int, what: str, truncation,
                    first=None, sizes: bool = False):
    """Raise the rule level until every moment's extrapolated error is below ``10^-dps`` of its
    magnitude.

    ``run_level(level) -> {moment: (value, absolute)}`` (``absolute``: the quadrature of the
    integrand's modulus; ``first``: level 2, if already computed). The error is relative to
    ``|value|``, floored where the moment cancels beyond what the working precision resolves
    (``10^-(working dps - dps - 3)`` of ``absolute``): an absolute criterion would declare a
    moment of ``1e-39`` converged with no digit. Returns ``({moment: (value, abs_error)},
    {moment: absolute})``, the error including ``truncation``, the caller's bound on the
    dropped weight tails.

    ``sizes=True``: ``run_level(n)`` takes the node count ``n``; the first three are
    ``gl_count(2..4)`` (doublings), each later one grows by the least factor (at most 2, at
    least :data:`MIN_GROWTH`) with which, if the model's estimate of the current error is
    right, the next error estimate (with its floor) passes (:func:`_next_size`): a final
    doubling would compute a rule with up to twice the digits needed. Stops once the count
    exceeds ``gl_count(max_level)``.
    """
    tol = mpmath.mpf(10) ** (-dps - 1)
    resolvable = mpmath.mpf(10) ** (dps + 3 - mpmath.mp.dps)
    history: dict = {mo: [] for mo in moments}
    counts: list = []
    n = gl_count(2)
    for level in range(2, 10**6):
        if sizes:
            if n > gl_count(max_level):
                break
        elif level > max_level:
            break
        cur = first if level == 2 and first is not None else run_level(n if sizes else level)
        counts.append(n)
        for mo in moments:
            history[mo].append(cur[mo][0])
        if level < 4:
            n = gl_count(level + 1)
            continue
        scale = {mo: max(abs(cur[mo][0]), resolvable * cur[mo][1]) for mo in moments}
        ns = tuple(counts[-3:]) if sizes else None
        errs = {mo: _extrapolated_error(history[mo], scale[mo], ns) if scale[mo]
                else mpmath.mpf(0) for mo in moments}
        if sizes:
            models = [_extrapolated_error(history[mo], scale[mo], ns, model=True)
                      for mo in moments if scale[mo]]
            worst = max(models, default=mpmath.mpf(0))
            digits = -mpmath.log10(worst) if worst > 0 else mpmath.inf
            n = _next_size(n, digits, dps + 2)
        if all(e <= tol for e in errs.values()):
            # a third entry is the pass's own error bound (interpolated inner integrals)
            return ({mo: (+cur[mo][0], errs[mo] * scale[mo] + truncation
                          + (cur[mo][2] if len(cur[mo]) > 2 else 0)) for mo in moments},
                    {mo: cur[mo][1] for mo in moments})
    raise QuadratureError(f"{what} did not reach {dps} digits")


# -- float64 route -------------------------------------------------------------------------


def _cos_power(power, d):
    if power == 0:
        return np.ones_like(d)
    s = np.sin(d / 2)
    return np.exp(power * np.log1p(-2 * s * s))


def _map_rule(a, b, rule):
    """Map a [0, 1] rule onto intervals [a, b] (arrays broadcast); nodes measured from the
    near end."""
    u, v, w = rule
    span = b - a
    nodes = np.where(u < 0.5, a + span * u, b - span * v)
    return nodes, span * w


def _piece_nodes(pieces, rule):
    """Float version of :func:`_pieces`: all nodes and weights as two arrays (one batch size
    of :func:`_piece_nodes_many`)."""
    if not pieces:
        return np.empty(0), np.empty(0)
    ends = np.array([[float(p[0]) for p in pieces], [float(p[1]) for p in pieces]])
    nodes, weights = _piece_nodes_many(ends[:1], ends[1:], [(p[2], p[3]) for p in pieces], rule)
    return nodes[0], weights[0]


def _inner_nodes(brk: np.ndarray, rule, power: int, W2):
    """Inner nodes per outer node; ends strictly inside the window are kinks (power ``power``).

    With ``power > 1`` each piece is halved and each half mapped with ``s^power`` from its
    kink end, as :func:`_pieces` does. ``brk`` of shape ``(..., n1, pieces + 1)`` (a leading
    batch-size axis allowed, ``W2`` then broadcasting against it, e.g. ``(nB, 1, 1, 1)``).
    """
    u, v, w = rule
    a, b = brk[..., :-1, None], brk[..., 1:, None]
    if power == 1:
        return _map_rule(a, b, rule)
    m = (a + b) / 2
    left_kink = np.abs(a) < W2
    right_kink = np.abs(b) < W2
    span_l, span_r = m - a, b - m
    # left half [a, m]: substitution from a if a is a kink
    dl = np.where(
        left_kink, a + span_l * u**power, np.where(u < 0.5, a + span_l * u, m - span_l * v)
    )
    wl = np.where(left_kink, power * span_l * u ** (power - 1) * w, span_l * w)
    dr = np.where(
        right_kink, b - span_r * v**power, np.where(u < 0.5, m + span_r * u, b - span_r * v)
    )
    wr = np.where(right_kink, power * span_r * v ** (power - 1) * w, span_r * w)
    return np.concatenate([dl, dr], axis=-1), np.concatenate([wl, wr], axis=-1)


def moments_float(act: Activation, moments, B: int, level: int = 4,
                  window_digits: int = 20) -> dict:
    """Sphere moments in float64, vectorised over the nodes of one batch size.

    ``level`` sets the rule size (:mod:`.rules`); about 1e-15 relative for ``phi`` analytic
    between kinks at the default. The caller estimates the error with a second level. The
    window drops weight x integrand below ``10^-window_digits``. The outer breakpoints are
    computed at 30 digits: a tangency point is square-root conditioned, so at 15 digits two
    breakpoints closer than 1e-7 would be merged (a kink line crossing the boundary at
    another kink, as ``phi(rho z)`` near such a ``rho`` has) and the singularity between them
    missed (3e-10 relative at B = 5 for hardtanh at ``rho - sqrt(2/5) = 1.3e-8``).
    """
    moments = list(moments)
    with mpmath.workdps(30):
        geo = Geometry.make(B, effective_digits(act, B, window_digits))
        kinks = [mpmath.mpf(float(k)) for k in act.kinks]
        kind, power = _rule_kind(act)
        outer = graded_pieces(geo.outer_pieces(kinks, power))
    two = [mo for mo in moments if mo.arity == 2]
    rule = rule_float(kind, level)
    d1, w1 = _piece_nodes(outer, rule)
    root, rho, sigma = float(geo.root), float(geo.rho), float(geo.sigma)
    s1, c1 = np.sin(d1), np.cos(d1)
    wt1 = w1 * _cos_power(B - 3, d1)
    z1 = root * s1
    phi, dphi = act.numpy, act.numpy_derivative
    use_dphi = any(p.q for mo in moments for p in mo.points)
    f1 = phi(z1)
    g1 = dphi(z1) if use_dphi else None
    out = {}
    for mo in moments:
        if mo.arity == 1:
            out[mo] = float(np.dot(wt1, _point_value(mo.points[0], z1, f1, g1)) / wt1.sum())
    if not two:
        return out
    # inner nodes: one row per outer node, pieces padded to a fixed count
    W2 = float(geo.window2)
    sW2 = math.sin(W2)
    rows = [np.full_like(d1, -W2)]
    for k in act.kink_floats:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (k / root - rho * s1) / (sigma * c1)
        s = np.where(np.isfinite(s), np.clip(s, -sW2, sW2), -sW2)
        rows.append(np.arcsin(s))
    rows.append(np.full_like(d1, W2))
    brk = np.sort(np.stack(rows, axis=1), axis=1)  # (n1, npieces+1)
    d2, w2 = _inner_nodes(brk, rule, power, W2)
    w2 = w2 * _cos_power(B - 4, d2)
    z2 = root * (rho * s1[:, None, None] + sigma * c1[:, None, None] * np.sin(d2))
    f2 = phi(z2)
    g2 = dphi(z2) if use_dphi else None
    norm2 = np.dot(wt1, w2.sum(axis=(1, 2)))
    for mo in two:
        left = _point_value(mo.points[0], z1, f1, g1)
        right = (w2 * _point_value(mo.points[1], z2, f2, g2)).sum(axis=(1, 2))
        out[mo] = float(np.dot(wt1 * left, right) / norm2)
    return out


def moments_float_estimated(act: Activation, moments, B: int, rtol: float = 1e-14,
                            max_level: int = 7) -> tuple[dict, dict]:
    """:func:`moments_float` with the level raised until two levels agree to ``rtol``
    (relative to each moment).

    Returns ``(values, abs_errors)``; the error of the finer level is bounded by the
    difference of the last two (plus rounding), as convergence is geometric. The window drops
    tails below ``1e-20`` absolute; a moment below ``1e-5`` is recomputed on a window wider by
    its magnitude, so that the tails stay below ``1e-15`` of it.
    """
    moments = list(moments)
    cur, errs = _float_levels(act, moments, B, rtol, max_level, 20)
    sizes = [abs(v) for v in cur.values() if v]
    if sizes and min(sizes) < 1e-5:
        cur, errs = _float_levels(act, moments, B, rtol, max_level,
                                  20 + math.ceil(-math.log10(min(sizes))))
    return cur, errs


def _float_levels(act, moments, B, rtol, max_level, window_digits):
    prev = moments_float(act, moments, B, 3, window_digits)
    for level in range(4, max_level + 1):
        cur = moments_float(act, moments, B, level, window_digits)
        errs = {mo: abs(cur[mo] - prev[mo]) + 4e-16 * abs(cur[mo]) for mo in moments}
        if all(errs[mo] <= rtol * max(abs(cur[mo]), 1e-300) for mo in moments):
            return cur, errs
        prev = cur
    return cur, errs


# -- float64 route over many batch sizes at once ---------------------------------------------


def _truncation_angle_float(power: float, digits: float) -> float:
    """:func:`truncation_angle` in float64."""
    if power <= 0:
        return math.pi / 2
    t = -digits * math.log(10) / power
    if t < -50:
        return math.pi / 2
    return math.acos(math.exp(t))


def _outer_pieces_float(B: float, kinks, kink_power: int, digits: float) -> list[tuple]:
    """:meth:`Geometry.outer_pieces` of ``Geometry.make(B, digits)`` in float64 (the same
    breakpoints, powers and merging; the mpmath geometry at the default 15 digits rounds to
    the same float64 numbers up to an ulp or so)."""
    rho = -1 / (B - 1)
    sigma = math.sqrt(B * (B - 2)) / (B - 1)
    root = math.sqrt(B - 1)
    W1 = _truncation_angle_float(B - 3, digits)
    W2 = _truncation_angle_float(B - 4, digits)
    tangency_limit = int(3 + digits)
    pts = {-W1: 1, W1: 1}
    s2 = sigma * math.sin(W2)
    radius = math.sqrt(rho**2 + s2**2)
    eps = 10.0 ** -(15 // 2)
    for k in kinks:
        kappa = k / root
        if abs(kappa) < 1:
            a = math.asin(kappa)
            pts[a] = math.lcm(pts.get(a, 1), kink_power)
        if B > tangency_limit or abs(kappa) > 1 + eps:
            continue
        s2k, radius_k = s2, radius
        if abs(kappa) >= radius:
            s2k, radius_k = sigma, 1.0
        psi = math.atan2(s2k, rho)
        base = math.asin(max(-1.0, min(1.0, kappa / radius_k)))
        for r in (base, math.pi - base):
            for cand in (r - psi, r + psi):
                for shift in (-2 * math.pi, 0.0, 2 * math.pi):
                    t = cand + shift
                    if -W1 < t < W1:
                        pts[t] = math.lcm(pts.get(t, 1), 2 * kink_power)
    keys = sorted(pts)
    merged: list = []
    for k in keys:
        if merged and abs(k - merged[-1][0]) <= eps * max(1.0, abs(k)):
            merged[-1][1] = max(merged[-1][1], pts[k])
        else:
            merged.append([k, pts[k]])
    if len(merged) > 1:
        merged[0][0], merged[-1][0] = keys[0], keys[-1]
    return [(a, b, pa, pb) for (a, pa), (b, pb) in zip(merged[:-1], merged[1:]) if b > a]


def _piece_nodes_many(a, b, powers, rule):
    """:func:`_piece_nodes` for the same piece layout at many batch sizes: ``a``, ``b`` arrays
    ``(nB, pieces)`` of the piece ends, ``powers`` the pieces' ``(p_a, p_b)``; nodes and weights
    as arrays ``(nB, nodes)``."""
    u, v, w = rule
    nodes, weights = [], []
    for j, (pa, pb) in enumerate(powers):
        lo, hi = a[:, j:j + 1], b[:, j:j + 1]
        if pa > 1 and pb > 1:
            m = (lo + hi) / 2
            halves = ((lo, m, pa, 1), (m, hi, 1, pb))
        else:
            halves = ((lo, hi, pa, pb),)
        for lo, hi, qa, qb in halves:
            span = hi - lo
            if qa > 1:
                nodes.append(lo + span * u**qa)
                weights.append(qa * span * u ** (qa - 1) * w)
            elif qb > 1:
                nodes.append(hi - span * v**qb)
                weights.append(qb * span * v ** (qb - 1) * w)
            else:
                nodes.append(np.where(u < 0.5, lo + span * u, hi - span * v))
                weights.append(span * w)
    return np.concatenate(nodes, axis=1), np.concatenate(weights, axis=1)


def _cos_power_many(power: np.ndarray, d: np.ndarray) -> np.ndarray:
    """:func:`_cos_power` with ``power`` an array broadcasting against ``d``."""
    s = np.sin(d / 2)
    with np.errstate(invalid="ignore"):
        out = np.exp(power * np.log1p(-2 * s * s))
    return np.where(power == 0, 1.0, out)


@dataclass(frozen=True)
class _Layout:
    """Batch sizes sharing one outer piece layout: ``B``, ``W2`` arrays ``(nB,)``, the piece
    ends ``a``, ``b`` arrays ``(nB, pieces)``, their powers, the window digits."""

    B: np.ndarray
    W2: np.ndarray
    a: np.ndarray
    b: np.ndarray
    powers: tuple


def _layouts(act: Activation, Bs, window_digits: int) -> list[tuple[np.ndarray, _Layout]]:
    """The batch sizes ``Bs`` grouped by outer piece layout: ``[(indices into Bs, layout)]``."""
    kind, power = _rule_kind(act)
    kinks = act.kink_floats
    groups: dict = {}
    for i, B in enumerate(Bs):
        digits = float(effective_digits(act, B, window_digits))
        pieces = _outer_pieces_float(float(B), kinks, power, digits)
        key = tuple((pa, pb) for _, _, pa, pb in pieces)
        entry = groups.setdefault(key, ([], [], [], []))
        entry[0].append(i)
        entry[1].append(_truncation_angle_float(float(B) - 4, digits))
        entry[2].append([p[0] for p in pieces])
        entry[3].append([p[1] for p in pieces])
    out = []
    for key, (idx, W2, a, b) in groups.items():
        idx = np.array(idx)
        out.append((idx, _Layout(np.asarray(Bs, dtype=float)[idx], np.array(W2),
                                 np.array(a), np.array(b), key)))
    return out


#: Gauss-Legendre sizes of :func:`moments_float_many`, after ``gl_count(3)`` and
#: ``gl_count(4)`` as in :func:`moments_float_estimated`, but growing by 4/3 or 3/2 instead of
#: doubling: where 48 nodes are converged and 24 are not (most batch sizes) the check of the 48
#: by 64 nodes costs less than half of the check by 96.
GL_LADDER = (24, 48, 64, 96, 128, 192, 256, 384)


def _float_rules(act: Activation, max_level: int) -> list:
    """The rules :func:`moments_float_many` tries in turn: :data:`GL_LADDER` up to
    ``gl_count(max_level)`` nodes, tanh-sinh levels 3 ... ``max_level`` (irrational kink
    exponents)."""
    kind, _ = _rule_kind(act)
    if kind == "gl":
        return [gauss_legendre_float_count(n) for n in GL_LADDER if n <= gl_count(max_level)]
    return [rule_float(kind, level) for level in range(3, max_level + 1)]


def _moments_float_layout(act: Activation, moments, lay: _Layout, rule):
    """:func:`moments_float` at every batch size of one layout with the float rule ``rule``:
    arrays ``(moments, nB)`` of the moments and of the same quadrature of the integrands'
    moduli (the sizes that rounding errors scale with)."""
    kind, power = _rule_kind(act)
    B = lay.B[:, None]
    d1, w1 = _piece_nodes_many(lay.a, lay.b, lay.powers, rule)  # (nB, n1)
    root, rho = np.sqrt(B - 1), -1 / (B - 1)
    sigma = np.sqrt(B * (B - 2)) / (B - 1)
    s1, c1 = np.sin(d1), np.cos(d1)
    wt1 = w1 * _cos_power_many(B - 3, d1)
    z1 = root * s1
    phi, dphi = act.numpy, act.numpy_derivative
    use_dphi = any(p.q for mo in moments for p in mo.points)
    f1 = phi(z1)
    g1 = dphi(z1) if use_dphi else None
    out = np.empty((len(moments), len(lay.B)))
    absolute = np.empty_like(out)
    norm1 = wt1.sum(axis=1)
    two = [i for i, mo in enumerate(moments) if mo.arity == 2]
    for i, mo in enumerate(moments):
        if mo.arity == 1:
            val = wt1 * _point_value(mo.points[0], z1, f1, g1)
            out[i] = val.sum(axis=1) / norm1
            absolute[i] = np.abs(val).sum(axis=1) / norm1
    if not two:
        return out, absolute
    W2 = lay.W2[:, None]
    sW2 = np.sin(W2)
    rows = [np.broadcast_to(-W2, d1.shape)]
    for k in act.kink_floats:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (k / root - rho * s1) / (sigma * c1)
        s = np.where(np.isfinite(s), np.clip(s, -sW2, sW2), -sW2)
        rows.append(np.arcsin(s))
    rows.append(np.broadcast_to(W2, d1.shape))
    brk = np.sort(np.stack(rows, axis=-1), axis=-1)  # (nB, n1, pieces + 1)
    d2, w2 = _inner_nodes(brk, rule, power, lay.W2[:, None, None, None])
    B4 = lay.B[:, None, None, None]
    w2 = w2 * _cos_power_many(B4 - 4, d2)
    z2 = np.sqrt(B4 - 1) * ((-1 / (B4 - 1)) * s1[..., None, None]
                            + (np.sqrt(B4 * (B4 - 2)) / (B4 - 1)) * c1[..., None, None]
                            * np.sin(d2))
    f2 = phi(z2)
    g2 = dphi(z2) if use_dphi else None
    norm2 = (wt1 * w2.sum(axis=(2, 3))).sum(axis=1)
    inner: dict = {}
    for i in two:
        mo = moments[i]
        pt = mo.points[1]
        if pt not in inner:
            val = w2 * _point_value(pt, z2, f2, g2)
            inner[pt] = (val.sum(axis=(2, 3)), np.abs(val).sum(axis=(2, 3)))
        left = wt1 * _point_value(mo.points[0], z1, f1, g1)
        out[i] = (left * inner[pt][0]).sum(axis=1) / norm2
        absolute[i] = (np.abs(left) * inner[pt][1]).sum(axis=1) / norm2
    return out, absolute


#: Rounding allowance of :func:`moments_float_many`: ``ROUNDING_VALUE`` of the moment plus
#: ``ROUNDING`` of the quadrature of the integrand's modulus, so that a moment that cancels
#: (``|value| << absolute``) is not claimed to more digits than float64 sums keep. Against the
#: mpmath quadrature (elu, selu, ``Max(x,0)**1.5 + 0.1*x`` at 24 batch sizes from 4 to 10^6,
#: 648 moments) the errors reach 9.1 ulp of positive moments (the last at B = 20) and 1.5 ulp
#: of the modulus for cancelling ones; the allowance is at least 1.5 times every error seen.
ROUNDING_VALUE = 1.2e-15
ROUNDING = 3e-16


def moments_float_many(act: Activation, moments, Bs, rtol: float = 1e-14,
                       max_level: int = 7) -> tuple[dict, dict]:
    """The float64 sphere moments at every batch size of ``Bs`` (real, ``> 3``), vectorised
    over the batch sizes that share an outer piece layout: ``(values, abs_errors)``, each
    ``{moment: array over Bs}``.

    The geometry, windows and node maps of :func:`moments_float`; the rule grows along
    :data:`GL_LADDER` until two successive rules agree to ``rtol`` of every moment, or to the
    rounding level (:data:`ROUNDING_VALUE`, :data:`ROUNDING`; beyond it a larger rule cannot
    improve). The error claimed for the larger rule is the difference plus that rounding
    allowance (a convergence model would turn two rules that agree by accident, e.g. where
    rounding grows with the rule near an integrable singularity of ``phi'``, into a claim far
    below the error). Each batch size leaves the loop when it converges. As in
    :func:`moments_float_estimated`, a batch size with a moment below ``1e-5`` is recomputed on
    a window wider by its magnitude.
    """
    moments = list(moments)
    vals, errs, _ = moments_float_arrays(act, moments, Bs, rtol, max_level)
    return ({mo: vals[i] for i, mo in enumerate(moments)},
            {mo: errs[i] for i, mo in enumerate(moments)})


def moments_float_arrays(act: Activation, moments, Bs, rtol: float = 1e-14,
                         max_level: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`moments_float_many` as arrays ``(moments, len(Bs))``: the values, their absolute
    errors and the quadratures of the integrands' moduli."""
    moments = list(moments)
    Bs = np.asarray(Bs, dtype=float)
    vals, errs, absolute = (np.empty((len(moments), len(Bs))) for _ in range(3))
    out = (vals, errs, absolute)
    _levels_many(act, moments, Bs, np.arange(len(Bs)), rtol, max_level, 20, out)
    with np.errstate(divide="ignore"):
        small = np.where(vals == 0, np.inf, np.abs(vals)).min(axis=0)
    wide = np.flatnonzero(small < 1e-5)
    for digits in sorted({20 + math.ceil(-math.log10(s)) for s in small[wide]}):
        idx = wide[[20 + math.ceil(-math.log10(s)) == digits for s in small[wide]]]
        _levels_many(act, moments, Bs[idx], idx, rtol, max_level, digits, out)
    return out


def _levels_many(act, moments, Bs, where, rtol, max_level, window_digits, out):
    """The rule loop of :func:`moments_float_many` at the batch sizes ``Bs``, written into
    columns ``where`` of the arrays ``out = (values, errors, absolutes)``."""
    vals, errs, absolutes = out
    rules = _float_rules(act, max_level)
    for idx, lay in _layouts(act, Bs, window_digits):
        cols = where[idx]
        prev, _ = _moments_float_layout(act, moments, lay, rules[0])
        for k, rule in enumerate(rules[1:], 2):
            cur, absolute = _moments_float_layout(act, moments, lay, rule)
            diff = np.abs(cur - prev)
            rounding = ROUNDING_VALUE * np.abs(cur) + ROUNDING * absolute
            err = diff + rounding
            done = np.all((err <= rtol * np.maximum(np.abs(cur), 1e-300)) | (diff <= rounding),
                          axis=0)
            if k == len(rules):
                done[:] = True
            vals[:, cols[done]], errs[:, cols[done]] = cur[:, done], err[:, done]
            absolutes[:, cols[done]] = absolute[:, done]
            if done.all():
                break
            keep = ~done
            cols = cols[keep]
            prev = cur[:, keep]
            lay = _Layout(lay.B[keep], lay.W2[keep], lay.a[keep], lay.b[keep], lay.powers)
