"""Activations: registry, analysed properties, refusals and numeric callables."""

from __future__ import annotations

import math
from functools import lru_cache

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.derive.activation import (
    REGISTRY,
    Activation,
    ActivationError,
    activation,
    analyse,
    kink_exponents,
)
from bnmft.derive.homogeneous import Homogeneous
from bnmft.derive.symbols import x

R = sp.Rational


@lru_cache(maxsize=None)
def act(spec: str) -> Activation:
    return activation(spec)


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg, "empty message"
    assert "\n" not in msg and len(msg.splitlines()) == 1, repr(msg)
    return msg


def _hom(a: Activation):
    h = a.homogeneous
    return None if h is None else (h.alpha, h.A, h.C)


# -- the registry -------------------------------------------------------------------------

REQUIRED = ["relu", "leaky_relu", "alpha_relu", "linear", "abs", "step", "tanh", "erf",
            "sigmoid", "sin", "gelu", "swish", "silu", "softplus", "elu", "selu"]
LOADABLE = [n for n in REGISTRY if n != "alpha_relu"] + ["alpha_relu:1.5"]
SMOOTH = ["tanh", "erf", "sigmoid", "sin", "gelu", "swish", "silu", "softplus"]


def test_required_names_are_registered():
    assert set(REQUIRED) <= set(REGISTRY)


@pytest.mark.parametrize("spec", LOADABLE)
def test_every_registered_name_loads(spec):
    a = act(spec)
    assert isinstance(a, Activation)
    assert a.expr.free_symbols == {x}
    assert a.name == spec
    assert all(k.is_real for k in a.kinks)
    assert list(a.kinks) == sorted(a.kinks, key=float)


def test_alpha_relu_needs_its_degree():
    with pytest.raises(ActivationError) as info:
        activation("alpha_relu")
    assert "alpha" in _one_line(info.value)


def test_swish_is_silu():
    assert act("swish").expr == act("silu").expr


def test_key_does_not_depend_on_spelling():
    assert act("relu").key == act("Max(x, 0)").key == act("max(0, x)").key
    assert act("leaky_relu:0.2").key == act("leaky_relu:slope=0.2").key
    assert act("relu").key != act("abs").key


# -- homogeneity and kinks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, hom, kinks",
    [
        ("relu", (1, 1, 0), (0,)),
        ("leaky_relu", (1, 1, -R(1, 100)), (0,)),
        ("leaky_relu:0.2", (1, 1, -R(1, 5)), (0,)),
        ("leaky_relu:slope=0.2", (1, 1, -R(1, 5)), (0,)),
        ("alpha_relu:1.5", (R(3, 2), 1, 0), (0,)),
        ("alpha_relu:alpha=1.5", (R(3, 2), 1, 0), (0,)),
        ("abs", (1, 1, 1), (0,)),
        ("step", (0, 1, 0), (0,)),
        ("linear", (1, 1, -1), ()),
        ("Max(x, x/5)", (1, 1, -R(1, 5)), (0,)),
        ("Max(x, 0)**1.5", (R(3, 2), 1, 0), (0,)),
        ("Min(x, 0)", (1, 0, -1), (0,)),
        ("x**2", (2, 1, 1), ()),
        ("sign(x)", (0, 1, -1), (0,)),
        ("Piecewise((x, x > 0), (0, True))", (1, 1, 0), (0,)),
        ("Max(x + 1, 0)", None, (-1,)),
        ("relu(2*x + 1)", None, (-R(1, 2),)),
        ("elu", None, (0,)),
        ("selu", None, (0,)),
        ("elu:2", None, (0,)),
    ],
)
def test_homogeneity_and_kinks(spec, hom, kinks):
    a = act(spec)
    assert _hom(a) == hom
    assert a.kinks == tuple(sp.sympify(k) for k in kinks)


@pytest.mark.parametrize("spec", SMOOTH)
def test_smooth_activations(spec):
    a = act(spec)
    assert a.kinks == ()
    assert a.homogeneous is None
    assert not a.derivative_has_delta


def test_leaky_relu_default_slope():
    a = act("leaky_relu")
    assert a.expr == sp.Max(x, 0) + sp.Min(x, 0) / 100
    assert dict(a.params)["slope"] == R(1, 100)
    assert act("leaky_relu:0.2").expr == act("leaky_relu:slope=0.2").expr
    assert dict(act("leaky_relu:0.2").params)["slope"] == R(1, 5)


