"""Sphere moments in Cartesian coordinates ``(z1, z2)``: the paper's Thm 7 form.

An independent second high-precision route (different coordinates, normalisation and
breakpoints from :mod:`.sphere`). Two sphere coordinates have the density

    p(z1, z2) = (B-3) / (2 pi sqrt(B(B-2))) * (1 - |w|^2)^((B-5)/2),
    |w|^2 = (z1^2 + z2^2 + (z1 + z2)^2/(B-2)) / B,

on the ellipse ``|w| < 1`` (the paper writes ``(B(B-2))^(2-B/2) Z^((B-5)/2)`` with
``Z = B(B-2)(1 - |w|^2)``, which overflows beyond B ~ 156; this form does not). One
coordinate has density
``Gamma((B-1)/2) / (Gamma((B-2)/2) sqrt(pi (B-1))) (1 - z^2/(B-1))^((B-4)/2)``.

For fixed ``z1`` the ``z2``-chord of the ellipse is an interval whose ends carry the
algebraic factor ``(B-5)/2``; kinks of ``phi`` at ``z = k`` split both integrals, and the
values of ``z1`` where the line ``z2 = k`` meets the ellipse (where an inner kink leaves
the chord) split the outer one. Singular ends get the power substitutions of
:func:`.sphere._pieces`; nothing is truncated except where the weight is below ``10^-P``.
"""

from __future__ import annotations

import mpmath

from bnmft.derive import Activation

from flint import arb_mat

from . import arbmath
from .inner import antisymmetric, line_sums, mirrored
from .rules import gl_count
from .sphere import (
    _interpolated_inner,
    _pieces,
    _point_value,
    _rule_arb,
    _rule_kind,
    add_two_point_sums,
    effective_digits,
    left_matrices,
    merged_pieces,
    phi_parity,
    point_evaluator,
    relative_levels,
    smooth_layout,
)


def _chord(B, z1):
    """Ends of the ``z2`` interval with ``|w| <= 1`` at ``z1`` (mpmath), or None."""
    # B(1-|w|^2)(B-2) = B(B-2) - (B-1)(z1^2+z2^2) - 2 z1 z2 >= 0 ; quadratic in z2
    a = B - 1
    b = 2 * z1
    c = (B - 1) * z1**2 - B * (B - 2)
    disc = b * b - 4 * a * c
    if disc <= 0:
        return None
    r = mpmath.sqrt(disc)
    return (-b - r) / (2 * a), (-b + r) / (2 * a)


def _window(B, digits) -> mpmath.mpf:
    """``|z|`` beyond which the one-point density is below ``10^-digits`` of its peak."""
    n = mpmath.mpf(B - 4) / 2
    if n <= 0:
        return mpmath.sqrt(B - 1)
    # (1 - t^2/(B-1))^n = 10^-digits
    R = mpmath.sqrt(B - 1)
    Z = R * mpmath.sqrt(1 - mpmath.exp(-digits * mpmath.log(10) / n))
    # a cut just inside the end would leave its (R - z)^((B-4)/2) singularity next to the
    # last node: integrate up to the end instead
    return R if Z > R * mpmath.mpf("0.99") else Z


def _outer_pieces(B, kinks, power, Z):
    """``z1`` pieces on ``[-Z, Z]``: kinks, and where ``z2 = k`` is tangent to/meets the chord."""
    # the marginal (1 - z^2/(B-1))^((B-4)/2) is singular at the true ends for odd B (and the
    # chord length sqrt(R^2 - z^2) enters the two-point integral): substitution there only
    edge = 2 if Z >= mpmath.sqrt(B - 1) else 1
    pts = {-Z: edge, Z: edge}
    for k in kinks:
        if -Z < k < Z:
            pts[k] = max(pts.get(k, 1), power)
        # (z1, k) on the ellipse: (B-1) z1^2 + 2 k z1 + (B-1) k^2 - B(B-2) = 0
        a, b, c = B - 1, 2 * k, (B - 1) * k * k - B * (B - 2)
        disc = b * b - 4 * a * c
        if disc >= 0:  # 0: |k| = sqrt(B-1), the line touches the ellipse at z1 = -k/(B-1)
            for t in ((-b - mpmath.sqrt(disc)) / (2 * a), (-b + mpmath.sqrt(disc)) / (2 * a)):
                if -Z < t < Z:
                    pts[t] = max(pts.get(t, 1), 2 * power)
    return merged_pieces(pts)


