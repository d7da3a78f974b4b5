"""Tests of the codegen stage: generated numpy module and C kernels.

Values are checked against 40-digit SymPy evaluation of the derived expressions and against
formulas typed here independently (arc-cosine kernel), at batch sizes up to 10**6 where
float64 cancellation would show. The generated relu files are compared byte for byte with
the golden copies in tests/golden/relu/; after an intended change of the generated text,
regenerate them with

    python -m pytest tests/test_codegen.py --update-golden

and review the diff.
"""

from __future__ import annotations

import dataclasses
import ast
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

import bnmft
from bnmft.codegen import (
    Argument,
    CodegenError,
    Constant,
    FunctionSpec,
    ModuleSpec,
    generate,
    jit,
    load_c,
    load_numpy,
    render_module,
    write_sources,
)
from bnmft.codegen.files import atomic_write_text
from bnmft.derive.activation import activation
from bnmft.derive.bsb1 import TRAINABLE_DEPTH_FACTOR
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B

GOLDEN = Path(__file__).parent / "golden" / "relu"
BATCH_SIZES = [4, 5, 6, 7, 8, 10, 16, 32, 64, 100, 1000, 12345, 10**5, 10**6]
RTOL = 1e-13
RELU_QUANTITIES = [
    "q_star", "c_star", "lambda_G", "lambda_L", "lambda_M",
    "gradient_rate", "depth_scale", "max_trainable_depth",
]  # fmt: skip
CC = shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """Point the bnmft cache at a temporary directory (never the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNMFT_CACHE_DIR", str(tmp_path_factory.mktemp("bnmft-cache")))
        yield


@pytest.fixture(scope="module")
def relu():
    return derive(activation("relu"))


@pytest.fixture(scope="module")
def relu_sources(relu):
    sources = generate(relu.closed, lang="numpy", module="relu", activation_name="relu")
    sources.update(generate(relu.closed, lang="c", module="relu", activation_name="relu"))
    return sources


@pytest.fixture(scope="module")
def relu_numpy(relu_sources):
    return load_numpy(relu_sources, "relu")


@pytest.fixture(scope="module")
def relu_c(relu_sources):
    if CC is None:
        pytest.skip("no C compiler (cc) on PATH")
    return load_c(relu_sources, "relu")


@pytest.fixture(params=["numpy", "c"])
def backend(request):
    """Loader for one backend: ``load(derivation, module) -> object with one callable per
    quantity``."""
    if request.param == "c" and CC is None:
        pytest.skip("no C compiler (cc) on PATH")

    def load(deriv, module):
        sources = generate(deriv, lang=request.param, module=module)
        return load_c(sources, module) if request.param == "c" else load_numpy(sources, module)

    return load


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache, and a counter of C compilations into it."""
    monkeypatch.setenv("BNMFT_CACHE_DIR", str(tmp_path / "cache"))
    builds = []
    real = jit._compile

    def counting(*args, **kwargs):
        builds.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(jit, "_compile", counting)
    return tmp_path / "cache", builds


# -- references -------------------------------------------------------------------------


@functools.cache
def reference(expr: sp.Expr, b: int) -> float:
    """``expr`` at ``B = b`` from 40-digit SymPy evaluation, rounded once to float64."""
    if expr == sp.oo:
        return math.inf
    return float(expr.evalf(40, subs={B: sp.Integer(b)}))


def assert_matches(got, expected, what: str) -> None:
    """Relative RTOL; exact equality where the reference is 0 or infinite."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == (len(expected),), what
    for b, g, e in zip(BATCH_SIZES, got, expected):
        if e == 0 or math.isinf(e):
            assert g == e, f"{what} at B={b}: {g!r} != {e!r}"
        else:
            assert abs(g / e - 1) <= RTOL, f"{what} at B={b}: {g!r} vs {e!r} ({g / e - 1:.2e})"


def kernel_J(b):
    """Arc-cosine kernel J(c) = (sqrt(1 - c^2) + (pi - acos c) c)/pi at c = -1/(b - 1)."""
    c = -1 / (mpmath.mpf(b) - 1)
    return (mpmath.sqrt(1 - c**2) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi


def kernel_Jp(b):
    """J'(c) = (pi - acos c)/pi at c = -1/(b - 1)."""
    c = -1 / (mpmath.mpf(b) - 1)
    return (mpmath.pi - mpmath.acos(c)) / mpmath.pi