def test_homogeneous_is_the_closed_form_type():
    assert isinstance(act("relu").homogeneous, Homogeneous)


def test_registered_names_inside_expressions():
    assert act("relu(2*x + 1)").expr == sp.Max(2 * x + 1, 0)
    assert act("leaky_relu(x, 0.2)").expr == act("leaky_relu:0.2").expr
    assert act("alpha_relu(x, 1.5)").expr == act("alpha_relu:1.5").expr
    assert act("tanh(x) + relu(x)").kinks == (0,)
    for text, needle in [("alpha_relu(x)", "alpha"), ("tanh(x, 2)", "too many")]:
        with pytest.raises(ActivationError) as info:
            activation(text)
        assert needle in _one_line(info.value)


# -- gamma and beta -----------------------------------------------------------------------


def test_gamma_beta_tanh():
    a = activation("tanh", gamma=2, beta="0.1")
    assert a.expr == sp.tanh(2 * x + R(1, 10))
    assert dict(a.params) == {"gamma": 2, "beta": R(1, 10)}
    assert a.kinks == () and a.homogeneous is None


def test_beta_moves_the_kink():
    a = activation("relu", beta=1)
    assert a.kinks == (-1,)
    assert a.homogeneous is None


def test_gamma_scales_a_homogeneous_activation():
    a = activation("relu", gamma=2)
    assert _hom(a) == (1, 2, 0)
    assert _hom(activation("relu", gamma=-1)) == (1, 0, 1)
    assert activation("relu", gamma=0.1).expr == sp.Max(x / 10, 0)  # floats become exact


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"gamma": 0}, "gamma"),
        ({"gamma": "0.0"}, "gamma"),
        ({"gamma": "abc"}, "abc"),
        ({"beta": "x"}, "not a real number"),
        ({"gamma": "sqrt(-1)"}, "not a real number"),
        ({"beta": "1/0"}, "not a real number"),
        ({"gamma": True}, "True"),
    ],
)
def test_bad_gamma_beta(kwargs, needle):
    with pytest.raises(ActivationError) as info:
        activation("relu", **kwargs)
    assert needle in _one_line(info.value)


# -- refusals -----------------------------------------------------------------------------

REFUSED = {
    "constant": ("5", "constant"),
    "gaussian growth": ("exp(x**2)", "grows"),
    "gaussian growth, borderline": ("exp(x**2/4)", "grows"),
    "free symbol": ("y*x", "'y'"),
    "log of negatives": ("log(x)", "not real"),
    "pole at 0": ("1/x", "pole"),
    "pole": ("1/(x-0.3)", "pole"),
    "negative power": ("x**(-1)", "pole"),
    "tan poles": ("tan(x)", "pole"),
    "log singularity": ("log(x**2)", "log"),
    "sqrt of negatives": ("sqrt(x)", "not real"),
    "imaginary unit": ("x + I", "'I'"),
    "complex literal": ("1j*x", "1j"),
    "complex constant": ("sqrt(-1)*x", "real"),
    "complex power": ("x**x", "not real"),
    "complex inside Max": ("Max(2, x**0.5)", "not real"),
    "complex intermediate": ("Abs(sqrt(x))", "not real"),
    "constant power": ("Abs(sin(x))**0", "constant"),
    "constant Heaviside": ("Heaviside(x)-Heaviside(x)", "constant"),
    "constant a.e.": ("sign(Min(x, 0.5)*Min(0.3, x))", "constant"),
    "zero": ("x*0", "constant"),
    "cancelling Dirac terms": ("Heaviside(2*x) - Heaviside(x)", "constant"),
    "unknown name with parameter": ("foo:1", "foo"),
    "parameter of a parameterless name": ("tanh:2", "no parameters"),
    "bad parameter": ("leaky_relu:slope=abc", "abc"),
    "unknown parameter": ("leaky_relu:foo=1", "foo"),
    "too many parameters": ("alpha_relu:1,2", "too many"),
    "empty parameter": ("elu:alpha=", "empty"),
    "negative degree": ("alpha_relu:alpha=-1", "pole"),
    "negative degree positional": ("alpha_relu:-0.5", "pole"),
    "parameter is x": ("alpha_relu:x", "not a real number"),
    "malformed": ("tanh(x", "cannot parse"),
    "unknown function": ("foo(x)", "foo"),
    "attribute": ("x.__class__", "Attribute"),
    "huge number": ("9**9**9*x", "too large"),
    "steep argument": ("tanh(1e10*x)", "width 1.0e-10 near x = 0.0"),
    "steep argument, shifted": ("tanh(1e10*(x - 1/3))", "near x = 0.333333"),
    "steep argument inside a product": ("x*tanh(1e10*x)", "scales below 1/1000"),
    "steep argument just beyond the limit": ("tanh(1001*x)", "scales below 1/1000"),
    "steep oscillation": ("sin(1e10*x)", "scales below"),
    "narrow bump off the grid": ("exp(-1e10*(x - 1/7)**2)", "near x = 0.142857"),
    "narrow bump as a power": ("2**(-1e10*x**2)", "scales below"),
    "kinks on a fine lattice": ("Abs(sin(1e10*x))", "more than 256 kinks"),
    "too many kinks": ("Max(sin(1000*x), 0)", "more than 256 kinks"),
    "kink polynomial of high degree": ("Abs(x**1000 - 1)", "degree up to 1000"),
    "sparse kink polynomial": ("Max(x**(10**9) - 1, 0)", "degree up to 1000000000"),
}


