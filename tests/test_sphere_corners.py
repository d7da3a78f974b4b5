"""Sphere moments of ``phi(rho z)`` near the ``rho`` where a corner of two kink lines enters
the support of two coordinates, and the eps > 0 route of a kinked phi without closed forms
(hardtanh) that is built on them.

Just past such a ``rho`` two singular points of the outer angle (a kink of ``phi(z1)`` and
the point where the kink line of ``phi(z2)`` leaves the window) lie closer together than the
rule resolves. The independent reference at B = 4 is Archimedes' theorem: a coordinate of a
uniform point on ``S^2`` is uniform on ``[-1, 1]``, and given it the point is uniform on a
circle, so ``P(|t1| < A, |t2| < A)`` is a one-dimensional mpmath quadrature of arccosines.
"""

from __future__ import annotations

import math
import pathlib

import mpmath
import numpy as np
import pytest

from bnmft.codegen import epsilon as E
from bnmft.codegen import load_numpy
from bnmft.codegen import quadrature as Q
from bnmft.derive.activation import activation
from bnmft.derive.epsilon import derive_regularised, sphere_moments_of
from bnmft.numerics import sphere
from bnmft.numerics.epsilon import _Scaled, analyze_regularised

GOLDEN = pathlib.Path(__file__).parent / "golden" / "quadrature"
HARDTANH = "Min(Max(x, -1), 1)"
#: B = 4: two coordinates of the sphere have correlation -1/3; the corner (1/rho, -1/rho)
#: enters their support at rho = sqrt(2/B).
CORNER = 1 / math.sqrt(2)


def box_probability(A, dps: int = 30) -> mpmath.mpf:
    """``P(|t1| < A, |t2| < A)`` for two coordinates (correlation -1/3) of a uniform point on
    ``S^2``: ``t1`` uniform on ``[-1, 1]``, then ``t2 = r t1 + sqrt(1 - r^2) sqrt(1 - t1^2)
    cos(theta)`` with ``theta`` uniform, split where an end of the ``theta`` interval
    reaches 0 or pi."""
    with mpmath.workdps(dps):
        A, r = mpmath.mpf(A), mpmath.mpf(-1) / 3
        sr = mpmath.sqrt(1 - r * r)

        def inner(t):
            s = sr * mpmath.sqrt(1 - t * t)
            lo = max(-1, min(1, (-A - r * t) / s))
            hi = max(-1, min(1, (A - r * t) / s))
            return (mpmath.acos(lo) - mpmath.acos(hi)) / mpmath.pi

        end = min(A, 1)
        pts = {-end, end}
        disc = (1 - A * A) * (1 - r * r)
        if disc >= 0:
            for sa in (1, -1):
                for sd in (1, -1):
                    t = sa * A * r + sd * mpmath.sqrt(disc)
                    if -end < t < end:
                        pts.add(t)
        return mpmath.quad(inner, sorted(pts)) / 2


def _box_moment():
    rd = derive_regularised(activation(HARDTANH))
    return next(m for m in sphere_moments_of(rd.radials)
                if tuple((p.m, p.p, p.q) for p in m.points) == ((0, 0, 1), (0, 0, 1)))


OFFSETS = [0.2, 1e-3, 1e-6, 1.3e-8, 1e-9, -1e-9, -1e-3]


def test_library_and_modules_put_corners_up_to_the_same_batch_size():
    """The library's table and the generated modules (their ``_TANGENCY_MAX_B``) split at the
    corners up to the same B, so that they are compared on the same pieces."""
    from bnmft.numerics.epsilon import CORNER_MAX_B

    assert CORNER_MAX_B == Q.TANGENCY_MAX_B


def test_reference_is_the_marginal():
    """The reference itself: a box holding the whole support has probability 1, a small box
    its area times the density at 0, ``1/(2 pi sqrt(1 - r^2))``."""
    assert box_probability(2) == 1
    a = mpmath.mpf("1e-4")
    assert box_probability(a) / (4 * a * a / (2 * mpmath.pi * mpmath.sqrt(1 - mpmath.mpf(1) / 9))) \
        == pytest.approx(1, rel=1e-6)


@pytest.mark.parametrize("offset", OFFSETS)
def test_library_rule_near_a_corner_entry(offset):
    """``E[phi'(rho z1) phi'(rho z2)]`` of hardtanh at B = 4 from the float64 angle rule at its
    lowest level, to 1e-14 of the Archimedes reference (it missed by 3e-6 at ``rho - sqrt(1/2)
    = 1e-9`` when the breakpoints were merged at 1e-7 and not graded)."""
    rho = CORNER + offset
    mo = _box_moment()
    got = sphere.moments_float(_Scaled(activation(HARDTANH), rho), [mo], 4, 3)[mo]
    ref = box_probability(1 / (mpmath.mpf(rho) * mpmath.sqrt(3)))
    assert abs(got - ref) <= 1e-14 * ref, (offset, got, ref)