# -- golden files, determinism, headers --------------------------------------------------


@pytest.mark.parametrize("filename", ["relu.py", "relu.c", "relu.h"])
def test_golden(relu_sources, filename, request):
    fresh = relu_sources[filename]
    if request.config.getoption("--update-golden"):
        write_sources({filename: fresh}, GOLDEN)
        return
    golden = GOLDEN / filename
    assert golden.exists(), f"missing {golden}; create it with --update-golden"
    assert fresh.encode("utf-8") == golden.read_bytes(), (
        f"{filename} differs from {golden}; if intended, run pytest --update-golden"
    )


def test_generation_is_deterministic(relu, relu_sources):
    again = generate(list(relu.closed.values()), lang="c", module="relu", activation_name="relu")
    again.update(generate(dict(relu.closed), lang="numpy", module="relu", activation_name="relu"))
    assert again == relu_sources
    # a whole Derivation adds the input scale gamma (tests/test_codegen_scale.py)
    whole = generate(relu, lang="numpy", module="relu")
    assert whole == generate(relu, lang="numpy", module="relu")
    assert "def q_star(B, *, gamma=None):" in whole["relu.py"]


def test_generation_does_not_depend_on_hash_seed():
    """Closed forms and the shipped moment forms: same bytes under two hash seeds."""
    script = (
        "import hashlib; from bnmft.derive.activation import activation; "
        "from bnmft.derive.derivation import derive; from bnmft.codegen import generate; "
        "d = derive(activation('leaky_relu:0.2')); h = hashlib.sha256(); "
        "[h.update(t.encode()) for lang in ('c', 'numpy') "
        "for _, t in sorted(generate(d, lang=lang, module='m').items())]; "
        "from bnmft.codegen.moment_forms import render_moment_forms; "
        "h.update(render_moment_forms().encode()); print(h.hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_headers_name_generator_activation_and_source_hash(relu, relu_sources):
    canonical = "".join(f"{n}={sp.srepr(relu.closed[n].expr)}\n" for n in sorted(relu.closed))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    for name, text in relu_sources.items():
        head = "\n".join(text.splitlines()[:6])
        assert f"bnmft {bnmft.__version__}" in head, name
        assert "DO NOT EDIT" in head, name
        assert "Activation: relu" in head, name
        assert digest[:16] in head, name
    other = generate(derive(activation("linear")), lang="c", module="relu")
    assert digest[:16] not in other["relu.c"]


def test_docstrings_state_formula_provenance_and_domain(relu, relu_numpy):
    for name, q in relu.closed.items():
        doc = getattr(relu_numpy, name).__doc__
        assert "Provenance:" in doc and q.provenance.theorem in " ".join(doc.split())
        assert "Valid for:" in doc and "B >= 4" in doc
        assert str(q.compact) in " ".join(doc.split())


def test_depth_docs_state_the_derivation_factor(relu, relu_numpy):
    """depth_scale and max_trainable_depth state their definition from the gradient rate, with
    the factor of derive.bsb1 (one place), and only after checking the expressions obey it."""
    doc = " ".join(relu_numpy.max_trainable_depth.__doc__.split())
    assert f"max_trainable_depth = {TRAINABLE_DEPTH_FACTOR}*depth_scale" in doc
    assert f"{TRAINABLE_DEPTH_FACTOR}/log(gradient_rate)" in doc
    assert "depth_scale = xi = 1/log(gradient_rate)" in " ".join(
        relu_numpy.depth_scale.__doc__.split()
    )
    q = relu.closed["max_trainable_depth"]
    rate = relu.closed["gradient_rate"].expr
    wrong = dataclasses.replace(q, expr=(TRAINABLE_DEPTH_FACTOR - 1) / sp.log(rate))
    quantities = {**relu.closed, "max_trainable_depth": wrong}
    with pytest.raises(CodegenError, match="max_trainable_depth is not") as err:
        generate(quantities, lang="numpy", module="relu", activation_name="relu")
    assert "\n" not in str(err.value)
    without_rate = {n: v for n, v in quantities.items() if n != "gradient_rate"}
    text = generate(without_rate, lang="c", module="m", activation_name="relu")["m.h"]
    assert "Definition:" not in text  # nothing to check against, nothing stated


# -- module specs: every module goes through render_module --------------------------------

_a, _c = sp.Symbol("alpha", real=True), sp.Symbol("E[c]", real=True)
_ARG_A = Argument(_a, "a", "the scale alpha")
_ARG_C = Argument(_c, "c", "the shift E[c]")


def _function(name, args, expr, **changes):
    fields = dict(
        name=name,
        arguments=(Argument(B, "B", "batch size"), *args),
        expr=expr,
        summary=f"{name}, a test function.",
        math=(("Formula", str(expr)),),
        provenance="typed in tests/test_codegen.py",
        domain="B >= 4",
    )
    return FunctionSpec(**{**fields, **changes})


def _toy_module(**changes):
    fields = dict(
        name="toy",
        title="Two hand-written functions",
        functions=(
            _function("scaled", (_ARG_A,), _a * sp.log(1 + 1 / B)),
            _function("shifted", (_ARG_A, _ARG_C), _a * B / (B - 1) + _c),
            _function("three", (_ARG_A,), sp.Integer(3)),
        ),
        header=("Test module",),
        description=("A second paragraph of the module documentation.",),
        constants=(
            Constant("LABEL", "toy"),
            Constant("TABLE", ((1, 2), (3,)), comments=("first row", "second row"), public=True),
        ),
    )
    return ModuleSpec(**{**fields, **changes})


def test_module_spec_prints_a_numpy_module_of_several_arguments():
    sources = render_module(_toy_module(), lang="numpy")
    assert list(sources) == ["toy.py"]
    text = sources["toy.py"]
    assert render_module(_toy_module(), lang="numpy") == sources  # deterministic
    mod = load_numpy(sources, "toy")
    assert mod.__all__ == ["TABLE", "scaled", "shifted", "three"]
    assert mod.LABEL == "toy" and mod.TABLE == ((1, 2), (3,))
    assert "(1, 2),  # first row" in text and "# Test module" in text.splitlines()[1]
    Bs = np.array([4.0, 10.0, 1e3, 1e7])
    a = np.array([0.5, -2.0, 3.0, 1.25])
    with mpmath.workdps(40):
        want_scaled = [float(x * mpmath.log(1 + 1 / mpmath.mpf(b))) for b, x in zip(Bs, a)]
        want_shift = [float(x * b / (mpmath.mpf(b) - 1) + 0.25) for b, x in zip(Bs, a)]
    np.testing.assert_allclose(mod.scaled(Bs, a), want_scaled, rtol=1e-13, atol=0)
    out = mod.shifted(Bs.reshape(4, 1), a, np.int64(0) + 0.25)
    assert out.shape == (4, 4) and out.dtype == np.float64
    np.testing.assert_allclose(np.diag(out), want_shift, rtol=1e-13, atol=0)
    assert mod.shifted(10, 1, 1).dtype == np.float64  # integer arguments: float64 result
    three = mod.three(Bs, a)
    assert three.shape == Bs.shape and three.dtype == np.float64 and np.all(three == 3.0)
    # a, shared by every function, is documented once for the module; c where it is taken
    assert "a = the scale alpha" in mod.__doc__ and "A second paragraph" in mod.__doc__
    assert "Arguments:" not in mod.scaled.__doc__
    assert "c = the shift E[c]" in " ".join(mod.shifted.__doc__.split())
    assert "alpha*log(1 + 1/B)" in mod.scaled.__doc__  # documented in the source symbols


def test_module_spec_refusals_are_one_line():
    toy = _toy_module()
    scaled = toy.functions[0]
    batch = scaled.arguments[0]
    cases = [
        (toy, "c", "the C backend prints kernels of the batch size B only"),
        (_toy_module(functions=(_function("f", (_ARG_A,), _a * _c),)), "numpy",
         r"depends on E\[c\]; only its arguments B, a can occur"),
        (_toy_module(functions=(_function("f", (), B, arguments=(_ARG_A, batch)),)), "numpy",
         "first argument must be the batch size B"),
        (_toy_module(functions=(_function("f", (Argument(_a, "x0", "a"),), _a),)), "numpy",
         "reserved for temporaries"),
        (_toy_module(functions=(_function("f", (_ARG_A, Argument(_c, "a", "c")), _a + _c),)),
         "numpy", "argument name appears twice"),
        (_toy_module(functions=(_function("f", (Argument(_a, "out", "a"),), _a),)), "numpy",
         "reserved"),
        (_toy_module(constants=(Constant("GENERATOR", 1),)), "numpy", "reserved"),
        (_toy_module(constants=(Constant("scaled", 1),)), "numpy", "appears twice"),
        (_toy_module(constants=(Constant("T", (1, 2), comments=("one",)),)), "numpy",
         "one item each"),
        (_toy_module(functions=()), "numpy", "no quantities"),
        (toy, "fortran", "unknown lang"),
    ]  # fmt: skip
    for spec, lang, message in cases:
        with pytest.raises(CodegenError, match=message) as err:
            render_module(spec, lang=lang)
        assert "\n" not in str(err.value), message


@needs_cc
def test_module_spec_of_b_only_functions_compiles(tmp_path):
    """The same specs through the C backend: title and description reach the header."""
    spec = _toy_module(
        functions=(_function("half_log", (), sp.log(1 + 1 / B) / 2),), constants=()
    )
    sources = render_module(spec, lang="c")
    assert "Two hand-written functions, as C99 kernels." in sources["toy.h"]
    assert "A second paragraph of the module documentation." in sources["toy.h"]
    mod = load_c(sources, "toy")
    with mpmath.workdps(40):
        want = float(mpmath.log1p(1 / mpmath.mpf(1e9)) / 2)
    assert mod.half_log(1e9) == pytest.approx(want, rel=1e-13)  # log1p rewrite made


# -- numpy module: imports and isolation --------------------------------------------------


def test_numpy_module_imports_only_numpy(relu_sources):
    tree = ast.parse(relu_sources["relu.py"])
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"numpy"}


