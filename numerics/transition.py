"""The BSB1 -> BSB2 transition (paper Fig 1c,d; THEORY.md, "Instability of BSB1").

The BSB1 point stops attracting where the largest forward eigenvalue
``max(lambda_L, lambda_M)`` reaches 1. :func:`alpha_transitions` finds that point in
``alpha`` for ``alpha``-ReLU from the derivation with symbolic ``alpha`` (closed forms with
``Gamma`` and ``2F1``, evaluated by mpmath at two working precisions);
:func:`parameter_transitions` finds it in ``gamma`` or ``beta`` of ``phi(gamma x + beta)``
for any ``phi`` from the numerically evaluated eigenvalues (:func:`bnmft.numerics.analyze`).
Both bracket the root (the signs at the ends must be certified, else :class:`NoSignChange`),
run ``mpmath.findroot`` (Anderson-Bjoerk) and then certify ``x -+ delta`` by a sign change
beyond the error estimates; the digits reported are those of ``delta``.

:func:`covariance_structure` shows the other side: it iterates the exact ``B x B`` covariance
map ``V_Bphi`` (the Laplace-method map of :mod:`.bruteforce` for positive-homogeneous phi;
otherwise Monte Carlo with frozen samples) from a slightly perturbed BSB1 point until the
partition of the batch indices into blocks of equal rows is stable, then polishes the fixed
point inside the block-symmetric matrices (Newton, ``scipy.optimize.root``) and reports the
blocks: one block below the transition (BSB1), two (BSB2, winner-take-all) above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import B as B_SYM
from bnmft.derive import Derivation

from .precision import INF, Number, digits_from_error

#: Default bracket in alpha (B = 4 has no transition: lambda_L -> 1 from below as alpha grows).
ALPHA_BRACKET = (1, 10)
#: Default brackets for phi(gamma x + beta) (relu has its transition near beta = -0.58 at B = 8).
PARAMETER_BRACKETS = {"gamma": (0.25, 4), "beta": (-1.5, 1.5)}
#: Smallest eigenvalue of G Sigma G, relative to the largest, at which the Laplace-map
#: iteration stops (a block collapsing towards equal pre-activations).
COLLAPSE = 1e-4
#: Largest relative half-width tried when certifying a root.
_WIDEST = mpmath.mpf(10) ** -2


class NoSignChange(ValueError):
    """The bracket does not contain a certified sign change of the largest eigenvalue - 1."""


@dataclass(frozen=True)
class Transition:
    """Where ``max(lambda_L, lambda_M) = 1`` at one batch size: the parameter value (a
    :class:`Number`), the eigenspace whose eigenvalue crosses 1 (``"L"`` or ``"M"``) and the
    bracket searched."""

    parameter: str
    batch_size: int
    value: Number
    eigenspace: str
    bracket: tuple


# -- root finding -----------------------------------------------------------------------------


def _largest(evaluate, x):
    """``(max - 1, error, eigenspace)`` from ``evaluate(x) -> {"L": (v, e), "M": (v, e)}``."""
    vals = evaluate(x)
    space = max(vals, key=lambda k: vals[k][0])
    v, e = vals[space]
    other = [s for s in vals if s != space][0]
    # near the crossing of the two eigenvalues the max is only as certain as both
    if abs(vals[other][0] - v) <= e + vals[other][1]:
        e = max(e, vals[other][1])
    return v - 1, e, space


def _sign(v, e) -> int:
    return 0 if abs(v) <= e else (1 if v > 0 else -1)


def _mp(value) -> mpmath.mpf:
    """A number (int, float, mpf or exact SymPy number) at the working precision."""
    if isinstance(value, sp.Basic):
        return mpmath.mpf(sp.N(value, mpmath.mp.dps + 5))
    return mpmath.mpf(value)


def _root(evaluate, a, b, digits: int, what: str):
    """Certified root of ``max(lambda) - 1`` in ``[a, b]``: ``(x, delta, eigenspace)``."""
    a, b = _mp(a), _mp(b)
    ga, gb = _largest(evaluate, a), _largest(evaluate, b)
    sa, sb = _sign(*ga[:2]), _sign(*gb[:2])
    if not (sa and sb and sa != sb):
        raise NoSignChange(
            f"no sign change of the largest forward eigenvalue - 1 on [{mpmath.nstr(a, 8)}, "
            f"{mpmath.nstr(b, 8)}] {what}: it is {mpmath.nstr(ga[0] + 1, 6)} and "
            f"{mpmath.nstr(gb[0] + 1, 6)} at the ends (choose another --bracket)")
    cache: dict = {}

    def f(x):
        if x not in cache:
            cache[x] = _largest(evaluate, x)[0]
        return cache[x]

    scale = max(abs(a), abs(b))
    x = mpmath.findroot(lambda t: f(t * scale), (a / scale, b / scale), solver="anderson",
                        verify=False, tol=mpmath.mpf(10) ** (-digits - 4), maxsteps=100) * scale
    x = min(max(x, a), b)
    size = max(abs(x), mpmath.mpf(10) ** -digits)
    delta = size * mpmath.mpf(10) ** (-digits - 2)
    while delta <= _WIDEST * size:
        lo, hi = _largest(evaluate, x - delta), _largest(evaluate, x + delta)
        s_lo, s_hi = _sign(*lo[:2]), _sign(*hi[:2])
        if s_lo and s_hi and s_lo != s_hi:
            return x, delta, _largest(evaluate, x)[2]
        delta *= 10
    return x, None, _largest(evaluate, x)[2]


def _transition(parameter, Bv, evaluate, bracket, digits, route) -> Transition:
    x, delta, space = _root(evaluate, *bracket, digits, f"in {parameter} at B = {Bv}")
    if delta is None:
        num = Number(None, 0.0, route, "root not certified by a sign change")
    else:
        num = Number(+x, digits_from_error(x, delta), route)
    return Transition(parameter, Bv, num, space, tuple(bracket))


def _alpha_functions(deriv: Derivation):
    (alpha,) = [s for s in deriv["lambda_L"].parameters if str(s) == "alpha"]
    return {name[-1]: sp.lambdify([B_SYM, alpha], deriv[name].expr, "mpmath")
            for name in ("lambda_L", "lambda_M")}


def alpha_transitions(deriv: Derivation, batch_sizes, digits: int = 16,
                      bracket=ALPHA_BRACKET) -> list[Transition]:
    """``alpha_transition(B)`` for ``alpha``-ReLU from the derivation with symbolic ``alpha``
    (``derive(symbolic_activation("alpha_relu"))``): the closed ``lambda_L``, ``lambda_M`` at
    ``digits + 15`` and ``digits + 35`` working digits, their difference the error."""
    from bnmft.progress import progress

    fns = _alpha_functions(deriv)
    out = []
    for Bv in progress(list(batch_sizes), "alpha transition"):
        def evaluate(a, Bv=Bv):
            res = {}
            for space, fn in fns.items():
                with mpmath.workdps(digits + 35):
                    v2 = fn(mpmath.mpf(Bv), mpmath.mpf(a))
                with mpmath.workdps(digits + 15):
                    v1 = fn(mpmath.mpf(Bv), mpmath.mpf(a))
                res[space] = (v2, abs(v2 - v1) + abs(v2) * mpmath.mpf(10) ** (-digits - 15))
            return res

        with mpmath.workdps(digits + 15):
            out.append(_transition("alpha", int(Bv), evaluate, bracket, digits, "closed form"))
    return out


def parameter_transitions(make_derivation, parameter: str, batch_sizes, digits: int,
                          bracket) -> list[Transition]:
    """The transition in ``gamma`` or ``beta`` of ``phi(gamma x + beta)``:
    ``make_derivation(value)`` gives the derivation at a parameter value (a decimal string,
    exact), and ``lambda_L``, ``lambda_M`` come from :func:`bnmft.numerics.analyze` with the
    digits its route achieved."""
    from bnmft.progress import progress

    from .evaluate import analyze

    out = []
    for Bv in progress(list(batch_sizes), f"{parameter} transition"):
        route = []

        def evaluate(p, Bv=Bv):
            deriv = make_derivation(mpmath.nstr(p, digits + 10, strip_zeros=False))
            (an,) = analyze(deriv, [int(Bv)], digits)
            res = {}
            for space in ("L", "M"):
                num = an.numbers[f"lambda_{space}"]
                if num.value is None:
                    raise ArithmeticError(f"lambda_{space} at {parameter} = "
                                          f"{mpmath.nstr(p, 10)}: {num.note}")
                v = mpmath.mpf(num.value)
                err = 0 if num.digits == INF else abs(v) * mpmath.mpf(10) ** -num.digits
                res[space] = (v, err + abs(v) * mpmath.mpf(10) ** (-digits - 2))
                route.append(num.route)
            return res

        with mpmath.workdps(digits + 10):
            tr = _transition(parameter, int(Bv), evaluate, bracket, digits, "")
        label = "eigenvalues by " + "; ".join(dict.fromkeys(route))
        out.append(Transition(tr.parameter, tr.batch_size,
                              Number(tr.value.value, tr.value.digits, label, tr.value.note),
                              tr.eigenspace, tr.bracket))
    return out


# -- the covariance the iteration settles into -------------------------------------------------


@dataclass
class Block:
    """Batch indices whose rows of the covariance are equal: the common diagonal entry and
    the common entry between two different members (None for a single index)."""

    indices: list[int]
    diagonal: float
    off_diagonal: float | None


@dataclass
class Structure:
    """The limit of the iterated covariance map and its blocks.

    ``form`` is ``"BSB1"`` (one block), ``"BSB2"`` (two) or ``"k blocks"``; ``between[a][b]``
    the entry between blocks ``a`` and ``b``; ``residual`` is ``max |V(S) - S| / max |S|`` of
    the full map at the reported ``covariance``; ``iterations`` counts the map applications
    before the block polish; ``method`` names the map.
    """

    batch_size: int
    covariance: np.ndarray
    blocks: list[Block]
    between: list[list[float | None]]
    residual: float
    iterations: int
    method: str
    converged: bool
    note: str = ""
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def form(self) -> str:
        n = len(self.blocks)
        return "BSB1" if n == 1 else ("BSB2" if n == 2 else f"{n} blocks")

    @property
    def sizes(self) -> list[int]:
        return [len(b.indices) for b in self.blocks]

    def to_json(self, digits: int = 8) -> dict:
        def num(v):
            return None if v is None else float(f"{v:.{digits}g}")

        return {
            "form": self.form,
            "block_sizes": self.sizes,
            "blocks": [{"indices": b.indices, "diagonal": num(b.diagonal),
                        "off_diagonal": num(b.off_diagonal)} for b in self.blocks],
            "between": [[num(v) for v in row] for row in self.between],
            "residual": num(self.residual),
            "iterations": self.iterations,
            "method": self.method,
            "converged": self.converged,
            **({"note": self.note} if self.note else {}),
        }

    def describe(self, digits: int = 6) -> list[str]:
        g = f".{digits}g"
        lines = [f"{self.form}: blocks of sizes {self.sizes} ({self.method}, "
                 f"{self.iterations} iterations, residual {self.residual:.1e})"]
        for k, b in enumerate(self.blocks):
            off = "-" if b.off_diagonal is None else format(b.off_diagonal, g)
            lines.append(f"  block {k}: indices {b.indices}, diagonal {b.diagonal:{g}}, "
                         f"within {off}")
        for a in range(len(self.blocks)):
            for b in range(a + 1, len(self.blocks)):
                lines.append(f"  between blocks {a} and {b}: {self.between[a][b]:{g}}")
        if self.note:
            lines.append(f"  note: {self.note}")
        return lines


def partition(S: np.ndarray, tol: float) -> list[list[int]]:
    """Indices grouped by equal rows: ``i ~ j`` if ``|S_ii - S_jj|`` and ``|S_ik - S_jk|``
    (every ``k`` other than ``i, j``) are at most ``tol * max|S|`` (transitively closed)."""
    B = S.shape[0]
    scale = float(np.max(np.abs(S)))
    parent = list(range(B))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(B):
        for j in range(i + 1, B):
            others = [k for k in range(B) if k not in (i, j)]
            gap = max([abs(S[i, i] - S[j, j])] + [abs(S[i, k] - S[j, k]) for k in others])
            if gap <= tol * scale:
                parent[find(j)] = find(i)
    groups: dict = {}
    for i in range(B):
        groups.setdefault(find(i), []).append(i)
    # largest diagonal first, then by first index
    return sorted(groups.values(), key=lambda g: (-float(S[g[0], g[0]]), g[0]))


def _block_params(S: np.ndarray, groups) -> list[float]:
    """Block averages: per block its diagonal and within entry, then every pair's entry."""
    p = []
    for g in groups:
        p.append(float(np.mean(S[g, g])))
        if len(g) > 1:
            p.append(float(np.mean([S[i, j] for i in g for j in g if i != j])))
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            p.append(float(np.mean(S[np.ix_(groups[a], groups[b])])))
    return p


