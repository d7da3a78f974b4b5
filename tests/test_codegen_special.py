"""Generated code for the closed forms of non-integer degrees: gamma ratios, 2F1, constants.

References are independent of the generated routines: mpmath's ``gammaprod``/``hyp2f1``/
``gamma`` at 30 digits, and ``bnmft.analyze(..., digits=16)`` (mpmath evaluation of the
closed forms, 30+ digits). The rendered alpha_relu:1.5 files are compared byte for byte with
tests/golden/alpha_relu_1_5/ (regenerate with ``pytest tests/test_codegen_special.py
--update-golden`` and review the diff).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

import bnmft
from bnmft.codegen import (
    Argument,
    CodegenError,
    FunctionSpec,
    ModuleSpec,
    generate,
    load_c,
    load_numpy,
    render_module,
    write_sources,
)
from bnmft.derive.symbols import B

GOLDEN = Path(__file__).parent / "golden" / "alpha_relu_1_5"
BATCH = [4, 5, 8, 32, 1000, 10**5, 10**6]
RTOL = 1e-13
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")


#: Generated modules built into a cache of this file's own (conftest.py).
pytestmark = pytest.mark.usefixtures("private_cache")


def _spec(name, expr):
    return FunctionSpec(
        name=name, arguments=(Argument(B, "B", "the argument"),), expr=expr,
        summary=f"{name}, a test function.", math=(("Formula", str(expr)),),
        provenance="typed in tests/test_codegen_special.py", domain="see the test",
    )


HALF, QUARTER = sp.Rational(1, 2), sp.Rational(1, 4)
ROUTINES = {
    # name: (expression in B, mpmath reference as a function of an mpf b)
    "r_half": (sp.gamma(B + HALF) / sp.gamma(B), lambda b: mpmath.gammaprod([b + 0.5], [b])),
    "r_three_quarters": (sp.gamma(B / 2 + sp.Rational(3, 4)) / sp.gamma(B / 2 - QUARTER),
                         lambda b: mpmath.gammaprod([b / 2 + 0.75], [b / 2 - 0.25])),
    "f_a": (sp.hyper([-sp.Rational(7, 4), -sp.Rational(3, 4)], [HALF], B),
            lambda b: mpmath.hyp2f1(-1.75, -0.75, 0.5, b)),
    "f_b": (sp.hyper([sp.Rational(1, 3), sp.Rational(5, 2)], [sp.Rational(1, 5)], B),
            lambda b: mpmath.hyp2f1(mpmath.mpf(1) / 3, 2.5, mpmath.mpf(1) / 5, b)),
    "g_const": (sp.sqrt(2) * sp.pi / sp.gamma(QUARTER) ** 2 * B,
                lambda b: mpmath.sqrt(2) * mpmath.pi / mpmath.gamma(0.25) ** 2 * b),
}
GAMMA_X = [0.3, 1.0, 2.0, 2.5, 31.5, 32.0, 33.0, 100.0, 12345.5, 1e6, 1e12, 1e200]
HYPER_Z = [-0.5, -0.3, -1 / 9, -1e-6, 0.0, 1e-12, 1 / 81, 0.2, 0.49, 0.5]


@pytest.fixture(scope="module")
def routine_modules():
    spec = ModuleSpec(name="routines", title="Special-function routines",
                      functions=tuple(_spec(n, e) for n, (e, _) in ROUTINES.items()))
    mods = {"numpy": load_numpy(render_module(spec, lang="numpy"), "routines")}
    if shutil.which("cc"):
        mods["c"] = load_c(render_module(spec, lang="c"), "routines")
    return mods


def _relerr(value, ref):
    return float(abs(mpmath.mpf(float(value)) - ref) / abs(ref))


@pytest.mark.parametrize("name", ["r_half", "r_three_quarters"])
def test_gamma_ratio_routines_against_mpmath(routine_modules, name):
    """Gamma(x + a)/Gamma(x) through the recurrence below x = 32 and Stirling's series above,
    from x = 0.3 to 1e200 (where the gamma functions themselves overflow)."""
    _, ref = ROUTINES[name]
    x = [2 * v + 1 for v in GAMMA_X] if name == "r_three_quarters" else GAMMA_X
    with mpmath.workdps(240):  # x + a exact up to x = 1e200
        want = [ref(mpmath.mpf(v)) for v in x]
    for lang, mod in routine_modules.items():
        got = getattr(mod, name)(np.array(x))
        worst = max(_relerr(g, w) for g, w in zip(got, want))
        assert worst < 1e-14, (lang, worst)


@pytest.mark.parametrize("name", ["f_a", "f_b"])
def test_hyp2f1_routines_against_mpmath(routine_modules, name):
    _, ref = ROUTINES[name]
    with mpmath.workdps(30):
        want = [ref(mpmath.mpf(z)) for z in HYPER_Z]
    for lang, mod in routine_modules.items():
        got = getattr(mod, name)(np.array(HYPER_Z))
        worst = max(_relerr(g, w) for g, w in zip(got, want))
        assert worst < 1e-14, (lang, worst)
        outside = getattr(mod, name)(np.array([-0.51, 0.6, 2.0, np.nan]))
        assert np.all(np.isnan(outside)), lang


def test_routines_outside_their_domain_give_nan(routine_modules):
    for lang, mod in routine_modules.items():
        got = mod.r_half(np.array([0.0, -1.0, -0.5, np.nan]))
        assert np.all(np.isnan(got)), lang
        assert mod.r_half(np.array([np.inf]))[0] == np.inf, lang


def test_constants_are_correctly_rounded_literals(routine_modules):
    """sqrt(2) pi / Gamma(1/4)^2 is folded into one literal, the float64 nearest the value."""
    text = render_module(ModuleSpec(name="k", title="t", functions=(
        _spec("g_const", ROUTINES["g_const"][0]),)), lang="numpy")["k.py"]
    with mpmath.workdps(50):
        exact = mpmath.sqrt(2) * mpmath.pi / mpmath.gamma(mpmath.mpf(1) / 4) ** 2
    nearest = float(exact)
    body = text.split('"""')[-1]  # the code after the last docstring
    assert repr(nearest) in body and "gamma" not in body
    for lang, mod in routine_modules.items():
        assert mod.g_const(np.array([1.0]))[0] == nearest, lang


