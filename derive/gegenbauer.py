"""Gegenbauer (zonal spherical harmonic) expansion of ``phi`` at the BSB1 point, exactly in ``B``.

One coordinate of the BSB1 batch is ``z = sqrt(B-1) t`` with ``t`` in ``[-1, 1]`` distributed
with the probability density ``w(t) = (1 - t^2)^(lambda - 1/2) / N``, ``lambda = (B-3)/2``
(THEORY.md, "the sphere picture"). Its orthogonal polynomials are the Gegenbauer
polynomials ``C_k^lambda``; the orthonormal basis is ``e_k = C_k^lambda / sqrt(E_w[C_k^2])``
and ``a_k = E_w[phi(sqrt(B-1) t) e_k(t)]``. Two coordinates have inner product
``rho = -1/(B-1)`` on the unit sphere ``S^{B-2}``, so by the Funk-Hecke formula

    E[F(z_1) G(z_2)] = sum_k F_k G_k r_k,      r_k = C_k^lambda(rho) / C_k^lambda(1),

and the gradient rate is paper Thm 9 (THEORY.md):
``sum_{k>=1} k(k+2 lambda)/(2 lambda) c_k a_k^2 / sum_{k>=1} c_k a_k^2``, ``c_k = 1 - r_k``.

Everything here is *derived* by SymPy from two inputs: the explicit-sum form of
``C_k^lambda`` (SymPy's ``gegenbauer(...).rewrite(Sum)``) and Rodrigues' formula
``w C_k = R_k d^k/dt^k (1-t^2)^(k+lambda-1/2)`` (checked for small ``k`` by
:func:`check_rodrigues`). From them, for symbolic ``k``:

* :func:`half_line_moment`: ``E_w[t_+^alpha C_k(t)]`` (``k`` integrations by parts, then a
  Beta integral, continued analytically in ``alpha``);
* :func:`norm_squared`: ``E_w[C_k^2] = lc_k E_w[t^k C_k]`` (orthogonality), hence the
  orthonormal factor and :func:`recurrence_coefficient` of the three-term recurrence;
* :func:`homogeneous_coefficient`: ``a_k`` of ``phi = A z_+^alpha + C z_-^alpha`` in closed
  form (parity: ``E_w[t_-^alpha C_k] = (-1)^k E_w[t_+^alpha C_k]``).

The presentation helpers at the end (:func:`table_text`, :func:`table_latex`) print the
rows computed by :func:`bnmft.numerics.gegenbauer.gegenbauer_table`.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from .activation import Activation
from .homogeneous import Homogeneous
from .symbols import B, RHO, x

#: Gegenbauer index ``lambda = (B-3)/2`` (symbolic stand-in; substituted by :data:`LAMBDA_OF_B`).
LAM = sp.Symbol("lambda", positive=True)
LAMBDA_OF_B = (B - 3) / 2
#: Degree of the polynomial (symbolic, integer).
K = sp.Symbol("k", integer=True, nonnegative=True)
#: Degree of positive homogeneity of ``phi``.
ALPHA = sp.Symbol("alpha", positive=True)
#: The unit sphere coordinate ``t = z / sqrt(B-1)`` in ``[-1, 1]``.
T = sp.Symbol("t", real=True)

_S = sp.Symbol("s", positive=True)
_MU = sp.Symbol("mu", positive=True)
_TP = sp.Symbol("tp", positive=True)


def _in_B(expr: sp.Expr) -> sp.Expr:
    return expr.subs(LAM, LAMBDA_OF_B)


# -- Beta integrals ----------------------------------------------------------------------


@cache
def beta_half_integral() -> sp.Expr:
    """``int_0^1 t^s (1 - t^2)^mu dt`` (``s > -1``, ``mu > -1``), by SymPy (``u = t^2``)."""
    u = sp.Symbol("u", positive=True)
    raw = sp.integrate(u ** ((_S - 1) / 2) * (1 - u) ** _MU / 2, (u, 0, 1), conds="none")
    return sp.gammasimp(sp.hyperexpand(raw))


@cache
def weight_normaliser() -> sp.Expr:
    """``N = int_{-1}^1 (1 - t^2)^(lambda - 1/2) dt``, the normaliser of the density ``w``."""
    return sp.gammasimp(2 * beta_half_integral().subs({_S: 0, _MU: LAM - sp.Rational(1, 2)}))


def _half_line_power_moment_lambda(s, nu=0) -> sp.Expr:
    num = beta_half_integral().subs({_S: s, _MU: LAM - sp.Rational(1, 2) + nu})
    return sp.gammasimp(num / weight_normaliser())


def half_line_power_moment(s, nu=0) -> sp.Expr:
    """``E_w[t_+^s (1 - t^2)^nu]`` in ``B`` (``t_+ = max(t, 0)``), a ratio of Beta integrals."""
    return _in_B(_half_line_power_moment_lambda(s, nu))


def power_moment(m: int) -> sp.Expr:
    """``E_w[t^m]``: zero for odd ``m``, ``2 E_w[t_+^m] = (1/2)_{m/2} / (lambda+1)_{m/2}`` (a
    rational function of ``B``) for even ``m``."""
    if m % 2:
        return sp.Integer(0)
    return sp.factor(_in_B(sp.gammasimp(2 * _half_line_power_moment_lambda(m))))


# -- Gegenbauer polynomials --------------------------------------------------------------


@cache
def _explicit_term() -> tuple[sp.Expr, sp.Symbol]:
    """Summand and index of SymPy's explicit sum for ``C_k^lambda(t)`` (symbolic ``k``)."""
    explicit = sp.gegenbauer(K, LAM, _TP).rewrite(sp.Sum)
    return explicit.function, explicit.limits[0][0]


