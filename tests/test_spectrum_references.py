"""The derived spectra against independent references, both directions.

* brute force (positive-homogeneous phi, small B): the forward Jacobian by finite
  differences of the Laplace map, the backward operator entry by entry from Gaussian
  integrals; all B(B+1)/2 eigenvalues, read off per space with their multiplicities;
* Monte Carlo of the network's own forward and backward maps (any phi), block by block;
* :func:`bnmft.numerics.verify_spectrum`, which gathers the high-precision routes.

Achieved agreement (derived vs brute force): forward ~1e-12 (finite differences), backward
~1e-15; the tests assert 1e-10 and 1e-12.
"""

import math
import random

import numpy as np
import pytest
import sympy as sp

from bnmft.derive import B, derive_spectrum
from bnmft.derive import parse_activation as activation
from bnmft.derive.derivation import _moment_closed_forms
from bnmft.derive.spectrum import OPERATORS
from bnmft.derive.ultrasymmetric import ORBIT_NAMES, UltrasymmetricOperator
from bnmft.numerics import analyze_spectrum, verify_spectrum
from bnmft.numerics import bruteforce as bf
from bnmft.numerics.montecarlo import network_spectrum

TOL = {"forward": 1e-10, "backward": 1e-12}


def derived(spec_name, Bv, digits=15):
    (an,) = analyze_spectrum(derive_spectrum(activation(spec_name)), [Bv], digits)
    return an


# -- brute force ------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("spec_name,Bv", [("relu", 6), ("alpha_relu:1.5", 6), ("relu", 8),
                                          ("linear", 6)])
def test_every_eigenvalue_against_the_brute_force_operator(spec_name, Bv, direction):
    an = derived(spec_name, Bv)
    expect = [(e.space, e.dim, float(e.number.value)) for e in getattr(an, direction)]
    got = bf.spectrum(spec_name, Bv, direction)
    assert [(es.space, es.dim) for es in got] == [(s, d) for s, d, _ in expect]
    assert sum(es.dim for es in got) == Bv * (Bv + 1) // 2
    for es, (space, dim, value) in zip(got, expect):
        assert abs(es.eigenvalue - value) <= TOL[direction] * max(1.0, abs(value)), space
        assert es.spread <= 100 * TOL[direction] and es.leak <= 100 * TOL[direction]
        # multiplicities of the raw eigenvalues of the full matrix: each space at least its
        # dimension; more only where the derived eigenvalues coincide (forward kernel and
        # G share 0; linear phi has L = M in both directions)
        coincide = sum(d for s, d, v in expect if s != space and abs(v - value) < 1e-9)
        assert es.raw_multiplicity == dim + coincide, (space, es.raw_multiplicity)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("spec_name", ["alpha_relu:1.5", "leaky_relu:0.2", "linear", "abs"])
def test_every_eigenvalue_against_the_brute_force_operator_b8(spec_name, direction):
    test_every_eigenvalue_against_the_brute_force_operator(spec_name, 8, direction)


def test_brute_force_backward_G_is_theory_gradient_rate():
    """THEORY.md: relu lambda_max = 1.78818997665874... at B = 8."""
    g = {es.space: es for es in bf.spectrum("relu", 8, "backward")}["G"]
    assert abs(g.eigenvalue - 1.78818997665874) < 1e-13


def _svec_coordinates(M: sp.Matrix, Bv: int) -> np.ndarray:
    """A materialised operator (basis E_kk, E_kl + E_lk) in orthonormal svec coordinates:
    ``S M S^-1`` with ``S = diag(1 on the diagonal, sqrt 2 off it)``, in the order of
    :func:`bruteforce.sym_basis` (diagonal first)."""
    pairs = [(i, j) for i in range(Bv) for j in range(i, Bv)]
    order = [p for p in pairs if p[0] == p[1]] + [p for p in pairs if p[0] != p[1]]
    idx = [pairs.index(p) for p in order]
    A = np.array(M.evalf(), dtype=float)[np.ix_(idx, idx)]
    s = np.array([1.0 if i == j else math.sqrt(2.0) for i, j in order])
    return s[:, None] * A / s[None, :]


@pytest.mark.parametrize("Bv", [5, 7])
def test_operator_spectrum_reads_a_generic_ultrasymmetric_operator(Bv):
    """The two spectrum readers are independent: the numeric one (compressions onto the
    invariant subspaces) and the symbolic one (blocks from representatives). A generic
    operator has non-triangular blocks: two G and two L eigenvalues."""
    rng = random.Random(Bv)
    while True:  # a generic operator whose block eigenvalues are real (numpy reader)
        op = UltrasymmetricOperator({n: sp.Rational(rng.randint(-9, 9), rng.randint(1, 5))
                                     for n in ORBIT_NAMES})
        if all(sp.im(sp.N(e.value.subs(B, Bv))) == 0 for e in op.eigenvalues()):
            break
    T = _svec_coordinates(op.materialize(Bv), Bv)
    got = bf.operator_spectrum(T, Bv)
    expect = op.eigenvalues()
    assert [(es.space, es.dim) for es in got] == [(e.space, int(e.dim.subs(B, Bv)))
                                                  for e in expect]
    for es, e in zip(got, expect):
        value = complex(sp.N(e.value.subs(B, Bv)))
        assert abs(es.eigenvalue - value.real) < 1e-9 and abs(value.imag) < 1e-12


