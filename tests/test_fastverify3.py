"""Building blocks of the faster 30-digit verification, against independent references.

* Gauss rules: the Gauss-Legendre rule from Arb's roots against mpmath's own node
  computation and a known integral; a large Gauss-Gegenbauer rule (the size and weight the
  Cartesian route uses at B = 32) against mpmath's tanh-sinh quadrature at 40 digits; the
  starting nodes (Sturm bisection) against numpy's eigensolver.
* Chebyshev interpolation on 257 points (where ball radii of the T_k recurrence used to
  cost 40 digits) against the function itself, and the T_k against cos(k acos x).
* The Arb source of phi and phi' against mpmath evaluation of the same expressions.
* Inner sums along lines as matrix products against the sums formed node by node.
"""

import random

import mpmath
import numpy as np
import pytest
import sympy as sp
from flint import arb
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.derive import Point, x
from bnmft.numerics import arbmath
from bnmft.numerics.arbcode import arb_source_function
from bnmft.numerics.arbprinter import NotEvaluable
from bnmft.numerics.chebyshev import ChebyshevRows, Interpolation
from bnmft.numerics.inner import line_sums
from bnmft.numerics.rules import gauss_legendre_mp, gl_count

BITS = 160


@pytest.mark.parametrize("level", [2, 5])
def test_gauss_legendre_mp_is_mpmaths_rule(level):
    """The rule from Arb's roots is mpmath's ``GaussLegendre`` rule (degree ``level + 1``)
    to the last bits, and integrates ``e^u cos(3u)`` on ``[0, 1]`` to 40 digits."""
    rule = gauss_legendre_mp(level, BITS)
    assert len(rule) == gl_count(level)
    with mpmath.workprec(BITS):
        theirs = mpmath.calculus.quadrature.GaussLegendre(mpmath.mp).calc_nodes(level + 1, BITS)
        theirs = sorted(((1 + t) / 2, w / 2) for t, w in theirs)
        ours = sorted((u, w) for u, _, w in rule)
        tol = mpmath.mpf(2) ** (8 - BITS)
        for (u1, w1), (u2, w2) in zip(ours, theirs):
            assert abs(u1 - u2) <= tol and abs(w1 - w2) <= tol * w2
        assert all(abs(u + v - 1) <= tol for u, v, _ in rule)
    if level == 5:  # 96 nodes: far more than 40 digits for an entire integrand
        with mpmath.workdps(50):
            got = mpmath.fsum(w * mpmath.exp(u) * mpmath.cos(3 * u) for u, _, w in rule)
            exact = (mpmath.e * (mpmath.cos(3) + 3 * mpmath.sin(3)) - 1) / 10
            assert abs(got - exact) <= mpmath.mpf(10) ** -40 * abs(exact)


@pytest.mark.parametrize("n,two_lam", [(240, 28), (120, 1)])
def test_large_gauss_gegenbauer_rule_against_tanh_sinh(n, two_lam):
    """``int (1-x^2)^(lam-1/2) / (1 + x^2/4) dx`` with the rule sizes of the Cartesian route
    (B = 32: lam = 14, 240 nodes; B = 5: lam = 1/2) against mpmath's tanh-sinh quadrature."""
    rule = arbmath.gauss_gegenbauer(n, two_lam, BITS)
    lam = mpmath.mpf(two_lam) / 2
    with mpmath.workdps(50), arbmath.precision(BITS + 40):
        quarter = arb(1) / 4
        got = mpmath.fsum(arbmath.to_mpf(w / (1 + quarter * t * t)) for t, w, _ in rule)
        ref = mpmath.quad(lambda t: (1 - t * t) ** (lam - mpmath.mpf(1) / 2) / (1 + t * t / 4),
                          [-1, 0, 1])
        assert abs(got - ref) <= mpmath.mpf(10) ** -40 * ref


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 200), st.integers(1, 40))
def test_jacobi_eigenvalues_against_numpy(n, two_lam):
    """The Sturm-bisection starting nodes are the eigenvalues of the Jacobi matrix to the
    resolution the Newton steps need (``2^-8/n^2``)."""
    k = np.arange(1, n, dtype=float)
    lam = two_lam / 2
    off = np.sqrt(k * (k + two_lam - 1) / (4 * (k + lam) * (k + lam - 1)))
    ours = arbmath._jacobi_eigenvalues(off)
    theirs = np.linalg.eigvalsh(np.diag(off, 1) + np.diag(off, -1))
    assert np.all(np.abs(ours - theirs) <= 2.0**-8 / n**2 + 1e-13)


