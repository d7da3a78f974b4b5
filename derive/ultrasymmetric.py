"""Ultrasymmetric operators on symmetric B x B matrices and their eigendecomposition.

A linear operator ``T`` on ``B x B`` matrices, ``T(D)_ij = sum_kl T_{ij,kl} D_kl``, is
*ultrasymmetric* (paper Thm 1, appendix A.2.4; THEORY.md "Forward linearisation") if

    T_{ij,kl} = T_{pi(i)pi(j),pi(k)pi(l)}   for every permutation pi of the batch, and
    T_{ij,kl} = T_{ji,lk}.

It maps symmetric matrices to symmetric matrices, and its entries are constant on the orbits
of index patterns ``(ij, kl)`` under ``S_B`` and the joint swap: the 15 set partitions of the
four positions fall into 11 orbits (:data:`ORBITS`). ``T`` is given by one value per orbit,
with ``B`` symbolic.

Eigendecomposition (representation theory of ``S_B``, ``B >= 4``): as a representation,
``Sym^2(R^B) = Sym^2(triv + std) = 2 triv + 2 std + (B-2, 2)``, so by Schur's lemma ``T`` is

* a 2 x 2 block on the trivial isotypic part, spanned by ``11^T`` (in the kernel-type space
  ``K = {S : G S G = 0} = {1 v^T + v 1^T}``) and ``G`` (in ``H = {S : G S G = S}``): two
  eigenvalues of multiplicity 1;
* a 2 x 2 block on the standard isotypic part, spanned by the copy ``1 v^T + v 1^T`` in
  ``K`` and the copy ``L = {G diag(v) G}`` in ``H`` (``sum v = 0``): two eigenvalues, each of
  multiplicity ``B-1``;
* a scalar on ``M`` (zero diagonal, zero row sums), multiplicity ``B(B-3)/2``.

So ``K`` (dim ``B``) pairs its trivial line with ``G`` and its standard part with ``L``.
The blocks are derived here by applying ``T`` to explicit representatives (sums over the
batch reduced by exchangeability, symbolically in ``B``) and reading off coordinates; they
are written in the ordered basis ``(K-vector, H-vector)``.

Labelling of eigenvalues (:meth:`UltrasymmetricOperator.eigenvalues`): if a block is
triangular in that basis (``T`` kills ``K``, or ``T`` maps into ``H``, as the batchnorm
forward and backward operators do), its diagonal entries are the eigenvalues: the
``K`` entry is labelled ``"kernel"`` and the ``H`` entry ``"G"`` or ``"L"``; the kernel
entries of both blocks merge into one ``("kernel", B)`` entry when they are equal. Otherwise
both roots ``(tr +- sqrt(disc))/2`` carry the block's name (``"G"`` or ``"L"``) and the same
dimension, ``+`` root first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import product

import sympy as sp

from .moments import centering, delta
from .symbols import B

LETTERS = "ijkl"


def pattern(i, j, k, l) -> tuple[int, ...]:  # noqa: E741 (the paper's index names)
    """Equality pattern of ``(i, j, k, l)`` as a restricted growth string (0-based labels in
    order of first appearance): ``(1, 2, 1, 3) -> (0, 1, 0, 2)``."""
    seen: dict = {}
    return tuple(seen.setdefault(v, len(seen)) for v in (i, j, k, l))


def orbit(i, j, k, l) -> tuple[int, ...]:  # noqa: E741
    """Canonical representative of the orbit of ``(ij, kl)`` under ``S_B`` and the joint swap
    ``(ij, kl) -> (ji, lk)``: the smaller of the two patterns."""
    return min(pattern(i, j, k, l), pattern(j, i, l, k))


def orbit_name(orb: tuple[int, ...]) -> str:
    """``(0, 1, 0, 2) -> "ij,ik"``."""
    s = "".join(LETTERS[v] for v in orb)
    return f"{s[:2]},{s[2:]}"


def _all_patterns():
    out = set()
    for t in product(range(4), repeat=4):
        out.add(pattern(*t))
    return sorted(out)


#: The 11 orbits, each by its canonical pattern (15 set partitions; 4 pairs are swapped
#: into each other by ``(ij, kl) -> (ji, lk)``).
ORBITS: tuple[tuple[int, ...], ...] = tuple(sorted({orbit(*p) for p in _all_patterns()}))
ORBIT_NAMES: tuple[str, ...] = tuple(orbit_name(o) for o in ORBITS)


def _parse_orbit(key) -> tuple[int, ...]:
    if isinstance(key, str):
        letters = key.replace(",", "").replace(" ", "")
        if len(letters) != 4:
            raise ValueError(f"bad orbit name {key!r} (use e.g. 'ij,ik')")
        return orbit(*letters)
    return orbit(*key)


# -- representatives ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternMatrix:
    """A B x B matrix whose entries depend only on equalities among their indices and the
    labels in ``support`` (``entry(k, l)`` takes integer labels; any label outside
    ``support`` stands for every other batch index)."""

    name: str
    entry: Callable[[int, int], sp.Expr]
    support: tuple[int, ...] = ()


def _v(i: int) -> int:
    """``v = e_1 - e_2``: a vector of the standard representation (zero sum)."""
    return delta(i, 1) - delta(i, 2)


#: Representatives, one per copy of each irreducible piece (B symbolic):
#: trivial: ``11^T`` (in K) and ``G`` (in H); standard (``v = e1 - e2``): ``1 v^T + v 1^T``
#: (in K) and ``G diag(v) G`` (in L); ``M``: ``a b^T + b a^T``, ``a = e1 - e2``, ``b = e3 - e4``.
REPRESENTATIVES = {
    "K_triv": PatternMatrix("11^T", lambda k, l: sp.Integer(1)),
    "G": PatternMatrix("G", lambda k, l: centering(k, l)),
    "K_std": PatternMatrix("1v^T + v1^T", lambda k, l: sp.Integer(_v(k) + _v(l)), (1, 2)),
    "L": PatternMatrix(
        "G diag(v) G",
        lambda k, l: centering(k, 1) * centering(1, l) - centering(k, 2) * centering(2, l),
        (1, 2),
    ),
    "M": PatternMatrix(
        "ab^T + ba^T",
        lambda k, l: sp.Integer(
            _v(k) * (delta(l, 3) - delta(l, 4)) + (delta(k, 3) - delta(k, 4)) * _v(l)
        ),
        (1, 2, 3, 4),
    ),
}

#: Entries at which a block's coordinates are read (the 2 x 2 system is regular for every
#: ``B``: determinant -1 in both cases) and further entries that check the decomposition.
_READ = {"triv": ((1, 1), (1, 2)), "std": ((1, 1), (1, 3))}
_CHECK = {"triv": ((2, 3), (3, 3)), "std": ((3, 3), (3, 4), (1, 2), (2, 3), (2, 2))}
_CHECK_M = ((1, 1), (1, 2), (1, 5), (5, 6), (1, 4), (2, 3))

#: The spaces and their dimensions (the kernel-type space: 1 from the trivial block plus
#: ``B - 1`` from the standard block).
DIMENSIONS = {"kernel": B, "G": sp.Integer(1), "L": B - 1, "M": B * (B - 3) / 2}


# Block arithmetic on linear forms: ``{symbol or 1: coefficient}``, coefficients in the field
# of rational functions of sqrt(B) (sphere moments bring odd powers of sqrt(B)); exact and far
# faster than expanding SymPy expressions.
_ROOT_B = sp.Symbol("sqrtB", positive=True)
_FIELD = sp.QQ.frac_field(_ROOT_B)
_ONE = sp.Integer(1)


def _scalar(expr) -> object:
    return _FIELD.from_sympy(sp.sympify(expr).subs(B, _ROOT_B**2))


def _linear(expr) -> dict:
    """``expr`` (linear in its symbols other than ``B``) as a linear form."""
    expr = sp.sympify(expr)
    syms = sorted(expr.free_symbols - {B}, key=str)
    if not syms:
        value = _scalar(expr)
        return {_ONE: value} if value else {}
    try:
        poly = sp.Poly(expr.subs(B, _ROOT_B**2), *syms, domain=_FIELD)
    except (sp.PolynomialError, sp.CoercionFailed):
        poly = None
    if poly is None or poly.total_degree() > 1:
        raise ValueError(f"orbit entry is not linear in its symbols: {expr}")
    out = {}
    for monom, coeff in poly.as_dict(native=True).items():
        key = next((s for s, e in zip(syms, monom) if e), _ONE)
        out[key] = coeff
    return out


def _add(*terms) -> dict:
    """``sum c_k v_k`` for ``(c_k, v_k)`` pairs (field scalars, linear forms)."""
    out: dict = {}
    for c, v in terms:
        for key, val in v.items():
            out[key] = out.get(key, _FIELD.zero) + c * val
    return {k: v for k, v in out.items() if v}


def _expr(v: dict) -> sp.Expr:
    """A linear form as SymPy: each coefficient a factored rational function of ``B``."""
    out = []
    for key in sorted(v, key=lambda k: (k != _ONE, str(k))):
        coeff = sp.factor(_FIELD.to_sympy(v[key]).subs(_ROOT_B, sp.sqrt(B)))
        out.append(coeff * key)
    return sp.Add(*out)


@dataclass(frozen=True)
class Eigenvalue:
    """One entry of the spectrum: ``space`` ("kernel", "G", "L", "M"), its dimension (in
    ``B``) and the eigenvalue."""

    space: str
    dim: sp.Expr
    value: sp.Expr

    def __iter__(self):
        return iter((self.space, self.dim, self.value))


class UltrasymmetricOperator:
    """An ultrasymmetric operator given by its 11 orbit entries (``B`` symbolic), times a
    common ``scale`` (kept apart so that entries linear in sphere moments stay linear).

    ``entries`` maps orbits (canonical patterns such as ``(0, 1, 0, 2)``, any pattern of the
    orbit, or names such as ``"ij,ik"``) to SymPy expressions, linear in their symbols other
    than ``B`` with coefficients rational in ``sqrt(B)`` (numbers, orbit symbols, sphere
    moments); every orbit must be given.
    """

    def __init__(self, entries: Mapping, scale: sp.Expr | int = 1):
        vals: dict[tuple[int, ...], sp.Expr] = {}
        for key, value in entries.items():
            orb = _parse_orbit(key)
            if orb in vals and sp.simplify(vals[orb] - value) != 0:
                raise ValueError(f"two different values for orbit {orbit_name(orb)}")
            vals[orb] = sp.sympify(value)
        missing = [orbit_name(o) for o in ORBITS if o not in vals]
        if missing:
            raise ValueError(f"orbit entries missing: {', '.join(missing)}")
        self.entries: dict[tuple[int, ...], sp.Expr] = {o: vals[o] for o in ORBITS}
        self.scale = sp.sympify(scale)
        self._forms = {o: _linear(v) for o, v in self.entries.items()}

    @classmethod
    def from_function(cls, fn: Callable[[int, int, int, int], sp.Expr],
                      scale: sp.Expr | int = 1) -> UltrasymmetricOperator:
        """Entries ``fn(i, j, k, l)`` at one representative of each orbit (labels ``1..4``)."""
        return cls({o: fn(*(v + 1 for v in o)) for o in ORBITS}, scale)

    @classmethod
    def generic(cls, prefix: str = "T") -> UltrasymmetricOperator:
        """The operator with one symbol per orbit, ``T_{ij,ik}`` etc."""
        return cls({o: sp.Symbol(f"{prefix}_{{{orbit_name(o)}}}") for o in ORBITS})

    def entry(self, i, j, k, l) -> sp.Expr:  # noqa: E741
        """``T_{ij,kl}`` without the scale."""
        return self.entries[orbit(i, j, k, l)]

    # -- action, symbolically in B ---------------------------------------------------------

    def apply_entry(self, D: PatternMatrix, i: int, j: int) -> sp.Expr:
        """``T(D)_ij = sum_{k,l = 1..B} T_{ij,kl} D_kl`` (without the scale), symbolically
        in ``B``."""
        return _expr(self._apply(D, i, j))

    def _apply(self, D: PatternMatrix, i: int, j: int) -> dict:
        """:meth:`apply_entry` as a linear form.

        The labels that matter are ``i``, ``j`` and ``D``'s support; each of ``k``, ``l`` is
        one of them or a fresh label, and fresh labels are equal or distinct: a pattern with
        ``f`` distinct fresh labels stands for ``(B - n)(B - n - 1)...`` index pairs.
        """
        fixed = sorted({i, j, *D.support})
        n = len(fixed)
        f1, f2 = fixed[-1] + 1, fixed[-1] + 2
        cases = [(k, l, 1) for k in fixed for l in fixed]
        cases += [(k, f1, B - n) for k in fixed] + [(f1, l, B - n) for l in fixed]
        cases += [(f1, f1, B - n), (f1, f2, (B - n) * (B - n - 1))]
        terms = []
        for k, l, weight in cases:  # noqa: E741
            dkl = D.entry(k, l)
            if dkl != 0:
                terms.append((_scalar(weight * dkl), self._forms[orbit(i, j, k, l)]))
        return _add(*terms)

    def _coordinates(self, image, basis, read, check) -> list[dict]:
        """Coordinates of a matrix (given entrywise as linear forms) in the span of ``basis``,
        read from the 2 (or 1) entries ``read`` and checked on ``check`` (a nonzero residual
        means the matrix is not in the span: the operator is not ultrasymmetric)."""
        A = [[_scalar(b.entry(*rc)) for b in basis] for rc in read]
        y = [image(*rc) for rc in read]
        if len(basis) == 1:
            x = [_add((1 / A[0][0], y[0]))]
        else:
            det = A[0][0] * A[1][1] - A[0][1] * A[1][0]
            x = [_add((A[1][1] / det, y[0]), (-A[0][1] / det, y[1])),
                 _add((-A[1][0] / det, y[0]), (A[0][0] / det, y[1]))]
        for rc in check:
            resid = _add((_FIELD.one, image(*rc)),
                         *((-_scalar(b.entry(*rc)), xi) for xi, b in zip(x, basis)))
            if resid:
                raise ValueError(f"image leaves the invariant subspace at entry {rc}")
        return x

    def _block(self, kname: str, hname: str, which: str) -> sp.Matrix:
        basis = [REPRESENTATIVES[kname], REPRESENTATIVES[hname]]
        cols = []
        for D in basis:
            cache: dict = {}

            def image(r, c, D=D, cache=cache):
                if (r, c) not in cache:
                    cache[(r, c)] = self._apply(D, r, c)
                return cache[(r, c)]

            cols.append(self._coordinates(image, basis, _READ[which], _CHECK[which]))
        return sp.Matrix(2, 2, lambda r, c: _expr(cols[c][r]))

    @cached_property
    def blocks(self) -> dict[str, sp.Matrix]:
        """``{"G": 2x2, "L": 2x2, "M": 1x1}`` without the scale: column ``c`` holds the
        coordinates of ``T(basis_c)`` in the basis ``(K-vector, H-vector)`` (``G``:
        ``(11^T, G)``; ``L``: ``(1 v^T + v 1^T, G diag(v) G)``)."""
        DM = REPRESENTATIVES["M"]
        (lam,) = self._coordinates(lambda r, c: self._apply(DM, r, c), [DM], ((1, 3),),
                                   _CHECK_M)
        return {
            "G": self._block("K_triv", "G", "triv"),
            "L": self._block("K_std", "L", "std"),
            "M": sp.Matrix([[_expr(lam)]]),
        }

    def eigenvalues(self) -> list[Eigenvalue]:
        """The spectrum as ``(space, dim, eigenvalue)`` entries, scale included, labelled as in
        the module docstring; dimensions add up to ``B(B+1)/2``."""
        return list(self._spectrum)

    @cached_property
    def _spectrum(self) -> tuple[Eigenvalue, ...]:
        out: list[Eigenvalue] = []
        kernel: list[tuple[sp.Expr, sp.Expr]] = []
        for name in ("G", "L"):
            blk = self.blocks[name]
            dim = DIMENSIONS[name]
            (a, b), (c, d) = blk.tolist()
            if b == 0 or c == 0:
                kernel.append((dim, self._scaled(a)))
                out.append(Eigenvalue(name, dim, self._scaled(d)))
                continue
            tr, disc = a + d, sp.expand((a - d) ** 2 + 4 * b * c)
            for sign in (1, -1):
                out.append(Eigenvalue(name, dim, self.scale * (tr + sign * sp.sqrt(disc)) / 2))
        out.append(Eigenvalue("M", DIMENSIONS["M"], self._scaled(self.blocks["M"][0, 0])))
        if len(kernel) == 2 and sp.simplify(kernel[0][1] - kernel[1][1]) == 0:
            kernel = [(DIMENSIONS["kernel"], kernel[0][1])]
        return tuple([Eigenvalue("kernel", dim, value) for dim, value in kernel] + out)

    def _scaled(self, value: sp.Expr) -> sp.Expr:
        """``scale * value``; the part of the scale that depends on ``B`` only is multiplied
        into the coefficients (so ``1/(2s)`` stays a common factor)."""
        if value == 0:
            return sp.Integer(0)
        rational, rest = self.scale.as_independent(*(self.scale.free_symbols - {B}),
                                                   as_Add=False)
        return _expr(_add((_scalar(rational), _linear(value)))) * rest

    def characteristic_polynomial(self, x: sp.Symbol, Bv=None, subs: Mapping | None = None
                                  ) -> sp.Expr:
        """``det(x I - T)`` on Sym(B) from the blocks (at ``B = Bv`` and with the symbols of
        the entries replaced by ``subs``, if given)."""
        rep = dict(subs or {})
        if Bv is not None:
            rep[B] = sp.Integer(Bv)
        total = sp.Integer(1)
        for name, blk in self.blocks.items():
            mat = (self.scale * blk).xreplace(rep)
            mult = DIMENSIONS[name].xreplace(rep)
            total *= (x * sp.eye(blk.shape[0]) - mat).det() ** mult
        return total

    # -- explicit matrices, for checks -----------------------------------------------------

    def materialize(self, Bv: int, subs: Mapping | None = None) -> sp.Matrix:
        """The operator on Sym(B) at ``B = Bv`` as a ``B(B+1)/2`` square matrix (scale
        included) in the basis ``E_kk``, ``E_kl + E_lk`` (``k < l``): column ``(kl)`` holds
        the entries ``T(E)_ij``, ``i <= j``, of the image of that basis element."""
        subs = dict(subs or {})
        subs[B] = Bv
        vals = {o: sp.sympify(v).subs(subs) for o, v in self.entries.items()}
        scale = self.scale.subs(subs)
        pairs = [(i, j) for i in range(Bv) for j in range(i, Bv)]

        def elem(r, c):
            (i, j), (k, l) = pairs[r], pairs[c]  # noqa: E741
            v = vals[orbit(i, j, k, l)]
            if k != l:
                v = v + vals[orbit(i, j, l, k)]
            return scale * v

        return sp.Matrix(len(pairs), len(pairs), elem)
