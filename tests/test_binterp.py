"""Interpolation in 1/B of the float64 sphere moments of kinked phi (numerics/binterp.py)."""

from __future__ import annotations

import mpmath
import numpy as np

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
