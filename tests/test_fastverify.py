"""The interpolated inner integrals of the smooth-phi sphere and Cartesian quadratures, and
`bnmft verify tanh --digits 30` as the user sees it.

The Chebyshev interpolant is checked against functions with known values (its error
estimate must bound the true error, polynomials must be reproduced), the interpolated passes
against the same quadrature with the inner integral computed at every outer node and against
mpmath's own quadrature of the inner integral, and the CLI table digit by digit: every check
at 30 digits agrees to at least 30.
"""

import mpmath
import pytest
from flint import arb
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.cli import main
from bnmft.derive import Point
from bnmft.pipeline import derivation
from bnmft.numerics import arbmath, cartesian, sphere
from bnmft.numerics.chebyshev import Interpolation, transform_matrix

BITS = 200


def _points(n):
    return [arb(2 * k + 1) / (n + 1) - 1 for k in range(n)]  # inside (-1, 1), not Lobatto


@settings(max_examples=12, deadline=None)
@given(st.floats(0.2, 3.0), st.floats(0.3, 2.0))
def test_interpolation_error_estimate_bounds_the_error(a, width):
    """``|fine - coarse|`` (the estimate) bounds ``|fine - f|``, for an entire function and
    one with poles at ``+-i/a`` (Runge type), at every refinement."""
    with arbmath.precision(BITS):
        W = arb(width)
        funcs = [lambda v: (a * v).exp(), lambda v: 1 / (1 + (a * v) ** 2)]
        xs = _points(23)
        interp = Interpolation(lambda v: [f(v) for f in funcs], W, xs, BITS)
        for _ in range(4):
            fine, coarse = interp.evaluate()
            for i, x in enumerate(xs):
                for p, f in enumerate(funcs):
                    true = abs(float((fine[i, p] - f(W * x)).mid()))
                    est = abs(float((fine[i, p] - coarse[i, p]).mid()))
                    assert true <= est + 1e-55
            interp.refine()


def test_interpolation_reproduces_polynomials():
    """A polynomial of degree < m is interpolated exactly (to the working precision)."""
    with arbmath.precision(BITS):
        poly = lambda v: [3 * v**7 - v**4 / 5 + v - 2]  # noqa: E731
        xs = _points(11)
        fine, coarse = Interpolation(poly, arb(1), xs, BITS, m=17).evaluate()
        for i, x in enumerate(xs):
            assert abs(float((fine[i, 0] - poly(x)[0]).mid())) < 1e-50
            assert abs(float((coarse[i, 0] - poly(x)[0]).mid())) < 1e-50  # 9 points, degree 7


def test_transform_gives_chebyshev_coefficients():
    """Values of ``T_5`` at the Lobatto points transform to the unit vector ``e_5`` (checked
    against mpmath's ``chebyt``)."""
    m = 17
    with arbmath.precision(BITS), mpmath.workdps(60):
        pts = [mpmath.cos(mpmath.pi * j / (m - 1)) for j in range(m)]
        vals = [[arbmath.from_mpf(mpmath.chebyt(5, x))] for x in pts]
        from flint import arb_mat

        c = transform_matrix(m, BITS) * arb_mat(vals)
        for k in range(m):
            assert abs(float(c[k, 0].mid()) - (1.0 if k == 5 else 0.0)) < 1e-45


@pytest.mark.parametrize("B", [10**6])
def test_interpolated_sphere_pass_matches_direct(B):
    """The smooth pass (interpolated inner integrals) against the pass that integrates the
    inner angle at every outer node, same level: they differ by less than the interpolation
    error the smooth pass reports, and that error is far below the moments."""
    deriv = derivation("tanh")
    act, moments = deriv.activation, list(deriv.moments)
    with mpmath.workdps(47):
        geo = sphere.Geometry.make(B, sphere.effective_digits(act, B, 42))
        prec = mpmath.mp.prec
        smooth = sphere._mp_pass_smooth(act, moments, geo, 6, prec, 32)
        direct = sphere._mp_pass(act, moments, geo, 6, prec)
    for mo in moments:
        value, absolute, err = smooth[mo]
        # beyond the interpolation error: rounding at the working precision (47 digits) of
        # the integrand's size (the f(z1) f(z2) moment cancels to 1e-6 of it at B = 10^6)
        assert abs(value - direct[mo][0]) <= err + mpmath.mpf(10) ** -44 * absolute
        assert err <= mpmath.mpf(10) ** -35 * abs(value)


