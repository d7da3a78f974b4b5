"""Three-term recurrences of the Gegenbauer basis and of the Thm 9 factors.

``e_k`` (orthonormal for ``w(t) ~ (1-t^2)^(lambda-1/2)``, ``lambda = (B-3)/2``) by
``t e_k = beta_{k+1} e_{k+1} + beta_k e_{k-1}``; ``r_k = C_k^lambda(rho)/C_k^lambda(1)``
(``rho = -1/(B-1)``, the Funk-Hecke factor of two sphere coordinates) and ``c_k = 1 - r_k``
(paper Thm 9) by the normalised Gegenbauer recurrence, in float64 and at mpmath precision.
"""

from __future__ import annotations

import mpmath
import numpy as np


def recurrence_beta(k, lam):
    """``beta_k = sqrt(k (k + 2 lambda - 1) / (4 (k + lambda)(k + lambda - 1)))`` (``k >= 1``):
    ``t e_{k-1} = beta_k e_k + beta_{k-1} e_{k-2}``, derived in
    :func:`bnmft.derive.gegenbauer.recurrence_coefficient`. Works for floats, arrays, mpf."""
    if isinstance(lam, mpmath.mpf) or isinstance(k, mpmath.mpf):
        return mpmath.sqrt(k * (k + 2 * lam - 1) / (4 * (k + lam) * (k + lam - 1)))
    return np.sqrt(k * (k + 2 * lam - 1) / (4 * (k + lam) * (k + lam - 1)))


def r_coefficients(Bs, K: int) -> np.ndarray:
    """``r_k = C_k^lambda(rho) / C_k^lambda(1)``, ``k < K``, for each batch size (float64).

    Normalised three-term recurrence (divide the Gegenbauer recurrence
    ``(k+1) C_{k+1} = 2(k+lambda) t C_k - (k+2 lambda-1) C_{k-1}`` by ``C_{k+1}(1)``):
    ``R_{k+1} = (2(k+lambda) rho R_k - k R_{k-1}) / (k + 2 lambda)``, ``R_0 = 1``, ``R_1 = rho``.
    Forward recurrence is stable for ``|rho| < 1`` (no dominant solution inside the support).
    """
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    if len(Bs) == 1 and K > 64:
        # one batch size: a scalar loop is much faster than K tiny numpy operations
        lam1, rho1 = (float(Bs[0]) - 3) / 2, -1 / (float(Bs[0]) - 1)
        out = [1.0, rho1]
        for k in range(1, K - 1):
            out.append((2 * (k + lam1) * rho1 * out[k] - k * out[k - 1]) / (k + 2 * lam1))
        return np.array(out[:K])[None, :]
    lam = (Bs - 3) / 2
    rho = -1 / (Bs - 1)
    r = np.zeros((len(Bs), max(K, 2)))
    r[:, 0] = 1
    r[:, 1] = rho
    for k in range(1, K - 1):
        r[:, k + 1] = (2 * (k + lam) * rho * r[:, k] - k * r[:, k - 1]) / (k + 2 * lam)
    return r[:, :K]


def c_coefficients(Bs, K: int) -> np.ndarray:
    """``c_k = 1 - r_k`` (paper Thm 9)."""
    return 1 - r_coefficients(Bs, K)


def r_coefficients_mp(B, K: int) -> list:
    """:func:`r_coefficients` at the current mpmath precision for one batch size."""
    B = mpmath.mpf(B)
    lam = (B - 3) / 2
    rho = -1 / (B - 1)
    r = [mpmath.mpf(1), rho]
    for k in range(1, K - 1):
        r.append((2 * (k + lam) * rho * r[k] - k * r[k - 1]) / (k + 2 * lam))
    return r[:K]