def test_numpy_module_runs_without_sympy(relu, relu_sources, tmp_path):
    path = tmp_path / "relu.py"
    path.write_text(relu_sources["relu.py"])
    script = (
        "import sys, json, importlib.util\n"
        "for blocked in ('sympy', 'mpmath', 'scipy', 'bnmft'):\n"
        "    sys.modules[blocked] = None\n"
        "spec = importlib.util.spec_from_file_location('relu_gen', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "import numpy\n"
        "Bs = numpy.array(json.loads(sys.argv[2]), dtype=float)\n"
        "print(json.dumps({n: getattr(mod, n)(Bs).tolist() for n in mod.__all__}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-I", "-c", script, str(path), json.dumps(BATCH_SIZES)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    values = json.loads(res.stdout)
    assert list(values) == RELU_QUANTITIES
    for name, got in values.items():
        expected = [reference(relu.closed[name].expr, b) for b in BATCH_SIZES]
        assert_matches(got, expected, f"isolated numpy {name}")


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["numpy", "c"])
def test_relu_values_match_high_precision(relu, relu_numpy, which, request):
    mod = relu_numpy if which == "numpy" else request.getfixturevalue("relu_c")
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    assert set(RELU_QUANTITIES) == set(relu.closed)
    for name in RELU_QUANTITIES:
        expected = [reference(relu.closed[name].expr, b) for b in BATCH_SIZES]
        assert_matches(getattr(mod, name)(Bs), expected, f"{which} {name}")
    assert np.all(mod.q_star(Bs) == 0.5)
    assert np.all(mod.lambda_G(Bs) == 0.0)