@cache
def leading_coefficient() -> sp.Expr:
    """``lc_k``: coefficient of ``t^k`` in ``C_k^lambda`` (the ``j = 0`` summand of the
    explicit sum), ``2^k (lambda)_k / k!``."""
    term, j = _explicit_term()
    return sp.gammasimp(sp.simplify((term.subs(j, 0) / _TP**K).rewrite(sp.gamma)))


@cache
def at_one() -> sp.Expr:
    """``C_k^lambda(1) = (2 lambda)_k / k! = binom(k + 2 lambda - 1, k)`` (SymPy's evaluation)."""
    return sp.gammasimp(sp.gegenbauer(K, LAM, 1).rewrite(sp.gamma))


@cache
def rodrigues_constant() -> sp.Expr:
    """``R_k`` in ``(1-t^2)^(lambda-1/2) C_k(t) = R_k d^k/dt^k (1-t^2)^(k+lambda-1/2)``.

    The right side is ``(1-t^2)^(lambda-1/2)`` times a polynomial of degree ``k`` whose
    leading coefficient is that of ``d^k/dt^k (-t^2)^(k+lambda-1/2)`` divided by
    ``(-t^2)^(lambda-1/2)``, i.e. ``(-1)^k (2k + 2 lambda - 1)^{(falling k)} =
    (-1)^k (k + 2 lambda)_k``; matching ``lc_k`` gives ``R_k``. Checked for small ``k`` by
    :func:`check_rodrigues`.
    """
    ratio = leading_coefficient() / ((-1) ** K * sp.rf(K + 2 * LAM, K))
    return sp.gammasimp(ratio.rewrite(sp.gamma))


def check_rodrigues(kmax: int = 6) -> bool:
    """Verify Rodrigues' formula with :func:`rodrigues_constant` for ``k = 0..kmax``."""
    t = sp.Symbol("t", positive=True)
    for k in range(kmax + 1):
        w = (1 - t**2) ** (LAM - sp.Rational(1, 2))
        lhs = sp.gegenbauer(k, LAM, t)
        deriv = sp.diff((1 - t**2) ** (k + LAM - sp.Rational(1, 2)), t, k)
        rhs = rodrigues_constant().subs(K, k) * deriv / w
        if sp.simplify(sp.powsimp(sp.expand(sp.gammasimp(rhs) - lhs), force=True)) != 0:
            return False
    return True


@cache
def _half_line_moment_lambda() -> sp.Expr:
    """``E_w[t_+^alpha C_k^lambda(t)]`` in ``lambda``.

    Rodrigues, then ``k`` integrations by parts on ``[0, 1]`` (for ``alpha > k - 1`` every
    boundary term vanishes: ``(1-t^2)^(k+lambda-1/2)`` has a zero of order ``> k - 1`` at
    ``t = 1`` and ``t^(alpha-j)`` vanishes at 0):

        int_0^1 t^alpha D^k g = (-1)^k alpha^{(falling k)} int_0^1 t^(alpha-k) g,

    a Beta integral. The product ``Gamma(alpha+1)/Gamma(alpha-k+1) * Gamma((alpha-k+1)/2)`` is
    entire in ``alpha`` after the duplication formula (``gammasimp``), which continues the
    result to every ``alpha > -1``.
    """
    ibp = (-1) ** K * sp.ff(ALPHA, K) * beta_half_integral().subs(
        {_S: ALPHA - K, _MU: K + LAM - sp.Rational(1, 2)}
    )
    ibp = sp.gammasimp(ibp.rewrite(sp.gamma))
    return sp.gammasimp((rodrigues_constant() * ibp / weight_normaliser()).rewrite(sp.gamma))