def _inner_pieces(B, kinks, power, z1, Z):
    """Pieces of the inner angle ``t`` with ``z2 = c + h sin t`` on the chord at ``z1``.

    ``c``, ``h``: centre and half-length of the chord. The density factor
    ``(1 - |w|^2)^((B-5)/2)`` times ``dz2 = h cos t dt`` is ``cos^{B-4} t`` up to a constant:
    analytic, so only kinks (``sin t = (k - c)/h``) and the window split the angle. A kink
    close to a chord end would otherwise leave a square-root singularity just outside a
    piece and stall Gauss-Legendre.
    """
    ends = _chord(B, z1)
    if ends is None:
        return None
    c, h = (ends[0] + ends[1]) / 2, (ends[1] - ends[0]) / 2
    half = mpmath.pi / 2
    lo = mpmath.asin((-Z - c) / h) if -Z > ends[0] else -half
    hi = mpmath.asin((Z - c) / h) if Z < ends[1] else half
    if hi <= lo:
        return None
    pts = [(lo, 1), (hi, 1)]
    for k in kinks:
        t = (k - c) / h
        if -1 < t < 1 and lo < mpmath.asin(t) < hi:
            pts.append((mpmath.asin(t), power))
    pts.sort()
    return c, h, [(a, b, pa, pb) for (a, pa), (b, pb) in zip(pts[:-1], pts[1:]) if b > a]


def _normalisers(B: int):
    """The Thm 7 densities' constants as arbs: ``c1 = Gamma((B-1)/2) / (Gamma((B-2)/2)
    sqrt(pi (B-1)))`` of the one-point marginal and ``c2 = (B-3) / (2 pi sqrt(B (B-2)))`` of
    the two-point one, from log-Gamma at working precision (no overflow at any B)."""
    c1 = mpmath.exp(
        mpmath.loggamma(mpmath.mpf(B - 1) / 2) - mpmath.loggamma(mpmath.mpf(B - 2) / 2)
    ) / mpmath.sqrt(mpmath.pi * (B - 1))
    c2 = (B - 3) / (2 * mpmath.pi * mpmath.sqrt(mpmath.mpf(B) * (B - 2)))
    return arbmath.from_mpf(c1), arbmath.from_mpf(c2)


