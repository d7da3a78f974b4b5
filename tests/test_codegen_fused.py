"""Tests of the fused C kernel ``NAME_all``: every quantity of a module in one pass over B.

Its outputs are checked against the module's single kernels (same float64 formulas, other
common-subexpression elimination: a few ulp) and against the closed forms evaluated by mpmath
(:func:`bnmft.numerics.closed_number`, 20 digits), for every activation with elementary closed
forms that the issue names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

import cffi
import numpy as np
import pytest
import sympy as sp
from bnmft.codegen import CodegenError, ModuleSpec, generate, load_c, render_module, write_sources
from bnmft.codegen.jit import CFLAGS, LDLIBS
from bnmft.codegen.spec import FunctionSpec, batch_argument
from bnmft.derive.activation import activation
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B
from bnmft.numerics import closed_number

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

ACTIVATIONS = ["relu", "leaky_relu:0.2", "alpha_relu:2"]
BATCH_SIZES = [4, 5, 8, 33, 1000, 10**6]
#: Fused against single kernels; against the mpmath closed forms.
RTOL_KERNELS = 1e-15
RTOL_EXACT = 1e-13


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """Point the bnmft cache at a temporary directory (never the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNMFT_CACHE_DIR", str(tmp_path_factory.mktemp("bnmft-cache")))
        yield


@pytest.fixture(scope="module")
def derivations():
    return {spec: derive(activation(spec)) for spec in ACTIVATIONS}


@pytest.fixture(scope="module")
def sources(derivations):
    return {spec: generate(d, lang="c", module="act") for spec, d in derivations.items()}


@pytest.fixture(scope="module")
def modules(sources):
    return {spec: load_c(src, "act") for spec, src in sources.items()}


def fused_body(c_text: str, module: str = "act") -> str:
    """The text of ``{module}_all``'s definition."""
    return c_text[c_text.index(f"\nvoid {module}_all(") :]


def relative(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``|got/want - 1|``; 0 where both are equal (0 or infinite included), inf elsewhere."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    with np.errstate(all="ignore"):
        rel = np.abs(got / want - 1)
    return np.where(got == want, 0.0, np.where(np.isfinite(want) & (want != 0), rel, np.inf))


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_fused_equals_single_kernels(spec, modules, derivations):
    """Each output of act_all against act_<quantity> at the same B (exact where 0 or inf)."""
    mod = modules[spec]
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    fused = mod.all(Bs)
    assert list(fused) == list(derivations[spec].closed) == list(mod.names)
    for name, values in fused.items():
        assert values.shape == Bs.shape and values.dtype == np.float64
        rel = relative(values, getattr(mod, name)(Bs))
        assert np.all(rel <= RTOL_KERNELS), f"{spec} {name}: {rel} vs single kernel"


@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_fused_matches_mpmath_closed_forms(spec, modules, derivations):
    mod = modules[spec]
    fused = mod.all(np.array(BATCH_SIZES, dtype=np.float64))
    for name, q in derivations[spec].closed.items():
        numbers = [closed_number(q, b, 20) for b in BATCH_SIZES]
        assert all(n.digits >= 17 for n in numbers), name
        want = np.array([float(n.value) for n in numbers])
        rel = relative(fused[name], want)
        assert np.all(rel <= RTOL_EXACT), f"{spec} {name}: {rel} vs mpmath"


def test_fused_matches_single_kernels_at_many_batch_sizes(modules):
    """relu between the six batch sizes too, within 2e-15 (about 9 ulp; 1/log(rate) amplifies
    a difference of the rates by 1/log(rate) < 2.2)."""
    mod = modules["relu"]
    Bs = np.unique(np.concatenate([np.arange(4.0, 1000.0), np.geomspace(1000, 1e12, 3000)]))
    for name, values in mod.all(Bs).items():
        rel = relative(values, getattr(mod, name)(Bs))
        assert rel.max() <= 2 * RTOL_KERNELS, name


# -- the generated text --------------------------------------------------------------------


def test_subexpressions_are_shared_across_quantities(sources):
    """relu: acos, sqrt and log once per element in act_all, where the single kernels
    compute them once per kernel; the shared 1/(1 - J) is folded into the divisions that use
    it (three divisions, as written by hand: 1/(B - 1), 1/((1 - J)(B + 1)), rate)."""
    text = sources["relu"]["act.c"]
    body = fused_body(text)
    singles = text[: text.index("\nvoid act_all(")]
    for call, per_kernel in (("acos(", 6), ("sqrt(", 6), ("log(", 2)):
        assert body.count(call) == 1, call
        assert singles.count(call) == per_kernel, call
    divisions = [line for line in body.splitlines() if "/" in line]
    assert len(divisions) == 6  # 1.0/pi and 1.0/2.0 (constants), 1.0/log(rate) and these:
    assert "1.0/(b - 1);" in divisions[1] and "/(x8*(b + 1));" in divisions[2]
    assert "/(x8*(b - 3));" in divisions[3]  # the rate


def test_fused_prototype_and_body(sources):
    h, c = sources["relu"]["act.h"], sources["relu"]["act.c"]
    names = list(derive(activation("relu")).closed)
    outputs = ",\n".join(f"{' ' * len('void act_all(')}double *{n}" for n in names)
    assert f"void act_all(size_t n, const double *B,\n{outputs});\n" in h
    body = fused_body(c)
    assert "#ifdef _OPENMP\n#pragma omp parallel for\n#endif\n    for (size_t i = 0;" in body
    for n in names:
        assert f"        if ({n}) {n}[i] = " in body
    assert "static" not in body  # no state: thread-safe


# -- calling it ---------------------------------------------------------------------------


def test_null_outputs_are_skipped(modules):
    mod = modules["relu"]
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    full = mod.all(Bs)
    some = mod.all(Bs, names=("lambda_M", "c_star"))
    assert list(some) == ["c_star", "lambda_M"]  # module order
    assert all(np.array_equal(some[n], full[n]) for n in some)
    assert list(mod.all(Bs, names="gradient_rate")) == ["gradient_rate"]
    assert mod.all(Bs, names=()) == {}  # every output NULL: nothing written, no crash
    with pytest.raises(CodegenError, match="act_all has no output 'nope'"):
        mod.all(Bs, names=["c_star", "nope"])


def test_out_arrays_and_in_place(modules):
    mod = modules["relu"]
    Bs = np.array(BATCH_SIZES, dtype=np.float64)
    full = mod.all(Bs)
    mine = np.full(Bs.shape, np.nan)
    got = mod.all(Bs, out={"lambda_L": mine}, names=["c_star"])
    assert list(got) == ["c_star", "lambda_L"] and got["lambda_L"] is mine
    assert np.array_equal(mine, full["lambda_L"])
    in_place = Bs.copy()
    assert mod.all(in_place, out={"c_star": in_place})["c_star"] is in_place  # output == B
    assert np.array_equal(in_place, full["c_star"])
    for bad in (np.empty(5), np.empty(6, dtype=np.float32), np.empty(12)[::2]):
        with pytest.raises(CodegenError, match="must be a writeable C-contiguous") as err:
            mod.all(Bs, out={"c_star": bad})
        assert "\n" not in str(err.value)


def test_shapes(modules):
    mod = modules["relu"]
    two_d = np.array([[4.0, 10.0, 1e6], [5.0, 64.0, 12345.0]])
    for layout in (two_d, two_d.T, two_d[:, ::2]):
        flat = mod.all(np.ravel(layout))
        for name, values in mod.all(layout).items():
            assert values.shape == layout.shape
            assert np.array_equal(values.ravel(), flat[name])
    scalar = mod.all(10)
    assert all(isinstance(v, np.ndarray) and v.shape == () for v in scalar.values())
    assert float(scalar["c_star"]) == float(mod.all([10.0])["c_star"][0])
    assert all(v.shape == (0, 3) for v in mod.all(np.empty((0, 3))).values())


def test_concurrent_calls(modules):
    """No state in the kernel: threads calling it at once get the serial results."""
    mod = modules["alpha_relu:2"]
    inputs = [np.linspace(4, 10**k, 20000) for k in range(2, 6)]
    serial = [mod.all(x) for x in inputs]
    results = [None] * len(inputs)

    def work(k):
        for _ in range(5):
            results[k] = mod.all(inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for want, got in zip(serial, results):
        assert all(np.array_equal(want[n], got[n]) for n in want)


# -- compilation --------------------------------------------------------------------------


def _compile(folder, extra=()):
    cmd = ["cc", *CFLAGS, "-pedantic", "-Werror", *extra, "act.c", "-o", "libact.so", *LDLIBS]
    res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return folder / "libact.so"


def _openmp_available(tmp_path) -> bool:
    (tmp_path / "probe.c").write_text("int main(void) { return 0; }\n")
    cmd = ["cc", "-fopenmp", "probe.c", "-o", "probe"]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True).returncode == 0


@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_compiles_without_warnings_with_and_without_openmp(spec, sources, modules, tmp_path):
    write_sources(sources[spec], tmp_path)
    _compile(tmp_path)
    if not _openmp_available(tmp_path):
        pytest.skip("the C compiler has no OpenMP")
    library = _compile(tmp_path, ["-fopenmp"])
    names = list(modules[spec].names)
    ffi = cffi.FFI()
    ffi.cdef(
        "void act_all(size_t n, const double *B, " + ", ".join(f"double *{n}" for n in names) + ");"
    )
    lib = ffi.dlopen(str(library))
    Bs = np.geomspace(4, 1e6, 5000)
    outs = {n: np.empty_like(Bs) for n in names}
    lib.act_all(Bs.size, ffi.from_buffer("double[]", Bs),
                *(ffi.from_buffer("double[]", outs[n]) for n in names))  # fmt: skip
    want = modules[spec].all(Bs)
    assert all(np.array_equal(outs[n], want[n]) for n in names)  # threads change no bit


def _b_only(name, expr):
    return FunctionSpec(
        name=name,
        arguments=(batch_argument(),),
        expr=expr,
        summary=f"{name}, a test function.",
        math=(("Formula", str(expr)),),
        provenance="typed in tests/test_codegen_fused.py",
        domain="B >= 4",
    )


def test_constant_module(tmp_path):
    """Only constants: act_all fills the outputs without reading B (no unused variable)."""
    spec = ModuleSpec(
        name="act", title="Constants",
        functions=(_b_only("half", sp.Rational(1, 2)), _b_only("inf", sp.oo)),
    )  # fmt: skip
    sources = render_module(spec, lang="c")
    assert "(void)B;" in fused_body(sources["act.c"])
    write_sources(sources, tmp_path)
    _compile(tmp_path)
    out = load_c(sources, "act").all(np.array([4.0, 7.0]))
    assert out["half"].tolist() == [0.5, 0.5] and np.all(np.isposinf(out["inf"]))


@pytest.mark.parametrize(
    "name", ["all", "x3", "sqrt", "acos", "pow", "NULL", "size_t", "bnmft_pi", "_OPENMP", "__x"]
)
def test_names_that_would_break_the_fused_kernel_are_refused(name):
    spec = ModuleSpec(name="act", title="t", functions=(_b_only(name, 1 / (B - 1)),))
    with pytest.raises(CodegenError, match=re.escape(repr(name))) as err:
        render_module(spec, lang="c")
    assert "\n" not in str(err.value)
    assert render_module(spec, lang="numpy")  # a C-only restriction


def test_loader_requires_the_fused_prototype(sources):
    src = dict(sources["relu"])
    h = src["act.h"]
    src["act.h"] = h[: h.index("void act_all(")] + h[h.index("#ifdef __cplusplus\n}") :]
    with pytest.raises(CodegenError, match="lacks act_all"):
        load_c(src, "act")


def test_generation_is_reproducible(derivations, sources):
    """Same bytes on a second generation (relu's golden file: tests/test_codegen.py)."""
    for spec, d in derivations.items():
        assert generate(d, lang="c", module="act") == sources[spec]
