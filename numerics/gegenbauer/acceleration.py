"""Richardson acceleration of the literal Thm 9 series for positive-homogeneous ``phi``."""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath

from bnmft.derive import Activation

from ._common import GegenbauerError
from .homogeneous import dirichlet_form, homogeneous_coefficients_mp
from .recurrence import r_coefficients_mp
from .tails import series_tail_mp


def _richardson(ns, values, p0, order: int | None = None):
    """Limit of ``S(n) = S + sum_{i < J-1} c_i n^-(p0 + i)`` from ``J`` values ``S(n_j)``
    (generalised Richardson extrapolation with known leading exponent ``p0``; an exact
    linear solve at the current precision)."""
    J = len(ns) if order is None else order
    ns, values = ns[-J:], values[-J:]
    A = mpmath.matrix(J, J)
    for row, n in enumerate(ns):
        A[row, 0] = 1
        for i in range(1, J):
            A[row, i] = mpmath.mpf(n) ** (-(p0 + i - 1))
    sol = mpmath.lu_solve(A, mpmath.matrix(values))
    return sol[0]


@dataclass
class Thm9Acceleration:
    """Result of :func:`thm9_accelerated_mp` (all numbers mpmath)."""

    rate: object
    digits: float
    K: int
    partial_rate: object  # the plain truncated series at K terms
    numerator: object
    denominator: object
    numerator_check: object  # E[(B-1-z^2) phi'^2]/(B-3): what the smooth part must sum to
    details: dict = field(default_factory=dict)


def thm9_accelerated_mp(act: Activation, B: int, dps: int = 30, K: int = 4096, J: int = 10):
    """Paper Thm 9 for positive-homogeneous (kinked) ``phi`` from its terms alone, accelerated.

    Terms ``t_k = w_k c_k a_k^2`` (``w_k = k(k+2 lambda)/(2 lambda)`` or 1) with exact ``a_k``
    (closed form). Split ``c_k = 1 - r_k``:

    * the smooth part ``sum w_k a_k^2``: ``a_k^2 ~ k^-(2 alpha + 2) (1 + O(1/k))`` on each
      parity (from the ratio ``a_{k+2}/a_k``), so its partial sums have an error expansion in
      ``n^-(p0 + i)`` with ``p0 = 2 alpha - 1`` (numerator) or ``2 alpha + 1`` (denominator):
      generalised Richardson extrapolation on ``J`` partial sums at ``n = jK/J``;
    * the oscillating part ``sum w_k r_k a_k^2`` (``r_k ~ k^-lambda cos(k theta + ...)``)
      converges absolutely and is summed directly to ``K`` with a tail bound.

    The digits are those on which the extrapolations of orders ``J`` and ``J - 2`` and the
    tail bound agree (an honest spread, not a proof). Returns :class:`Thm9Acceleration`.
    """
    if act.homogeneous is None:
        raise GegenbauerError("closed-form coefficients need a positive-homogeneous phi")
    alpha = mpmath.mpf(act.homogeneous.alpha)
    if act.derivative_has_delta or alpha <= mpmath.mpf(1) / 2:
        raise GegenbauerError("the Thm 9 numerator diverges (E[phi'^2] is infinite)")
    K = 2 * (K // 2)
    with mpmath.workdps(dps + 20):
        Bm = mpmath.mpf(B)
        lam = (Bm - 3) / 2
        a = homogeneous_coefficients_mp(act, B, K + 1)
        r = r_coefficients_mp(B, K + 1)
        w = [k * (k + 2 * lam) / (2 * lam) for k in range(K + 1)]
        sn = [mpmath.mpf(0)] + [w[k] * a[k] ** 2 for k in range(1, K + 1)]
        sd = [mpmath.mpf(0)] + [a[k] ** 2 for k in range(1, K + 1)]
        on = [sn[k] * r[k] for k in range(K + 1)]
        od = [sd[k] * r[k] for k in range(K + 1)]
        # partial sums at n_j = j K / J (even n: both parities complete)
        step = 2 * max(1, K // (2 * J))
        ns = [j * step for j in range(1, J + 1)]
        cum_n, cum_d = [], []
        acc_n = acc_d = mpmath.mpf(0)
        for k in range(1, ns[-1] + 1):
            acc_n += sn[k]
            acc_d += sd[k]
            if k in ns:
                cum_n.append(acc_n)
                cum_d.append(acc_d)
        SN = _richardson(ns, cum_n, 2 * alpha - 1)
        SD = _richardson(ns, cum_d, 2 * alpha + 1)
        SN2 = _richardson(ns, cum_n, 2 * alpha - 1, order=J - 2)
        SD2 = _richardson(ns, cum_d, 2 * alpha + 1, order=J - 2)
        ON, OD = mpmath.fsum(on[1 : ns[-1] + 1]), mpmath.fsum(od[1 : ns[-1] + 1])
        tail_n, tail_d = series_tail_mp(on[1 : ns[-1] + 1]), series_tail_mp(od[1 : ns[-1] + 1])
        num, den = SN - ON, SD - OD
        rate = num / den
        alt = (SN2 - ON) / (SD2 - OD)
        spread = abs(rate - alt) + abs(rate) * (tail_n / abs(num) + tail_d / abs(den))
        digits = float(-mpmath.log10(spread / abs(rate))) if spread else float(dps)
        partial = (cum_n[-1] - ON) / (cum_d[-1] - OD)
        check = dirichlet_form(act, B) / (2 * lam)
        return Thm9Acceleration(
            rate=+rate, digits=min(digits, dps), K=ns[-1], partial_rate=+partial,
            numerator=+num, denominator=+den, numerator_check=+check,
            details={"smooth_numerator": +SN, "smooth_denominator": +SD,
                     "oscillating_numerator": +ON, "oscillating_denominator": +OD,
                     "tail_bounds": (+tail_n, +tail_d)},
        )
