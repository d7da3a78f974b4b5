"""Gauss-Gegenbauer rules, rule sizes chosen from the convergence, and the Cartesian (Thm 7)
route that uses both, against independent references.

The rules are checked on the moments of their weight (Beta functions: closed form), the
generalised error extrapolation against the doubling formula it extends, and the Cartesian
moments at B = 32 (where the last rule grows by less than a doubling) against the sphere
route (different coordinates, rules and code) to 30 digits.
"""

import mpmath
from hypothesis import given, settings
from hypothesis import strategies as st


from bnmft.pipeline import derivation
from bnmft.numerics import arbmath, cartesian, sphere

BITS = 180


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 60), st.integers(1, 50))
def test_gauss_gegenbauer_integrates_polynomials_exactly(n, two_lam):
    """The n-point rule integrates ``x^(2m)`` (weight ``(1-x^2)^(lam-1/2)``) exactly for
    ``2m <= 2n - 1``: ``B((2m+1)/2, lam+1/2)``; its third entry is the weight at the node."""
    rule = arbmath.gauss_gegenbauer(n, two_lam, BITS)
    lam = mpmath.mpf(two_lam) / 2
    with mpmath.workdps(60), arbmath.precision(BITS + 40):
        for m in sorted({0, 1, n // 2, n - 1}):
            if 2 * m > 2 * n - 1:
                continue
            exact = mpmath.beta(mpmath.mpf(2 * m + 1) / 2, lam + mpmath.mpf(1) / 2)
            got = mpmath.fsum(arbmath.to_mpf(w * x ** (2 * m)) for x, w, _ in rule)
            assert abs(got - exact) <= mpmath.mpf(2) ** -(BITS - 12) * exact
        for x, _, wx in rule[:3]:
            want = (1 - arbmath.to_mpf(x) ** 2) ** (lam - mpmath.mpf(1) / 2)
            assert abs(arbmath.to_mpf(wx) - want) <= mpmath.mpf(10) ** -45 * want
        # nodes symmetric, increasing, inside (-1, 1)
        xs = [arbmath.to_mpf(x) for x, _, _ in rule]
        assert all(-1 < a < b < 1 for a, b in zip(xs, xs[1:]))
        assert all(abs(a + b) < mpmath.mpf(10) ** -45 for a, b in zip(xs, reversed(xs)))


def test_gauss_gegenbauer_integrates_an_analytic_function():
    """``int_{-1}^{1} cos(x) (1-x^2)^(27/2) dx`` (lam = 14) from 40 nodes against mpmath's
    tanh-sinh quadrature (a different method) to 40 digits."""
    two_lam = 28
    rule = arbmath.gauss_gegenbauer(40, two_lam, BITS)
    with mpmath.workdps(50), arbmath.precision(BITS + 40):
        got = mpmath.fsum(arbmath.to_mpf(w * x.cos()) for x, w, _ in rule)
        ref = mpmath.quad(lambda t: mpmath.cos(t) * (1 - t * t) ** (mpmath.mpf(27) / 2), [-1, 0, 1])
        assert abs(got - ref) < mpmath.mpf(10) ** -40 * abs(ref)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 20), st.floats(1.2, 3.0), st.integers(6, 200))
def test_extrapolation_with_counts_extends_the_doubling_formula(d2, q, n):
    """With counts ``(n, 2n, 4n)`` the generalised estimate is mpmath's ``D1^2/D2`` with the
    ``1.5 D1`` floor; for a growth ``r = 1.5`` it is the larger of the model
    ``D1 * (D1/D2)^(log r / log 2)`` and the floor ``(1 + (r-1)/2) D1``."""
    with mpmath.workdps(100):
        d2 = mpmath.mpf(d2)
        d1 = d2 * q
        e1, e2 = mpmath.mpf(10) ** -d1, mpmath.mpf(10) ** -d2
        history = [1 + e2, 1 + e1, mpmath.mpf(1)]  # |I_k - I_{k-1}| = e1, |I_k - I_{k-2}| = e2
        d1o = -mpmath.log10(abs(history[2] - history[1]))
        d2o = -mpmath.log10(abs(history[2] - history[0]))
        plain = sphere._extrapolated_error(history, 1)
        doubling = sphere._extrapolated_error(history, 1, (n, 2 * n, 4 * n))
        assert abs(plain - doubling) <= mpmath.mpf(10) ** -60 * plain
        want = max(mpmath.mpf(10) ** (-d1o * d1o / d2o), mpmath.mpf(10) ** (-1.5 * d1o))
        assert abs(plain - want) <= mpmath.mpf(10) ** -80 * want
        n2 = 3 * n  # growth 1.5 after a doubling
        est = sphere._extrapolated_error(history, 1, (n, 2 * n, n2))
        model = sphere._extrapolated_error(history, 1, (n, 2 * n, n2), model=True)
        r = mpmath.mpf(n2) / (2 * n)
        exponent = mpmath.log(r) / mpmath.log(2)
        assert abs(model - mpmath.mpf(10) ** (-d1o * (d1o / d2o) ** exponent)) <= 1e-6 * model
        want = max(model, mpmath.mpf(10) ** (-(1 + (r - 1) / 2) * d1o))
        assert abs(est - want) <= mpmath.mpf(10) ** -80 * want


def test_next_size_bounds():
    """Growth between 1.25 and 2; exactly enough for the floor when in range."""
    assert sphere._next_size(100, mpmath.mpf(5), 33) == 200
    assert sphere._next_size(100, mpmath.mpf(40), 33) == 125
    assert sphere._next_size(100, mpmath.inf, 33) == 125
    # 33 digits from 24: r = 1 + 2 (33/24 - 1) = 1.75, and (1 + 0.75/2) * 24 = 33
    assert sphere._next_size(96, mpmath.mpf(24), 33) == 168


def test_cartesian_route_at_B32_matches_the_sphere_route_to_30_digits():
    """tanh at B = 32: the Cartesian route (Gauss-Gegenbauer chords, sizes from the
    convergence: the last rule grows by less than 2) and the sphere route agree to >= 30
    digits on every moment, and each claims an error below 10^-32 of the moment."""
    deriv = derivation("tanh")
    moments = list(deriv.moments)
    sizes = []
    real = cartesian._pass_smooth

    def spy(act, mos, B, n, *rest):
        sizes.append(n)
        return real(act, mos, B, n, *rest)

    cartesian._pass_smooth = spy
    try:
        cart = cartesian.moments_cartesian(deriv.activation, moments, 32, 32)
    finally:
        cartesian._pass_smooth = real
    assert sizes[:4] == [12, 24, 48, 96]
    assert sizes[-1] < 2 * sizes[-2]
    ref = sphere.moments_mp(deriv.activation, moments, 32, 32)
    with mpmath.workdps(50):
        for mo in moments:
            value, err = cart[mo]
            assert err < mpmath.mpf(10) ** -32 * abs(value)
            assert abs(value - ref[mo][0]) < mpmath.mpf(10) ** -30 * abs(ref[mo][0])
