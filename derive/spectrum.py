"""Forward and backward spectra at the BSB1 point, for any ``phi``.

Both linear maps at ``Sigma*`` are ultrasymmetric operators on symmetric B x B matrices
(:mod:`.ultrasymmetric`) whose orbit entries are sphere expectations, reduced to sphere
moments by :func:`.moments.expect` at one representative index pattern per orbit:

* forward Jacobian ``dV_Bphi/dSigma`` (THEORY.md "Forward linearisation"):
  ``J{D} = 1/(2s) E[f f^T ((B-1) u^T D u - tr(G D G))]``, so
  ``T_{ij,kl} = 1/(2s) E[f_i f_j ((B-1) u_k u_l - G_kl)]``;
* backward map ``Pi -> E[J_h^T Pi J_h]``, ``J_h = diag(phi'(z)) sqrt(B)/r (G - u u^T)``
  with ``r^2 ~ s chi^2_{B-1}`` independent of ``u``:
  ``T_{ab,cd} = E[(J_h)_ca (J_h)_db] = B E[1/r^2] E[g_c g_d (G_ca - u_c u_a)(G_db - u_d u_b)]``.

The eigenvalues then come from the operator's blocks (Schur's lemma), symbolically in ``B``.
The forward map kills ``K = {G D G = 0}`` (it sees ``D`` only through ``G D G``) and the
backward map has its range in ``H = {G S G = S}`` (``(G - u u^T) = G (G - u u^T)``), so both
2 x 2 blocks are triangular: each direction has a kernel eigenvalue 0 of multiplicity ``B``
and one eigenvalue on each of ``G``, ``L``, ``M``. The forward ``G`` eigenvalue is 0
(batchnorm removes scale) and the backward one is the gradient rate (paper Thm 7).

For positive-homogeneous ``phi`` the moments have closed forms (:mod:`.homogeneous`) and so
do the eigenvalues (relu: in ``J(c)``, ``J'(c)``).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from .activation import Activation
from .bsb1 import s_form
from .derivation import _closed_form, _moment_closed_forms, derive
from .gaussian import chi_square_moment
from .moments import Point, SphereMoment, expect, f, g, moments_in, moments_of, u
from .moments import centering as G
from .quantity import J, Derivation, DerivedQuantity, Jp, Provenance, SpectralEntry, Spectrum
from .symbols import B, BSB1_DOMAIN, x
from .ultrasymmetric import UltrasymmetricOperator

DIRECTIONS = ("forward", "backward")

_THEOREM = {
    "forward": "forward Jacobian dV_Bphi/dSigma at BSB1 (THEORY.md forward linearisation), "
               "eigenspaces of an ultrasymmetric operator (paper Thm 1, A.2.4)",
    "backward": "backward map Pi -> E[J^T Pi J] at BSB1 (G space: paper Thm 7), eigenspaces "
                "of an ultrasymmetric operator (paper Thm 1, A.2.4)",
}
_MOMENT_ROUTE = (
    "orbit entries of the ultrasymmetric operator as sphere moments (exchangeable reduction); "
    "block coordinates of T applied to explicit representatives"
)
_ROUTE_CLOSED = "sphere moments of the eigenvalue form -> closed-form moments (Laplace method)"
_RATE_MOMENT = SphereMoment((Point(0, 0, 2),))  # E[phi'(z)^2]


@cache
def forward_operator() -> UltrasymmetricOperator:
    """The forward Jacobian at ``Sigma*`` as an ultrasymmetric operator (module docstring)."""
    return UltrasymmetricOperator.from_function(
        lambda i, j, k, l: expect(f[i] * f[j] * ((B - 1) * u[k] * u[l] - G(k, l))).expr(),
        scale=1 / (2 * s_form()),
    )


@cache
def backward_operator() -> UltrasymmetricOperator:
    """The backward map at ``Sigma*`` as an ultrasymmetric operator: output index pair
    ``(a, b)``, input ``(c, d)`` (module docstring)."""
    # E[1/r^2] = E[1/chi^2_{B-1}] / s = 1/((B-3) s)
    radial = sp.factor(sp.expand_func(chi_square_moment(B - 1, -1)))
    return UltrasymmetricOperator.from_function(
        lambda a, b, c, d: expect(
            g[c] * g[d] * (G(c, a) - u[c] * u[a]) * (G(d, b) - u[d] * u[b])
        ).expr(),
        scale=B * radial / s_form(),
    )


OPERATORS = {"forward": forward_operator, "backward": backward_operator}


@cache
def spectrum_forms() -> dict[str, tuple]:
    """``{direction: ((space, dim, moment form), ...)}``, the order of
    :meth:`UltrasymmetricOperator.eigenvalues`."""
    return {d: tuple(tuple(e) for e in OPERATORS[d]().eigenvalues()) for d in DIRECTIONS}


def _names(direction: str, spaces: list[str]) -> list[str]:
    """``forward_L``; a space with two eigenvalues (a non-triangular block) gets ``_1``, ``_2``."""
    out = []
    for sp_ in spaces:
        name = f"{direction}_{sp_}"
        if spaces.count(sp_) > 1:
            name += f"_{sum(1 for n in out if n.startswith(name)) + 1}"
        out.append(name)
    return out


def _positive_for_batch_sizes(coeff: sp.Expr) -> bool:
    """True if a rational function of ``B`` is positive for every ``B >= 4``."""
    y = sp.Symbol("y", nonnegative=True)
    num, den = sp.fraction(sp.factor(sp.cancel(coeff.subs(B, y + 4))))
    return bool(sp.expand(num).is_positive and sp.expand(den).is_positive) or bool(
        sp.expand(-num).is_positive and sp.expand(-den).is_positive)


def _infinite(form: sp.Expr, divergent: set, delta: bool) -> str | None:
    """Why an eigenvalue is ``+oo``, or None.

    ``E[phi'(z)^2]`` diverges to ``+oo`` (its integrand is positive) when ``phi'`` has a
    Dirac mass or is not square integrable near a kink (``relu^alpha``, ``alpha <= 1/2``);
    every moment form is linear in it. The eigenvalue is ``+oo`` if its coefficient is
    positive for all ``B >= 4`` and every other moment of the form is finite (for a Dirac
    mass: finite under any smoothing of the jump -- ``E[z^m delta(z)^2] -> 0`` for ``m >= 2``
    and two-point moments stay bounded).
    """
    sym = _RATE_MOMENT.symbol
    present = [mo for mo in moments_in(form) if mo in divergent]
    if _RATE_MOMENT not in present or (not delta and present != [_RATE_MOMENT]):
        return None
    coeff = sp.diff(form, sym) * s_form()  # s = q*(1 - c*) > 0
    if coeff.free_symbols - {B} or not _positive_for_batch_sizes(coeff):
        return None
    if delta:
        return "phi' has a Dirac mass: E[phi'(z)^2] is infinite (positive coefficient)"
    return "E[phi'(z)^2] diverges (positive coefficient), so the eigenvalue is infinite"


def _entry(act: Activation, direction: str, space: str, dim, form, name, subs, divergent,
           delta: bool, params) -> SpectralEntry:
    prov = Provenance(_THEOREM[direction], _MOMENT_ROUTE)
    base = dict(name=name, moment_form=form, parameters=params, moment_route=_MOMENT_ROUTE,
                kind="eigenvalue")
    if form == 0:
        q = DerivedQuantity(**base, provenance=Provenance(_THEOREM[direction], "identically "
                            "zero in the moment form (any phi)"), expr=sp.Integer(0),
                            compact=sp.Integer(0))
        return SpectralEntry(direction, space, dim, q)
    why = _infinite(form, divergent, delta)
    if why is not None:
        q = DerivedQuantity(**base, provenance=Provenance(_THEOREM[direction], why),
                            expr=sp.oo, compact=sp.oo, domain=BSB1_DOMAIN)
        return SpectralEntry(direction, space, dim, q)
    bad = [mo for mo in moments_in(form) if mo in divergent]
    if bad:
        note = ("needs moments of phi', which has a Dirac mass here (not computed)" if delta
                else "needs " + ", ".join(mo.name for mo in bad) + ", which diverge")
        return SpectralEntry(direction, space, dim, DerivedQuantity(**base, provenance=prov),
                             note)
    closed = _closed_form(act, form, subs, divergent) if subs is not None else None
    if closed is None:
        return SpectralEntry(direction, space, dim, DerivedQuantity(**base, provenance=prov))
    expr, compact, domain = closed
    q = DerivedQuantity(**base, provenance=Provenance(_THEOREM[direction], _ROUTE_CLOSED),
                        expr=expr, compact=compact, domain=domain)
    return SpectralEntry(direction, space, dim, q)


@cache
def _derive_spectrum_cached(act: Activation) -> Spectrum:
    forms = spectrum_forms()
    moments = moments_of(form for d in DIRECTIONS for _, _, form in forms[d])
    homogeneous = act.homogeneous is not None
    subs, divergent = _moment_closed_forms(act, moments) if homogeneous else (None, set())
    delta = bool(act.derivative_has_delta) or (homogeneous and act.homogeneous.alpha == 0)
    if delta:
        divergent = divergent | {mo for mo in moments if mo.uses_derivative()}
    params = (B, *sorted(act.expr.free_symbols - {x}, key=str))
    entries = []
    for d in DIRECTIONS:
        names = _names(d, [space for space, _, _ in forms[d]])
        for name, (space, dim, form) in zip(names, forms[d]):
            entries.append(_entry(act, d, space, dim, form, name, subs, divergent, delta,
                                  params))
    evaluable = tuple(e.eigenvalue for e in entries if not e.note)
    # an infinite eigenvalue needs no moments (and its divergent ones cannot be computed)
    finite = (q.moment_form for q in evaluable if q.expr is None or q.expr != sp.oo)
    # the compact forms are written in J(c), J'(c): the same definitions as the derivation's
    definitions = derive(act).definitions if any(
        q.compact is not None and q.compact.has(J, Jp) for q in evaluable) else ()
    deriv = Derivation(activation=act, quantities=evaluable, moments=moments_of(finite),
                       definitions=definitions)
    return Spectrum(activation=act, entries=tuple(entries), derivation=deriv)


#: Parameters of the linear maps besides the activation and ``B`` (none at ``eps = 0``; the
#: regularised batchnorm, ``eps > 0``, is derived by :mod:`.epsilon`).
PARAMETERS: tuple[str, ...] = ()


def derive_spectrum(act: Activation, **parameters) -> Spectrum:
    """The forward and backward spectra of ``act`` at the BSB1 point: moment forms for any
    ``phi``, closed forms for positive-homogeneous ``phi`` (cached). ``parameters`` are
    reserved for maps with further parameters (:data:`PARAMETERS`); none is accepted yet."""
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise TypeError(f"unknown spectrum parameter(s): {', '.join(unknown)}")
    return _derive_spectrum_cached(act)