def half_line_moment(alpha=ALPHA, k=K) -> sp.Expr:
    """``E_w[t_+^alpha C_k^lambda(t)]`` as a function of ``B`` (closed form in Gamma functions)."""
    return _in_B(_half_line_moment_lambda().subs({ALPHA: alpha, K: k}))


@cache
def _norm_squared_lambda() -> sp.Expr:
    """``E_w[C_k^2] = lc_k E_w[t^k C_k] = 2 lc_k E_w[t_+^k C_k]`` (orthogonality to lower
    degrees; ``t^k C_k`` is even), which simplifies to ``lambda/(k+lambda) C_k(1)``."""
    return sp.gammasimp(2 * leading_coefficient() * _half_line_moment_lambda().subs(ALPHA, K))


def norm_squared(k=K) -> sp.Expr:
    """``E_w[C_k^lambda(t)^2]`` in ``B``."""
    return _in_B(_norm_squared_lambda().subs(K, k))


def orthonormal_factor(k=K) -> sp.Expr:
    """``h_k`` with ``e_k = h_k C_k^lambda``, ``1/sqrt(E_w[C_k^2])``; equals
    ``sqrt((B-3+2k) / ((B-3) binom(B-4+k, k)))`` (THEORY.md, Thm 9; see
    :func:`orthonormal_factor_binomial`)."""
    return _in_B(1 / sp.sqrt(_norm_squared_lambda().subs(K, k)))


def orthonormal_factor_binomial(k=K) -> sp.Expr:
    """THEORY.md's printed form of :func:`orthonormal_factor` (for comparison only)."""
    return sp.sqrt((B - 3 + 2 * k) / ((B - 3) * sp.binomial(B - 4 + k, k)))


def basis(k: int, t=T) -> sp.Expr:
    """Orthonormal polynomial ``e_k(t)`` for a concrete degree ``k`` (coefficients in ``B``)."""
    h = _in_B(sp.factor(1 / sp.sqrt(sp.gammasimp(_norm_squared_lambda().subs(K, k)))))
    return sp.expand(h * sp.gegenbauer(k, LAMBDA_OF_B, t))


@cache
def _recurrence_coefficient_lambda() -> sp.Expr:
    """``beta_k = E_w[t e_{k-1} e_k] = (lc_{k-1} / lc_k) h_{k-1} / h_k``: the coefficient of
    ``t e_{k-1} = beta_k e_k + beta_{k-1} e_{k-2}`` (``t C_{k-1}`` is ``lc_{k-1}/lc_k C_k``
    plus lower degrees)."""
    lc = leading_coefficient()
    nrm = _norm_squared_lambda()
    ratio = sp.gammasimp(lc.subs(K, K - 1) / lc) ** 2 * sp.gammasimp(nrm / nrm.subs(K, K - 1))
    return sp.sqrt(sp.factor(sp.gammasimp(ratio)))


def recurrence_coefficient(k=K) -> sp.Expr:
    """``beta_k = sqrt(k (k + 2 lambda - 1) / (4 (k + lambda)(k + lambda - 1)))`` in ``B``."""
    return _in_B(_recurrence_coefficient_lambda().subs(K, k))


# -- Funk-Hecke eigenvalues ----------------------------------------------------------------


def r_hyper(k=K, b=B) -> sp.Expr:
    """``r_k = C_k(rho)/C_k(1) = (-1)^k 2F1(-k, B-3+k; B/2-1; (B-2)/(2(B-1)))``.

    From ``C_k^lambda(t) = C_k(1) 2F1(-k, k + 2 lambda; lambda + 1/2; (1-t)/2)`` at ``t = -rho``
    and ``C_k(-t) = (-1)^k C_k(t)``; checked against the polynomials by :func:`check_r_hyper`.
    """
    return (-1) ** k * sp.hyper([-k, b - 3 + k], [b / 2 - 1], (b - 2) / (2 * (b - 1)))


def c_hyper(k=K, b=B) -> sp.Expr:
    """``c_k = 1 - r_k`` (THEORY.md, paper Thm 9); positive for ``k >= 1``."""
    return 1 - r_hyper(k, b)


def r_exact(k: int) -> sp.Expr:
    """``r_k = C_k(rho)/C_k(1)`` for a concrete ``k``: a rational function of ``B``."""
    lam = LAMBDA_OF_B
    return sp.factor(sp.cancel(sp.gegenbauer(k, lam, RHO) / sp.gegenbauer(k, lam, 1)))