def _pass_smooth(act: Activation, moments, B: int, n: int, prec: int, Z, dps: int):
    """:func:`_pass` for ``phi`` without kinks. On a truncated window (``Z < sqrt(B-1)``, large
    ``B``) the inner chord integrals are interpolated in the outer variable from Chebyshev
    points (:mod:`.chebyshev`): in the angle ``theta = asin(z1/sqrt(B-1))``, after division
    by ``cos(theta)^(B-4)`` (the chord's half-length is proportional to ``cos theta`` and the
    chord integral carries its ``(B-4)``-th power), which leaves a slowly varying analytic
    function. Returns ``(value, absolute, interpolation_error)``; where the interpolant does
    not reach ``10^-(dps+3)`` of the moments, or the window is not truncated, the inner
    integral is computed at every outer node as in :func:`_pass`."""
    two = [mo for mo in moments if mo.arity == 2]
    one = [mo for mo in moments if mo.arity == 1]
    use_dphi = any(p.q for mo in moments for p in mo.points)
    with arbmath.precision(prec):
        pair = arbmath.arb_function_pair(act.expr, act.derivative, prec)
        rule = arbmath.gauss_legendre(n, prec)
        Bm = arbmath.arb(B)
        zero = arbmath.arb(0)
        c1, c2 = _normalisers(B)
        R = arbmath.from_mpf(mpmath.sqrt(B - 1))
        firsts, seconds, first_values, col, P, fg = smooth_layout(moments, pair, use_dphi)
        sums = {mo: zero for mo in moments}
        sums_abs = {mo: zero for mo in moments}
        pieces = [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb)
                  for a, b, pa, pb in _outer_pieces(B, [], 1, Z)]
        outer = []
        # On the whole ellipse (no truncated window) the outer variable is split in two
        # halves with power substitutions at both ends; the outer integrand (marginal times
        # chord integral) is then smoother than the inner one (phi along a chord of length
        # ~ 2 sqrt(B)), so each half takes half the inner nodes: both still double per level,
        # so the extrapolated error of :func:`.sphere.adaptive_levels` measures both rules.
        whole = Z >= mpmath.sqrt(B - 1)
        outer_rule = arbmath.gauss_legendre((n + 1) // 2, prec) if whole else rule
        for z1, w1 in _pieces(pieces, outer_rule):
            f1, g1 = fg(z1)
            vals = dict(zip(firsts, first_values(z1, f1, g1)))
            if one:
                dens1 = c1 * (1 - z1 * z1 / (Bm - 1)) ** ((B - 4) // 2) * (
                    (1 - z1 * z1 / (Bm - 1)).sqrt() if B % 2 else 1)
                for mo in one:
                    val = w1 * dens1 * vals[mo.points[0]]
                    sums[mo] += val
                    sums_abs[mo] += abs(val)
            outer.append((z1, w1 * c2, vals))
        interp_err = {mo: zero for mo in two}
        if two:
            chords = _ChordIntegrals(pair, seconds, use_dphi, B, Z, n, rule, prec,
                                     phi_parity(act))

            def cos_power(z1):
                # cos(theta)^(B-4) = (1 - z1^2/(B-1))^((B-4)/2), the chord length's power
                c = 1 - z1 * z1 / (Bm - 1)
                return c ** ((B - 4) // 2) * (c.sqrt() if B % 2 else 1)

            left = left_matrices(outer, two)
            found = None
            if not whole:
                # a truncated window keeps the chords away from the ellipse's ends, where
                # the ratio below would be 0/0
                theta_max = (arbmath.from_mpf(Z) / R).asin()
                xs = [(z1 / R).asin() / theta_max for z1, _, _ in outer]

                def reduced(thetas):
                    z1s = [R * theta.sin() for theta in thetas]
                    return [[v / scale for v in row] for row, scale in
                            zip(chords.rows(z1s), map(cos_power, z1s))]

                # the reduced integrals with the outer factors times the powers: the same
                # sums as the integrals themselves with the plain factors
                scaled = left_matrices([(wc * cos_power(z1), vals) for z1, wc, vals in outer],
                                       two)
                found = _interpolated_inner(reduced, theta_max, xs, prec, None, scaled, two,
                                            col, P, dps)
            interp_err.update(add_two_point_sums(
                found, left, lambda: chords.rows([z1 for z1, _, _ in outer]), two, col, P,
                sums, sums_abs))
        return {mo: (arbmath.to_mpf(sums[mo]), arbmath.to_mpf(sums_abs[mo]),
                     abs(arbmath.to_mpf(interp_err[mo])) if mo in interp_err else mpmath.mpf(0))
                for mo in moments}


class _ChordIntegrals:
    """The inner (chord) integrals of the Thm 7 density at a list of outer points ``z1``:
    rows ``[S_1 .. S_P, A_1 .. A_P]`` as :func:`.inner.line_sums` gives them, with
    ``S_k = int p2(z1, z2) z2^m phi^p phi'^q dz2`` over the chord (and the window
    ``|z2| <= Z``), ``p2 = (1 - |w|^2)^((B-5)/2)`` up to the constant.

    The density is evaluated as written at every node: ``1 - |w|^2`` is the quadratic
    ``1 - (z1^2 + z2^2 + (z1 + z2)^2/(B-2))/B`` in ``z2``, its coefficients taken from that
    formula and its values at the nodes ``z2 = c + h x`` one matrix product, then raised to
    ``(B-5)/2`` node by node (zero where a ball may leave the ellipse). The chord at ``z1``
    is the interval where it is positive, ``c -+ h`` (:func:`_chord`, in balls). Three
    layouts of the nodes:

    * the window is the whole ellipse: ``z2 = c + h x`` with the Gauss-Gegenbauer rule
      (weight ``(1 - x^2)^((B-5)/2)``, ``lam = (B-4)/2``), the density's ratio to that
      weight in the weights, leaving only ``phi(c + h x)`` to resolve;
    * a truncated window that the ellipse contains (the square ``|z1|, |z2| <= Z``, at large
      ``B``): Gauss-Legendre in ``z2`` on ``[-Z, Z]``, the same nodes for every ``z1``, so
      that ``phi`` is evaluated once per node and each row is a product of the density
      matrix with the point values;
    * otherwise each chord clipped to the window, Gauss-Legendre in ``t`` with
      ``z2 = c + h sin t`` (the density times ``h cos t`` is ``cos^(B-4) t``).
    """

    def __init__(self, pair, points, use_dphi, B: int, Z, n: int, rule, prec: int,
                 parity: int = 0):
        self.pair, self.points, self.use_dphi, self.B = pair, list(points), use_dphi, B
        self.parity = parity
        self.rule, self.prec = rule, prec
        self.Bm = arbmath.arb(B)
        self.Z = arbmath.from_mpf(Z)
        R = mpmath.sqrt(B - 1)
        self.whole = Z >= R
        # |w|^2 = (a0 z1^2 + a1 z1 z2 + a0 z2^2) / B with a0 = 1 + 1/(B-2), a1 = 2/(B-2)
        self.a0 = 1 + 1 / (self.Bm - 2)
        self.a1 = 2 / (self.Bm - 2)
        corner = (2 * self.a0 + self.a1) * self.Z * self.Z / self.Bm
        self.square = not self.whole and corner < 1  # the window square inside the ellipse
        if self.whole:
            rule_x = arbmath.gauss_gegenbauer(n, B - 4, prec)
            self.nodes = [x for x, _, _ in rule_x]
            self.weights = [wx / wpow for _, wx, wpow in rule_x]
        elif self.square:
            self.nodes = [self.Z * (2 * u - 1 if u < 0.5 else 1 - 2 * v) for u, v, _ in rule]
            self.weights = [2 * self.Z * w for _, _, w in rule]
            self._point_cols = None

    def _quadratic(self, z1):
        """``(q0, q1, q2)`` with ``1 - |w|^2 = q0 + q1 z2 + q2 z2^2`` at ``z1``."""
        Bm = self.Bm
        return 1 - self.a0 * z1 * z1 / Bm, -self.a1 * z1 / Bm, -self.a0 / Bm

    def _density(self, q, mirror: bool = False):
        """``q^((B-5)/2)`` at each node (Arb's real power: ``exp(((B-5)/2) log q)``, one
        call, cheaper than an integer power and a square root), 0 where ``q`` may be 0.
        ``mirror``: the nodes are symmetric under ``(z1, z2) -> (-z1, -z2)`` with the order
        reversed, under which ``1 - |w|^2`` is even: the density of the first half read
        backwards gives the second half."""
        zero = arbmath.arb(0)
        count = (len(q) + 1) // 2 if mirror else len(q)
        if self.B == 5:
            out = [arbmath.arb(1) if q[k] > 0 else zero for k in range(count)]
        else:
            power = arbmath.arb(self.B - 5) / 2
            out = [q[k] ** power if q[k] > 0 else zero for k in range(count)]
        return out + out[:len(q) - count][::-1] if mirror else out

    def rows(self, z1s) -> list:
        if self.whole:
            return self._whole_rows(z1s)
        if self.square:
            return self._square_rows(z1s)
        return [self._clipped_row(z1) for z1 in z1s]

    def _chord(self, z1):
        """Centre and half-length of the chord at ``z1`` (balls), None off the ellipse."""
        Bm = self.Bm
        a, b, c = Bm - 1, 2 * z1, (Bm - 1) * z1 * z1 - Bm * (Bm - 2)
        disc = b * b - 4 * a * c
        if not disc > 0:
            return None
        return -b / (2 * a), disc.sqrt() / (2 * a)

    def _whole_rows(self, z1s):
        zero = arbmath.arb(0)
        P = len(self.points)
        found = [(i, ch) for i, ch in enumerate(map(self._chord, z1s)) if ch is not None]
        out = [[zero] * (2 * P) for _ in z1s]
        if not found:
            return out
        n = len(self.nodes)
        # 1 - |w|^2 at z2 = c + h x as a quadratic in x, at all nodes by one product
        coeffs = []
        for i, (c, h) in found:
            q0, q1, q2 = self._quadratic(z1s[i])
            coeffs.append([q0 + (q1 + q2 * c) * c, (q1 + 2 * q2 * c) * h, q2 * h * h])
        xs = arb_mat([[arbmath.arb(1)] * n, self.nodes, [x * x for x in self.nodes]])
        q = (arb_mat(coeffs) * xs).entries()
        centres, halves = [c for _, (c, _) in found], [h for _, (_, h) in found]
        mirror = mirrored(centres, halves, self.nodes) and antisymmetric(
            [z1s[i] for i, _ in found])
        rows = line_sums(self.pair, self.points, centres, halves, self.nodes, self.weights,
                         self.use_dphi, density=lambda _: self._density(q, mirror),
                         parity=self.parity)
        for (i, (_, h)), row in zip(found, rows):
            out[i] = [h * v for v in row]
        return out

    def _square_rows(self, z1s):
        if self._point_cols is None:
            # the point values at the fixed nodes z2 (phi once per node), with the weights
            evaluate = point_evaluator(self.points)
            values = []
            for z in self.nodes:
                f, g = self.pair(z) if self.use_dphi else (self.pair(z)[0], arbmath.arb(0))
                values.append(evaluate(z, f, g))
            self._point_cols = (
                arb_mat([[w * v for v in vals] for w, vals in zip(self.weights, values)]),
                arb_mat([[w * abs(v) for v in vals] for w, vals in zip(self.weights, values)]))
        n = len(self.nodes)
        coeffs = [list(self._quadratic(z1)) for z1 in z1s]
        zs = arb_mat([[arbmath.arb(1)] * n, self.nodes, [z * z for z in self.nodes]])
        q = (arb_mat(coeffs) * zs).entries()
        mirror = antisymmetric(z1s) and antisymmetric(self.nodes)
        dens = arb_mat(len(z1s), n, self._density(q, mirror))
        signed, modulus = dens * self._point_cols[0], dens * self._point_cols[1]
        P = len(self.points)
        return [[signed[i, k] for k in range(P)] + [modulus[i, k] for k in range(P)]
                for i in range(len(z1s))]

    def _clipped_row(self, z1):
        P = len(self.points)
        zero = arbmath.arb(0)
        chord = _inner_pieces(self.B, [], 1, arbmath.to_mpf(z1), arbmath.to_mpf(self.Z))
        if chord is None:
            return [zero] * (2 * P)
        centre, half = arbmath.from_mpf(chord[0]), arbmath.from_mpf(chord[1])
        pieces = [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb) for a, b, pa, pb in chord[2]]
        sines, weights = [], []
        for t, wt in _pieces(pieces, self.rule):
            sin_t, cos_t = t.sin_cos()
            sines.append(sin_t)
            weights.append(wt * cos_t)
        q0, q1, q2 = self._quadratic(z1)

        def density(zs):
            return self._density([q0 + (q1 + q2 * z) * z for z in zs])

        (row,) = line_sums(self.pair, self.points, [centre], [half], sines, weights,
                           self.use_dphi, density=density)
        return [half * v for v in row]


def _pass(act: Activation, moments, B: int, level: int, prec: int, Z):
    two = [mo for mo in moments if mo.arity == 2]
    one = [mo for mo in moments if mo.arity == 1]
    use_dphi = any(p.q for mo in moments for p in mo.points)
    kind, power = _rule_kind(act)
    with arbmath.precision(prec):
        phi = arbmath.arb_function(act.expr, prec)
        dphi = arbmath.arb_function(act.derivative, prec)
        kinks = [mpmath.mpf(k.evalf(prec // 3 + 5)) for k in act.kinks]
        rule = _rule_arb(kind, level, prec)
        Bm = arbmath.arb(B)
        zero = arbmath.arb(0)
        c1, c2 = _normalisers(B)
        sums = {mo: zero for mo in moments}
        sums_abs = {mo: zero for mo in moments}  # modulus of the integrand: the moment's size
        pieces = [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb)
                  for a, b, pa, pb in _outer_pieces(B, kinks, power, Z)]
        for z1, w1 in _pieces(pieces, rule):
            f1 = phi(z1)
            g1 = dphi(z1) if use_dphi else 0
            if one:
                dens1 = c1 * (1 - z1 * z1 / (Bm - 1)) ** ((B - 4) // 2) * (
                    (1 - z1 * z1 / (Bm - 1)).sqrt() if B % 2 else 1)
                for mo in one:
                    val = w1 * dens1 * _point_value(mo.points[0], z1, f1, g1)
                    sums[mo] += val
                    sums_abs[mo] += abs(val)
            if not two:
                continue
            inner = [zero] * len(two)
            inner_abs = [zero] * len(two)
            chord = _inner_pieces(B, kinks, power, arbmath.to_mpf(z1), Z)
            if chord is None:
                continue
            centre, half = arbmath.from_mpf(chord[0]), arbmath.from_mpf(chord[1])
            ip = [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb) for a, b, pa, pb in chord[2]]
            for t, wt in _pieces(ip, rule):
                sin_t, cos_t = t.sin_cos()
                z2 = centre + half * sin_t
                zs = z1 + z2
                # the Thm 7 density, evaluated as written (not through the parametrisation)
                q = 1 - (z1 * z1 + z2 * z2 + zs * zs / (Bm - 2)) / Bm
                if not q > 0:  # a ball touching the ellipse edge: zero weight
                    continue
                dens2 = q ** ((B - 5) // 2) * (q.sqrt() if (B - 5) % 2 else 1)
                w2 = wt * half * cos_t
                f2 = phi(z2)
                g2 = dphi(z2) if use_dphi else 0
                for i, mo in enumerate(two):
                    val = w2 * dens2 * _point_value(mo.points[1], z2, f2, g2)
                    inner[i] += val
                    inner_abs[i] += abs(val)
            for i, mo in enumerate(two):
                left = w1 * _point_value(mo.points[0], z1, f1, g1) * c2
                sums[mo] += left * inner[i]
                sums_abs[mo] += abs(left) * inner_abs[i]
        return {mo: (arbmath.to_mpf(sums[mo]), arbmath.to_mpf(sums_abs[mo])) for mo in moments}


def moments_cartesian(act: Activation, moments, B: int, dps: int, max_level: int = 9):
    """Sphere moments from the Cartesian (Thm 7) densities, with an error estimate.

    Same contract as :func:`.sphere.moments_mp`: ``{moment: (value, abs_error)}``, errors
    relative to each moment's magnitude (:func:`.sphere.relative_levels`).
    """
    if B < 5:
        raise ValueError("the two-point Cartesian density needs B >= 5 (B = 4 is a circle)")
    moments = list(moments)
    with mpmath.workdps(dps + 15):
        prec = mpmath.mp.prec

        smooth = not act.kinks and _rule_kind(act)[0] == "gl"
        # smooth phi on the whole ellipse: rule sizes chosen from the convergence so far
        # (adaptive_levels' sizes); on a truncated window (large B, interpolated chord
        # integrals) the doubling levels, which measured faster there (wider windows only
        # reach the whole ellipse, never leave it)
        sizes = smooth and _window(B, effective_digits(act, B, dps + 10)) >= mpmath.sqrt(B - 1)

        def make_pass(window_digits):
            Z = _window(B, effective_digits(act, B, window_digits))
            if sizes:
                return lambda n: _pass_smooth(act, moments, B, n, prec, Z, dps)
            if smooth:
                return lambda level: _pass_smooth(act, moments, B, gl_count(level), prec, Z, dps)
            return lambda level: _pass(act, moments, B, level, prec, Z)

        return relative_levels(make_pass, moments, dps, max_level,
                               f"Cartesian quadrature at B={B}", sizes=sizes)