@pytest.mark.parametrize("which", ["numpy", "c"])
def test_relu_values_match_arccos_kernel_formulas(relu_numpy, which, request):
    """Independent reference: the paper's forms in J, J' typed here, evaluated by mpmath."""
    mod = relu_numpy if which == "numpy" else request.getfixturevalue("relu_c")
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    with mpmath.workdps(40):
        J = [kernel_J(b) for b in BATCH_SIZES]
        Jp = [kernel_Jp(b) for b in BATCH_SIZES]
        rate = [(b + j + jp - 2) / ((1 - j) * (b - 3)) for b, j, jp in zip(BATCH_SIZES, J, Jp)]
        expected = {
            "c_star": [float(j) for j in J],
            "lambda_M": [
                float(b * jp / ((1 - j) * (b + 1))) for b, j, jp in zip(BATCH_SIZES, J, Jp)
            ],
            "gradient_rate": [float(r) for r in rate],
            "depth_scale": [float(1 / mpmath.log(r)) for r in rate],
            "max_trainable_depth": [float(16 / mpmath.log(r)) for r in rate],
        }
    for name, values in expected.items():
        assert_matches(getattr(mod, name)(Bs), values, f"{which} {name} (kernel form)")
    # Large-B limit of the relu gradient rate: pi/(pi - 1).
    assert mod.gradient_rate(1e12) == pytest.approx(math.pi / (math.pi - 1), rel=1e-10)


