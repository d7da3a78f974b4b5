"""Forward and backward spectra (derive/spectrum.py, numerics/spectrum.py).

Oracles: THEORY.md's formulas (typed here, never in the implementation), the existing BSB1
derivation (lambda_L, lambda_M, gradient rate), and the mpmath sphere quadrature of the
spectrum's own moment forms (for the closed forms that THEORY.md does not list: backward
L and M).
"""

import math

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bnmft.derive import B, derive, derive_spectrum
from bnmft.derive import parse_activation as activation
from bnmft.derive.bsb1 import forward_eigenvalues, gradient_rate_form
from bnmft.derive.quantity import J, Jp
from bnmft.derive.moments import centering, expect_sum, f, g, u
from bnmft.derive.spectrum import OPERATORS, spectrum_forms
from bnmft.numerics import analyze, analyze_spectrum, numbers_from_moments
from bnmft.numerics import sphere

# -- oracles from THEORY.md, in J = J(c), Jp = J'(c), c = -1/(B-1) ------------------------------
RELU_THEORY = {
    "forward_M": B * Jp / ((B + 1) * (1 - J)),
    "forward_L": (B - 2) / (B + 1) + B * Jp / ((B - 1) * (B + 1) * (1 - J)),
    "backward_G": (Jp + B - 1) / ((B - 3) * (1 - J)) - 1 / (B - 3),
}
THEORY_NUMBERS = {  # THEORY.md: B = 6 forward, B = 8 and 32 backward
    (6, "forward_M"): "0.481919714166",
    (6, "forward_L"): "0.667812514262",
    (8, "backward_G"): "1.78818997665874",
    (32, "backward_G"): "1.52195283055188",
    (8, "backward_L"): "1.50272625814472",
    (8, "backward_M"): "0.72327728039387",
}


def _forms():
    return {d: {space: form for space, _, form in entries}
            for d, entries in spectrum_forms().items()}


# -- moment forms ----------------------------------------------------------------------------


def test_spaces_dimensions_and_the_kernel_for_any_phi():
    for direction, entries in spectrum_forms().items():
        assert [(s, d) for s, d, _ in entries] == [
            ("kernel", B), ("G", 1), ("L", B - 1), ("M", B * (B - 3) / 2)], direction
        assert sp.expand(sum(d for _, d, _ in entries) - B * (B + 1) / 2) == 0
        assert entries[0][2] == 0


def test_forward_forms_are_the_bsb1_forward_eigenvalues():
    """lambda_G = 0 identically; lambda_L (from the L block) and lambda_M equal the Rayleigh
    quotient / trace forms of derive/bsb1.py as expressions in the moments."""
    fw, old = _forms()["forward"], forward_eigenvalues()
    assert fw["G"] == 0
    for space in ("L", "M"):
        assert sp.simplify(fw[space] - old[f"lambda_{space}"]) == 0


def test_backward_G_eigenvalue_is_the_gradient_rate():
    assert sp.simplify(_forms()["backward"]["G"] - gradient_rate_form()) == 0


def test_eigenvalues_add_up_to_the_trace_derived_directly():
    """sum(dim * eigenvalue) = trace on Sym(B) = (1/2) sum_{k,l} (T_{kl,kl} + T_{kl,lk}),
    the trace reduced by exchangeability on its own (two free batch indices), for any phi."""
    G = centering
    entry = {
        "forward": lambda i, j, k, l: f[i] * f[j] * ((B - 1) * u[k] * u[l] - G(k, l)),
        "backward": lambda a, b, c, d: g[c] * g[d] * (G(c, a) - u[c] * u[a])
        * (G(d, b) - u[d] * u[b]),
    }
    for direction, fn in entry.items():
        trace = expect_sum(lambda k, l, fn=fn: (fn(k, l, k, l) + fn(k, l, l, k)) / 2, 2)
        scale = OPERATORS[direction]().scale
        total = sum(dim * form for _, dim, form in spectrum_forms()[direction])
        assert sp.simplify(total - scale * trace.expr()) == 0, direction


# -- closed forms ----------------------------------------------------------------------------


def test_relu_closed_forms_are_theory_and_the_bsb1_derivation():
    spec = derive_spectrum(activation("relu"))
    deriv = derive(activation("relu"))
    old = {"forward_L": "lambda_L", "forward_M": "lambda_M", "backward_G": "gradient_rate"}
    for name, oracle in RELU_THEORY.items():
        compact = spec[name].eigenvalue.compact
        assert sp.cancel(compact - oracle) == 0, name
        assert sp.cancel(compact - deriv[old[name]].compact) == 0, name
    assert spec["forward_G"].eigenvalue.expr == 0
    assert spec["forward_kernel"].eigenvalue.expr == 0
    assert spec.derivation.definitions == deriv.definitions != ()


