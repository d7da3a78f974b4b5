"""The shipped, generated moment-forms module against the derivation it was made from."""

import numpy as np
import pytest
import sympy as sp

from bnmft.codegen.moment_forms import TARGET, render_moment_forms
from bnmft.derive.activation import activation
from bnmft.derive.bsb1 import QUANTITIES
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B
from bnmft.numerics import _moment_forms as gen
from bnmft.pipeline import analyze


def test_generated_module_is_current():
    """Byte-for-byte: after changing the derivation run ``python -m bnmft.codegen.moment_forms``."""
    assert TARGET.read_text() == render_moment_forms()


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