# -- the alpha_relu:1.5 modules --------------------------------------------------------------


@pytest.fixture(scope="module")
def alpha15():
    deriv = bnmft.derivation("alpha_relu:1.5")
    refs = {a.batch_size: a.numbers for a in bnmft.analyze(deriv, BATCH, digits=16)}
    return deriv, refs


def _check_against_analyze(values, refs, name, what):
    for b, v in zip(BATCH, values):
        ref = refs[b][name].value
        assert refs[b][name].digits >= 16
        if ref == 0:
            assert v == 0, (what, name, b)
        else:
            assert _relerr(v, ref) < RTOL, (what, name, b, float(v), ref)


def test_numpy_module_against_analyze(alpha15):
    deriv, refs = alpha15
    mod = load_numpy(generate(deriv, lang="numpy", module="ar15"), "ar15")
    x = np.array(BATCH, dtype=float)
    for name in deriv.closed:
        _check_against_analyze(getattr(mod, name)(x), refs, name, "numpy")
    assert mod.q_star(np.float64(10.0)).shape == ()


@needs_cc
def test_c_module_against_analyze(alpha15):
    deriv, refs = alpha15
    mod = load_c(generate(deriv, lang="c", module="ar15"), "ar15")
    x = np.array(BATCH, dtype=float)
    fused = mod.all(x)
    for name in deriv.closed:
        _check_against_analyze(getattr(mod, name)(x), refs, name, "C")
        _check_against_analyze(fused[name], refs, name, "C fused")


@pytest.mark.parametrize("filename", ["alpha_relu_1_5.py", "alpha_relu_1_5.c",
                                      "alpha_relu_1_5.h"])
def test_golden(alpha15, filename, request):
    """The rendering (no verification record: that depends on the platform's libm)."""
    deriv, _ = alpha15
    lang = "numpy" if filename.endswith(".py") else "c"
    fresh = generate(deriv, lang=lang, module="alpha_relu_1_5")[filename]
    if request.config.getoption("--update-golden"):
        write_sources({filename: fresh}, GOLDEN)
        return
    assert fresh.encode("utf-8") == (GOLDEN / filename).read_bytes(), (
        f"{filename} differs from the golden copy; if intended, run pytest --update-golden")


def test_pipeline_states_the_verification(alpha15):
    deriv, _ = alpha15
    sources = bnmft.generate(deriv, ["numpy"], module="ar15v")["numpy"]
    text = sources["ar15v.py"]
    line = [ln for ln in text.splitlines()[:4] if ln.startswith("# Verified: >= ")]
    assert line and "at B = 4 ... 1000000" in line[0]
    mod = load_numpy(sources, "ar15v")
    assert set(mod.VERIFIED) == set(deriv.closed)
    assert min(mod.VERIFIED.values()) >= 13.0
    assert mod.VERIFIED_BATCH_SIZES[0] == 4 and mod.VERIFIED_BATCH_SIZES[-1] == 10**6


@pytest.mark.parametrize("spec", ["Max(x,0)**1.5", "alpha_relu:0.75", "alpha_relu:2.5"])
def test_other_non_integer_degrees(spec):
    """Through the verification of bnmft.generate (B = 4 ... 10^6, numpy and C)."""
    from bnmft.codegen.quadrature import REQUIRED_RTOL

    sources = bnmft.generate(spec, ["numpy"], module="nd")["numpy"]
    mod = load_numpy(sources, "nd")
    assert min(mod.VERIFIED.values()) >= -math.log10(REQUIRED_RTOL)
    q = mod.q_star(np.array([1e8, 1e100]))
    assert np.all(np.isfinite(q)) and np.all(q > 0)  # sane beyond the verified range


def test_cli_codegen_non_integer_degree(tmp_path):
    from bnmft.cli import main

    for lang in ("numpy", "c"):
        assert main(["codegen", "alpha_relu:1.5", "--lang", lang, "--out", str(tmp_path),
                     "--module", "a15"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"a15.py", "a15.c", "a15.h"}


def test_unsupported_constant_is_refused():
    spec = ModuleSpec(name="bad", title="t", functions=(
        _spec("complex_constant", sp.gamma(B) / sp.gamma(B) * sp.log(-2) * B),))
    with pytest.raises(CodegenError) as err:
        render_module(spec, lang="numpy")
    assert "\n" not in str(err.value)
