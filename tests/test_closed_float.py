"""The float64 kernels of closed forms (:mod:`bnmft.numerics.closed_float`): the special
functions against mpmath within their bounds, in float64 and extended precision; the rounding
test; the digits a bound allows."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from bnmft.numerics.closed_float import (
    EXTENDED, FLOAT64, claimed_digits, gamma_ratio, hyp2f1_series, rounding_certain)

PRECISIONS = [p for p in (FLOAT64, EXTENDED) if p is not None]


def exact(v) -> mpmath.mpf:
    """A float64 or longdouble as an mpmath number, exactly (call inside ``workdps``)."""
    f = Fraction(*v.as_integer_ratio())
    return mpmath.mpf(f.numerator) / f.denominator


@pytest.mark.parametrize("prec", PRECISIONS, ids=lambda p: p.dtype.__name__)
@pytest.mark.parametrize("a", [Fraction(1, 2), Fraction(1, 4), Fraction(3, 2), Fraction(-1, 3)])
def test_gamma_ratio_within_its_bound(prec, a):
    x = np.concatenate([np.arange(2, 40, 0.5), np.geomspace(32, 5e14, 300)]).astype(prec.dtype)
    v, e = gamma_ratio(x, np.zeros(len(x)), a, prec)
    with mpmath.workdps(40):
        for xi, vi, ei in zip(x, v, e):
            ref = mpmath.gammaprod([exact(xi) + mpmath.mpf(a.numerator) / a.denominator],
                                   [exact(xi)])
            assert abs(exact(vi) - ref) <= ei, (xi, a)
            assert ei <= 64 * prec.u * abs(ref)  # and the bound is not vacuous


@pytest.mark.parametrize("prec", PRECISIONS, ids=lambda p: p.dtype.__name__)
@pytest.mark.parametrize("abc", [(-3, -3, 2), (-1, -1, 6), (-7, -3, 2), (1, 1, 6), (-5, -1, 6)])
def test_hyp2f1_series_within_its_bound(prec, abc):
    a, b, c = (Fraction(n, 4) for n in abc)
    z = np.concatenate([1 / (np.arange(4, 200) - 1.0) ** 2, [0.3, 0.45, 0.5]]).astype(prec.dtype)
    v, e = hyp2f1_series(a, b, c, z, np.zeros(len(z)), prec)
    with mpmath.workdps(40):
        for zi, vi, ei in zip(z, v, e):
            ref = mpmath.hyp2f1(float(a), float(b), float(c), exact(zi))
            assert abs(exact(vi) - ref) <= ei, (zi, abc)
            assert ei <= 256 * prec.u * abs(ref)
    _, err = hyp2f1_series(a, b, c, np.array([0.9]), np.zeros(1))
    assert err[0] == math.inf  # outside the series' domain here


def test_rounding_certain_only_away_from_midpoints():
    cases = [  # (value, bound, certain at 6 digits)
        (0.12345650001, 1e-12, True), (0.12345650001, 1e-10, False), (0.123456, 1e-9, True),
        (9.9999949, 1e-9, True), (9.999995, 1e-9, False),  # a midpoint (within 1e-15)
        (1.0000004, 1e-9, True), (0.99999995, 1e-9, True),  # both round to 1.00000
        (0.9999995 + 2e-9, 1e-9, True), (0.9999995 + 5e-10, 1e-9, False),
    ]
    v, e, want = (np.array(c) for c in zip(*cases))
    assert rounding_certain(v, e, 6).tolist() == want.tolist()
    assert rounding_certain(-v, e, 6).tolist() == want.tolist()
    assert not rounding_certain(np.array([0.0, math.inf, math.nan]), np.zeros(3), 6).any()


def test_claimed_digits_are_relative_to_the_smallest_value_in_the_bound():
    d = claimed_digits(np.array([1.0, 1.0, 1.0, 0.0]), np.array([1e-12, 0.0, 2.0, 1e-9]))
    assert d[0] == pytest.approx(12, abs=1e-9) and d[0] < 12
    assert d.tolist()[1:] == [15.0, 0.0, 0.0]
