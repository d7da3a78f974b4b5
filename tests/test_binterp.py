"""Interpolation in 1/B of the float64 sphere moments of kinked phi (numerics/binterp.py)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import bnmft
from bnmft.numerics import binterp, sphere
from bnmft.numerics.precision import agreeing_digits


def test_lagrange_basis_reproduces_polynomials_and_nests():
    x = binterp.lobatto(17, 1e-6, 1 / 16)
    assert np.allclose(binterp.lobatto(9, 1e-6, 1 / 16), x[::2], rtol=1e-14, atol=0)
    xe = np.array([1e-6, 3e-4, 0.01, 0.05, x[5]])
    p = lambda t: 3 - 40 * t + 900 * t**2 - 1e4 * t**7  # noqa: E731
    got = binterp.lagrange_basis(x, xe) @ p(x)
    assert np.allclose(got, p(xe), rtol=1e-13, atol=0)


def test_elu_interpolated_against_per_b_quadrature_and_mpmath():
    """Many batch sizes take the interpolated route; at integer B its moments agree with the
    per-B float64 quadrature within the claimed errors, and the printed quantities with the
    mpmath sphere quadrature (16 digits) to the digits claimed."""
    deriv = bnmft.derivation("elu")
    Bs = sorted({int(b) for b in np.geomspace(4, 10**6, 120)} | {17, 40, 1000, 10**6})
    res = {a.batch_size: a for a in bnmft.analyze(deriv, Bs, digits=12)}
    assert any("interpolated in 1/B" in n.route for n in res[1000].numbers.values())
    from bnmft.numerics.evaluate import _float_forms

    names = [q.name for q in deriv.quantities if q.relation is None and q.expr is None]
    moments, _ = _float_forms(deriv, names)
    big = np.array([b for b in Bs if b >= binterp.MIN_B], dtype=float)
    vals, errs, ok = binterp.moments_interpolated(deriv.activation, moments, big)
    assert ok.mean() > 0.9
    for j in np.flatnonzero(ok)[::7]:
        direct, derr = sphere.moments_float_estimated(deriv.activation, moments, int(big[j]))
        for mo in moments:
            assert abs(vals[mo][j] - direct[mo]) <= 2 * (errs[mo][j] + derr[mo]) + 1e-300
    for B in (17, 40, 1000, 10**6):
        (ref,) = bnmft.analyze(deriv, [B], digits=16)
        for name, num in res[B].numbers.items():
            if num.value is None or ref.numbers[name].value in (None, 0):
                continue
            assert num.digits >= 12, (name, B)
            with mpmath.workdps(30):
                assert agreeing_digits(num.value, ref.numbers[name].value) >= num.digits - 0.5, (
                    name, B)


def _reference_moments(act, moments, B):
    """The mpmath sphere quadrature (:func:`.sphere.moments_mp`) at 20 digits: an independent
    route (adaptive Gauss-Legendre at 35 digits, its own geometry)."""
    ref = sphere.moments_mp(act, moments, B, 20)
    return {mo: float(ref[mo][0]) for mo in moments}


def _moment_forms(spec):
    from bnmft.numerics.evaluate import _float_forms

    deriv = bnmft.derivation(spec)
    names = [q.name for q in deriv.quantities if q.relation is None and q.expr is None]
    return deriv, _float_forms(deriv, names)[0]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["elu", "Max(x,0)**1.5 + 0.1*x"])
def test_vectorised_quadrature_against_mpmath(spec):
    """The per-B float64 quadrature vectorised over batch sizes (real ones included, as the
    interpolation nodes are) agrees with the mpmath quadrature within its claimed errors."""
    deriv, moments = _moment_forms(spec)
    act = deriv.activation
    Bs = [4, 5, 11, 12, 13, 25, 27, 10**6]
    vals, errs = sphere.moments_float_many(act, moments, Bs + [23.5])
    for j, B in enumerate(Bs):
        ref = _reference_moments(act, moments, B)
        largest = max(abs(v) for v in ref.values())
        for mo in moments:
            assert abs(vals[mo][j] - ref[mo]) <= errs[mo][j], (spec, B, mo)
            # and the claims are tight: about float64 rounding of the largest moment
            assert errs[mo][j] <= 5e-15 * largest, (spec, B, mo)
    # the real batch size 23.5 lies between its neighbours' values (the moments are smooth in B)
    near = sphere.moments_float_many(act, moments, [23.4, 23.6])[0]
    for mo in moments:
        lo, hi = sorted((near[mo][0], near[mo][1]))
        assert lo - 1e-12 <= vals[mo][-1] <= hi + 1e-12


@pytest.mark.slow
def test_interpolated_moments_against_mpmath():
    """On the 853 batch sizes of the benchmark, the moments interpolated in 1/B agree with the
    mpmath quadrature within their claimed errors at B = 12, 13, 25, 27, 1000-ish, 10^6, and
    the interpolation covers every batch size (no per-B fallback)."""
    deriv, moments = _moment_forms("elu")
    sizes = np.unique(np.geomspace(4, 1e6, 1024).astype(int))
    big = sizes[sizes >= binterp.MIN_B].astype(float)
    vals, errs, ok = binterp.moments_interpolated(deriv.activation, moments, big)
    assert ok.all()
    for B in (12, 13, 25, 27, int(big[np.searchsorted(big, 1000)]), 10**6):
        j = int(np.flatnonzero(big == B)[0])
        ref = _reference_moments(deriv.activation, moments, B)
        for mo in moments:
            assert abs(vals[mo][j] - ref[mo]) <= errs[mo][j], (B, mo)


@pytest.mark.slow
def test_cli_elu_digits_against_mpmath(capsys):
    """`bnmft analyze elu` on many batch sizes (the interpolated route) prints, at 12 digits,
    exactly the digits of the mpmath sphere quadrature (16 digits) rounded to 12."""
    import json

    from bnmft.cli import main

    assert main(["analyze", "elu", "--batch-size", "4:80,1000000", "--digits", "12",
                 "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {row["batch_size"]: row for row in json.loads(out)}
    deriv = bnmft.derivation("elu")
    checked = 0
    for B in (4, 5, 11, 12, 13, 25, 27, 80, 10**6):
        (ref,) = bnmft.analyze(deriv, [B], digits=16)
        for name, num in ref.numbers.items():
            if name not in rows[B] or num.value is None:
                continue
            if num.value == 0:  # lambda_G
                assert float(rows[B][name]) == 0, (B, name)
                continue
            want = mpmath.nstr(mpmath.mpf(num.value), 12, strip_zeros=False)
            got = rows[B][name]
            assert got is not None, (B, name)
            if got != want:
                # the reference within 1e-15 of a rounding boundary of the 12th digit only
                unit = mpmath.mpf(10) ** (mpmath.floor(mpmath.log10(abs(num.value))) - 11)
                frac = abs(mpmath.mpf(num.value)) / unit % 1
                assert abs(frac - 0.5) < 1e-3, (B, name, got, want)
            checked += 1
    assert checked >= 9 * 6


@pytest.mark.slow
def test_float_route_claims_hold_where_phi_prime_is_singular():
    """``Max(x - 0.2, 0)**0.75``: ``phi'^2`` has an integrable singularity at the kink, where
    float64 quadratures of growing size drift apart (rounding near the kink); whatever route
    a number takes at 12 digits, it agrees with the mpmath quadrature (16 digits) to the
    digits it claims."""
    deriv = bnmft.derivation("Max(x - 0.2, 0)**0.75")
    (got,) = bnmft.analyze(deriv, [9], digits=12)
    (ref,) = bnmft.analyze(deriv, [9], digits=16)
    for name, num in got.numbers.items():
        if not num.value:
            continue
        with mpmath.workdps(30):
            assert agreeing_digits(num.value, ref.numbers[name].value) >= min(num.digits, 15) - 0.3, name