# -- Monte Carlo of the network's own maps ------------------------------------------------------


def _close(est, value):
    # sampling error (5 standard errors) plus the O(t^2) bias of the difference quotient
    return abs(est.mean - value) <= 5 * est.stderr + 2e-3 * abs(value) + 1e-3


MC_CASES = [("relu", 6), ("tanh", 8), ("gelu", 6), ("alpha_relu:1.5", 8),
            ("log(1 + exp(x)) - x/3", 6)]


def _check_monte_carlo(spec_name, Bv, direction, samples=100_000):
    act = activation(spec_name)
    an = derived(spec_name, Bv, 12)
    values = {e.space: float(e.number.value) for e in getattr(an, direction)}
    blocks = network_spectrum(act, Bv, direction, samples=samples, seed=11)
    assert [(b.space, b.dim) for b in blocks] == [("G", 1), ("L", Bv - 1),
                                                  ("M", Bv * (Bv - 3) // 2)]
    for blk in blocks:
        for label, est in blk.eigenvalues.items():
            assert _close(est, values[label]), (direction, blk.space, label, est,
                                                values[label])
        if blk.space == "M":
            continue
        # the triangular shape the labels rest on: the forward map kills the kernel-type
        # copy (its column vanishes), the backward map has no kernel-type image (row)
        (a, b), (c, _) = blk.entries
        for zero in (a, c) if direction == "forward" else (a, b):
            assert abs(zero.mean) <= 5 * zero.stderr + 1e-3, (direction, blk.space, zero)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("spec_name,Bv", MC_CASES)
def test_network_monte_carlo_spectrum(spec_name, Bv, direction):
    _check_monte_carlo(spec_name, Bv, direction)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("spec_name", [s for s, _ in MC_CASES])
@pytest.mark.parametrize("Bv", [6, 8])
def test_network_monte_carlo_spectrum_both_batch_sizes(spec_name, Bv, direction):
    _check_monte_carlo(spec_name, Bv, direction, samples=400_000)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_monte_carlo_blocks_are_the_derived_blocks(direction):
    """Not only the eigenvalues: every entry of the 2 x 2 blocks (coordinates in the same
    representatives, derive/ultrasymmetric.py) for relu at B = 6, with the exact relu
    moments substituted into the derived blocks."""
    act, Bv = activation("relu"), 6
    op = OPERATORS[direction]()
    syms = set().union(*(v.free_symbols for v in op.entries.values())) | op.scale.free_symbols
    from bnmft.derive.moments import moment_of

    moments = [moment_of(s) for s in syms if s != B]
    subs, divergent = _moment_closed_forms(act, moments)
    assert not divergent
    subs = {k: v.subs(sp.Symbol("c", real=True), -sp.Integer(1) / (Bv - 1)) for k, v in
            subs.items()}
    blocks = network_spectrum(act, Bv, direction, samples=100_000, seed=12)
    for blk in blocks:
        exact = (op.scale * op.blocks[blk.space]).subs(subs).subs(B, Bv)
        for r, row in enumerate(blk.entries):
            for c, est in enumerate(row):
                assert _close(est, float(sp.N(exact[r, c]))), (blk.space, r, c, est)


# -- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec_name,sizes", [("relu", [6]), ("tanh", [8])])
def test_verify_spectrum(spec_name, sizes):
    checks = verify_spectrum(derive_spectrum(activation(spec_name)), sizes, 16)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    routes = {c.route for c in checks}
    names = {c.quantity for c in checks}
    assert {"forward_L", "forward_M", "backward_G", "backward_L", "backward_M"} <= names
    if spec_name == "relu":
        assert {"brute-force Jacobian of the Laplace map",
                "brute-force backward operator (entrywise Gaussian integrals)",
                "SymPy evalf of the closed form"} <= routes
    else:
        assert any(r.startswith("fast route") for r in routes)
        assert "Gegenbauer/Funk-Hecke (mpmath)" in routes
    assert "Cartesian quadrature, Thm 7 form (mpmath)" in routes


def test_verify_spectrum_fails_on_a_wrong_eigenvalue(monkeypatch):
    """A perturbed closed form is caught (the references come from the moment forms)."""
    spec = derive_spectrum(activation("relu"))
    q = spec.derivation["backward_M"]
    wrong = type(q)(**{**q.__dict__, "expr": q.expr * (1 + sp.Rational(1, 10**8))})
    bad = type(spec.derivation)(spec.activation, tuple(
        wrong if x.name == "backward_M" else x for x in spec.derivation.quantities),
        spec.derivation.moments)
    bad_spec = type(spec)(spec.activation, spec.entries, bad)
    checks = verify_spectrum(bad_spec, [6], 12)
    failed = {(c.quantity, c.route) for c in checks if not c.ok}
    assert failed == {("backward_M", "SymPy evalf of the closed form")}
