"""``bnmft export``: a standalone package of generated modules, installed into a fresh virtual
environment without SymPy, mpmath, scipy or bnmft, and checked against bnmft's numbers."""

from __future__ import annotations

import json
import subprocess
import venv

import mpmath
import pytest
from bnmft.codegen import CodegenError
from bnmft.codegen.export import ExportItem, render_package, write_package

from bnmft import pipeline
from bnmft.cli import main

BATCH = [4, 5, 8, 33, 1000, 10**6]


def test_render_is_reproducible_and_complete():
    items = [ExportItem(pipeline.derivation("relu"), "relu", {"q_star": float("inf")})]
    a = render_package(items, "pkg")
    b = render_package(items, "pkg")
    assert a == b
    assert set(a) == {"pyproject.toml", "README.md", "pkg/__init__.py", "pkg/loader.py",
                      "pkg/relu.py", "pkg/c/relu.c", "pkg/c/relu.h"}
    assert 'dependencies = ["numpy"]' in a["pyproject.toml"]
    assert "'q_star': 'exact'" in a["pkg/__init__.py"]
    with pytest.raises(CodegenError, match="two activations"):
        render_package(items * 2, "pkg")


def test_write_is_whole_and_refuses_foreign_folders(tmp_path):
    items = [ExportItem(pipeline.derivation("relu"), "relu", {})]
    files = render_package(items, "pkg")
    out = write_package(files, tmp_path / "out")
    assert (out / "pkg" / "c" / "relu.c").is_file()
    write_package(files, out)  # an earlier export is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(CodegenError, match="not a bnmft export"):
        write_package(files, foreign)
    assert (foreign / "notes.txt").read_text() == "keep"


