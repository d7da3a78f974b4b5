"""The ultrasymmetric eigendecomposition (derive/ultrasymmetric.py) against explicit matrices.

Each operator is materialised as its B(B+1)/2 square matrix on Sym(B) for B = 4..9 with
exact rational orbit entries; SymPy's exact characteristic polynomial of that matrix must
equal the product of ``(x - eigenvalue)^dim`` over the class's spectrum (closed forms in the
orbit entries with B symbolic, evaluated exactly), and the representatives must span the
invariant subspaces the docstring pairs with each block.
"""

import random
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy.polys.matrices import DomainMatrix

from bnmft.derive.moments import SphereMoment
from bnmft.derive.spectrum import backward_operator, forward_operator
from bnmft.derive.symbols import B
from bnmft.derive.ultrasymmetric import (
    ORBIT_NAMES,
    ORBITS,
    REPRESENTATIVES,
    UltrasymmetricOperator,
    orbit,
    pattern,
)

X = sp.Symbol("x")
GENERIC = UltrasymmetricOperator.generic()
SYMS = {name: sp.Symbol(f"T_{{{name}}}") for name in ORBIT_NAMES}


def exact_charpoly(M: sp.Matrix) -> sp.Poly:
    dm = DomainMatrix.from_Matrix(M).convert_to(sp.QQ)
    return sp.Poly(dm.charpoly(), X, domain=sp.QQ)


def spectrum_polynomial(entries, Bv: int, subs: dict) -> sp.Poly:
    """``prod (x - lambda)^dim`` over the class's entries; the two roots of a 2 x 2 block
    (conjugate square roots) are multiplied together first, so the product is rational."""
    groups: dict = {}
    for e in entries:
        groups.setdefault((e.space, e.dim), []).append(e.value)
    total = sp.Poly(1, X, domain=sp.QQ)
    rep = {**subs, B: sp.Integer(Bv)}
    for (_, dim), values in groups.items():
        factor = sp.Integer(1)
        for v in values:
            factor *= X - v.xreplace(rep)
        poly = sp.Poly(sp.expand(factor), X, domain=sp.QQ)
        total *= poly ** int(dim.subs(B, Bv))
    return total


def svec_exact(M: sp.Matrix, Bv: int) -> sp.Matrix:
    """Coordinates of a symmetric matrix in the basis E_kk, E_kl + E_lk (k < l)."""
    return sp.Matrix([M[i, j] for i in range(Bv) for j in range(i, Bv)])


def representative(name: str, Bv: int) -> sp.Matrix:
    D = REPRESENTATIVES[name]
    return sp.Matrix(Bv, Bv, lambda i, j: sp.sympify(D.entry(i + 1, j + 1)).subs(B, Bv))


rationals = st.fractions(min_value=-5, max_value=5, max_denominator=7)


# -- orbits -----------------------------------------------------------------------------------


def test_eleven_orbits_of_the_fifteen_patterns():
    patterns = {pattern(*t) for t in __import__("itertools").product(range(4), repeat=4)}
    assert len(patterns) == 15  # set partitions of four positions (Bell number)
    assert len(ORBITS) == 11
    for p in patterns:
        i, j, k, l = p  # noqa: E741
        assert orbit(i, j, k, l) == orbit(j, i, l, k)  # T_{ij,kl} = T_{ji,lk}
        assert orbit(i, j, k, l) in ORBITS
    # the joint swap pairs up exactly four couples of patterns
    assert sum(1 for p in patterns if orbit(*p) != p) == 4


def test_orbit_names_parse_to_their_orbit():
    op = UltrasymmetricOperator({name: k for k, name in enumerate(ORBIT_NAMES)})
    for k, o in enumerate(ORBITS):
        assert op.entries[o] == k
    with pytest.raises(ValueError, match="missing"):
        UltrasymmetricOperator({"ii,ii": 1})


# -- eigenvalues and multiplicities against exact characteristic polynomials --------------------


