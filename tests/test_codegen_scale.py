"""The input scale ``gamma`` of the closed-form modules: ``q_star(B, gamma=g)`` (numpy) and
the ``NAME_QTY_p`` / ``NAME_all_p`` kernels (C) give the quantities of ``phi(g x)``.

Reference: ``bnmft.analyze`` of the derivation of ``phi(g x)`` itself (a different
activation, derived and evaluated by mpmath), not the scaling the modules apply.
"""

from __future__ import annotations

import shutil

import mpmath
import numpy as np
import pytest

import bnmft
from bnmft.codegen import generate, load_c, load_numpy

BATCH = [4, 32, 10**6]
GAMMAS = [0.5, 2.0, 3.7]
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")


#: Generated modules built into a cache of this file's own (conftest.py).
pytestmark = pytest.mark.usefixtures("private_cache")


def _close(value, ref):
    if ref == 0:
        return value == 0
    return abs(mpmath.mpf(float(value)) - ref) <= 1e-13 * abs(ref)


@pytest.mark.parametrize("spec", ["relu", "leaky_relu:0.2", "alpha_relu:1.5"])
def test_gamma_against_the_derivation_of_phi_gamma_x(spec):
    deriv = bnmft.derivation(spec)
    module = "scaled"
    py = load_numpy(generate(deriv, lang="numpy", module=module), module)
    c = load_c(generate(deriv, lang="c", module=module), module) if shutil.which("cc") else None
    B = np.array(BATCH, dtype=float)
    for g in GAMMAS:
        refs = bnmft.analyze(bnmft.derivation(spec, gamma=g), BATCH, digits=16)
        gam = np.full(B.shape, g)
        fused = c.all(B, gamma=gam) if c is not None else {}
        for name in deriv.closed:
            routes = {"numpy": getattr(py, name)(B, gamma=g)}
            if c is not None:
                routes.update({"C": getattr(c, name)(B, gamma=gam), "C fused": fused[name]})
            for route, values in routes.items():
                for v, res in zip(values, refs):
                    assert _close(v, res.numbers[name].value), (spec, g, name, route,
                                                                res.batch_size)


def test_gamma_broadcasts_and_defaults():
    deriv = bnmft.derivation("alpha_relu:1.5")
    py = load_numpy(generate(deriv, lang="numpy", module="bc"), "bc")
    B = np.array([4.0, 8.0, 100.0])
    assert np.array_equal(py.q_star(B), py.q_star(B, gamma=None))
    grid = py.q_star(B[:, None], gamma=np.array([1.0, 2.0]))
    assert grid.shape == (3, 2)
    np.testing.assert_allclose(grid[:, 1], 8 * py.q_star(B), rtol=1e-15)  # 2^(2 * 3/2)
    assert np.array_equal(py.c_star(B, gamma=[5.0, 5.0, 5.0]), py.c_star(B))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), [1.0, -2.0]])
def test_invalid_gamma(bad):
    deriv = bnmft.derivation("relu")
    py = load_numpy(generate(deriv, lang="numpy", module="inv"), "inv")
    with pytest.raises(ValueError, match="gamma must satisfy gamma > 0"):
        py.q_star([4.0, 8.0], gamma=bad)


@needs_cc
def test_invalid_gamma_is_nan_in_c():
    deriv = bnmft.derivation("relu")
    c = load_c(generate(deriv, lang="c", module="invc"), "invc")
    assert c.params == ("gamma",)
    got = c.q_star(np.array([4.0, 8.0, 16.0]), gamma=np.array([1.0, -1.0, 0.0]))
    assert got[0] == 0.5 and np.isnan(got[1:]).all()
    fused = c.all(np.array([4.0, 8.0]), gamma=np.array([np.nan, 2.0]))
    assert all(np.isnan(v[0]) and np.isfinite(v[1]) for v in fused.values())