def _block_matrix(p, groups, B: int) -> np.ndarray:
    S = np.zeros((B, B))
    it = iter(p)
    for g in groups:
        d = next(it)
        o = next(it) if len(g) > 1 else 0.0
        for i in g:
            for j in g:
                S[i, j] = d if i == j else o
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            x = next(it)
            S[np.ix_(groups[a], groups[b])] = x
            S[np.ix_(groups[b], groups[a])] = x
    return S


def _laplace_step(act):
    from . import bruteforce as bf

    return lambda S: bf.laplace_map(S, act), "Laplace-method map (paper Thm 2)"


def _monte_carlo_step(act, B: int, samples: int, seed: int):
    """``V_Bphi`` by Monte Carlo with frozen normal samples and the symmetric square root
    (continuous in the covariance, so the sampled map is a smooth deterministic map)."""
    from .montecarlo import batchnorm

    z = np.random.default_rng(seed).standard_normal((samples, B))

    def step(S):
        w, V = np.linalg.eigh((S + S.T) / 2)
        R = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
        y = act.numpy(batchnorm(z @ R))
        return y.T @ y / samples

    return step, f"Monte Carlo map ({samples} frozen samples)"


def covariance_structure(act, B: int, *, method: str | None = None, max_iter: int = 3000,
                         perturbation: float = 0.05, seed: int = 0, samples: int = 200_000,
                         stable_for: int = 25) -> Structure:
    """Iterate ``Sigma -> V_Bphi(Sigma)`` from the BSB1 point plus a perturbation of the
    diagonal (relative size ``perturbation``, zero sum: the L direction) until the block
    partition (equal rows within ``1e-2``) has not changed for ``stable_for`` iterations and
    the step is below ``1e-5`` (an index still in transit between blocks moves faster); then
    solve for the fixed point among matrices with that block
    form (Newton) and report its blocks (equal rows within ``1e-6`` of the largest entry for
    the Laplace map, ``5e-2`` for Monte Carlo, whose fixed point carries sampling error;
    ``1e-2`` for an iterate that did not converge). Without a block-form fixed point the map
    is iterated on to a step of ``1e-12``.

    ``method``: ``"laplace"`` (positive-homogeneous phi, the default for it) or
    ``"montecarlo"`` (any phi). If the smallest eigenvalue of ``G Sigma G`` falls below
    :data:`COLLAPSE` of the largest (a block collapsing to equal pre-activations) the
    iteration stops there (the Laplace method needs it positive definite) and the structure
    is reported as not converged.
    """
    from scipy.optimize import root

    from bnmft.progress import progress

    from . import bruteforce as bf

    if method is None:
        method = "laplace" if act.homogeneous is not None and act.homogeneous.alpha > 0 \
            else "montecarlo"
    if method == "laplace":
        step, label = _laplace_step(act)
        q, c = bf.bsb1_fixed_point(act, B)
        final_tol = 1e-6
    else:
        step, label = _monte_carlo_step(act, B, samples, seed)
        S1 = step(np.eye(B))
        q = float(np.mean(np.diag(S1)))
        c = float(np.mean(S1[~np.eye(B, dtype=bool)])) / q
        final_tol = 5e-2
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, B)
    u -= u.mean()
    S = bf.bsb1_matrix(q, c, B) + perturbation * q * np.diag(u / np.max(np.abs(u)))
    state = {"S": S, "groups": None, "same": 0, "note": "", "collapsed": False, "it": 0}

    def iterate(until_step: float, need_stable: bool) -> float:
        d = math.inf
        for _ in progress(range(state["it"], max_iter), "covariance map iterations"):
            state["it"] += 1
            new = step(state["S"])
            d = float(np.max(np.abs(new - state["S"])) / np.max(np.abs(new)))
            state["S"] = new
            ev = np.linalg.eigvalsh(G @ new @ G)[1:]  # drop the zero of the 1 direction
            # The Laplace map needs G Sigma G positive definite, and near-equal pre-activations
            # (correlations within 1e-3 of 1) leave its fast kernel quadrature: stop there.
            if method == "laplace" and ev[0] <= COLLAPSE * ev[-1]:
                state["collapsed"] = True
                state["note"] = ("a block collapses to equal pre-activations (G Sigma G nearly "
                                 "singular); iteration stopped")
                return d
            cur = partition(new, 1e-2)
            state["same"] = state["same"] + 1 if cur == state["groups"] else 0
            state["groups"] = cur
            if d < until_step and (not need_stable or state["same"] >= stable_for):
                return d
        return d

    G = np.eye(B) - 1.0 / B
    d = iterate(1e-5, True)
    iterations = state["it"]
    converged = False
    if not state["collapsed"]:
        groups = state["groups"]
        S = state["S"]
        p0 = np.array(_block_params(S, groups))
        try:
            sol = root(lambda p: np.array(_block_params(step(_block_matrix(p, groups, B)),
                                                        groups)) - p,
                       p0, method="hybr", options={"xtol": 1e-13})
            cand = _block_matrix(sol.x, groups, B)
            res = float(np.max(np.abs(step(cand) - cand)) / np.max(np.abs(cand)))
        except (ValueError, np.linalg.LinAlgError):  # Newton left the positive-definite set
            sol, res = None, math.inf
        # the full map's residual decides (hybr may report no progress when it starts at
        # the root to rounding level)
        if res < 1e-9 or (sol is not None and sol.success and method == "montecarlo"):
            state["S"], converged = cand, True
        else:  # no polish: keep iterating the map itself
            d = iterate(1e-12, False)
            iterations = state["it"]
            converged = d < 1e-12
            if not converged and not state["note"]:
                state["note"] = f"not converged after {iterations} iterations (step {d:.1e})"
    S, note = state["S"], state["note"]
    if state["collapsed"]:
        residual = d  # the last step (the map is not evaluated at a singular G Sigma G)
    else:
        residual = float(np.max(np.abs(step(S) - S)) / np.max(np.abs(S)))
    final = partition(S, final_tol if converged else 1e-2)
    blocks = []
    for g in final:
        sub = S[np.ix_(g, g)]
        off = None if len(g) == 1 else float(np.mean(sub[~np.eye(len(g), dtype=bool)]))
        blocks.append(Block(list(g), float(np.mean(np.diag(sub))), off))
    between = [[None if a == b else float(np.mean(S[np.ix_(final[a], final[b])]))
                for b in range(len(final))] for a in range(len(final))]
    return Structure(B, S, blocks, between, residual, iterations, label, converged, note)


__all__ = [
    "ALPHA_BRACKET",
    "PARAMETER_BRACKETS",
    "Block",
    "NoSignChange",
    "Structure",
    "Transition",
    "alpha_transitions",
    "covariance_structure",
    "parameter_transitions",
    "partition",
]