def test_interpolated_inner_integral_against_mpmath_quad():
    """Cartesian route at B = 10^6: the interpolated chord integral of ``z2 tanh(z2)`` at a
    few central outer nodes against mpmath's tanh-sinh quadrature of the Thm 7 density
    along the chord (window included)."""
    B = 10**6
    deriv = derivation("tanh")
    act, moments = deriv.activation, list(deriv.moments)
    captured = {}
    real = cartesian._interpolated_inner

    def spy(*args):
        table = real(*args)
        captured.update(table=table, W=args[1], xs=args[2], col=args[7])
        return table

    cartesian._interpolated_inner = spy
    try:
        with mpmath.workdps(47):
            Z = cartesian._window(B, sphere.effective_digits(act, B, 42))
            # 768-point rules: at least where the adaptive run at 32 digits converges
            cartesian._pass_smooth(act, moments, B, 768, mpmath.mp.prec, Z, 32)
    finally:
        cartesian._interpolated_inner = real
    fine = captured["table"].fine()
    k = captured["col"][Point(1, 1, 0)]  # the second point z * phi(z)
    with mpmath.workdps(45):
        # nodes where the outer weight is large (the interpolation error is controlled in
        # the weighted sum: near the window's ends H is needed only to its weight's size)
        R = mpmath.sqrt(B - 1)
        z1s = [R * mpmath.sin(arbmath.to_mpf(captured["W"]) * arbmath.to_mpf(x))
               for x in captured["xs"]]  # the outer nodes, from the interpolation variable
        central = [i for i, z1 in enumerate(z1s) if abs(z1) < 2]
        for i in central[:: max(1, len(central) // 3)]:
            z1 = z1s[i]
            lo, hi = cartesian._chord(B, z1)

            def integrand(z2):
                q = 1 - (z1**2 + z2**2 + (z1 + z2) ** 2 / (B - 2)) / B
                return z2 * mpmath.tanh(z2) * q ** (mpmath.mpf(B - 5) / 2)

            ref = mpmath.quad(integrand, [max(lo, -Z), -1, 0, 1, min(hi, Z)])
            # the interpolated function is the chord integral over cos(theta)^(B-4)
            got = arbmath.to_mpf(fine[i, k]) * (1 - z1**2 / (B - 1)) ** (mpmath.mpf(B - 4) / 2)
            assert abs(got - ref) <= mpmath.mpf(10) ** -33 * abs(ref), (i, got, ref)


def _verify_rows(capsys, *argv):
    status = main(["verify", "tanh", "--digits", "30", "--quiet", *argv])
    out, _ = capsys.readouterr()
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 6)
        if len(parts) == 7 and parts[1].isdigit():
            rows.append(parts)
    return status, out, rows


def _assert_thirty(status, out, rows, sizes):
    assert status == 0
    assert {int(r[1]) for r in rows} == set(sizes)
    high = [r for r in rows if float(r[5]) == 30]
    assert high  # the mpmath routes: Gegenbauer, Thm 9 sum, Cartesian
    for r in rows:
        need = float(r[5])
        agree = float("inf") if r[4] == "same" else float(r[4])
        assert agree >= need, r
        assert need in (13, 30), r
    routes = {r[6] for r in high}
    assert {"Gegenbauer/Funk-Hecke (mpmath)", "Gegenbauer sum, paper Thm 9 (mpmath)",
            "Cartesian quadrature, Thm 7 form (mpmath)"} <= routes
    last = out.strip().splitlines()[-1]
    n = len(rows)
    assert last.startswith(f"{n} of {n} checks agree"), last


def test_cli_verify_tanh_30_digits_large_batch(capsys):
    """`bnmft verify tanh --digits 30 --batch-size 1000000`: the interpolated passes; every
    30-digit check agrees to at least 30 digits in the printed table."""
    status, out, rows = _verify_rows(capsys, "--batch-size", "1000000")
    _assert_thirty(status, out, rows, [10**6])


@pytest.mark.slow
def test_cli_verify_tanh_30_digits_default_sizes(capsys):
    """The whole default run (B = 4, 6, 8, 32, 1000, 10^6) through the CLI table."""
    status, out, rows = _verify_rows(capsys)
    _assert_thirty(status, out, rows, [4, 6, 8, 32, 1000, 10**6])