def test_linear_closed_forms():
    """THEORY.md: lambda_max = (B-2)/(B-3) for linear phi; lambda_L = lambda_M forward, and
    backward L = M = (B^2 - 2B - 1)/((B-3)(B+1)) (phi' = 1)."""
    spec = derive_spectrum(activation("linear"))
    ev = {e.name: e.eigenvalue.expr for e in spec.entries}
    assert sp.cancel(ev["backward_G"] - (B - 2) / (B - 3)) == 0
    assert sp.cancel(ev["forward_L"] - ev["forward_M"]) == 0
    assert sp.cancel(ev["backward_L"] - ev["backward_M"]) == 0
    assert sp.cancel(ev["backward_L"] - (B**2 - 2 * B - 1) / ((B - 3) * (B + 1))) == 0
    # the G eigenvalue is the largest backward one for every B >= 4
    assert sp.cancel(ev["backward_G"] - ev["backward_L"] - (B - 1) / ((B - 3) * (B + 1))) == 0


def _quadrature(spec, Bv, digits, names):
    d = spec.derivation
    with mpmath.workdps(digits + 10):
        res = sphere.moments_mp(spec.activation, list(d.moments), Bv, digits + 2)
        vals = {mo: v for mo, (v, e) in res.items()}
        errs = {mo: e for mo, (v, e) in res.items()}
        return numbers_from_moments(d, Bv, vals, errs, "sphere quadrature (mpmath)", names=names)


@pytest.mark.parametrize("spec_name", ["relu", "leaky_relu:0.2", "alpha_relu:1.5", "linear"])
@pytest.mark.parametrize("Bv", [5, 8])
def test_backward_closed_forms_against_sphere_quadrature(spec_name, Bv):
    """Every closed form (backward L, M included) at 20 digits against the mpmath sphere
    quadrature of the moment forms (paper Thm 4 angles, split at kinks)."""
    spec = derive_spectrum(activation(spec_name))
    names = [e.name for e in spec.entries if e.eigenvalue.expr is not None]
    assert {"backward_L", "backward_M"} <= set(names)
    nums = _quadrature(spec, Bv, 20, names)
    for name in names:
        expr = spec[name].eigenvalue.expr
        with mpmath.workdps(40):
            closed = mpmath.mpf(sp.N(expr.subs(B, Bv), 40))
            assert nums[name].reaches(20), (name, nums[name])
            assert abs(closed - nums[name].value) <= mpmath.mpf(10) ** -20 * max(1, abs(closed))


def test_infinite_and_unavailable_backward_eigenvalues():
    """relu^alpha with alpha <= 1/2: E[phi'^2] diverges, so G and L are infinite but M is
    finite (its form has no E[phi'^2]); step: phi' is a Dirac mass, M is not evaluated."""
    half = derive_spectrum(activation("alpha_relu:0.5"))
    assert half["backward_G"].eigenvalue.expr is sp.oo
    assert half["backward_L"].eigenvalue.expr is sp.oo
    m = half["backward_M"].eigenvalue
    assert m.expr is not None and m.expr.is_finite is not False
    nums = _quadrature(half, 6, 15, ["backward_M"])
    assert float(nums["backward_M"].value) == pytest.approx(float(m.expr.subs(B, 6)), rel=1e-14)
    step = derive_spectrum(activation("step"))
    assert step["backward_G"].eigenvalue.expr is sp.oo
    assert "Dirac" in step["backward_M"].note
    assert "backward_M" not in step.derivation
    (an,) = analyze_spectrum(step, [6], 10)
    entry = {e.name: e for e in an.backward}["backward_M"]
    assert entry.number.value is None and "Dirac" in entry.number.note
    assert an.unavailable() == [f"backward_M: {entry.number.note}"]
    assert an.shortfalls(10) == []


# -- numbers -----------------------------------------------------------------------------------