def _fresh_environment(tmp_path, package) -> str:
    """A new virtual environment with numpy and the exported ``package`` only; its python."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    for args in (["numpy"], [str(package)]):
        subprocess.run([py, "-m", "pip", "install", "-q", *args], check=True,
                       capture_output=True, timeout=600)
    return py


def _run_json(py: str, script: str, tmp_path, timeout: int = 600):
    """``script`` run by the fresh environment's ``py`` (no inherited environment, cwd
    ``tmp_path``); the JSON it prints."""
    run = subprocess.run([py, "-c", script], check=True, capture_output=True, text=True,
                         cwd=tmp_path, timeout=timeout,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    return json.loads(run.stdout)


def test_cli_refuses_unsupported_activation(tmp_path, capsys):
    assert main(["export", "relu", "Heaviside(x - 0.5)", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Dirac" in err
    assert not (tmp_path / "t").exists()


def test_installs_and_runs_without_sympy(tmp_path):
    out = tmp_path / "pkg"
    assert main(["export", "relu", "leaky_relu:0.2", "--out", str(out)]) == 0
    py = _fresh_environment(tmp_path, out)
    script = (
        "import json, sys, bnmft_generated as g\n"
        f"B = {BATCH!r}\n"
        "out = {}\n"
        "for m in ('relu', 'leaky_relu_0_2'):\n"
        "    c = g.load_c(m)\n"
        "    fused = c.all(B)\n"
        "    out[m + ':all'] = {q: list(map(float, v)) for q, v in fused.items()}\n"
        "    for q in g.MODULES[m]:\n"
        "        out[m + ':' + q] = [list(map(float, getattr(getattr(g, m), q)(B))),\n"
        "                            list(map(float, getattr(c, q)(B)))]\n"
        "out['loaded'] = [k for k in ('sympy', 'mpmath', 'scipy', 'bnmft') if k in sys.modules]\n"
        "out['verified'] = g.VERIFIED\n"
        "print(json.dumps(out))\n")
    got = _run_json(py, script, tmp_path)
    assert got["loaded"] == []
    for spec, module in (("relu", "relu"), ("leaky_relu:0.2", "leaky_relu_0_2")):
        deriv = pipeline.derivation(spec)
        for name, q in deriv.closed.items():
            np_vals, c_vals = got[f"{module}:{name}"]
            for Bv, a, b in zip(BATCH, np_vals, c_vals):
                ref = mpmath.mpf(q.expr.evalf(30, subs={q.parameters[0]: Bv}))
                scale = max(abs(ref), mpmath.mpf(1e-300))
                assert abs(a - ref) <= 1e-13 * scale, (module, name, Bv, a, ref)
                assert abs(b - a) <= 1e-14 * scale, (module, name, Bv, a, b)
            for Bv, f, a in zip(BATCH, got[f"{module}:all"][name], np_vals):
                assert abs(f - a) <= 1e-14 * max(abs(a), 1e-300), (module, name, Bv, f, a)
        verified = got["verified"][module]
        assert all(v == "exact" or v >= 13 for v in verified.values()), verified


QUADRATURE_BATCH = [4, 5, 8, 32, 1000, 10**5, 10**6]


@pytest.mark.slow
def test_quadrature_modules_install_and_match_mpmath(tmp_path):
    """tanh and a kinked non-homogeneous phi (no closed forms): the exported numpy and C
    modules, in a fresh environment without SymPy, mpmath or bnmft, against bnmft's mpmath
    route at B = 4 ... 10^6; the README states the route and the verified accuracy."""
    from bnmft.codegen import quadrature as Q
    from bnmft.derive.activation import activation

    specs = {"tanh": "tanh", "Min(Max(x, -1), 1)": "Min_Max_x_1_1"}
    out = tmp_path / "pkg"
    assert main(["export", *specs, "--out", str(out)]) == 0
    readme = " ".join((out / "README.md").read_text().split())
    assert "Gauss-Legendre" in readme and "significant digits" in readme
    py = _fresh_environment(tmp_path, out)
    script = (
        "import json, sys, bnmft_generated as g\n"
        f"B = {QUADRATURE_BATCH!r}\n"
        "out = {}\n"
        f"for m in {list(specs.values())!r}:\n"
        "    c = g.load_c(m)\n"
        "    fused = c.all(B)\n"
        "    for q in g.MODULES[m]:\n"
        "        out[m + ':' + q] = [list(map(float, getattr(getattr(g, m), q)(B))),\n"
        "                            list(map(float, getattr(c, q)(B))),\n"
        "                            list(map(float, fused[q]))]\n"
        "out['loaded'] = [k for k in ('sympy', 'mpmath', 'scipy', 'bnmft') if k in sys.modules]\n"
        "print(json.dumps(out))\n")
    got = _run_json(py, script, tmp_path, timeout=900)
    assert got["loaded"] == []
    for spec, module in specs.items():
        ref = Q._reference(activation(spec), tuple(Q.VERIFY_BATCH_SIZES))
        for name, refs in ref.items():
            for route, values in zip(("numpy", "C", "fused"), got[f"{module}:{name}"]):
                for Bv, v in zip(QUADRATURE_BATCH, values):
                    r = refs[Q.VERIFY_BATCH_SIZES.index(Bv)]
                    err = abs(mpmath.mpf(v) - r) / max(abs(r), mpmath.mpf(1e-300))
                    assert err <= 1e-12, (module, name, route, Bv, v, r)


def test_render_non_integer_degree_package():
    """alpha_relu:1.5 (gamma ratios and 2F1 in its closed forms): the rendered package's numpy
    module carries the routines and matches bnmft.analyze (mpmath) at B = 4 ... 10^6."""
    import numpy as np
    from bnmft.codegen import load_numpy

    deriv = pipeline.derivation("alpha_relu:1.5")
    files = render_package([ExportItem(deriv, "alpha_relu_1_5", {})], "pkg")
    assert {"pkg/alpha_relu_1_5.py", "pkg/c/alpha_relu_1_5.c"} <= set(files)
    assert "static double bnmft_gamma_ratio_1_2(double x)" in files["pkg/c/alpha_relu_1_5.c"]
    mod = load_numpy(files["pkg/alpha_relu_1_5.py"], "alpha_relu_1_5")
    refs = pipeline.analyze(deriv, BATCH, digits=16)
    for name in deriv.closed:
        got = getattr(mod, name)(np.array(BATCH, dtype=float))
        for v, res in zip(got, refs):
            r = res.numbers[name].value
            assert abs(mpmath.mpf(float(v)) - r) <= 1e-13 * abs(r), (name, res.batch_size)


@pytest.mark.slow
def test_non_integer_degree_installs_and_matches_mpmath(tmp_path):
    """``bnmft export alpha_relu:1.5``, installed into a fresh environment without SymPy,
    mpmath or bnmft: numpy, C and fused values against bnmft.analyze (mpmath, 16 digits)."""
    out = tmp_path / "pkg"
    assert main(["export", "alpha_relu:1.5", "--out", str(out)]) == 0
    py = _fresh_environment(tmp_path, out)
    script = (
        "import json, sys, bnmft_generated as g\n"
        f"B = {QUADRATURE_BATCH!r}\n"
        "m, c = g.alpha_relu_1_5, g.load_c('alpha_relu_1_5')\n"
        "fused = c.all(B)\n"
        "out = {q: [list(map(float, getattr(m, q)(B))), list(map(float, getattr(c, q)(B))),\n"
        "           list(map(float, fused[q]))] for q in g.MODULES['alpha_relu_1_5']}\n"
        "out['loaded'] = [k for k in ('sympy', 'mpmath', 'scipy', 'bnmft') if k in sys.modules]\n"
        "print(json.dumps(out))\n")
    got = _run_json(py, script, tmp_path)
    assert got.pop("loaded") == []
    refs = pipeline.analyze("alpha_relu:1.5", QUADRATURE_BATCH, digits=16)
    for name, routes in got.items():
        for route, values in zip(("numpy", "C", "fused"), routes):
            for v, res in zip(values, refs):
                r = res.numbers[name].value
                assert abs(mpmath.mpf(v) - r) <= 1e-13 * max(abs(r), mpmath.mpf(1e-300)), (
                    name, route, res.batch_size, v, r)


@pytest.mark.slow  # about 1 min
def test_export_with_epsilon(tmp_path, monkeypatch):
    """``bnmft export relu --epsilon``: the package's numpy ``NAME_eps`` functions and its
    ctypes-loaded C kernels ``relu_NAME_eps`` against bnmft's eps > 0 analysis (closed Tricomi
    forms, an independent route), NaN without a fixed point, eps = 0 against the eps = 0
    kernels, the README's statement; without ``--epsilon`` there are none."""
    import importlib

    import numpy as np
    from bnmft.codegen.epsilon import QUANTITIES
    from bnmft.derive.activation import activation
    from bnmft.derive.epsilon import derive_regularised
    from bnmft.numerics.epsilon import analyze_regularised

    from bnmft.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "pkg"
    assert main(["export", "relu", "--epsilon", "--out", str(out), "--package", "epsx"]) == 0
    assert "NAME_eps(B, eps, sigma_w=1.0)" in (out / "README.md").read_text()
    monkeypatch.syspath_prepend(str(out))
    pkg = importlib.import_module("epsx")
    m, c = pkg.relu, pkg.load_c("relu")
    assert c.eps_names == QUANTITIES
    B = np.array([4.0, 37.0, 1e6])
    eps, sw = np.array([1e-3, 0.1, 0.25]), 1.5
    fused = c.all_eps(B, eps, sw)
    rd = derive_regularised(activation("relu"))
    for i in range(len(B)):
        (res,) = analyze_regularised(rd, [int(B[i])], repr(float(eps[i])), repr(sw))
        for q in QUANTITIES:
            want = float(res.numbers[q].value)
            rtol = max(1e-12, 10.0 ** (0.5 - res.numbers[q].digits))
            numpy_value = getattr(m, f"{q}_eps")(B, eps, sw)[i]
            c_value = getattr(c, f"{q}_eps")(B, eps, sw)[i]
            for got in (numpy_value, c_value, fused[q][i]):
                assert abs(got - want) <= rtol * abs(want), (q, B[i], got, want)
    dead = c.all_eps([8.0], [2.0], [0.5])
    assert all(np.isnan(v[0]) for v in dead.values())
    np.testing.assert_allclose(c.gradient_rate_eps([8.0, 64.0], 0.0),
                               c.gradient_rate([8.0, 64.0]), rtol=1e-13)
    assert main(["export", "relu", "--out", str(tmp_path / "plain"), "--package", "plainx"]) == 0
    monkeypatch.syspath_prepend(str(tmp_path / "plain"))
    plain = importlib.import_module("plainx").load_c("relu")
    assert plain.eps_names == ()
    with pytest.raises(AttributeError):
        _ = plain.q_star_eps


