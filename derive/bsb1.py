"""BSB1 quantities as exact functions of sphere moments, derived symbolically in ``B``.

Starting points (THEORY.md):

* Fixed point: ``Sigma* = q* [(1-c*) I + c* 11^T]`` with ``q* = E[phi(z_1)^2]`` and
  ``q* c* = E[phi(z_1) phi(z_2)]`` (paper Thm 4); ``s = q* (1 - c*)`` so that
  ``G Sigma* G = s G`` and ``G h = r u`` with ``r^2 ~ s chi^2_{B-1}`` independent of ``u``.
* Forward Jacobian at ``Sigma*`` (first variation of the angular-central-Gaussian law of
  ``u``):  ``J{D} = 1/(2s) E[f f^T ((B-1) u^T D u - tr(G D G))]``.
* Backward map (chain rule through batchnorm): ``Pi -> E[J_h^T Pi J_h]`` with
  ``J_h = diag(phi'(z)) sqrt(B)/r (G - u u^T)``.

The eigenvalues follow by Schur's lemma: on symmetric matrices of the hyperplane the
forward operator is a scalar on each irreducible piece, trivial (``G``), standard (``L``,
dim ``B-1``) and ``(B-2, 2)`` (``M``, dim ``B(B-3)/2``). So ``lambda_G`` and ``lambda_M`` are
Rayleigh quotients on one explicit vector of their piece, and ``lambda_L`` follows from
the trace. The gradient rate is the backward Rayleigh quotient on ``G``.
Every expectation is reduced by :mod:`.moments`; nothing here is copied from a paper
formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from .gaussian import chi_square_moment
from .moments import centering as G
from .moments import LinearForm, expect, expect_sum, f, g, moment, u
from .symbols import B

#: Ordered names of the BSB1 quantities (the CLI's JSON keys use the same names).
QUANTITIES = (
    "q_star",
    "c_star",
    "lambda_G",
    "lambda_L",
    "lambda_M",
    "gradient_rate",
    "depth_scale",
    "max_trainable_depth",
)

#: Trainable depth is ``16 xi`` (paper Sec. 4, overlay of Fig. 2 and Fig. 4).
TRAINABLE_DEPTH_FACTOR = 16


@dataclass(frozen=True)
class MomentForm:
    """A quantity as an exact function of sphere moments (and ``B``)."""

    name: str
    expr: sp.Expr
    provenance: str


def q_star_form() -> sp.Expr:
    """``q* = E[phi(z_1)^2]``: diagonal of the fixed point (paper Thm 4, eq 13)."""
    return moment((0, 2, 0))


def qc_star_form() -> sp.Expr:
    """``q* c* = E[phi(z_1) phi(z_2)]``: off-diagonal of the fixed point (paper Thm 4, eq 14)."""
    return moment((0, 1, 0), (0, 1, 0))


def s_form() -> sp.Expr:
    """``s = q* (1 - c*)``, the scale of ``G Sigma* G = s G``."""
    return q_star_form() - qc_star_form()


def _forward_pairing(D: dict[tuple[int, int], sp.Expr]) -> LinearForm:
    """``2 s <D, J{D}>`` for a matrix ``D`` with finitely many explicit entries."""
    total = sp.Integer(0)
    for (a, b), dab in D.items():
        for (c, d), dcd in D.items():
            total += dab * dcd * f[a] * f[b] * ((B - 1) * u[c] * u[d] - G(c, d))
    return expect(total)


def _outer_sym(a: dict[int, int], b: dict[int, int]) -> dict[tuple[int, int], sp.Expr]:
    D: dict[tuple[int, int], sp.Expr] = {}
    for i, ai in a.items():
        for j, bj in b.items():
            D[(i, j)] = D.get((i, j), 0) + ai * bj
            D[(j, i)] = D.get((j, i), 0) + ai * bj
    return {k: v for k, v in D.items() if v != 0}


@cache
def forward_eigenvalues() -> dict[str, sp.Expr]:
    """``lambda_G``, ``lambda_L``, ``lambda_M`` of the forward Jacobian, in sphere moments.

    All pairings below are ``2 s <D, J{D}>``; the common factor ``1/(2 s)`` is restored last.
    """
    # G-piece: D = G, a full sum over four batch indices; <G, G> = tr G = B - 1.
    pair_G = expect_sum(
        lambda a, b, c, d: G(a, b) * f[a] * f[b] * ((B - 1) * G(c, d) * u[c] * u[d] - G(c, d) ** 2),
        4,
    )
    num_G = pair_G.scaled(1 / (B - 1))
    # M-piece: D = a b^T + b a^T, a = e1 - e2, b = e3 - e4 (zero diagonal, zero row sums).
    DM = _outer_sym({1: 1, 2: -1}, {3: 1, 4: -1})
    num_M = _forward_pairing(DM).scaled(1 / sum(v**2 for v in DM.values()))
    # Trace over symmetric matrices of the hyperplane: tr(J P) = sum_ab J{G E_ab G}_ab.
    trace = expect_sum(lambda a, b: f[a] * f[b] * ((B - 1) * u[a] * u[b] - G(a, b)), 2)
    dim_M = B * (B - 3) / 2
    num_L = (trace - num_G - num_M.scaled(dim_M)).scaled(1 / (B - 1))
    two_s = 2 * s_form()
    return {
        "lambda_G": num_G.expr() / two_s,
        "lambda_L": num_L.expr() / two_s,
        "lambda_M": num_M.expr() / two_s,
    }


@cache
def gradient_rate_form() -> sp.Expr:
    """Backward Rayleigh quotient ``<G, E[J_h^T G J_h]> / <G, G>`` (largest eigenvalue)."""
    pairing = expect_sum(
        lambda a, b, c, d: G(a, b)
        * (G(c, a) - u[c] * u[a])
        * g[c]
        * G(c, d)
        * g[d]
        * (G(d, b) - u[d] * u[b]),
        4,
    )
    # E[1/r^2] = E[1/chi^2_{B-1}] / s; the 1/s is kept outside the linear form.
    radial = sp.expand_func(chi_square_moment(B - 1, -1))
    return pairing.scaled(B * radial / (B - 1)).expr() / s_form()


#: Quantities defined through other quantities, in their symbols (``Symbol(name)``):
#: ``xi = 1/log(lambda_max)`` and the trainable depth ``16 xi`` (paper Sec. 4). Numerics
#: evaluates these from the numbers of the quantities they name (errors propagated), codegen
#: and the closed forms substitute them; nothing else restates the formulas.
RATE = sp.Symbol("gradient_rate", positive=True)
XI = sp.Symbol("depth_scale")
RELATIONS = {
    "depth_scale": 1 / sp.log(RATE),
    "max_trainable_depth": TRAINABLE_DEPTH_FACTOR * XI,
}


def compose(name: str, values: dict[str, sp.Expr]) -> sp.Expr:
    """The relation of ``name`` with the quantities it names replaced by ``values``
    (recursively, so ``max_trainable_depth`` reaches the gradient rate)."""
    expr = RELATIONS[name]
    for sym in sorted(expr.free_symbols, key=str):
        inner = compose(str(sym), values) if str(sym) in RELATIONS else values[str(sym)]
        expr = expr.subs(sym, inner)
    return expr


@cache
def moment_forms() -> dict[str, MomentForm]:
    """Every BSB1 quantity as an exact function of sphere moments (read from the disk cache
    of :mod:`.formcache` when this code derived them before)."""
    from . import formcache

    state = sp.srepr(sorted(RELATIONS.items(), key=str)) + f"|{TRAINABLE_DEPTH_FACTOR}"
    cached = formcache.load("moment_forms", state)
    if cached is not None and set(cached) == set(QUANTITIES):
        return {n: MomentForm(n, *cached[n]) for n in QUANTITIES}
    forms = _derive_moment_forms()
    formcache.store("moment_forms", {n: (f.expr, f.provenance) for n, f in forms.items()},
                    state)
    return forms


def _derive_moment_forms() -> dict[str, MomentForm]:
    fw = forward_eigenvalues()
    qs, qc = q_star_form(), qc_star_form()
    rate = gradient_rate_form()
    return {
        "q_star": MomentForm("q_star", qs, "paper Thm 4 (eq 13): q* = E[phi(z1)^2] on the sphere"),
        "c_star": MomentForm("c_star", qc / qs, "paper Thm 4 (eq 14): q* c* = E[phi(z1) phi(z2)]"),
        "lambda_G": MomentForm(
            "lambda_G", fw["lambda_G"], "forward Jacobian, Rayleigh quotient on G (Schur)"
        ),
        "lambda_L": MomentForm(
            "lambda_L", fw["lambda_L"], "forward Jacobian, trace minus G and M pieces (Schur)"
        ),
        "lambda_M": MomentForm(
            "lambda_M",
            fw["lambda_M"],
            "forward Jacobian, Rayleigh quotient on (e1-e2)(e3-e4)^T + sym (Schur)",
        ),
        "gradient_rate": MomentForm(
            "gradient_rate",
            rate,
            "backward map, Rayleigh quotient on G (paper Thm 7 form)",
        ),
        "depth_scale": MomentForm(
            "depth_scale", compose("depth_scale", {"gradient_rate": rate}),
            "xi = 1/log(gradient_rate)",
        ),
        "max_trainable_depth": MomentForm(
            "max_trainable_depth",
            compose("max_trainable_depth", {"gradient_rate": rate}),
            f"{TRAINABLE_DEPTH_FACTOR} xi (paper Sec. 4, Figs 2 and 4)",
        ),
    }