def test_numbers_are_theory_numbers_and_bsb1_numbers():
    spec = derive_spectrum(activation("relu"))
    results = analyze_spectrum(spec, [6, 8, 32], 30)
    bsb1 = {an.batch_size: an for an in analyze(derive(activation("relu")), [6, 8, 32], 30)}
    old = {"forward_L": "lambda_L", "forward_M": "lambda_M", "backward_G": "gradient_rate"}
    for res in results:
        for e in res.entries:
            assert e.number.reaches(30) and e.number.route == "closed form"
            ref = THEORY_NUMBERS.get((res.batch_size, e.name))
            if ref is not None:
                # THEORY.md rounds some numbers and truncates others ("...")
                n = len(ref.replace(".", "").lstrip("0"))
                assert ref in (e.number.text(n), e.number.text(30)[: len(ref)]), (e.name, ref)
            if e.name in old:
                assert e.number.text(30) == bsb1[res.batch_size].numbers[old[e.name]].text(30)
        assert [e.dim for e in res.forward] == [res.batch_size, 1, res.batch_size - 1,
                                                res.batch_size * (res.batch_size - 3) // 2]
        assert res.bsb1_stable is True


@pytest.mark.parametrize("spec_name,Bv", [("tanh", 8), ("gelu", 6), ("log(1 + exp(x)) - x/3", 6)])
def test_float_and_mpmath_routes_agree_for_any_phi(spec_name, Bv):
    spec = derive_spectrum(activation(spec_name))
    (fast,) = analyze_spectrum(spec, [Bv], 12)
    (slow,) = analyze_spectrum(spec, [Bv], 20)
    for a, b in zip(fast.entries, slow.entries):
        assert a.name == b.name and a.dim == b.dim
        assert a.number.reaches(12) and b.number.reaches(20)
        assert abs(float(a.number.value) - float(b.number.value)) <= 1e-12 * max(
            1, abs(float(b.number.value))), a.name
    rate = analyze(derive(activation(spec_name)), [Bv], 20)[0].numbers["gradient_rate"]
    assert {e.name: e for e in slow.backward}["backward_G"].number.text(20) == rate.text(20)


def test_stability_is_decided_by_the_largest_forward_eigenvalue():
    """alpha_relu:2 at B = 16 (THEORY.md, BSB1 -> BSB2 transition): forward L > 1."""
    spec = derive_spectrum(activation("alpha_relu:2"))
    (res,) = analyze_spectrum(spec, [16], 12)
    (an,) = analyze(derive(activation("alpha_relu:2")), [16], 12)
    assert res.bsb1_stable is False is an.bsb1_stable
    fl = {e.space: e for e in res.forward}["L"].number
    assert float(fl.value) > 1 and "forward eigenvalue" in res.stability_note


def test_infinite_batch_size_is_refused():
    with pytest.raises(ValueError, match="finite"):
        analyze_spectrum(derive_spectrum(activation("relu")), [math.inf], 10)


def test_spectrum_is_frozen_and_hashable():
    a = derive_spectrum(activation("tanh"))
    b = derive_spectrum(activation("tanh"))
    assert a == b and hash(a) == hash(b)
    assert all(e.eigenvalue.kind == "eigenvalue" for e in a.entries)
    with pytest.raises(AttributeError):
        a.entries = ()


def test_pipeline_api():
    import bnmft

    spec = bnmft.spectrum_derivation("relu")
    assert bnmft.spectrum_derivation(bnmft.derivation("relu")) is spec
    assert bnmft.spectrum_derivation(spec) is spec
    (res,) = bnmft.spectrum(spec, [6], 12)
    assert [(e.space, e.dim) for e in res.backward] == [("kernel", 6), ("G", 1), ("L", 5),
                                                        ("M", 9)]
    with pytest.raises(TypeError, match="unknown spectrum parameter"):
        bnmft.spectrum("relu", [6], 12, delta=1e-3)
    # eps > 0 is the regularised network: the forward G eigenvalue is no longer 0
    (reg,) = bnmft.spectrum("relu", [6], 12, epsilon="1e-3")
    assert [(e.space, e.dim) for e in reg.forward] == [("kernel", 6), ("G", 1), ("L", 5),
                                                       ("M", 9)]
    assert 0 < reg.forward[1].number.value < 0.01


coefficient = st.integers(-100, 100).map(lambda k: k / 100)


@settings(max_examples=10, deadline=None)
@given(a=st.integers(20, 300).map(lambda k: k / 100), b=coefficient, c=coefficient,
       Bv=st.sampled_from([4, 5, 7, 12, 33, 100, 512]))
def test_invariants_for_any_phi(a, b, c, Bv):
    """phi = tanh(a x) + b x + c x^2 on the float route: the kernel and the forward G
    eigenvalue are exactly 0, the backward G eigenvalue is the gradient rate and the largest
    backward eigenvalue, and bsb1_stable is the BSB1 analysis's."""
    act = activation(f"tanh({a}*x) + {b}*x + {c}*x**2")
    (res,) = analyze_spectrum(derive_spectrum(act), [Bv], 10)
    (an,) = analyze(derive(act), [Bv], 10)
    fw = {e.space: e.number for e in res.forward}
    bw = {e.space: e.number for e in res.backward}
    assert fw["kernel"].value == fw["G"].value == bw["kernel"].value == 0
    assert bw["G"].text(10) == an.numbers["gradient_rate"].text(10)
    assert float(bw["G"].value) > max(float(bw["L"].value), float(bw["M"].value))
    assert res.bsb1_stable is an.bsb1_stable