@pytest.mark.parametrize("spec, needle", REFUSED.values(), ids=REFUSED.keys())
def test_refused(spec, needle):
    with pytest.raises(ActivationError) as info:
        activation(spec)
    assert needle.lower() in _one_line(info.value).lower()


@pytest.mark.parametrize(
    "spec", ["tanh(1000*x)", "tanh(x**5)", "tanh(1000*x**3)", "exp(-x**4)", "sin(x**5)",
             "Max(sin(x), 0)", "tanh(x/1e100)"],
)
def test_steep_or_kinked_but_resolvable_is_accepted(spec):
    """Transitions of width >= 1/1000 where the argument crosses [-1, 1] (x**5 is steep only
    where tanh has saturated), and 41 kinks, are within reach of the quadratures."""
    assert act(spec).expr.has(x)


def test_kinks_of_a_high_degree_polynomial_are_its_real_roots():
    """x^50 - x - 1 by real-root isolation (solveset computed all 50 complex roots: 15 s)."""
    a = act("Abs(x**50 - x - 1)")
    assert len(a.kinks) == 2
    poly = sp.Poly(x**50 - x - 1, x)
    with mpmath.workdps(40):
        for k in a.kink_floats:
            lo, hi = (poly.eval(sp.Float(k + d, 40)) for d in (-1e-9, 1e-9))
            assert lo * hi < 0  # a sign change within 1e-9 of each kink


def test_kinks_on_a_lattice_are_all_in_the_window():
    """Max(sin(3x + 1), 0): solveset's lattice (2 pi n - 1)/3, (2 pi n + pi - 1)/3 listed on
    |x| <= 64, i.e. (k pi - 1)/3 for every integer k with |k pi - 1| <= 192."""
    kinks = act("Max(sin(3*x + 1), 0)").kink_floats
    ks = [k for k in range(-70, 71) if abs(k * np.pi - 1) <= 192]
    assert np.allclose(kinks, sorted((k * np.pi - 1) / 3 for k in ks), rtol=0, atol=1e-14)


def test_a_zero_solveset_misses_is_refused_not_skipped():
    """solveset returns the empty set for exp(50 x) - exp(x) - 3; the kink of its Max with 0
    would go unsplit. The grid scan finds the sign change and names the zero."""
    with pytest.raises(ActivationError) as info:
        activation("Max(exp(x)**50 - exp(x) - 3, 0)")
    msg = _one_line(info.value)
    root = mpmath.findroot(lambda t: mpmath.exp(50 * t) - mpmath.exp(t) - 3, 0.03)
    assert f"no zero near x = {mpmath.nstr(root, 6)}" in msg


@pytest.mark.parametrize(
    "expr",
    [sp.tanh(10**10 * x), x * sp.tanh(10**10 * x), sp.tanh(x / 10**10) * x, sp.Max(x, 0)
     + sp.Rational(1, 10**40) * x**2],
)
def test_homogeneity_screen_sees_far_scales(expr):
    """Not homogeneous, though each looks so at t ~ 1 to 30 digits (tanh(10^10 t) = +-1): the
    screen probes t out to 10^(+-(m + 12)), m the magnitude of phi's numbers, and refuses
    before any symbolic step runs."""
    from bnmft.derive.activation import _numerically_homogeneous

    assert _numerically_homogeneous(expr) is False


