"""eps > 0 functions of family modules (``bnmft codegen leaky_relu --epsilon``, ``bnmft codegen
alpha_relu --epsilon``): ``NAME_eps(B, slope, eps, sigma_w)`` with the family parameter an
array argument. Values (numpy and C) against :func:`bnmft.numerics.epsilon.analyze_regularised`
of the fixed member (closed Tricomi forms derived for that slope / alpha: a different route
from the generated radial rule) at parameter values the generation-time check does not use;
broadcasting; eps = 0 against the family module's own functions; refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bnmft.cli import main
from bnmft.codegen import epsilon as E
from bnmft.codegen import load_numpy
from bnmft.codegen.quadrature import VerificationError
from bnmft.derive.activation import activation, symbolic_activation
from bnmft.derive.epsilon import derive_regularised
from bnmft.numerics.epsilon import analyze_regularised

GOLDEN = Path(__file__).parent / "golden"
#: parameter values off the generation-time grid (E.FAMILY_VERIFY_GRIDS)
OFF_GRID = {"leaky_relu": ("slope", (-1.3, 0.5, 1.0)),
            "alpha_relu": ("alpha", (0.6, 1.25, 3.0))}
POINTS = [(4, 1e-3, 1.0), (37, 0.1, 1.5)]


def _family(name):
    """The golden family module (the default output of ``bnmft codegen NAME``) with the
    (unverified) eps > 0 block: numpy module, C ``(all_eps, singles)``, C sources."""
    act = symbolic_activation(name)
    forms = E.epsilon_forms(act, "scaled")
    module = f"{name}_family"
    base = (GOLDEN / module / f"{module}.py").read_text()
    mod = load_numpy(E.append_block(base, E.render_numpy(act, forms), E.header_line(None)))
    c_block, h_block = E.render_c(act, forms, module)
    sources = {f"{module}.c": (GOLDEN / module / f"{module}.c").read_text() + c_block,
               f"{module}.h": E.insert_header((GOLDEN / module / f"{module}.h").read_text(),
                                              h_block, "eps > 0")}
    c = E.load_c_epsilon(sources, module, (OFF_GRID[name][0],))
    return mod, c, sources


@pytest.fixture(scope="module")
def leaky(private_cache):
    return _family("leaky_relu")


@pytest.fixture(scope="module")
def alpha(private_cache):
    return _family("alpha_relu")


def _reference(family, value, B, eps, sw):
    member = E.fixed_member(symbolic_activation(family), value)
    (res,) = analyze_regularised(derive_regularised(member), [B], repr(eps), repr(sw))
    return res


def _check(evaluate, family, values, points, digits=13.5):
    """``evaluate(B, p, eps, sw)`` at every (value, point) against the fixed member's
    reference (its own digits, at most ``digits``), or within 1e-15 absolute: lambda_M changes
    sign in slope (near slope = -1.3 at B = 37 it is -1.7e-3, a difference of O(1) parts)."""
    arr = np.array([(B, v, e, w) for v in values for B, e, w in points], dtype=float)
    got = evaluate(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    for i, (B, v, e, w) in enumerate(arr):
        res = _reference(family, float(v), int(B), float(e), float(w))
        if res.regime != "fixed point":  # the signal dies out: NaN, as the reference
            assert all(np.isnan(got[q][i]) for q in E.QUANTITIES), (B, v, e, w)
            continue
        for q in E.QUANTITIES:
            num = res.numbers[q]
            need = min(digits, num.digits) - 0.5
            ref = float(num.value)
            assert abs(got[q][i] - ref) <= max(10**-need * abs(ref), 1e-15), (
                q, B, v, e, w, got[q][i], ref)


@pytest.mark.parametrize("family", ["leaky_relu", "alpha_relu"])
def test_numpy_and_c_off_grid(leaky, alpha, family):
    """numpy, C fused and C single kernels at slopes / degrees not in the generation-time
    grid (slope = 1: the linear network; slope = -1.3, alpha = 0.6 near the E[phi'^2]
    divergence, alpha = 3) against the closed Tricomi forms of the fixed member."""
    mod, (all_eps, singles), _ = leaky if family == "leaky_relu" else alpha
    values = OFF_GRID[family][1][:1]
    _check(mod.all_eps, family, values, POINTS)
    _check(all_eps, family, values, POINTS)
    _check(lambda B, p, e, w: {q: singles[q](B, p, e, w) for q in E.QUANTITIES}, family,
           values, POINTS[:1])
    if family == "alpha_relu":
        # eps / sigma_w^2 = 8 at B = 4: sqrt(a) ~ 10^2, the r^(2 alpha) end at r = 0 needs
        # the rule's grading below r = 1 (1.5e-11 in gradient_rate without it)
        for fn in (mod.all_eps, all_eps):
            _check(fn, family, values, [(4, 2.0, 0.5)])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["leaky_relu", "alpha_relu"])
def test_off_grid_more(leaky, alpha, family):
    """The other off-grid values, and B = 1000, 5."""
    mod, (all_eps, _), _ = leaky if family == "leaky_relu" else alpha
    for fn in (mod.all_eps, all_eps):
        _check(fn, family, OFF_GRID[family][1][1:], POINTS)
        _check(fn, family, OFF_GRID[family][1][1:2], [(1000, 0.05, 1.0), (5, 0.2, 1.0)])


@pytest.mark.parametrize("family", ["leaky_relu", "alpha_relu"])
def test_broadcasting(leaky, alpha, family):
    """B (2, 1) x parameter (3,) x eps scalar -> (2, 3); each element equals the scalar call;
    the C kernels broadcast the same way and agree with numpy to 1e-13."""
    mod, (all_eps, singles), _ = leaky if family == "leaky_relu" else alpha
    B = np.array([[4.0], [64.0]])
    p = np.array(OFF_GRID[family][1])
    out = mod.all_eps(B, p, 0.1, 1.5)
    c = all_eps(B, p, 0.1, 1.5)
    assert set(out) == set(E.QUANTITIES)
    for q in E.QUANTITIES:
        assert out[q].shape == (2, 3) and out[q].dtype == np.float64
        assert c[q].shape == (2, 3)
        np.testing.assert_allclose(c[q], out[q], rtol=1e-13, atol=0)
    single = getattr(mod, "lambda_M_eps")(64, p[2], 0.1, 1.5)
    assert single.shape == () and float(single) == out["lambda_M"][1, 2]
    assert singles["lambda_M"](64.0, p[2], 0.1, 1.5) == c["lambda_M"][1, 2]
    # only eps / sigma_w^2 matters (s* and q* scale with sigma_w^2)
    a, b = mod.all_eps(8, p, 0.1, 1.0), mod.all_eps(8, p, 0.4, 2.0)
    np.testing.assert_allclose(b["s_star"], 4 * a["s_star"], rtol=1e-13)
    np.testing.assert_allclose(b["gradient_rate"], a["gradient_rate"], rtol=1e-13)


@pytest.mark.parametrize("family", ["leaky_relu", "alpha_relu"])
def test_eps_zero_is_the_family_module(leaky, alpha, family):
    mod, (all_eps, _), _ = leaky if family == "leaky_relu" else alpha
    B = np.array([4.0, 33.0, 1000.0])
    p = OFF_GRID[family][1][1]
    out, c = mod.all_eps(B, p, 0.0, 1.5), all_eps(B, p, None, 1.5)
    for q in ("c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate", "depth_scale",
              "max_trainable_depth"):
        assert np.array_equal(out[q], getattr(mod, q)(B, p)), q
        np.testing.assert_allclose(c[q], out[q], rtol=1e-14, atol=0)
    np.testing.assert_allclose(out["q_star"], 2.25 * mod.q_star(B, p), rtol=1e-15)
    # and the eps > 0 route tends to it as eps -> 0
    tiny = mod.all_eps(B, p, 1e-13, 1.5)
    for q in ("q_star", "c_star", "lambda_L", "lambda_M"):
        np.testing.assert_allclose(tiny[q], out[q], rtol=1e-9)


@pytest.mark.parametrize("family, bad, message", [
    ("leaky_relu", math.nan, "slope must be finite"),
    ("leaky_relu", math.inf, "slope must be finite"),
    ("alpha_relu", 0.5, "alpha must be finite and > 1/2"),
    ("alpha_relu", -1.0, "alpha must be finite and > 1/2"),
])
def test_parameter_outside_its_domain(leaky, alpha, family, bad, message):
    """numpy: ValueError naming the domain; C: NaN for that element only."""
    mod, (all_eps, _), _ = leaky if family == "leaky_relu" else alpha
    good = OFF_GRID[family][1][1]
    with pytest.raises(ValueError, match=message):
        mod.all_eps(8, [good, bad], 0.1)
    c = all_eps([8.0, 8.0], [good, bad], 0.1, 1.0)
    for q in E.QUANTITIES:
        assert np.isfinite(c[q][0]) and np.isnan(c[q][1]), q
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        mod.all_eps(8, good, -0.1)


def test_verification_refuses_a_wrong_block(leaky):
    """check_family_values is not a formality: values off by 1e-9 are refused."""
    mod = leaky[0]

    def off(B, p, e, w):
        return {k: v * (1 + 1e-9) for k, v in mod.all_eps(B, p, e, w).items()}

    with pytest.raises(VerificationError, match="agrees with the reference to only"):
        E.check_family_values(symbolic_activation("leaky_relu"), off, grid=(0.2,),
                              points=((8, 0.1, 1.0),))


def test_c_compiles_without_warnings(alpha, tmp_path):
    import subprocess

    from bnmft.codegen.jit import find_compiler

    for name, text in alpha[2].items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run([*find_compiler(), "-std=c99", "-O2", "-Wall", "-Wextra", "-c",
                           str(tmp_path / "alpha_relu_family.c"), "-o", str(tmp_path / "x.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_fixed_member_is_the_reference_activation():
    """The reference of each grid value is the registered member at that value."""
    member = E.fixed_member(symbolic_activation("alpha_relu"), 1.5)
    assert member.expr == activation("alpha_relu:1.5").expr


@pytest.mark.slow
@pytest.mark.parametrize("family, lang", [("leaky_relu", "numpy"), ("alpha_relu", "c")])
def test_cli_family_epsilon(tmp_path, family, lang):
    """The command line writes a verified family module; its header states the digits and
    the parameter grid; the default output (without --epsilon) is the golden file."""
    assert main(["codegen", family, "--lang", lang, "--epsilon", "--out", str(tmp_path),
                 "--module", "fam_e"]) == 0
    name = OFF_GRID[family][0]
    values = E.FAMILY_VERIFY_GRIDS[name]
    if lang == "numpy":
        text = (tmp_path / "fam_e.py").read_text()
        head = text.split('"""')[0]
        mod = load_numpy(text)
        assert mod.EPS_PARAMETERS == (name,)
        assert mod.EPS_VERIFIED_GRID == (name, values)
        assert min(mod.EPS_VERIFIED.values()) >= 12
    else:
        head = (tmp_path / "fam_e.h").read_text().split("*/")[0]
        assert (f"void fam_e_all_eps(size_t n, const double *B, const double *{name}, "
                "const double *eps,") in (tmp_path / "fam_e.h").read_text()
    assert "eps > 0 functions: >= " in head and f"{name} = " in head
