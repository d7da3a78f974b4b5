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

from . import arbmath
from .rules import gl_count
from .sphere import (
    _interpolated_inner,
    _pieces,
    _point_value,
    _rule_arb,
    _rule_kind,
    effective_digits,
    merged_pieces,
    point_evaluator,
    relative_levels,
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
        if disc > 0:
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
        c1 = mpmath.exp(
            mpmath.loggamma(mpmath.mpf(B - 1) / 2) - mpmath.loggamma(mpmath.mpf(B - 2) / 2)
        ) / mpmath.sqrt(mpmath.pi * (B - 1))
        c2 = (B - 3) / (2 * mpmath.pi * mpmath.sqrt(mpmath.mpf(B) * (B - 2)))
        c1, c2 = arbmath.from_mpf(c1), arbmath.from_mpf(c2)
        R = arbmath.from_mpf(mpmath.sqrt(B - 1))
        firsts = sorted({mo.points[0] for mo in moments})
        seconds = sorted({mo.points[1] for mo in two})
        first_values, second_values = point_evaluator(firsts), point_evaluator(seconds)
        col = {pt: i for i, pt in enumerate(seconds)}
        P = len(seconds)

        def fg(z):
            if use_dphi:
                return pair(z)
            return pair(z)[0], zero

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
            half_pi = mpmath.pi / 2
            inv_B, inv_B2 = 1 / Bm, 1 / (Bm - 2)
            whole_chord = None  # the rule on a whole chord: the same for every full chord
            arb_one = arbmath.arb(1)

            def t_nodes(ip):
                nonlocal whole_chord
                full = len(ip) == 1 and ip[0][0] == -half_pi and ip[0][1] == half_pi
                if full and whole_chord is not None:
                    return whole_chord
                if full and whole:
                    # z2 = c + h x on the whole chord: the density is (1 - x^2)^((B-5)/2)
                    # times a constant, so Gauss-Gegenbauer (lam = (B-4)/2) leaves only
                    # phi(c + h x) to resolve (analytic on a Bernstein ellipse in x larger
                    # than the one in t, where x = sin t compresses the chord's middle by
                    # pi/2); the density itself is still evaluated at every node and its
                    # ratio to the rule's weight (1 - x^2)^((B-5)/2) enters the weights
                    whole_chord = [(x, arb_one, wx / wpow)
                                   for x, wx, wpow in arbmath.gauss_gegenbauer(
                                       n, B - 4, prec)]
                    return whole_chord
                arb_ip = [(arbmath.from_mpf(a), arbmath.from_mpf(b), pa, pb)
                          for a, b, pa, pb in ip]
                nodes = [(*t.sin_cos(), wt) for t, wt in _pieces(arb_ip, rule)]
                if full:
                    whole_chord = nodes
                return nodes

            def inner_at_z(z1):
                acc = [zero] * P
                acc_abs = [zero] * P
                chord = _inner_pieces(B, [], 1, arbmath.to_mpf(z1), Z)
                if chord is None:
                    return acc + acc_abs
                centre, half = arbmath.from_mpf(chord[0]), arbmath.from_mpf(chord[1])
                z1sq = z1 * z1
                for sin_t, cos_t, wt in t_nodes(chord[2]):
                    z2 = centre + half * sin_t
                    zs = z1 + z2
                    # the Thm 7 density, evaluated as written (not through the parametrisation)
                    q = 1 - (z1sq + z2 * z2 + zs * zs * inv_B2) * inv_B
                    if not q > 0:  # a ball touching the ellipse edge: zero weight
                        continue
                    dens2 = q ** ((B - 5) // 2) * (q.sqrt() if (B - 5) % 2 else 1)
                    w2 = wt * half * cos_t * dens2
                    f2, g2 = fg(z2)
                    for k, val in enumerate(second_values(z2, f2, g2)):
                        term = w2 * val
                        acc[k] += term
                        acc_abs[k] += abs(term)
                return acc + acc_abs

            def cos_power(z1):
                # cos(theta)^(B-4) = (1 - z1^2/(B-1))^((B-4)/2), the chord length's power
                c = 1 - z1 * z1 / (Bm - 1)
                return c ** ((B - 4) // 2) * (c.sqrt() if B % 2 else 1)

            table = None
            if Z < mpmath.sqrt(B - 1):
                # a truncated window keeps the chords away from the ellipse's ends, where
                # the ratio below would be 0/0
                theta_max = (arbmath.from_mpf(Z) / R).asin()
                xs = [(z1 / R).asin() / theta_max for z1, _, _ in outer]

                def reduced(theta):
                    z1 = R * theta.sin()
                    scale = cos_power(z1)
                    return [v / scale for v in inner_at_z(z1)]

                table = _interpolated_inner(reduced, theta_max, xs, prec, None,
                                            [(wc * cos_power(z1), vals)
                                             for z1, wc, vals in outer], two, col, P, dps)
                if table is not None:
                    scales = [cos_power(z1) for z1, _, _ in outer]
                    table = ([[v * sc for v in row] for row, sc in zip(table[0], scales)],
                             table[1])
            if table is None:
                table = ([inner_at_z(z1) for z1, _, _ in outer], None)
            fine, errors = table
            for i, (_, wc, vals) in enumerate(outer):
                row = fine[i]
                for mo in two:
                    k = col[mo.points[1]]
                    left = wc * vals[mo.points[0]]
                    sums[mo] += left * row[k]
                    sums_abs[mo] += abs(left) * abs(row[P + k])
            if errors is not None:
                interp_err = {mo: arbmath.from_mpf(errors[mo]) for mo in two}
        return {mo: (arbmath.to_mpf(sums[mo]), arbmath.to_mpf(sums_abs[mo]),
                     abs(arbmath.to_mpf(interp_err[mo])) if mo in interp_err else mpmath.mpf(0))
                for mo in moments}


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
        # normalising constants from log-Gamma at working precision (no overflow at any B)
        c1 = mpmath.exp(
            mpmath.loggamma(mpmath.mpf(B - 1) / 2) - mpmath.loggamma(mpmath.mpf(B - 2) / 2)
        ) / mpmath.sqrt(mpmath.pi * (B - 1))
        c2 = (B - 3) / (2 * mpmath.pi * mpmath.sqrt(mpmath.mpf(B) * (B - 2)))
        c1, c2 = arbmath.from_mpf(c1), arbmath.from_mpf(c2)
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
