"""The shipped, generated moment-forms module against the derivation it was made from."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from bnmft.codegen.moment_forms import TARGET, moment_forms_module, render_moment_forms
from bnmft.derive.activation import activation
from bnmft.derive.bsb1 import QUANTITIES, TRAINABLE_DEPTH_FACTOR
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B
from bnmft.numerics import _moment_forms as gen
from bnmft.pipeline import analyze

#: The module as generated before the one-pipeline codegen (see the file's first lines).
REFERENCE = Path(__file__).parent / "golden" / "moment_forms_2a2535c.py"


def test_generated_module_is_current():
    """Byte-for-byte: after changing the derivation run ``python -m bnmft.codegen.moment_forms``."""
    assert TARGET.read_text() == render_moment_forms()


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between float64 arrays (nan only equals nan)."""
    ia, ib = (np.asarray(x, dtype=np.float64).view(np.int64) for x in (a, b))
    ia, ib = (np.where(i < 0, np.int64(-(2**63)) - i, i) for i in (ia, ib))  # monotone order
    d = np.abs(ia.astype(object) - ib.astype(object)).astype(float)
    both_nan = np.isnan(a) & np.isnan(b)
    return np.where(both_nan, 0.0, np.where(np.isnan(a) | np.isnan(b), np.inf, d))


def test_regenerated_module_computes_what_the_previous_one_did():
    """Same source expressions (hash) -> same float64 numbers as the module generated before the
    spec pipeline, on random moments of both signs and batch sizes 4 .. 1e12, for array, scalar
    and broadcast shapes (bit for bit, or a few ulp where a CSE order changed)."""
    ref = _import(REFERENCE, "bnmft_moment_forms_reference")
    assert ref.SOURCE_SHA256 == gen.SOURCE_SHA256, "derivation changed: replace the reference"
    assert ref.MOMENTS == gen.MOMENTS and ref.__all__ == gen.__all__
    rng = np.random.default_rng(20190101)
    n = 4000
    Bs = np.concatenate([np.arange(4.0, 4.0 + n // 2), np.exp(rng.uniform(1.4, 27.7, n // 2))])
    moments = [rng.uniform(-3, 3, n) * 10.0 ** rng.integers(-3, 4, n) for _ in gen.MOMENTS]
    shapes = [
        (Bs, moments),
        (Bs[7], [m[11] for m in moments]),
        (Bs[:40].reshape(40, 1), [m[:30].reshape(1, 30) for m in moments]),
    ]
    with np.errstate(all="ignore"):  # log of a negative rate, 0/0: nan in both modules
        for name in QUANTITIES:
            for b, ms in shapes:
                want = getattr(ref, name)(b, *ms)
                got = getattr(gen, name)(b, *ms)
                assert got.shape == want.shape and got.dtype == want.dtype == np.float64
                assert np.max(_ulps(got, want), initial=0.0) <= 4, name


def test_module_spec_states_the_depth_definitions():
    """The spec's statement of depth_scale and max_trainable_depth uses the derivation's
    factor (not a copy of it) and its docstrings reach the shipped module."""
    spec = moment_forms_module()
    by_name = {f.name: f for f in spec.functions}
    definition = dict(by_name["max_trainable_depth"].math)["Definition"]
    assert f"= {TRAINABLE_DEPTH_FACTOR}*depth_scale = {TRAINABLE_DEPTH_FACTOR}/log(" in definition
    assert "1/log(gradient_rate)" in dict(by_name["depth_scale"].math)["Definition"]
    doc = " ".join(gen.max_trainable_depth.__doc__.split())
    assert definition in doc


def test_depth_definitions_follow_the_derivation_factor(monkeypatch):
    """codegen holds no copy of the factor: change the relation in derive.bsb1 and the stated
    definition (checked against the re-derived forms) follows."""
    from bnmft.codegen import spec as codegen_spec
    from bnmft.derive import bsb1

    def clear_caches():
        bsb1.moment_forms.cache_clear()
        codegen_spec.depth_relations.cache_clear()

    factor = bsb1.TRAINABLE_DEPTH_FACTOR + 3
    relations = {**bsb1.RELATIONS, "max_trainable_depth": factor * bsb1.XI}
    monkeypatch.setattr(bsb1, "RELATIONS", relations)
    clear_caches()
    try:
        by_name = {f.name: f for f in moment_forms_module().functions}
        definition = dict(by_name["max_trainable_depth"].math)["Definition"]
        assert f"{factor}*depth_scale = {factor}/log(gradient_rate)" in definition
    finally:
        monkeypatch.undo()
        clear_caches()
    assert f"= {TRAINABLE_DEPTH_FACTOR}*depth_scale" in render_moment_forms()


def test_module_spec_lists_every_quantity_with_the_moments_as_arguments():
    spec = moment_forms_module()
    assert [f.name for f in spec.functions] == list(QUANTITIES)
    for f in spec.functions:
        assert [a.name for a in f.arguments] == ["B"] + [f"m{i}" for i in range(len(gen.MOMENTS))]
        assert f.summary in getattr(gen, f.name).__doc__


def test_generated_forms_equal_derived_forms_numerically():
    deriv = derive(activation("tanh"))
    assert [tuple((p.m, p.p, p.q) for p in mo.points) for mo in deriv.moments] == list(gen.MOMENTS)
    rng = np.random.default_rng(3)
    Bs = np.array([4.0, 5.0, 17.0, 1000.0, 1e6])
    # moments chosen so that q* > q* c* and the rate's logarithm is defined
    args = [rng.uniform(0.5, 1.5, Bs.shape) for _ in deriv.moments]
    args[0] = args[0] + 2.0
    syms = [mo.symbol for mo in deriv.moments]
    for name in QUANTITIES:
        ref = sp.lambdify([B, *syms], deriv.forms[name], "mpmath")
        want = np.array([float(ref(b, *(a[i] for a in args))) for i, b in enumerate(Bs)])
        got = getattr(gen, name)(Bs, *args)
        assert got.shape == Bs.shape
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("spec", ["tanh", "Max(x + 0.3, 0)"])
def test_shipped_forms_match_the_derivation_forms(spec):
    """The float64 route evaluates the shipped generated forms; the mpmath route (digits > 13)
    lambdifies the derivation's own forms: the two must agree to the float digits."""
    act = activation(spec)
    sizes = [5, 64, 3000]
    lazy = analyze(act, sizes, 12)
    full = analyze(derive(act), sizes, 16)
    for a, b in zip(lazy, full):
        for name in QUANTITIES:
            x, y = a.numbers[name], b.numbers[name]
            assert x.digits >= 12 and y.digits >= 12
            assert abs(x.value - y.value) <= 1e-12 * abs(y.value) + 1e-300, (name, a.batch_size)
        assert a.bsb1_stable == b.bsb1_stable
