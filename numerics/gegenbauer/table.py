"""The table of ``bnmft gegenbauer``: coefficients, Thm 9 terms, partial sums and the total."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import sympy as sp

from bnmft.derive import gegenbauer as dg
from bnmft.derive import Activation, check_defined
from bnmft.progress import progress

from ..precision import decimal_string, digits_from_error
from .acceleration import thm9_accelerated_mp
from .float_route import gradient_rate_thm9
from .mp_coefficients import coefficients_mp
from .mp_route import gradient_rate_thm9_mp
from .recurrence import r_coefficients_mp

#: Most terms of a table whose coefficients come from quadrature: ``a_k`` for ``k < K`` cost
#: ``~6 K^2`` recurrence steps at mpmath precision (a few seconds at ``K = 500``).
MAX_TERMS_QUADRATURE = 500
#: Most terms with closed-form coefficients (positive-homogeneous ``phi``): cost ``~K``.
MAX_TERMS_CLOSED_FORM = 20_000


def max_terms(act: Activation) -> int:
    """Largest ``K`` for which :func:`gegenbauer_table` takes a few seconds (at 20 digits)."""
    return MAX_TERMS_CLOSED_FORM if act.homogeneous is not None else MAX_TERMS_QUADRATURE


@dataclass
class GegenbauerTable:
    """Coefficients ``a_k`` of ``phi`` at one batch size and the Thm 9 sums they give.

    ``rows[k]``: ``k``, ``a_k`` (decimal string), ``a_k_exact`` (SymPy string or None),
    ``c_k``, ``c_ak2`` (term of ``sum c_k a_k^2``), ``thm9_term`` (term of the Thm 9
    numerator), ``partial_denominator``, ``partial_numerator`` (running sums). ``partial``:
    the sums truncated at ``K`` (``q*`` by Parseval, ``q* c*`` by Funk-Hecke, the rate);
    ``total``: the rate to the digits achieved, and how.
    """

    activation: str
    B: int
    K: int
    dps: int
    rows: list
    partial: dict
    total: dict

    def summary_lines(self) -> list[tuple[str, str]]:
        lines = [(f"partial sums, K = {self.K}", "")]
        lines += [(f"  {k}", v) for k, v in self.partial.items()]
        lines.append(("gradient rate (Thm 9)", f"{self.total['rate']}  "
                      f"[{self.total['digits']:.1f} digits; {self.total['method']}]"))
        return lines

    def to_json(self) -> dict:
        return {"activation": self.activation, "batch_size": self.B, "terms": self.K,
                "dps": self.dps, "rows": self.rows, "partial": self.partial, "total": self.total}

    def to_text(self) -> str:
        return dg.table_text(self)

    def to_latex(self) -> str:
        return dg.table_latex(self)


_EXACT_MAX_CHARS = 160


def _exact_strings(act: Activation, B: int, K: int, limit: int):
    """Exact ``a_k`` as SymPy strings for ``k < min(K, limit)`` (polynomial: every ``k``)."""
    poly = dg.polynomial_coefficients(act.expr) if act.homogeneous is None else None
    out = []
    for k in range(K):
        if poly is not None and k >= len(poly):
            out.append("0")
        elif poly is not None:
            text = str(sp.nsimplify(sp.simplify(poly[k].subs(dg.B, B))))
            out.append(text if len(text) <= _EXACT_MAX_CHARS else None)
        elif act.homogeneous is not None and k < limit:
            text = str(dg.exact_coefficient(act, k, B))
            # at large B the exact value is a ratio of huge integers: not worth printing
            out.append(text if len(text) <= _EXACT_MAX_CHARS else None)
        else:
            out.append(None)
    return out


def gegenbauer_table(act: Activation, B: int, K: int, dps: int = 20, exact_terms: int = 16):
    """Rows ``k = 0..K-1`` for ``bnmft gegenbauer ACT --batch-size B --terms K``.

    Coefficients: closed form (homogeneous ``phi``, exact strings for ``k < exact_terms``),
    exact (polynomial ``phi``), or quadrature at ``dps`` digits. The total rate is the split
    form (exact resummation of the ``c_k = 1`` part) and, for homogeneous ``phi``, also the
    Richardson-accelerated series (:func:`thm9_accelerated_mp`); the better-converged one is
    reported with its digits. Cost: see :func:`max_terms`.
    """
    B = int(B)
    check_defined(act, [B])
    with mpmath.workdps(dps + 15):
        a, aerr = coefficients_mp(act, B, K, dps)
        r = r_coefficients_mp(B, K)
        lam = (mpmath.mpf(B) - 3) / 2
        exact = _exact_strings(act, B, K, exact_terms)
        rows = []
        cum_d = cum_n = mpmath.mpf(0)
        parseval = funk = mpmath.mpf(0)
        err_d = err_n = err_p = err_f = mpmath.mpf(0)
        for k in progress(range(K), "table rows", K):
            c = 1 - r[k]
            # every column carries the error of a_k through its formula, and is printed only
            # to the digits that survive ("0" where the value is below its error)
            e_sq = 2 * abs(a[k]) * aerr[k] + aerr[k] ** 2
            cd = c * a[k] ** 2 if k else mpmath.mpf(0)
            ecd = abs(c) * e_sq if k else mpmath.mpf(0)
            factor = k * (k + 2 * lam) / (2 * lam)
            cn, ecn = factor * cd, factor * ecd
            cum_d, err_d = cum_d + cd, err_d + ecd
            cum_n, err_n = cum_n + cn, err_n + ecn
            parseval, err_p = parseval + a[k] ** 2, err_p + e_sq
            funk, err_f = funk + r[k] * a[k] ** 2, err_f + abs(r[k]) * e_sq
            rows.append({
                "k": k, "a_k": _shown(a[k], aerr[k], dps), "a_k_exact": exact[k],
                "c_k": decimal_string(c, dps), "c_ak2": _shown(cd, ecd, dps),
                "thm9_term": _shown(cn, ecn, dps),
                "partial_denominator": _shown(cum_d, err_d, dps),
                "partial_numerator": _shown(cum_n, err_n, dps),
            })
        partial = {
            "q_star (sum a_k^2)": decimal_string(parseval, dps),
            "q_star c_star (sum r_k a_k^2)": decimal_string(funk, dps),
            "sum c_k a_k^2": decimal_string(cum_d, dps),
            "Thm 9 numerator": decimal_string(cum_n, dps),
            "rate": decimal_string(cum_n / cum_d, dps) if cum_d else "nan",
        }
    total = _table_total(act, B, dps)
    return GegenbauerTable(act.name, B, K, dps, rows, partial, total)


def _shown(value, error, dps: int) -> str:
    """``value`` to the digits its absolute ``error`` leaves (at most ``dps``); ``"0"`` when
    the value is not distinguishable from zero."""
    if value == 0 or error >= abs(value):
        return "0"
    digits = max(1, min(dps, int(digits_from_error(value, error)))) if error else dps
    return decimal_string(value, digits)


def _table_total(act: Activation, B: int, dps: int) -> dict:
    """The best-converged Thm 9 total: split form (mpmath; float64 for kinked non-homogeneous
    ``phi``, whose series converge too slowly for mpmath to add digits) and, for homogeneous
    ``phi``, the accelerated series."""
    if act.derivative_has_delta:
        return {"rate": "inf", "digits": math.inf, "method": "phi' has a Dirac mass"}
    split = "split form: c_k = 1 part resummed exactly (Parseval, Dirichlet form)"
    candidates = []
    if act.kinks and act.homogeneous is None:
        value, err = gradient_rate_thm9(act, [B])
        candidates.append((digits_from_error(value[0], err[0]), mpmath.mpf(value[0]),
                           split + ", float64"))
    else:
        value, err = gradient_rate_thm9_mp(act, B, dps, strict=False)
        candidates.append((digits_from_error(value, err), value, split))
    if act.homogeneous is not None:
        acc = thm9_accelerated_mp(act, B, dps)
        candidates.append((acc.digits, acc.rate,
                           f"Richardson-accelerated series, K = {acc.K} closed-form terms"))
    digits, value, method = max(candidates, key=lambda c: c[0])
    shown = max(1, min(dps, int(digits))) if math.isfinite(digits) else dps
    return {"rate": decimal_string(value, shown), "digits": min(float(digits), float(dps)),
            "method": method}