@pytest.mark.parametrize("offset", OFFSETS)
def test_generated_rule_near_a_corner_entry(offset):
    """The same moment from the golden hardtanh module's own sphere rule (``phi(gamma x)`` at
    ``gamma = rho``; its phi' is ``gamma phi'(gamma x)``), to 1e-14 (it missed by 1e-5 at
    ``1e-9`` past the corner before its pieces were graded)."""
    mod = load_numpy((GOLDEN / "hardtanh_q.py").read_text(), "hardtanh_q")
    rho = CORNER + offset
    j = list(mod.MOMENTS).index(((0, 0, 1), (0, 0, 1)))
    got = mod._angle_moments(4.0, rho, 0.0)[j] / rho**2
    ref = box_probability(1 / (mpmath.mpf(rho) * mpmath.sqrt(3)))
    assert abs(got - ref) <= 1e-14 * ref, (offset, got, ref)


@pytest.fixture(scope="module")
def hardtanh_eps():
    """The hardtanh quadrature module (the golden's panel width, not re-verified) with the
    eps > 0 block, numpy and C."""
    act = activation(HARDTANH)
    gold = load_numpy((GOLDEN / "hardtanh_q.py").read_text(), "hardtanh_q")
    plan = Q.QuadraturePlan(gold._PANEL_Z, dict(gold.VERIFIED), tuple(gold.VERIFIED_BATCH_SIZES))
    forms = E.epsilon_forms(act, "table")
    base = Q.generate_quadrature(act, lang="numpy", module="ht_eps", plan=plan)["ht_eps.py"]
    py = load_numpy(E.append_block(base, E.render_numpy(act, forms), E.header_line(None)))
    src = Q._render_c(act, "ht_ce", plan)
    c_block, h_block = E.render_c(act, forms, "ht_ce")
    c_all, _ = E.load_c_epsilon({"ht_ce.c": src["ht_ce.c"] + c_block,
                                 "ht_ce.h": E.insert_header(src["ht_ce.h"], h_block, "eps > 0")},
                                "ht_ce")
    return py, c_all


POINTS = [(4, 1e-3, 1.0), (4, 0.2, 1.0), (8, 0.1, 1.5)]


@pytest.mark.parametrize("B, eps, sw", POINTS)
def test_reference_claims_its_digits(B, eps, sw):
    """The float64 eps > 0 route for hardtanh claims 12 digits or more in every quantity at
    B = 4 and 8: its moment table is graded past each kink and corner entry and its radial
    rule split where ``rho`` crosses them (it claimed 5.4 digits at B = 4, from a radial rule
    that was not split there)."""
    res = analyze_regularised(derive_regularised(activation(HARDTANH)), [B], repr(eps),
                              repr(sw))[0]
    assert res.regime == "fixed point"
    assert min(res.numbers[q].digits for q in E.QUANTITIES) >= 12


@pytest.mark.parametrize("B, eps, sw", POINTS)
def test_generated_eps_block_against_the_reference(hardtanh_eps, B, eps, sw):
    """numpy and C eps > 0 functions of hardtanh against the float64 eps > 0 route (another
    sphere rule, its own table and error claim) to its claimed digits, at most 12."""
    py, c_all = hardtanh_eps
    res = analyze_regularised(derive_regularised(activation(HARDTANH)), [B], repr(eps),
                              repr(sw))[0]
    args = (np.array([float(B)]), np.array([eps]), sw)
    got_py, got_c = py.all_eps(*args), c_all(*args)
    for q in E.QUANTITIES:
        num = res.numbers[q]
        ref, tol = float(num.value), 10 ** -(min(12.0, num.digits) - 0.3)
        for route, got in (("numpy", got_py[q][0]), ("C", got_c[q][0])):
            assert abs(got - ref) <= tol * abs(ref), (q, route, got, ref)


@pytest.mark.slow  # the generation-time verification at B = 4 ... 10^6: about 3 minutes
def test_cli_writes_a_verified_hardtanh_eps_module(tmp_path):
    """``bnmft codegen 'Min(Max(x, -1), 1)' --epsilon`` writes the module (it refused before:
    7.7 digits at B = 5); its record is capped at the reference's claims, at least 10 digits
    except ``lambda_G`` (the reference's own 6.8 at B = 10^6), and its values at B = 4 are
    those of the reference."""
    from bnmft.cli import main

    assert main(["codegen", HARDTANH, "--lang", "numpy", "--epsilon", "--out", str(tmp_path),
                 "--module", "ht", "--quiet"]) == 0
    mod = load_numpy((tmp_path / "ht.py").read_text(), "ht")
    rec = dict(mod.EPS_VERIFIED)
    assert rec["lambda_G"] >= 6 and min(v for k, v in rec.items() if k != "lambda_G") >= 10
    assert f"agrees to {min(rec.values()):.1f} significant digits" in " ".join(
        (tmp_path / "ht.py").read_text().replace("#", " ").split())
    res = analyze_regularised(derive_regularised(activation(HARDTANH)), [4], "0.001", "1")[0]
    got = mod.all_eps(np.array([4.0]), np.array([1e-3]), 1.0)
    for q in E.QUANTITIES:
        ref = float(res.numbers[q].value)
        assert abs(got[q][0] - ref) <= 1e-11 * abs(ref), q
