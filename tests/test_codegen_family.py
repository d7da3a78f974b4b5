"""Family modules: closed forms with the family parameter (leaky_relu's ``slope``,
alpha_relu's ``alpha``) as an array argument of every generated function (numpy) and kernel
(C), and the special-function routines with run-time parameters that alpha needs.

References: ``bnmft.analyze`` (mpmath, 16 digits) of the closed forms derived at each fixed
parameter value (``activation("leaky_relu:slope=-3/10")``), independent of the symbolic
family derivation the module is printed from; mpmath's ``gamma``, ``gammaprod`` and
``hyp2f1`` for the routines. The rendered files are compared byte for byte with
tests/golden/leaky_relu_family/ and tests/golden/alpha_relu_family/ (regenerate with
``pytest tests/test_codegen_family.py --update-golden`` and review the diff).
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

#: (B, slope) pairs off the verification grid (which codegen checks at generation time),
#: the last four near the linear network (slope = 1).
PAIRS = [(4, -0.7), (6, 0.25), (50, -0.05), (3000, 1.5), (250000, -2.5), (10**6, 0.125),
         (7, 0.9), (1000, 1.01), (65536, 1.0), (10**6, 0.999999)]
RTOL = 1e-12
#: leaky_relu family against the fixed-slope references (every slope, slope = 1 included).
LEAKY_RTOL = 1e-14


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
                    assert err < LEAKY_RTOL, (lang, how, name, pair, float(v), err)


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
    slope[:40] = 1 + rng.uniform(-1e-3, 1e-3, 40)  # near the linear phi too
    gamma = rng.uniform(0.2, 5, 200)
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


#: A dense slope grid: the points named in the README, a uniform grid and 1 +- 10^-k (the
#: linear network, where the Horner form about slope = -1 lost up to 6 digits).
DENSE_SLOPES = sorted({-10.0, -2.0, -1.0, -0.999, 0.0, 0.9, 0.99, 0.999999, 1.0, 1.01, 2.0, 10.0,
                       *np.round(np.linspace(-3, 3, 25), 6),
                       *(1 + s * 10.0**-k for k in range(1, 9) for s in (-1, 1))})
DENSE_B = sorted({4, 5, 6, 7, 8, 10, 17, 63, 64, 100, 1000, 12345, 10**5, 654321, 10**6,
                  *np.round(np.geomspace(4, 1e6, 12))})
#: Quantities that change sign as functions of slope (c_star near slope = 1 - O(1/B),
#: lambda_M near -1 + O(1/B)): there the value cancels between its two parts.
SIGN_CHANGING = ("c_star", "lambda_M")


def test_dense_slope_grid_against_50_digit_forms(leaky):
    """Every function (numpy, C single and fused) on DENSE_B x DENSE_SLOPES against the
    derived closed forms (not the printed rewrite) evaluated by mpmath at 50 digits: relative
    error <= 1e-14; for SIGN_CHANGING quantities error <= 1e-14 (|ref| + scale), with scale =
    (u^2 |f(B, 1)| + v^2 |f(B, -1)|)/(u^2 + v^2), u = (1 + slope)/2, v = (1 - slope)/2, the
    size of the linear and |x| parts the value is made of (an absolute tolerance at the zero)."""
    import sympy as sp

    deriv, mods = leaky
    b, s = (np.array(a, dtype=float).ravel() for a in np.meshgrid(DENSE_B, DENSE_SLOPES))
    got = {}
    for lang, mod in mods.items():
        got[lang] = {n: getattr(mod, n)(b, s) for n in deriv.closed}
        if lang == "c":
            got["c fused"] = mod.all(b, s)
    for name, q in deriv.closed.items():
        syms = sorted(q.expr.free_symbols, key=lambda x: x.name != "B")
        f = sp.lambdify(syms, q.expr, "mpmath")
        args = {"B": None, "slope": None}

        def ref(bb, ss):
            args.update(B=mpmath.mpf(bb), slope=mpmath.mpf(ss))
            return mpmath.mpf(f(*(args[x.name] for x in syms)))

        with mpmath.workdps(50):
            want = [ref(bb, ss) for bb, ss in zip(b, s)]
            ends = {bb: (abs(ref(bb, 1)), abs(ref(bb, -1))) for bb in DENSE_B}
            for i, (bb, ss) in enumerate(zip(b, s)):
                tol = 1e-14 * abs(want[i])
                if name in SIGN_CHANGING:
                    u2, v2 = ((1 + mpmath.mpf(ss)) / 2) ** 2, ((1 - mpmath.mpf(ss)) / 2) ** 2
                    lin, even = ends[bb]
                    tol += 1e-14 * (u2 * lin + v2 * even) / (u2 + v2)
                for how, vals in got.items():
                    err = abs(mpmath.mpf(float(vals[name][i])) - want[i])
                    assert err <= tol, (how, name, bb, ss, float(vals[name][i]), float(want[i]))
    assert len(b) >= 1000


def test_basis_rewrite_is_exact_and_only_in_u2_v2(leaky):
    """The printed forms (``expand_about``) equal the derived ones at points other than those
    codegen checks, contain slope only through u^2 and v^2, and a wrong rewrite is refused."""
    import sympy as sp

    from bnmft.codegen import CodegenError
    from bnmft.codegen.closed_forms import _checked, expand_about, family_parameters

    deriv, _ = leaky
    params = family_parameters(deriv)
    slope = params[0].symbol
    u, v = sp.Rational(1, 2) + slope / 2, sp.Rational(1, 2) - slope / 2
    U, V = sp.symbols("U V")
    for name, q in deriv.closed.items():
        new = expand_about(q.expr, params)
        batch = {x: sp.Integer(37) for x in q.expr.free_symbols if x.name == "B"}
        for at in (sp.Rational(-13, 7), sp.Rational(999, 1000), sp.Integer(1), sp.Integer(10)):
            subs = {slope: at, **batch}
            x, y = (e.xreplace(subs).evalf(50) for e in (new, q.expr))
            assert abs(x - y) <= sp.Float(10, 50) ** -40 * max(abs(y), 1), (name, at)
        if len(q.expr.free_symbols) > 1:
            rest = new.xreplace({u**2: U, v**2: V})
            assert slope not in rest.free_symbols, name
    bad = deriv.closed["c_star"].expr
    with pytest.raises(CodegenError, match="rewrite"):
        _checked(bad * (1 + sp.Rational(1, 10**30)), bad, slope)


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


@pytest.mark.parametrize("filename", [f"{f}_family.{ext}" for f in ("leaky_relu", "alpha_relu")
                                      for ext in ("py", "c", "h")])
def test_golden(leaky, alpha, filename, request):
    """The rendering (no verification record: that depends on the platform's libm)."""
    deriv, _ = leaky if filename.startswith("leaky") else alpha
    lang = "numpy" if filename.endswith(".py") else "c"
    module = filename.rsplit(".", 1)[0]
    fresh = generate(deriv, lang=lang, module=module)[filename]
    folder = GOLDEN / module
    if request.config.getoption("--update-golden"):
        write_sources({filename: fresh}, folder)
        return
    assert fresh.encode("utf-8") == (folder / filename).read_bytes(), (
        f"{filename} differs from the golden copy; if intended, run pytest --update-golden")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bnmft", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=600)


@pytest.mark.slow  # about 40 s
@needs_cc
def test_cli_writes_a_verified_family_module(tmp_path):
    run = _cli("codegen", "leaky_relu", "--lang", "numpy", "--out", "gen", "--module", "lk",
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "gen" / "lk.py").read_text()
    head = [ln for ln in text.splitlines()[:4] if ln.startswith("# Verified: >= ")]
    assert head and "times slope = -1.0, -0.3, 0.0, 0.01, 0.5, 0.99, 1.0, 2.0" in head[0]
    mod = load_numpy({"lk.py": text}, "lk")
    assert min(mod.VERIFIED.values()) >= 12
    assert mod.VERIFIED_SLOPE == (-1.0, -0.3, 0.0, 0.01, 0.5, 0.99, 1.0, 2.0)
    assert min(mod.VERIFIED.values()) >= 14
    assert mod.c_star(np.array([4.0, 64.0]), 0.2).shape == (2,)
    fixed = _cli("codegen", "leaky_relu:0.2", "--lang", "numpy", "--out", "gen", "--module",
                 "lk2", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "def c_star(B, *, gamma=None):" in (tmp_path / "gen" / "lk2.py").read_text()


# -- alpha_relu: the degree as an argument ---------------------------------------------------

#: (B, alpha) pairs off the verification grid.
ALPHA_PAIRS = [(4, 0.6), (7, 1.25), (50, 0.9), (3000, 2.5), (250000, 3.75), (10**6, 0.625)]


@pytest.fixture(scope="module")
def alpha():
    deriv = derive(symbolic_activation("alpha_relu"))
    mods = {"numpy": load_numpy(generate(deriv, lang="numpy", module="ar_fam"), "ar_fam")}
    if shutil.which("cc"):
        mods["c"] = load_c(generate(deriv, lang="c", module="ar_fam"), "ar_fam")
    return deriv, mods


def test_alpha_values_against_fixed_degree_references(alpha):
    deriv, mods = alpha
    refs = {}
    for b, a in ALPHA_PAIRS:
        q = Fraction(a)
        (res,) = bnmft.analyze(activation(f"alpha_relu:alpha={q.numerator}/{q.denominator}"),
                               [b], digits=16)
        refs[(b, a)] = {n: num.value for n, num in res.numbers.items()}
    b = np.array([p[0] for p in ALPHA_PAIRS], dtype=float)
    a = np.array([p[1] for p in ALPHA_PAIRS])
    for lang, mod in mods.items():
        fused = mod.all(b, a) if lang == "c" else {}
        for name in deriv.closed:
            got = {"single": getattr(mod, name)(b, a), **({"fused": fused[name]} if fused else {})}
            for how, vals in got.items():
                for pair, v in zip(ALPHA_PAIRS, vals):
                    err = _relerr(v, refs[pair][name])
                    assert err < RTOL, (lang, how, name, pair, float(v), err)


def test_alpha_broadcasting_domain_and_input_scale(alpha):
    _, mods = alpha
    B = np.array([[4.0], [64.0], [1e5]])
    a = np.array([0.75, 1.0, 2.5, 4.0])
    py = mods["numpy"]
    for lang, mod in mods.items():
        for name in ("q_star", "lambda_G", "c_star", "gradient_rate"):
            out = getattr(mod, name)(B, a)
            assert out.shape == (3, 4) and np.all(np.isfinite(out)), (lang, name)
        g = np.array([0.5, 1.0, 2.0, 3.0])
        np.testing.assert_allclose(mod.q_star(B, a, gamma=g), g ** (2 * a) * py.q_star(B, a),
                                   rtol=1e-14)
        np.testing.assert_allclose(mod.c_star(B, a, gamma=g), py.c_star(B, a), rtol=1e-14)
    # alpha > 0 for every quantity that depends on alpha, alpha > 1/2 where E[phi'^2] enters
    with pytest.raises(ValueError, match="alpha > 1/2"):
        py.gradient_rate(10.0, np.array([0.4, 1.0]))
    with pytest.raises(ValueError, match="alpha > 0"):
        py.c_star(10.0, 0.0)
    assert py.c_star(10.0, 0.3) > 0  # 0 < alpha <= 1/2: c_star is defined
    if "c" in mods:
        c = mods["c"]
        got = c.all(np.full(3, 10.0), np.array([0.4, 0.0, 1.0]))
        assert np.isnan(got["gradient_rate"][:2]).all() and np.isfinite(got["gradient_rate"][2])
        assert np.isnan(got["c_star"][1]) and np.isfinite(got["c_star"][0])
        assert np.isnan(c.depth_scale(10.0, 0.5)) and np.isnan(c.q_star(10.0, -1.0))
        B2 = np.geomspace(4, 1e6, 40)
        a2 = np.linspace(0.51, 5.0, 40)
        for name in py.__all__:
            np.testing.assert_allclose(getattr(c, name)(B2, a2), getattr(py, name)(B2, a2),
                                       rtol=1e-13, err_msg=name)


def _routines(lang):
    """The run-time routines as callables: through a spec whose functions are them."""
    import sympy as sp

    from bnmft.codegen import Argument, FunctionSpec, ModuleSpec, render_module
    from bnmft.derive.symbols import B

    a_, b_, c_ = sp.symbols("pa pb pc", real=True)
    args = tuple(Argument(s, s.name, s.name) for s in (a_, b_, c_))

    def spec(name, expr):
        return FunctionSpec(name=name, arguments=(Argument(B, "B", "x or z"), *args),
                            expr=expr, summary=f"{name}.", math=(("Formula", str(expr)),),
                            provenance="tests", domain="see the test")

    mspec = ModuleSpec(name="rt_routines", title="run-time routines", parameters=args,
                       functions=(spec("g", sp.gamma(a_)),
                                  spec("r", sp.RisingFactorial(B, a_, evaluate=False)),
                                  spec("h", sp.hyper([a_, b_], [c_], B))))
    src = render_module(mspec, lang=lang)
    return load_numpy(src, "rt_routines") if lang == "numpy" else load_c(src, "rt_routines")


@pytest.mark.parametrize("lang", ["numpy", pytest.param("c", marks=needs_cc)])
def test_runtime_routines_against_mpmath(lang):
    mod = _routines(lang)
    zero = np.zeros(1)
    t = np.array([1e-3, 0.275, 0.5, 1.0, 1.5, 2.0, 2.75, 5.25, 10.5, 33.3, 100.25, 170.5])
    with mpmath.workdps(40):
        want = [mpmath.gamma(mpmath.mpf(v)) for v in t]
    got = mod.g(0 * t, t, 0 * t, 0 * t)
    assert max(_relerr(g, w) for g, w in zip(got, want)) < 1e-14
    assert np.isnan(mod.g(zero, np.array([0.0, -1.5, np.nan]), zero, zero)).all()
    x = np.array([2.5, 2.5, 3.0, 17.0, 31.5, 32.0, 500.5, 5e5 + 0.5, 1e12, 2.5, 40.0, 1e6])
    a = np.array([0.55, 4.5, 1.25, -0.75, 2.25, -30.5, 3.0, 4.5, 0.75, -1.25, -35.25, 1e-8])
    with mpmath.workdps(60):
        want = [mpmath.gammaprod([mpmath.mpf(u) + mpmath.mpf(v)], [mpmath.mpf(u)])
                for u, v in zip(x, a)]
    got = mod.r(x, a, 0 * a, 0 * a)
    assert max(_relerr(g, w) for g, w in zip(got, want)) < 1e-13
    assert np.isnan(mod.r(np.array([0.0, -2.0, 3.0]), np.array([1.0, 1.0, np.inf]), zero,
                          zero)).all()
    z = np.array([1 / 9, -1 / 9, 1e-4, 0.3, -0.5, 1 / 81, 0.0, 1 / 9, 1 / 25])
    pa = np.array([-0.275, -2.0, 1.7, -0.25, 2.5, -1.375, 3.0, -2.25, 0.5])
    pb = np.array([-0.275, -2.5, -0.3, 4.75, -3.5, -1.375, 1.0, 0.2, -2.75])
    pc = np.array([0.5, 1.5, 0.5, 1.5, 0.25, 1.5, 0.5, 1.5, 1.5])
    with mpmath.workdps(40):
        want = [mpmath.hyp2f1(*(mpmath.mpf(v) for v in row)) for row in zip(pa, pb, pc, z)]
    got = mod.h(z, pa, pb, pc)
    assert max(_relerr(g, w) for g, w in zip(got, want)) < 1e-14
    assert np.isnan(mod.h(np.array([0.6, -0.51, np.nan]), np.ones(3), np.ones(3),
                          np.ones(3))).all()


@pytest.mark.slow  # about 40 s
def test_cli_alpha_relu_family(tmp_path):
    run = _cli("codegen", "alpha_relu", "--lang", "numpy", "--out", "gen", "--module", "ar",
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    mod = load_numpy({"ar.py": (tmp_path / "gen" / "ar.py").read_text()}, "ar")
    assert mod.VERIFIED_ALPHA == (0.55, 0.75, 1.0, 1.5, 2.0, 3.0, 4.5)
    assert min(mod.VERIFIED.values()) >= 12
    bad = _cli("codegen", "alpha_relu", "--gamma", "2", "--lang", "numpy", "--out", "gen",
               "--module", "ar2", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


@pytest.mark.slow  # about 40 s
@needs_cc
def test_export_family_package(tmp_path, monkeypatch):
    """``bnmft export leaky_relu relu``: the family module (slope as an argument) next to a
    fixed one; the package's numpy functions and its ctypes-loaded C kernels, imported from
    the written folder, against the fixed-slope references and each other."""
    from bnmft.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "pkg"
    assert main(["export", "leaky_relu", "relu", "--out", str(out), "--package", "famx"]) == 0
    monkeypatch.syspath_prepend(str(out))
    import importlib

    pkg = importlib.import_module("famx")
    fam = pkg.leaky_relu_symbolic_slope
    assert min(pkg.VERIFIED["leaky_relu_symbolic_slope"].values()) >= 12
    c = pkg.load_c("leaky_relu_symbolic_slope")
    assert c.arguments == ("slope",) and c.params == ("gamma",)
    B = np.array([4.0, 50.0, 3000.0])
    s = np.array([-0.7, 0.25, 1.5])
    fused = c.all(B, s)
    for name in fam.__all__:
        want = getattr(fam, name)(B, s)
        np.testing.assert_allclose(getattr(c, name)(B, s), want, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(fused[name], want, rtol=1e-13, err_msg=name)
    np.testing.assert_allclose(c.q_star(B, s, gamma=2.0), 4 * fam.q_star(B, s), rtol=1e-15)
    q = Fraction(0.25)
    (res,) = bnmft.analyze(activation(f"leaky_relu:slope={q.numerator}/{q.denominator}"), [50],
                           digits=16)
    assert _relerr(fam.c_star(50.0, 0.25), res.numbers["c_star"].value) < RTOL
    relu = pkg.load_c("relu")
    assert relu.arguments == () and relu.c_star(np.array([8.0])).shape == (1,)
    with pytest.raises(TypeError):
        c.c_star(B)