def test_chebyshev_interpolation_on_257_points():
    """The interpolant of ``cos(3v)/(1 + v^2)`` on ``[-W, W]`` from 257 Lobatto points at the
    384 Gauss-Legendre nodes of the sphere route's level 7 is within 1e-44 of the function
    (the T_k recurrence in ball arithmetic gave 6e-8 here), and the T_k are ``cos(k acos x)``
    up to the rounding of the recurrence (``k^2 2^-prec``), also on the reflected half.
    """
    with arbmath.precision(BITS):
        W = arb("1.5434047603521418912399387661083910078")
        xs = [2 * u - 1 if u < 0.5 else 1 - 2 * v for u, v, _ in arbmath.gauss_legendre(384, BITS)]

        def f(v):
            return [(3 * v).cos() / (1 + v * v)]

        interp = Interpolation(f, W, xs, BITS)
        while interp.m < 257:
            interp.refine()
        fine, coarse = interp.evaluate()
        worst = max(abs(arbmath.to_mpf(fine[i, 0] - f(W * t)[0])) for i, t in enumerate(xs))
        assert worst <= mpmath.mpf(10) ** -44
        # the 129-point interpolant is far coarser: the difference is its error's size
        assert max(abs(arbmath.to_mpf(fine[i, 0] - coarse[i, 0])) for i in range(len(xs))) > worst
        T = ChebyshevRows(xs).matrix(257)  # symmetric points: half the rows by reflection
    with mpmath.workdps(50):
        for i in (0, 1, 2, 190, 193, 381, 382, 383):
            t = xs[i]
            theta = mpmath.acos(arbmath.to_mpf(t))
            for k in (1, 100, 256):
                err = abs(arbmath.to_mpf(T[i, k]) - mpmath.cos(k * theta))
                assert err <= k * k * mpmath.mpf(2) ** -BITS


