"""Family modules: closed forms with the family parameter (leaky_relu's ``slope``) as an
array argument of every generated function (numpy) and kernel (C).

References: ``bnmft.analyze`` (mpmath, 16 digits) of the closed forms derived at each fixed
parameter value (``activation("leaky_relu:slope=-3/10")``), independent of the symbolic
family derivation the module is printed from. The rendered files are compared byte for byte
with tests/golden/leaky_relu_family/ (regenerate with ``pytest tests/test_codegen_family.py
--update-golden`` and review the diff).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

import bnmft
from bnmft.codegen import generate, load_c, load_numpy, write_sources
from bnmft.derive import derive, symbolic_activation
from bnmft.derive.activation import activation

GOLDEN = Path(__file__).parent / "golden"
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
pytestmark = pytest.mark.usefixtures("private_cache")

#: (B, slope) pairs off the verification grid (which codegen checks at generation time).
PAIRS = [(4, -0.7), (6, 0.25), (50, -0.05), (3000, 1.5), (250000, -2.5), (10**6, 0.125)]
RTOL = 1e-12


@pytest.fixture(scope="module")
def leaky():
    deriv = derive(symbolic_activation("leaky_relu"))
    mods = {"numpy": load_numpy(generate(deriv, lang="numpy", module="lk_fam"), "lk_fam")}
    if shutil.which("cc"):
        mods["c"] = load_c(generate(deriv, lang="c", module="lk_fam"), "lk_fam")
    return deriv, mods


@pytest.fixture(scope="module")
def leaky_refs():
    """``{(B, slope): {name: mpf}}`` from the fixed-slope derivations."""
    out = {}
    for b, s in PAIRS:
        q = Fraction(s)
        fixed = activation(f"leaky_relu:slope={q.numerator}/{q.denominator}")
        (res,) = bnmft.analyze(fixed, [b], digits=16)
        out[(b, s)] = {n: num.value for n, num in res.numbers.items()}
    return out


def _relerr(v, ref):
    ref = mpmath.mpf(ref)
    return abs(mpmath.mpf(float(v)) - ref) / abs(ref) if ref else abs(float(v))


def test_values_against_fixed_slope_references(leaky, leaky_refs):
    deriv, mods = leaky
    b = np.array([p[0] for p in PAIRS], dtype=float)
    s = np.array([p[1] for p in PAIRS])
    for lang, mod in mods.items():
        fused = mod.all(b, s) if lang == "c" else {}
        for name in deriv.closed:
            got = {"single": getattr(mod, name)(b, s), **({"fused": fused[name]} if fused else {})}
            for how, vals in got.items():
                for pair, v in zip(PAIRS, vals):
                    err = _relerr(v, leaky_refs[pair][name])
                    assert err < RTOL, (lang, how, name, pair, float(v), err)


def test_broadcasting_shapes(leaky):
    _, mods = leaky
    B = np.array([[4.0], [40.0], [4000.0]])
    slope = np.array([-1.0, 0.0, 0.2, 3.0])
    for lang, mod in mods.items():
        for name in ("q_star", "lambda_G", "c_star", "depth_scale"):
            out = getattr(mod, name)(B, slope)
            assert out.shape == (3, 4) and out.dtype == np.float64, (lang, name)
            one = getattr(mod, name)(B[1, 0], slope[2])
            assert np.shape(one) == () and float(one) == out[1, 2], (lang, name)
        assert np.array_equal(mod.q_star(B, slope), np.broadcast_to((1 + slope**2) / 2, (3, 4)))
    if "c" in mods:
        assert np.allclose(mods["c"].all(B, slope)["c_star"], mods["numpy"].c_star(B, slope),
                           rtol=1e-13, atol=0)


@needs_cc
def test_c_agrees_with_numpy_and_the_input_scale(leaky):
    _, mods = leaky
    rng = np.random.default_rng(3)
    B = rng.uniform(4, 1e5, 200)
    slope = rng.uniform(-3, 3, 200)
    gamma = rng.uniform(0.2, 5, 200)
    keep = np.abs(slope - 1) > 0.2  # near the linear phi: see the README (domain)
    B, slope, gamma = B[keep], slope[keep], gamma[keep]
    c, py = mods["c"], mods["numpy"]
    fused = c.all(B, slope, gamma=gamma)
    # atol: c_star and lambda_M cross zero as functions of slope; near a zero the value is
    # ill-conditioned in every representation (an absolute error ~1e-16 remains).
    for name in py.__all__:
        want = getattr(py, name)(B, slope, gamma=gamma)
        np.testing.assert_allclose(getattr(c, name)(B, slope, gamma=gamma), want, rtol=1e-12,
                                   atol=1e-14, err_msg=name)
        np.testing.assert_allclose(fused[name], want, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(py.q_star(B, slope, gamma=gamma),
                               gamma**2 * py.q_star(B, slope), rtol=1e-15)


def test_out_of_domain(leaky):
    _, mods = leaky
    with pytest.raises(ValueError, match="gamma"):
        mods["numpy"].c_star(10.0, 0.2, gamma=-1.0)
    if "c" in mods:
        assert np.isnan(mods["c"].c_star(10.0, 0.2, gamma=-1.0))
        with pytest.raises(TypeError, match="slope"):
            mods["c"].c_star(10.0)
    with pytest.raises(TypeError):
        mods["numpy"].c_star(10.0)
    for mod in mods.values():
        assert np.isnan(mod.c_star(10.0, np.nan))


@pytest.mark.parametrize("filename", ["leaky_relu_family.py", "leaky_relu_family.c",
                                      "leaky_relu_family.h"])
def test_golden(leaky, filename, request):
    """The rendering (no verification record: that depends on the platform's libm)."""
    deriv, _ = leaky
    lang = "numpy" if filename.endswith(".py") else "c"
    fresh = generate(deriv, lang=lang, module="leaky_relu_family")[filename]
    folder = GOLDEN / "leaky_relu_family"
    if request.config.getoption("--update-golden"):
        write_sources({filename: fresh}, folder)
        return
    assert fresh.encode("utf-8") == (folder / filename).read_bytes(), (
        f"{filename} differs from the golden copy; if intended, run pytest --update-golden")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bnmft", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=600)


@needs_cc
def test_cli_writes_a_verified_family_module(tmp_path):
    run = _cli("codegen", "leaky_relu", "--lang", "numpy", "--out", "gen", "--module", "lk",
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "gen" / "lk.py").read_text()
    head = [ln for ln in text.splitlines()[:4] if ln.startswith("# Verified: >= ")]
    assert head and "times slope = -1.0, -0.3, 0.0, 0.01, 0.5, 2.0" in head[0]
    mod = load_numpy({"lk.py": text}, "lk")
    assert min(mod.VERIFIED.values()) >= 12
    assert mod.VERIFIED_SLOPE == (-1.0, -0.3, 0.0, 0.01, 0.5, 2.0)
    assert mod.c_star(np.array([4.0, 64.0]), 0.2).shape == (2,)
    fixed = _cli("codegen", "leaky_relu:0.2", "--lang", "numpy", "--out", "gen", "--module",
                 "lk2", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "def c_star(B, *, gamma=None):" in (tmp_path / "gen" / "lk2.py").read_text()
