"""Sphere moments and the gradient rate by Gegenbauer expansion (Funk-Hecke; paper Thm 9).

The second, independent route to the BSB1 numbers (the first is the 2-D hyperspherical
quadrature of :mod:`bnmft.numerics.sphere`). Notation of :mod:`bnmft.derive.gegenbauer`:
``lambda = (B-3)/2``, ``z = sqrt(B-1) t`` with ``t`` distributed as
``w(t) ~ (1-t^2)^(lambda-1/2)``, orthonormal Gegenbauer polynomials ``e_k``,
``r_k = C_k(rho)/C_k(1)``, ``rho = -1/(B-1)``, ``c_k = 1 - r_k``.

* One-point moments ``E[z^m phi^p phi'^q]``: one 1-D quadrature.
* Two-point moments, by Funk-Hecke: ``E[F(z1) G(z2)] = sum_k F_k G_k r_k`` with the
  coefficient vectors ``F_k = E_w[F e_k]`` of each point's function.
* Gradient rate, paper Thm 9: ``N / D`` with ``D = sum_{k>=1} c_k a_k^2`` and
  ``N = sum_{k>=1} k(k+2 lambda)/(2 lambda) c_k a_k^2``. The ``a_k`` of ``phi(sqrt(B-1) t)`` decay
  slowly at large ``B`` (like a Hermite series, ``exp(-d sqrt(2k))``) and only like ``k^-2``
  for kinked ``phi``, so the ``c_k = 1`` part of both sums is resummed exactly:

      sum_k a_k^2 = E[phi^2]                                (Parseval)
      sum_k k(k + 2 lambda) a_k^2 = E[(B-1-z^2) phi'(z)^2]   (Dirichlet form of the
                                                             Gegenbauer operator)

  (the second is ``int (1-t^2)^(lambda+1/2) f'^2 / N``, by parts with the Sturm-Liouville
  equation of ``C_k``). What is left, ``sum r_k a_k^2`` and ``sum k(k+2 lambda) r_k a_k^2``,
  converges as fast as ``r_k`` decays (``(k/B)^(k/2)`` for ``k << B``; ``k^-lambda`` beyond):
  ``N = (E[(B-1-z^2) phi'^2] - sum_{k>=1} k(k+2 lambda) r_k a_k^2) / (2 lambda)`` and
  ``D = Var(phi) - sum_{k>=1} r_k a_k^2``. This *split form* is the default; the truncated
  series itself is available (:func:`thm9_series`, :func:`gegenbauer_table`) and, for the
  homogeneous family, accelerated (:func:`thm9_accelerated_mp`).

Quadrature (float64 and mpmath): the angle ``t = sin d``, weight ``cos^{B-3} d``, on the window
where ``cos^{B-3} d >= 10^-36`` (float; ``10^-(2 dps + 12)`` in mpmath) -- not 1e-20: by
Cauchy-Schwarz ``|int_tail f e_k w| <= sqrt(int_tail f^2 w)`` whatever ``k``, while ``e_k`` itself
can be huge out there. Where that truncation is deep (``B >= 48`` in float64) the weight is
Gaussian-like at the window ends and the trapezoid rule converges geometrically with
``~2/pi`` of the Gauss-Legendre nodes; its ``2h`` and ``4h`` sub-rules (every 2nd / 4th node)
give the error estimate for free. Below that, Gauss-Legendre (composite beyond 64 nodes,
nodes from Newton's method at 40 digits: numpy's ``leggauss`` weights are only good to ~1e-14
there) on the window split at the kinks of ``phi`` (power substitution at singular kinks),
with a second rule of ``3n/4`` nodes for the estimate. Weights are normalised by their own
sum (no Gamma functions: nothing overflows at ``B = 10^6``); ``cos^{B-3} d`` is computed as
``exp((B-3) log1p(-2 sin^2(d/2)))``; ``e_k`` by the orthonormal three-term recurrence
``t e_k = beta_{k+1} e_{k+1} + beta_k e_{k-1}`` (stable on ``[-1, 1]``).

Error estimates (absolute, per moment and batch size) add: the spread of the quadrature
levels, the tail of each series extrapolated from the decay of its last terms, and rounding
(``~sqrt(N) eps``). ``K`` (terms) and the nodes grow until the first two are below the
tolerance or a cap is reached; a shortfall is reported in the error, never hidden. Batch
sizes are processed from the largest down, in chunks, so that ``K`` (small at large ``B``,
where ``r_k`` decays fastest) grows only where needed.

Positive-homogeneous ``phi`` (relu, leaky relu, alpha-relu, abs, linear) use the closed-form
coefficients of :mod:`bnmft.derive.gegenbauer` instead of quadrature, and their series are
summed to ``K <= 2^15`` (float) or ``2^14`` (mpmath) terms: with kinks they converge only
algebraically, which limits the digits at small ``B`` (reported).

Modules: :mod:`.recurrence` (``e_k``, ``r_k``, ``c_k``), :mod:`.tails` (series tails),
:mod:`.grid` (float64 nodes and the projection onto ``e_k``), :mod:`.funk_hecke` (one rule
level: moments, Funk-Hecke sums, split form), :mod:`.float_route` (the adaptive float64
driver), :mod:`.homogeneous` (closed-form coefficients), :mod:`.mp_grid` and
:mod:`.mp_route` (the mpmath route), :mod:`.mp_coefficients` (``a_k`` at mpmath precision),
:mod:`.acceleration` (Richardson on the literal Thm 9 series), :mod:`.table` (the CLI's
table). ``B = oo`` is :mod:`bnmft.numerics.gaussian_limit`.
"""

from __future__ import annotations

from ._common import PHI, GegenbauerError, Plan
from .acceleration import Thm9Acceleration, thm9_accelerated_mp
from .float_route import (
    coefficients,
    gradient_rate_thm9,
    moments_and_rate,
    moments_gegenbauer,
    thm9_series,
)
from .grid import TRAPEZOID_MIN_B, WINDOW_DIGITS
from .homogeneous import homogeneous_coefficients, homogeneous_coefficients_mp
from .mp_coefficients import coefficients_mp
from .mp_route import gradient_rate_thm9_mp, moments_and_rate_mp, moments_gegenbauer_mp
from .recurrence import c_coefficients, r_coefficients, r_coefficients_mp, recurrence_beta
from .table import (
    MAX_TERMS_CLOSED_FORM,
    MAX_TERMS_QUADRATURE,
    GegenbauerTable,
    gegenbauer_table,
    max_terms,
)

__all__ = [
    "MAX_TERMS_CLOSED_FORM",
    "MAX_TERMS_QUADRATURE",
    "PHI",
    "TRAPEZOID_MIN_B",
    "WINDOW_DIGITS",
    "GegenbauerError",
    "GegenbauerTable",
    "Plan",
    "Thm9Acceleration",
    "c_coefficients",
    "coefficients",
    "coefficients_mp",
    "gegenbauer_table",
    "gradient_rate_thm9",
    "gradient_rate_thm9_mp",
    "homogeneous_coefficients",
    "homogeneous_coefficients_mp",
    "max_terms",
    "moments_and_rate",
    "moments_and_rate_mp",
    "moments_gegenbauer",
    "moments_gegenbauer_mp",
    "r_coefficients",
    "r_coefficients_mp",
    "recurrence_beta",
    "thm9_accelerated_mp",
    "thm9_series",
]