@settings(max_examples=12, deadline=None)
@given(Bv=st.integers(4, 9), values=st.lists(rationals, min_size=11, max_size=11))
def test_generic_spectrum_is_the_characteristic_polynomial(Bv, values):
    subs = {SYMS[n]: sp.Rational(v.numerator, v.denominator) for n, v in zip(ORBIT_NAMES, values)}
    M = GENERIC.materialize(Bv, subs)
    assert M.shape == (Bv * (Bv + 1) // 2,) * 2
    entries = GENERIC.eigenvalues()
    assert [e.space for e in entries] == ["G", "G", "L", "L", "M"]
    assert sum(int(e.dim.subs(B, Bv)) for e in entries) == Bv * (Bv + 1) // 2
    expected = exact_charpoly(M)
    assert spectrum_polynomial(entries, Bv, subs) == expected
    blocks = sp.Poly(GENERIC.characteristic_polynomial(X, Bv, subs), X, domain=sp.QQ)
    assert blocks == expected


@pytest.mark.parametrize("Bv", [4, 6, 9])
def test_blocks_are_the_action_on_their_representatives(Bv):
    """T applied (as a matrix) to 11^T, G, 1v^T + v1^T, G diag(v) G and ab^T + ba^T gives
    the columns of the blocks in the documented bases; T maps each pair into its span."""
    rng = random.Random(Bv)
    subs = {s: sp.Rational(rng.randint(-9, 9), rng.randint(1, 6)) for s in SYMS.values()}
    M = GENERIC.materialize(Bv, subs)
    blocks = {k: v.subs(subs).subs(B, Bv) for k, v in GENERIC.blocks.items()}
    for name, (kname, hname) in {"G": ("K_triv", "G"), "L": ("K_std", "L")}.items():
        K, H = (svec_exact(representative(n, Bv), Bv) for n in (kname, hname))
        for col, vec in enumerate((K, H)):
            image = M * vec
            expected = blocks[name][0, col] * K + blocks[name][1, col] * H
            assert sp.simplify(image - expected) == sp.zeros(len(K), 1)
    DM = svec_exact(representative("M", Bv), Bv)
    assert M * DM == blocks["M"][0, 0] * DM


def test_eigenvalue_and_entries_of_one_operator_by_hand():
    """T = identity on Sym(B): T_{ij,kl} = (delta_ik delta_jl + delta_il delta_jk)/2 has the
    orbit entries ii,ii = 1, ij,ij = ij,ji = 1/2, so every eigenvalue is 1; its blocks are
    diagonal, so the kernel-type copies are labelled as such (one entry of dimension B)."""
    entries = {name: 0 for name in ORBIT_NAMES}
    entries.update({"ii,ii": 1, "ij,ij": sp.Rational(1, 2), "ij,ji": sp.Rational(1, 2)})
    ident = UltrasymmetricOperator(entries)
    assert ident.materialize(5) == sp.eye(15)
    values = [(e.space, e.dim, sp.simplify(e.value)) for e in ident.eigenvalues()]
    assert values == [("kernel", B, 1), ("G", 1, 1), ("L", B - 1, 1), ("M", B * (B - 3) / 2, 1)]


# -- the batchnorm operators: triangular blocks, labelled kernel / G / L / M --------------------


def _random_moments(op, seed):
    rng = random.Random(seed)
    syms = sorted(set().union(*(sp.sympify(v).free_symbols for v in op.entries.values()))
                  | op.scale.free_symbols, key=str)
    return {s: sp.Rational(rng.randint(1, 40), rng.randint(1, 9)) for s in syms if s != B}


@pytest.mark.parametrize("which", ["forward", "backward"])
@pytest.mark.parametrize("Bv", [4, 5, 7, 9])
def test_batchnorm_operators_spectrum_with_arbitrary_moment_values(which, Bv):
    """The forward and backward operators with their sphere moments replaced by arbitrary
    rationals are still ultrasymmetric: their spectra (kernel of dimension B, then G, L, M)
    are the characteristic polynomials of the materialised matrices."""
    op = {"forward": forward_operator, "backward": backward_operator}[which]()
    subs = _random_moments(op, Bv)
    entries = op.eigenvalues()
    assert [(e.space, e.dim) for e in entries] == [
        ("kernel", B), ("G", 1), ("L", B - 1), ("M", B * (B - 3) / 2)]
    assert entries[0].value == 0
    M = op.materialize(Bv, subs)
    assert spectrum_polynomial(entries, Bv, subs) == exact_charpoly(M)


@pytest.mark.parametrize("Bv", [5, 8])
def test_forward_kills_the_kernel_space_and_backward_maps_into_the_hyperplane(Bv):
    """{S : G S G = 0} = {1 v^T + v 1^T} is in the forward kernel; every backward image
    satisfies G S G = S (the reasons the blocks are triangular)."""
    fwd, bwd = forward_operator(), backward_operator()
    Mf = fwd.materialize(Bv, _random_moments(fwd, 1))
    Mb = bwd.materialize(Bv, _random_moments(bwd, 2))
    one = sp.ones(Bv, 1)
    G = sp.eye(Bv) - one * one.T / Bv
    pairs = [(i, j) for i in range(Bv) for j in range(i, Bv)]
    for k in range(Bv):
        e = sp.zeros(Bv, 1)
        e[k] = 1
        assert Mf * svec_exact(one * e.T + e * one.T, Bv) == sp.zeros(len(pairs), 1)
    for col in range(len(pairs)):
        img = Mb[:, col]
        S = sp.zeros(Bv, Bv)
        for (i, j), v in zip(pairs, img):
            S[i, j] = S[j, i] = v
        assert sp.simplify(G * S * G - S) == sp.zeros(Bv, Bv)


def test_operator_entries_are_sphere_moments():
    for op in (forward_operator(), backward_operator()):
        for value in op.entries.values():
            assert all(isinstance(s, sp.Symbol) for s in value.free_symbols)
            assert {s for s in value.free_symbols if s != B} <= {
                mo.symbol for mo in _moments(value)}


def _moments(expr):
    from bnmft.derive.moments import moments_in

    return [mo for mo in moments_in(expr) if isinstance(mo, SphereMoment)]


def test_fractions_strategy_is_exact():
    assert Fraction(3, 7) == sp.Rational(3, 7)