EXPRESSIONS = [
    sp.tanh(x), 1 - sp.tanh(x) ** 2, sp.erf(x), x * (sp.erf(sp.sqrt(2) * x / 2) + 1) / 2,
    sp.sqrt(2) * x * sp.exp(-x**2 / 2) / (2 * sp.sqrt(sp.pi)), x / (1 + sp.exp(-x)),
    sp.log(1 + sp.exp(x)), sp.exp(-x**2 / 5) * sp.cos(3 * x), sp.sqrt(1 + x**2),
    sp.tanh(2 * x) + x**3 / 7, 1 / (1 + x**2) ** 3, sp.atan(x) - sp.Rational(3, 7),
    -(x**2) * sp.sin(x), sp.Float("0.1") * x**2,
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_arb_source_against_mpmath(expr):
    """The generated Arb source of ``[expr, expr']`` against mpmath's evaluation of the
    SymPy expressions at 50 digits, at random points in ``[-8, 8]``."""
    fn = arb_source_function([expr, sp.diff(expr, x)], x, BITS, "pair")
    ref = sp.lambdify(x, [expr, sp.diff(expr, x)], "mpmath")
    rng = random.Random(7)
    with mpmath.workdps(50), arbmath.precision(BITS):
        for _ in range(20):
            t = rng.uniform(-8, 8)
            got = fn(arb(t))
            want = ref(mpmath.mpf(t))
            for g, w in zip(got, want):
                assert abs(arbmath.to_mpf(g) - w) <= mpmath.mpf(10) ** -44 * max(abs(w), 1)


def test_arb_source_refuses_kinks_and_arb_function_falls_back():
    """Piecewise (elu) has no Arb source; ``arb_function`` then takes lambdify, with the
    same values as mpmath."""
    elu = sp.Piecewise((x, x > 0), (sp.exp(x) - 1, True))
    with pytest.raises(NotEvaluable):
        arb_source_function([elu], x, BITS)
    fn = arbmath.arb_function(elu, BITS)
    with arbmath.precision(BITS), mpmath.workdps(45):
        for t in (-1.5, 0.75):
            want = t if t > 0 else mpmath.expm1(t)
            assert abs(arbmath.to_mpf(arbmath.from_mpf(fn(arb(t)))) - want) <= 1e-44


@pytest.mark.parametrize("with_density", [False, True, "huge"])
def test_line_sums_against_node_by_node_sums(with_density):
    """``S_k(i) = sum_j w_j D_ij z^m phi^p phi'^q`` at ``z = a_i + b_i s_j`` from the matrix
    products against the same sums formed node by node (tanh), and the absolute columns
    between the sums of the moduli and their ``|a| + |b s|`` bound (to float64 rounding; a
    density of 1e300 leaves float64's range: the same sums in balls)."""
    rng = random.Random(3)
    points = [Point(0, 1, 0), Point(1, 1, 0), Point(2, 1, 0), Point(0, 0, 1), Point(1, 0, 1),
              Point(0, 2, 1), Point(3, 0, 0)]
    with arbmath.precision(BITS):
        pair = arbmath.arb_function_pair(sp.tanh(x), 1 - sp.tanh(x) ** 2, BITS)
        shifts = [arb(rng.uniform(-0.5, 0.5)) for _ in range(5)]
        scales = [arb(rng.uniform(0.1, 4)) for _ in range(5)]
        nodes = [arb(rng.uniform(-1, 1)) for _ in range(30)]
        weights = [arb(rng.uniform(0, 1)) for _ in range(30)]

        factor = arb(10) ** 300 if with_density == "huge" else arb(1)

        def density(zs):
            return [factor * (-(z * z) / 3).exp() for z in zs] if with_density else None

        rows = line_sums(pair, points, shifts, scales, nodes, weights, True,
                         density=density if with_density else None)
        P = len(points)
        for i, (a, b) in enumerate(zip(shifts, scales)):
            zs = [a + b * s for s in nodes]
            dens = density(zs) if with_density else [arb(1)] * len(zs)
            for k, pt in enumerate(points):
                terms, bound = [], []
                for z, s, w, d in zip(zs, nodes, weights, dens):
                    f, g = z.tanh(), 1 - z.tanh() ** 2
                    val = z**pt.m * f**pt.p * g**pt.q
                    terms.append(w * d * val)
                    bound.append(w * d * (abs(a) + abs(b * s)) ** pt.m * abs(f**pt.p * g**pt.q))
                signed = sum(terms, arb(0))
                modulus = sum((abs(t) for t in terms), arb(0))
                assert abs(arbmath.to_mpf(rows[i][k] - signed)) <= 1e-44 * arbmath.to_mpf(modulus)
                got = arbmath.to_mpf(rows[i][P + k])  # sizes, summed in float64
                assert arbmath.to_mpf(modulus) * (1 - 1e-13) <= got
                assert got <= arbmath.to_mpf(sum(bound, arb(0))) * (1 + 1e-13)


@pytest.mark.parametrize("expr, dexpr", [
    (sp.tanh(x), 1 - sp.tanh(x) ** 2),  # odd
    (x * sp.tanh(x), sp.tanh(x) + x * (1 - sp.tanh(x) ** 2)),  # even
])
@pytest.mark.parametrize("rows, n", [(5, 30), (4, 31), (1, 7)])
def test_line_sums_on_mirrored_lines_use_the_parity(expr, dexpr, rows, n):
    """On lines symmetric under ``z -> -z`` (``a`` and ``s`` antisymmetric, ``b``
    symmetric) with the parity given, ``phi`` is evaluated at half the nodes and the rows
    equal the rows without it (to rounding: they are the same sums); the half is really
    skipped (counted); a wrong parity claim changes the rows (the test can fail), and lines
    that are not mirrored ignore the claim."""
    rng = random.Random(rows * n)
    points = [Point(0, 1, 0), Point(1, 1, 0), Point(2, 1, 0), Point(0, 0, 1), Point(1, 0, 1),
              Point(0, 2, 1)]
    par = arbmath.parity(expr)
    assert par == (-1 if expr == sp.tanh(x) else 1)
    assert arbmath.parity(dexpr) == -par
    with arbmath.precision(BITS):
        base = arbmath.arb_function_pair(expr, dexpr, BITS)
        calls = []

        def pair(z):
            calls.append(z)
            return base(z)

        half_a = [arb(rng.uniform(0.05, 0.5)) for _ in range(rows // 2)]
        half_b = [arb(rng.uniform(0.1, 4)) for _ in range(rows // 2)]
        shifts = [-a for a in half_a] + ([arb(0)] if rows % 2 else []) + half_a[::-1]
        scales = half_b + ([arb(1.5)] if rows % 2 else []) + half_b[::-1]
        half_s = sorted(arb(rng.uniform(0.01, 1)) for _ in range(n // 2))
        nodes = [-s for s in half_s[::-1]] + ([arb(0)] if n % 2 else []) + half_s
        weights = [arb(rng.uniform(0, 1)) for _ in range(n)]
        weights = [w + v for w, v in zip(weights, weights[::-1])]  # symmetric, as a rule's
        direct = line_sums(pair, points, shifts, scales, nodes, weights, True)
        assert len(calls) == rows * n
        calls.clear()
        halved = line_sums(pair, points, shifts, scales, nodes, weights, True, parity=par)
        assert len(calls) == (rows * n + 1) // 2
        for row_d, row_h in zip(direct, halved):
            for d, h in zip(row_d, row_h):
                assert abs(arbmath.to_mpf(d - h)) <= 1e-44 * (1 + abs(arbmath.to_mpf(d)))
        wrong = line_sums(pair, points, shifts, scales, nodes, weights, True, parity=-par)
        assert any(abs(arbmath.to_mpf(d - w)) > 1e-10 for row_d, row_w in zip(direct, wrong)
                   for d, w in zip(row_d, row_w))
        calls.clear()
        shifted = [a + arb(1) / 8 for a in shifts]  # no longer mirrored
        assert line_sums(pair, points, shifted, scales, nodes, weights, True, parity=par)
        assert len(calls) == rows * n


def test_parity_of_activations():
    """Odd, even and neither, as SymPy's automatic simplification shows it."""
    assert arbmath.parity(sp.tanh(x)) == -1
    assert arbmath.parity(sp.erf(2 * x)) == -1
    assert arbmath.parity(sp.exp(-x ** 2)) == 1
    assert arbmath.parity(x * sp.erf(x)) == 1
    assert arbmath.parity(sp.tanh(x) + sp.Rational(1, 10)) == 0
    assert arbmath.parity(x * (1 + sp.erf(x / sp.sqrt(2))) / 2) == 0  # gelu


@pytest.mark.parametrize("n, two_lam", [(12, 2), (13, 28)])
def test_symmetric_gauss_gegenbauer_and_lobatto_points(n, two_lam):
    """The Gauss-Gegenbauer rule and the Chebyshev-Lobatto points are exactly symmetric
    balls (as the true ones are), and still enclose the true values: the rule integrates
    ``x^(2n-2)`` (weight ``(1-x^2)^(lam-1/2)``) as the Beta function gives it, the points
    are ``cos(k pi/(m-1))`` by mpmath."""
    from bnmft.numerics.chebyshev import lobatto_cosines
    from bnmft.numerics.inner import antisymmetric, symmetric

    rule = arbmath.gauss_gegenbauer(n, two_lam, BITS)
    assert antisymmetric([t for t, _, _ in rule])
    assert symmetric([w for _, w, _ in rule])
    with arbmath.precision(BITS), mpmath.workdps(50):
        k = 2 * n - 2
        lam = mpmath.mpf(two_lam) / 2
        got = arbmath.to_mpf(sum((w * t ** k for t, w, _ in rule), arb(0)))
        want = mpmath.beta(mpmath.mpf(k + 1) / 2, lam + mpmath.mpf(1) / 2)
        assert abs(got - want) <= 1e-40 * want
        for m in (17, 33):
            cos = lobatto_cosines(m, BITS)
            assert antisymmetric(list(cos))
            for j, c in enumerate(cos):
                assert c.contains(arbmath.from_mpf(mpmath.cos(mpmath.pi * j / (m - 1)))) or \
                    abs(arbmath.to_mpf(c) - mpmath.cos(mpmath.pi * j / (m - 1))) <= 1e-45