@pytest.mark.parametrize("spec", ["linear", "leaky_relu:0.2", "step", "abs"])
def test_other_activations_match_high_precision(spec, backend):
    deriv = derive(activation(spec))
    mod = backend(deriv, "act")
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    for name, q in deriv.closed.items():
        expected = [reference(q.expr, b) for b in BATCH_SIZES]
        assert_matches(getattr(mod, name)(Bs), expected, f"{spec} {name}")


def test_step_has_infinite_gradient_rate(backend):
    mod = backend(derive(activation("step")), "step")
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    assert np.all(np.isposinf(mod.gradient_rate(Bs)))
    assert np.all(mod.depth_scale(Bs) == 0.0)
    assert np.all(mod.max_trainable_depth(Bs) == 0.0)


def test_linear_depth_scale_needs_log1p(backend):
    """1/log((B-2)/(B-3)) printed verbatim loses ~5 digits at B = 1e6; the generated code
    must not (reference: 1/log1p(1/(B-3)) in 40-digit mpmath)."""
    deriv = derive(activation("linear"))
    mod = backend(deriv, "linear")
    b = 1e6
    with mpmath.workdps(40):
        exact = float(1 / mpmath.log1p(1 / (mpmath.mpf(b) - 3)))
    naive = sp.lambdify(B, deriv.closed["depth_scale"].expr, "numpy")(b)
    assert abs(naive / exact - 1) > 1e-12  # the trap is real
    assert abs(mod.depth_scale(b) / exact - 1) <= RTOL
    assert abs(mod.max_trainable_depth(b) / (16 * exact) - 1) <= RTOL


# -- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["numpy", "c"])
def test_broadcasting_and_dtypes(relu, relu_numpy, which, request):
    mod = relu_numpy if which == "numpy" else request.getfixturevalue("relu_c")
    two_d = np.array([[4.0, 10.0, 1e6], [5.0, 64.0, 12345.0]])
    for name in RELU_QUANTITIES:
        f = getattr(mod, name)
        expected_2d = np.vectorize(lambda b: reference(relu.closed[name].expr, int(b)))(two_d)
        out = f(two_d)
        assert out.shape == (2, 3) and out.dtype == np.float64
        np.testing.assert_allclose(out, expected_2d, rtol=RTOL, atol=0)
        np.testing.assert_allclose(f(two_d.T), expected_2d.T, rtol=RTOL, atol=0)  # strided
        np.testing.assert_allclose(f(two_d[:, ::2]), expected_2d[:, ::2], rtol=RTOL, atol=0)
        for scalar in (10, 10.0, np.float32(10.0), np.int64(10)):
            value = f(scalar)
            assert np.shape(value) == () and np.asarray(value).dtype == np.float64
            assert float(value) == pytest.approx(reference(relu.closed[name].expr, 10), rel=RTOL)
        ints = f(np.arange(4, 10))
        assert ints.shape == (6,) and ints.dtype == np.float64
        assert f([4, 5]).shape == (2,)
        assert f(np.empty((0, 3))).shape == (0, 3)
    assert mod.q_star(np.arange(4, 10)).tolist() == [0.5] * 6