@pytest.mark.parametrize(
    "spec, hom",
    [
        ("Max(1e100*x, 0)", (1, 10**100, 0)),
        ("sqrt(x**2)", (1, 1, 1)),
        ("relu(x) + relu(2*x)", (1, 3, 0)),
        ("Max(x, 0)**2 + 3*Min(x, 0)**2", (2, 1, 3)),
        ("x*(cosh(x)**2 - sinh(x)**2)", (1, 1, -1)),  # screen skips ill-conditioned probes
    ],
)
def test_homogeneity_found_structurally_or_by_small_simplify(spec, hom):
    assert _hom(act(spec)) == hom


def test_symbolic_steps_have_a_time_budget(monkeypatch):
    """solveset on sin(x)^30 - sin(x) - 1/2 (kinks of its Abs) runs for minutes: refused on
    one line when the budget is over, and the timer and handler are restored."""
    import signal
    import time

    from bnmft.derive import activation as mod

    monkeypatch.setattr(mod, "ANALYSIS_SECONDS", 1)
    start = time.monotonic()
    with pytest.raises(ActivationError) as info:
        activation("Abs(sin(x)**30 - sin(x) - 1/2)")
    assert time.monotonic() - start < 10
    assert "within 1 s" in _one_line(info.value)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    assert act("relu").homogeneous is not None  # later analyses are unaffected


def test_time_budget_outside_the_main_thread_runs_unbounded():
    import threading
    import time

    from bnmft.derive.budget import time_budget

    done = []

    def work():
        with time_budget(0.05, lambda: AssertionError("interrupted off the main thread")):
            time.sleep(0.2)
        done.append(True)

    th = threading.Thread(target=work)
    th.start()
    th.join()
    assert done == [True]


@pytest.mark.parametrize("spec", ["", "   ", None, 1.0])
def test_empty(spec):
    with pytest.raises(ActivationError, match="empty"):
        activation(spec)


def test_messages_are_one_line_with_multiline_input():
    for spec in ["leaky_relu:0.\n2", "tanh(x\n", "x +\n y", "leaky_relu:slope=\n"]:
        with pytest.raises(ActivationError) as info:
            activation(spec)
        _one_line(info.value)
    assert str(ActivationError("a\n  b")) == "a b"


def test_analyse_refuses_foreign_symbols():
    y = sp.Symbol("y")
    with pytest.raises(ActivationError) as info:
        analyse("t", x * y)
    assert "y" in _one_line(info.value)
    with pytest.raises(ActivationError, match="real and finite"):
        analyse("t", x + sp.I)


def test_parse_error_is_activation_error():
    # the CLI catches ActivationError only
    with pytest.raises(ActivationError):
        activation("__import__('os').system('true')")


# -- derivative ---------------------------------------------------------------------------


def test_relu_derivative_is_step():
    assert act("relu").derivative == act("step").expr == sp.Heaviside(x)
    assert not act("relu").derivative_has_delta


def test_abs_derivative_is_sign():
    assert act("abs").derivative == sp.sign(x)


def test_step_derivative_is_a_dirac_mass():
    a = act("step")
    assert a.derivative_has_delta
    assert a.homogeneous.alpha == 0


def _one_sided(fn, k, h=mpmath.mpf("1e-25")):
    with mpmath.workdps(40):
        return fn(k - h), fn(k + h)


def test_elu_derivative_is_continuous_for_alpha_one():
    left, right = _one_sided(act("elu").mpmath_derivative, 0)
    assert abs(left - right) < 1e-20
    assert not act("elu").derivative_has_delta


def test_selu_derivative_jumps():
    left, right = _one_sided(act("selu").mpmath_derivative, 0)
    with mpmath.workdps(40):
        lam = mpmath.mpf("1.0507009873554804934193349852946")
        alpha = mpmath.mpf("1.6732632423543772848170429916717")
        assert abs(right - lam) < 1e-20
        assert abs(left - lam * alpha) < 1e-20
    assert not act("selu").derivative_has_delta  # selu itself is continuous