def check_r_hyper(kmax: int = 8) -> bool:
    """The hypergeometric form of :func:`r_hyper` equals :func:`r_exact` for ``k <= kmax``."""
    for k in range(kmax + 1):
        if sp.cancel(sp.hyperexpand(r_hyper(k)) - r_exact(k)) != 0:
            return False
    return True


# -- coefficients a_k ------------------------------------------------------------------------


@cache
def _homogeneous_parts() -> tuple[sp.Expr, sp.Expr]:
    """``(G, S)`` with ``a_k / (A + (-1)^k C) = G sqrt(S)`` in ``lambda``, ``alpha``, ``k``.

    ``a_k = (B-1)^(alpha/2) h_k E_w[t_+^alpha C_k]`` and ``h_k = sqrt((k+lambda)/(lambda C_k(1)))``
    (from :func:`norm_squared`), so ``G = (2 lambda + 2)^(alpha/2) E_w[t_+^alpha C_k] / C_k(1)``
    (Gamma functions only) and ``S = (k + lambda) C_k(1) / lambda``.
    """
    S = sp.gammasimp(1 / (_norm_squared_lambda() / at_one() ** 2))
    G = (2 * LAM + 2) ** (ALPHA / 2) * sp.gammasimp(_half_line_moment_lambda() / at_one())
    return G, S


def homogeneous_coefficient(hom: Homogeneous, k=K) -> sp.Expr:
    """Closed form of ``a_k`` for a positive-homogeneous ``phi`` (relu, leaky, alpha-relu, abs,
    step, linear, monomials), symbolic in ``B`` and ``k``:

        a_k = (A + (-1)^k C) (B-1)^(alpha/2) Gamma(alpha+1) Gamma(lambda+1)
              sqrt((k+lambda) C_k(1)/lambda)
              / (2^(alpha+1) Gamma(1+(alpha-k)/2) Gamma((alpha+k)/2+lambda+1)).

    It vanishes for integer ``alpha`` when ``k > alpha`` has the parity of ``alpha``.
    """
    G, S = _homogeneous_parts()
    general = (G * sp.sqrt(S)).subs(ALPHA, hom.alpha)
    return _in_B(general.subs(K, k)) * (hom.A + (-1) ** k * hom.C)


@cache
def homogeneous_ratio() -> sp.Expr:
    """``a_{k+2} / a_k`` of a homogeneous ``phi`` (same parity, so ``A``, ``C`` cancel), in
    ``alpha``, ``k`` and ``lambda``: the stable forward recurrence used by the numerics,
    ``(alpha - k)/(alpha + k + 2 lambda + 2) sqrt((k+lambda+2)(k+2 lambda)(k+2 lambda+1) /
    ((k+lambda)(k+1)(k+2)))``."""
    G, S = _homogeneous_parts()
    g = sp.factor(sp.gammasimp(G.subs(K, K + 2) / G))
    s = sp.factor(sp.gammasimp(S.subs(K, K + 2) / S))
    return g * sp.sqrt(s)


@cache
def homogeneous_start() -> tuple[sp.Expr, sp.Expr]:
    """``a_0 / (A + C)`` and ``a_1 / (A - C)`` in ``alpha`` and ``lambda`` (recurrence start)."""
    G, S = _homogeneous_parts()
    return tuple(sp.gammasimp(G.subs(K, j)) * sp.sqrt(sp.factor(sp.gammasimp(S.subs(K, j))))
                 for j in (0, 1))


def homogeneous_one_point(hom: Homogeneous) -> dict[str, sp.Expr]:
    """Exact one-point moments used by the split form of Thm 9 (Beta integrals):

    ``phi2 = E[phi(z)^2] = (B-1)^alpha (A^2 + C^2) E_w[t_+^(2 alpha)]`` and
    ``dirichlet = E[(B-1-z^2) phi'(z)^2] = (B-1)^alpha alpha^2 (A^2 + C^2)
    E_w[t_+^(2 alpha - 2) (1 - t^2)]`` (infinite for ``alpha <= 1/2``: returned as ``oo``).
    """
    a, A, C = hom.alpha, hom.A, hom.C
    out = {"phi2": (B - 1) ** a * (A**2 + C**2) * half_line_power_moment(2 * a)}
    if a == 0 or (A == 0 and C == 0):
        out["dirichlet"] = sp.oo if a == 0 else sp.Integer(0)
    elif 2 * a - 2 <= -1:
        out["dirichlet"] = sp.oo
    else:
        mom = half_line_power_moment(2 * a - 2, 1)
        out["dirichlet"] = (B - 1) ** a * a**2 * (A**2 + C**2) * mom
    return out