# -- refusals ---------------------------------------------------------------------------


def test_gamma_and_hyper_outside_the_routines_are_refused():
    """Gamma functions of B that do not cancel in ratios, and hypergeometric functions other
    than 2F1 with rational parameters, have no float64 routine (see test_codegen_special.py
    for those that do)."""
    cases = [
        ("lone", sp.gamma(B / 2), "gamma functions of B that do not cancel in ratios"),
        ("irrational", sp.gamma(B + sp.sqrt(2)) / sp.gamma(B), "do not cancel"),
        ("f32", sp.hyper([1, 2, 3], [4, 5], 1 / B), "the hypergeometric function hyper()"),
        ("fb", sp.hyper([sp.Rational(1, 2), B], [3], 1 / B), "the hypergeometric function"),
    ]
    for name, expr, message in cases:
        spec = ModuleSpec(name="bad", title="t", functions=(_function(name, (), expr),))
        for lang in ("numpy", "c"):
            with pytest.raises(CodegenError, match=message) as e:
                render_module(spec, lang=lang)
            assert "\n" not in str(e.value) and str(e.value).startswith(name)


@pytest.mark.parametrize("name", ["1relu", "re-lu", "", "re lu", "for", "int", "numpy", "x" * 64,
                                  "os", "json", "math", "typing", "bnmft", "r\u00e9lu"])
def test_bad_module_name_is_refused(relu, name):
    with pytest.raises(CodegenError) as err:
        generate(relu, lang="numpy", module=name)
    assert "\n" not in str(err.value)


def test_standard_library_module_names_are_refused_for_every_lang(relu):
    import sys

    for lang in ("numpy", "c"):
        for name in sorted(sys.stdlib_module_names)[::25]:
            if name.isidentifier():
                with pytest.raises(CodegenError, match="shadow|reserved|identifier"):
                    generate(relu, lang=lang, module=name)
    assert generate(relu, lang="numpy", module="os_relu")  # a name that merely contains one


def test_unknown_lang_free_symbols_and_missing_closed_forms_are_refused(relu):
    with pytest.raises(CodegenError, match="unknown lang"):
        generate(relu, lang="fortran", module="relu")
    with pytest.raises(CodegenError, match="tanh has no closed forms"):
        generate(derive(activation("tanh")), lang="numpy", module="t")
    q = relu.closed["c_star"]
    other = dataclasses.replace(q, expr=q.expr * sp.Symbol("alpha"))
    with pytest.raises(CodegenError, match="only the batch size B"):
        generate([other], lang="c", module="m", activation_name="relu")


# -- C: compilation and the JIT cache ------------------------------------------------------


@needs_cc
@pytest.mark.parametrize("spec", ["relu", "linear", "step", "abs"])
def test_c_compiles_without_warnings(spec, tmp_path):
    write_sources(generate(derive(activation(spec)), lang="c", module="act"), tmp_path)
    cmd = "cc -std=c99 -O2 -Wall -Wextra -shared -fPIC act.c -o libact.so -lm".split()
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert (tmp_path / "libact.so").exists()


@needs_cc
def test_jit_reuses_cached_library(relu_sources, fresh_cache):
    cache, builds = fresh_cache
    first = load_c(relu_sources, "relu")
    assert builds == ["relu"]
    stat = first.path.stat()
    assert first.path.parent == cache / "c"
    second = load_c(relu_sources, "relu")
    assert builds == ["relu"]  # not rebuilt
    assert second.path == first.path and second.path.stat().st_mtime_ns == stat.st_mtime_ns
    assert second.c_star(10.0) == first.c_star(10.0)