@pytest.mark.parametrize(
    "spec",
    ["Piecewise((1, x > 0), (0, True))", "Piecewise((x + 1, x > 0), (x, True))",
     "Piecewise((x, x > 0), (x - 1, x > -1), (x, True))", "x + Heaviside(x)", "alpha_relu:0"],
)
def test_jumps_give_a_dirac_mass(spec):
    """phi' of a discontinuous phi carries a Dirac mass, also when phi is a Piecewise
    (SymPy differentiates a Piecewise branch by branch and drops the jump)."""
    assert act(spec).derivative_has_delta


@pytest.mark.parametrize("spec", ["relu", "abs", "elu", "x**2*sign(x)", "Abs(x)**0.01",
                                  "x*Heaviside(x)", "Min(Heaviside(x), x)"])
def test_continuous_kinks_give_no_dirac_mass(spec):
    assert not act(spec).derivative_has_delta


def test_dirac_mass_of_a_composite_heaviside():
    # SymPy's limit of Heaviside(x - Heaviside(x)) at 0 used to hang here
    a = act("Min(Heaviside(x), x)")  # = min(x, 1) except at 0
    assert a.kinks == (0, 1)
    assert act("Max(x, Heaviside(x))").derivative_has_delta  # jumps from 0 to 1 at 0


def test_alpha_relu_zero_is_a_step():
    a = act("alpha_relu:0")
    assert _hom(a) == (0, 1, 0)
    assert a.derivative_has_delta


@pytest.mark.parametrize(
    "spec, power, singular",
    [("alpha_relu:1.5", 2, True), ("Max(x, 0)**1.3", 10, True), ("relu", 1, False),
     ("tanh", 1, False), ("Abs(x)**0.5", 2, True), ("Max(x, 0)**sqrt(2)", None, True),
     ("alpha_relu:pi", None, True)],
)
def test_kink_power(spec, power, singular):
    assert act(spec).kink_power == power
    assert act(spec).singular is singular


def test_irrational_power_derivative_is_finite_below_the_kink():
    a = act("Max(x, 0)**sqrt(2)")
    assert _hom(a) == (sp.sqrt(2), 1, 0)
    z = np.array([-3.0, -1e-3, 1e-3, 2.0])
    d = a.numpy_derivative(z)
    assert np.all(np.isfinite(d))
    assert d[0] == d[1] == 0
    assert np.allclose(d[2:], np.sqrt(2) * z[2:] ** (np.sqrt(2) - 1))
    with mpmath.workdps(30):
        assert a.mpmath_derivative(mpmath.mpf(-1)) == 0


def test_growth_probe_underflow_is_not_a_crash():
    # 1/softplus(x) ~ e^{-x} at -oo: finite Gaussian moments; softplus underflows at -1000
    a = act("1/log(1 + exp(x))")
    assert a.kinks == ()


# -- numeric callables --------------------------------------------------------------------

NUMERIC = LOADABLE + ["atan(x) + asinh(x) + cos(x) + erfc(x)", "cosh(x) - sinh(x)",
                      "alpha_relu:0.5", "alpha_relu:0", "Max(x, x/5)", "relu(2*x + 1)",
                      "sign(x)", "Piecewise((1, x > 0), (0, True))", "leaky_relu:0.2",
                      "elu:2", "Abs(x)**0.5", "Max(x, 0)**sqrt(2)", "tanh(2*x) + 0.1",
                      "x*(1 + erf(x/sqrt(2)))/2"]


def _points(a: Activation) -> np.ndarray:
    rng = np.random.default_rng(20240611)
    kinks = np.array(a.kink_floats, dtype=float)
    return np.concatenate([
        rng.uniform(-6, 6, 40),
        -rng.exponential(3, 10),
        [-30.0, -1.0, 0.0, 1.0, 30.0],
        kinks, kinks - 1e-9, kinks + 1e-9,
    ])


def _mp(fn, zs):
    with mpmath.workdps(30):
        return np.array([float(mpmath.re(fn(mpmath.mpf(float(z))))) for z in zs])


