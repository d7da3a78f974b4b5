"""Kinks at the end of the sphere marginal's support, |k| = sqrt(B - 1).

There the kink line z2 = k touches the two-coordinate disk at one point, at the corner of the
inner angle window: the inner integral is not smooth in the outer angle at the disk's
tangency, which every route must split at (it was missed because the kink line lies outside
the truncated window, and the Cartesian discriminant was tested > 0).
"""

from __future__ import annotations

import mpmath
import pytest

import bnmft
from bnmft.numerics import cartesian, sphere
from bnmft.numerics import references as R


@pytest.mark.parametrize("B, k", [(5, -2), (5, 2), (10, -3), (10, 3)])
def test_angle_pieces_split_at_the_disk_tangency(B, k):
    """rho sin d -+ sigma cos d = k/sqrt(B-1) = +-1 (radius 1) at sin d = rho k/sqrt(B-1), i.e.
    z1 = -k/(B-1)."""
    with mpmath.workdps(40):
        geo = sphere.Geometry.make(B, 30)
        ends = {mpmath.sin(a) for a, _, _, _ in geo.outer_pieces([mpmath.mpf(k)], 2)[1:]}
        want = geo.rho * mpmath.mpf(k) / geo.root
        assert min(abs(s - want) for s in ends) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("B, k", [(5, -2), (10, 3)])
def test_cartesian_pieces_split_where_the_kink_line_touches_the_ellipse(B, k):
    """(z1, k) on the ellipse (B-1) z1^2 + 2 k z1 + (B-1) k^2 = B(B-2) has the double root
    z1 = -k/(B-1) when k^2 = B - 1."""
    with mpmath.workdps(30):
        R_ = mpmath.sqrt(B - 1)
        ends = {a for a, _, _, _ in cartesian._outer_pieces(B, [mpmath.mpf(k)], 2, R_)}
        assert min(abs(a + mpmath.mpf(k) / (B - 1)) for a in ends) < mpmath.mpf(10) ** -25


def _phi(k):
    """Max(x/2 + 1, 0)**1.5 + 0.1 (x/2 + 1) with its kink moved to k (gamma = 1/2)."""
    def phi(u):
        v = (u - k) / 2
        return (v**1.5 if v > 0 else mpmath.mpf(0)) + v / 10

    def dphi(u):
        v = (u - k) / 2
        return (3 * mpmath.sqrt(v) / 4 if v > 0 else mpmath.mpf(0)) + mpmath.mpf(1) / 20

    return phi, dphi


@pytest.mark.slow
def test_kink_at_the_support_end_b5_against_tanh_sinh():
    """Max(x,0)**1.5 + 0.1*x at gamma = 1/2, beta = 1 (the codegen grid point): the kink at
    z = -2 = -sqrt(B - 1) for B = 5. The sphere quadrature reaches 16 digits (it reached 0
    before) and agrees with mpmath's tanh-sinh in the paper's angles (q*, c*) and in the
    Thm 7 Cartesian form (gradient rate), both split at the tangency."""
    (res,) = bnmft.analyze(bnmft.derivation("Max(x,0)**1.5 + 0.1*x", gamma=0.5, beta=1), [5],
                           digits=16)
    phi, dphi = _phi(mpmath.mpf(-2))
    q, c = R.fixed_point(phi, 5, dps=20, kinks=[-2])
    rate = R.gradient_rate(phi, dphi, 5, dps=20, kinks=[-2])
    for name, ref in (("q_star", q), ("c_star", c), ("gradient_rate", rate)):
        num = res.numbers[name]
        assert num.digits >= 16, name
        assert abs(num.value - ref) <= 1e-16 * abs(ref), (name, num.value, ref)
    # the generated numpy module splits there too (it agreed to 11.7 digits before)
    import numpy as np

    from bnmft.codegen import quadrature as Q
    from bnmft.codegen.jit import load_numpy
    from bnmft.derive.activation import activation

    act = activation("Max(x,0)**1.5 + 0.1*x")
    mod = load_numpy(Q._render_numpy(act, "edge", Q.QuadraturePlan(1.0, {}, ())))
    got = mod.all(np.array([5.0]), gamma=0.5, beta=1.0)
    for name, num in res.numbers.items():
        if name in got and num.value:
            assert abs(float(got[name][0]) - num.value) <= 1e-13 * abs(num.value), name