@needs_cc
def test_jit_same_module_name_different_sources(relu, fresh_cache):
    """Two sources under one module name get two libraries: no stale library is loaded."""
    _, builds = fresh_cache
    relu_c = load_c(generate(relu, lang="c", module="act"))
    linear_c = load_c(generate(derive(activation("linear")), lang="c", module="act"))
    assert builds == ["act", "act"] and relu_c.path != linear_c.path
    assert linear_c.c_star(11.0) == -0.1
    assert relu_c.c_star(11.0) == pytest.approx(reference(relu.closed["c_star"].expr, 11), rel=RTOL)


@needs_cc
def test_jit_rebuilds_corrupted_library(relu, relu_sources, fresh_cache):
    _, builds = fresh_cache
    path = jit.build_c(relu_sources, "relu")  # built, not loaded (safe to damage in place)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated library under the final name
    mod = load_c(relu_sources, "relu")
    assert builds == ["relu", "relu"]
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["so_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    expected = reference(relu.closed["lambda_M"].expr, 10)
    assert mod.lambda_M(10.0) == pytest.approx(expected, rel=RTOL)


@needs_cc
def test_jit_ignores_temp_files_and_unconfirmed_libraries(relu, relu_sources, fresh_cache):
    cache, builds = fresh_cache
    path = jit.build_c(relu_sources, "relu")
    path.with_suffix(".json").unlink()  # as if the process died before the manifest
    (cache / "c" / f".tmp-{path.name}.x1y2").write_bytes(b"\x7fELF half written")
    (cache / "c" / ".build-zz").mkdir()
    (cache / "c" / ".build-zz" / "librelu.so").write_bytes(b"\x7fELF garbage")
    mod = load_c(relu_sources, "relu")
    assert builds == ["relu", "relu"]
    assert mod.c_star(16.0) == pytest.approx(reference(relu.closed["c_star"].expr, 16), rel=RTOL)
    json.loads(path.with_suffix(".json").read_text())  # manifest restored


@needs_cc
def test_jit_concurrent_loads_build_once(relu_sources, fresh_cache, monkeypatch):
    _, builds = fresh_cache
    counting = jit._compile

    def slow(*args, **kwargs):
        threading.Event().wait(0.3)  # widen the race window
        return counting(*args, **kwargs)

    monkeypatch.setattr(jit, "_compile", slow)
    results, errors = [], []

    def worker():
        try:
            results.append(load_c(relu_sources, "relu").lambda_L(100.0))
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert builds == ["relu"]
    assert len(results) == 4 and len({float(r) for r in results}) == 1


def test_missing_compiler_is_one_line_error(relu_sources, monkeypatch, tmp_path):
    monkeypatch.setenv("BNMFT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CodegenError, match="no C compiler found") as err:
        load_c(relu_sources, "relu")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("CC", "no-such-compiler-bnmft")
    with pytest.raises(CodegenError, match="not found"):
        load_c(relu_sources, "relu")


# -- files ------------------------------------------------------------------------------


def test_write_sources_is_atomic(relu_sources, tmp_path, monkeypatch):
    paths = write_sources(relu_sources, tmp_path)
    assert sorted(p.name for p in paths) == ["relu.c", "relu.h", "relu.py"]
    assert all(p.read_text() == relu_sources[p.name] for p in paths)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(tmp_path / "relu.c", "half")
    monkeypatch.undo()
    assert (tmp_path / "relu.c").read_text() == relu_sources["relu.c"]  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.c", "relu.h", "relu.py"]
    with pytest.raises(CodegenError, match="plain file name"):
        write_sources({"../evil.c": "x"}, tmp_path)


def test_load_numpy_only_imports_generated_text():
    with pytest.raises(CodegenError, match="bnmft-generated"):
        load_numpy({"m.py": "import os\n"}, "m")