@pytest.mark.parametrize("spec", NUMERIC)
def test_numpy_agrees_with_mpmath(spec):
    a = act(spec)
    z = _points(a)
    np.testing.assert_allclose(a.numpy(z), _mp(a.mpmath, z), rtol=1e-10, atol=1e-12)
    # phi' is evaluated off the kinks: it may be infinite there (|x|^0.5)
    off = z[np.all(np.abs(z[:, None] - np.array(a.kink_floats + (1e9,))) > 1e-12, axis=1)]
    np.testing.assert_allclose(a.numpy_derivative(off), _mp(a.mpmath_derivative, off),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", ["relu", "linear", "step", "alpha_relu:1.5", "tanh", "elu"])
def test_numpy_is_vectorised(spec):
    a = act(spec)
    z = np.linspace(-3, 3, 12).reshape(3, 4)
    assert a.numpy(z).shape == (3, 4)
    assert a.numpy_derivative(z).shape == (3, 4)
    np.testing.assert_array_equal(a.numpy(z).ravel(), [a.numpy(float(t)) for t in z.ravel()])
    assert np.shape(a.numpy(0.5)) == ()


def test_no_numpy_warnings_for_fractional_powers_of_negatives():
    # pytest turns warnings into errors; numpy.select evaluates x**1.5 at x < 0 too
    a = act("alpha_relu:1.5")
    z = np.linspace(-5, 5, 101)
    with np.errstate(all="raise"):
        phi, dphi = a.numpy(z), a.numpy_derivative(z)
    assert np.all(np.isfinite(phi)) and np.all(np.isfinite(dphi))
    assert np.all(phi[z <= 0] == 0) and np.all(dphi[z <= 0] == 0)
    np.testing.assert_allclose(phi[z > 0], z[z > 0] ** 1.5)


def test_step_value_at_the_kink_is_the_same_in_both_backends():
    a = act("step")
    with mpmath.workdps(30):
        assert float(a.mpmath(mpmath.mpf(0))) == float(a.numpy(0.0)) == 0.5


@settings(max_examples=25, deadline=None)
@given(p=st.integers(min_value=1, max_value=40), q=st.integers(min_value=1, max_value=9),
       left=st.booleans())
def test_zero_radius_is_the_nearest_nonzero_piece(p, q, left):
    """relu(x - k) vanishes exactly on x <= k: the zero radius is k for k > 0, 0 otherwise;
    a second piece beyond the first cannot make it larger."""
    k = sp.Rational(p, q)
    expr = f"Max(-x - {k}, 0)" if left else f"Max(x - {k}, 0)"
    assert activation(expr).zero_radius == k
    assert activation(f"{expr} + Max(x - {k + 3}, 0)").zero_radius == k
    assert activation(f"Max(x + {k}, 0)").zero_radius == 0


@pytest.mark.parametrize("spec", ["tanh", "relu", "gelu", "x**2", "Heaviside(x)", "sin(x)"])
def test_zero_radius_of_activations_that_do_not_vanish_near_zero(spec):
    assert activation(spec).zero_radius == 0


@pytest.mark.parametrize("spec, k, a", [("Max(x - 0.2, 0)**0.75", 0.2, 0.75),
                                        ("Max(x + 0.5, 0)**(2/3)", -0.5, 2 / 3),
                                        ("Max(x, 0)**0.75 + 0.1*x", 0.0, 0.75)])
def test_flat_side_of_a_power_kink_has_derivative_zero(spec, k, a):
    """phi' of Max(x - k, 0)**a, 0 < a < 1, is 0 on the flat side (the chain rule's
    0 * 0**(a - 1) is NaN) and a (x - k)**(a - 1) (+ the linear part) on the other, in
    float64 and mpmath; checked against central differences of phi."""
    act = activation(spec)
    lin = 0.1 if "0.1*x" in spec else 0.0
    left = np.array([k - 3.0, k - 0.5, k - 1e-6])
    assert np.all(np.asarray(act.numpy_derivative(left)) == lin)
    for t in (k + 1e-3, k + 0.7, k + 3.0):
        want = a * (t - k) ** (a - 1) + lin
        assert abs(float(act.numpy_derivative(np.array([t]))[0]) - want) <= 1e-12 * want
        with mpmath.workdps(30):
            tt = mpmath.mpf(t)
            fd = mpmath.diff(act.mpmath, tt)
            assert abs(act.mpmath_derivative(tt) - fd) <= mpmath.mpf(10) ** -20 * abs(fd)
    exps = {(side, e) for _, side, e in kink_exponents(act)}
    assert (1, round(a - 1, 6)) in {(s, round(e, 6)) for s, e in exps}
    assert (-1, math.inf if lin == 0 else 0.0) in exps