@pytest.mark.slow
def test_export_family_with_epsilon(tmp_path, monkeypatch):
    """``bnmft export leaky_relu --epsilon`` (the family module, slope an argument): the
    package's numpy ``NAME_eps(B, slope, eps, sigma_w)`` and its ctypes-loaded C kernels, in a
    fresh environment without SymPy, mpmath or bnmft, against bnmft's eps > 0 analysis of the
    fixed members (closed Tricomi forms) at slopes off the generation-time grid; the README
    states the call."""
    from bnmft.codegen.epsilon import QUANTITIES, fixed_member
    from bnmft.derive.activation import symbolic_activation
    from bnmft.derive.epsilon import derive_regularised
    from bnmft.numerics.epsilon import analyze_regularised

    out = tmp_path / "pkg"
    assert main(["export", "leaky_relu", "--epsilon", "--out", str(out), "--package",
                 "fepsx"]) == 0
    assert "NAME_eps(B, slope, eps, sigma_w=1.0)" in (out / "README.md").read_text()
    module = "leaky_relu_symbolic_slope"
    B, slope, eps, sw = [4.0, 37.0, 37.0], [-0.75, 0.375, 1.5], [1e-3, 0.1, 0.02], 1.5
    py = _fresh_environment(tmp_path, out)
    script = (
        "import json, sys, fepsx as g\n"
        f"m, c = g.{module}, g.load_c({module!r})\n"
        f"args = ({B!r}, {slope!r}, {eps!r}, {sw!r})\n"
        "fused = c.all_eps(*args)\n"
        "out = {q: [list(map(float, getattr(m, q + '_eps')(*args))),\n"
        "           list(map(float, getattr(c, q + '_eps')(*args))),\n"
        "           list(map(float, fused[q]))] for q in c.eps_names}\n"
        "out['arguments'] = list(c.eps_arguments)\n"
        "out['loaded'] = [k for k in ('sympy', 'mpmath', 'scipy', 'bnmft') if k in sys.modules]\n"
        "print(json.dumps(out))\n")
    got = _run_json(py, script, tmp_path)
    assert got.pop("loaded") == []
    assert got.pop("arguments") == ["slope"]
    assert tuple(got) == QUANTITIES
    family = symbolic_activation("leaky_relu")
    for i in range(len(B)):
        rd = derive_regularised(fixed_member(family, slope[i]))
        (res,) = analyze_regularised(rd, [int(B[i])], repr(eps[i]), repr(sw))
        for q in QUANTITIES:
            want = float(res.numbers[q].value)
            rtol = max(1e-13, 10.0 ** (0.5 - res.numbers[q].digits))
            for route, values in zip(("numpy", "C", "fused"), got[q]):
                assert abs(values[i] - want) <= rtol * abs(want), (q, route, i, values[i], want)