def _polynomial_in_x(expr: sp.Expr) -> sp.Poly | None:
    try:
        poly = sp.Poly(sp.expand(expr), x)
    except sp.PolynomialError:
        return None
    if any(c.free_symbols for c in poly.coeffs()):
        return None
    return poly


def polynomial_coefficients(expr: sp.Expr) -> list[sp.Expr] | None:
    """Exact ``a_0..a_d`` of a polynomial ``phi(x)`` of degree ``d`` (``a_k = 0`` beyond).

    ``phi(sqrt(B-1) t) C_k(t)`` is expanded in powers of ``t`` and each power replaced by its
    moment :func:`power_moment` (exact in ``B``). None if ``expr`` is not a polynomial.
    """
    poly = _polynomial_in_x(expr)
    if poly is None:
        return None
    f = sp.expand(poly.as_expr().subs(x, sp.sqrt(2 * LAM + 2) * T))
    deg = poly.degree()
    # E_w[t^(2j)] = (1/2)_j / (lambda + 1)_j, from the Beta integral
    moments = {m: sp.gammasimp(2 * _half_line_power_moment_lambda(m))
               for m in range(0, 2 * deg + 1, 2)}
    out = []
    for k in range(deg + 1):
        integrand = sp.Poly(sp.expand(f * sp.gegenbauer(k, LAM, T)), T)
        val = sum((c * moments[m] for (m,), c in integrand.terms() if m % 2 == 0), sp.Integer(0))
        h2 = sp.gammasimp(1 / _norm_squared_lambda().subs(K, k))
        out.append(_in_B(sp.factor(sp.simplify(val)) * sp.sqrt(sp.factor(h2))))
    return out


def exact_coefficient(act: Activation, k: int, b=B) -> sp.Expr | None:
    """Exact ``a_k`` (at ``B = b``, default symbolic) for polynomial or positive-homogeneous
    ``phi``; None otherwise."""
    if act.homogeneous is not None:
        hom = act.homogeneous
        if hom.A + (-1) ** k * hom.C == 0:
            return sp.Integer(0)
        expr = homogeneous_coefficient(hom, k)
    else:
        coeffs = polynomial_coefficients(act.expr)
        if coeffs is None:
            return None
        expr = coeffs[k] if k < len(coeffs) else sp.Integer(0)
    if b is B:
        return expr
    return sp.nsimplify(sp.simplify(sp.gammasimp(expr.subs(B, b))), rational=False)


# -- presentation -----------------------------------------------------------------------------

_COLUMNS = (
    ("k", "k", "k"),
    ("a_k", "a_k", "a_k"),
    ("c_k", "c_k", "c_k"),
    ("c_k a_k^2", "c_ak2", r"c_k a_k^2"),
    ("thm9 term", "thm9_term", r"\tfrac{k(B-3+k)}{B-3} c_k a_k^2"),
)


def table_text(table) -> str:
    """Plain-text table of the rows of a :class:`~bnmft.numerics.gegenbauer.GegenbauerTable`."""
    rows = table.rows
    cols = [(head, key) for head, key, _ in _COLUMNS]
    has_exact = any(r.get("a_k_exact") for r in rows)
    if has_exact:
        cols.append(("a_k exact", "a_k_exact"))
    cells = [[str(r.get(key) if r.get(key) is not None else "") for _, key in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(cols)]
    lines = ["  ".join(h.rjust(wd) for (h, _), wd in zip(cols, widths))]
    lines += ["  ".join(c.rjust(wd) for c, wd in zip(cell, widths)) for cell in cells]
    lines.append("")
    lines.extend(f"{name}: {value}" for name, value in table.summary_lines())
    return "\n".join(lines)


def table_latex(table) -> str:
    """LaTeX ``tabular`` of the rows (exact ``a_k`` typeset by SymPy where available)."""
    has_exact = any(r.get("a_k_exact") for r in table.rows)
    heads = [f"${tex}$" for _, _, tex in _COLUMNS] + ([r"exact $a_k$"] if has_exact else [])
    out = [r"\begin{tabular}{" + "r" * len(heads) + "}", " & ".join(heads) + r" \\", r"\hline"]
    for r in table.rows:
        cells = [str(r[key]) for _, key, _ in _COLUMNS]
        if has_exact:
            exact = r.get("a_k_exact")
            cells.append(f"${sp.latex(sp.sympify(exact))}$" if exact else "")
        out.append(" & ".join(cells) + r" \\")
    out.append(r"\end{tabular}")
    for name, value in table.summary_lines():
        out.append(f"% {name}: {value}")
    return "\n".join(out)
