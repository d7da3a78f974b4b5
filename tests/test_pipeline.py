"""The staged pipeline: frozen derivations flow through numerics, codegen and verification."""

import dataclasses
import math

import mpmath
import pytest
import sympy as sp

import bnmft
from bnmft.derive import QUANTITIES, RELATIONS, B, Derivation, DerivedQuantity, derive
from bnmft.pipeline import REPORT_VERIFY_MAX, verification_sample


@pytest.mark.parametrize("spec", ["relu", "tanh", "step", "alpha_relu:0.5"])
def test_every_quantity_has_one_shape(spec):
    d = bnmft.derivation(spec)
    assert isinstance(d, Derivation) and d.names == QUANTITIES
    for q in d.quantities:
        assert isinstance(q, DerivedQuantity)
        assert isinstance(q.moment_form, sp.Expr)  # always a moment form (lambda_G: 0)
        assert q.parameters[0] == B and q.domain is not None and q.provenance.theorem
        assert (q.relation is not None) == (q.name in RELATIONS)
    assert d.forms["q_star"] == d["q_star"].moment_form


def test_derivation_is_frozen_hashable_and_cached():
    a, b = bnmft.derivation("relu"), derive(bnmft.activation("relu"))
    assert a is b and hash(a) == hash(b) and {a: 1}[b] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.quantities = ()
    with pytest.raises(TypeError):
        a.closed["q_star"] = None  # read-only view


def test_closed_forms_where_they_exist():
    relu, tanh = bnmft.derivation("relu"), bnmft.derivation("tanh")
    assert relu.all_closed and not tanh.has_closed_forms
    # the depth scale's closed form is its relation applied to the rate's closed form
    rate = relu["gradient_rate"].expr
    assert sp.simplify(relu["depth_scale"].expr - 1 / sp.log(rate)) == 0


@pytest.mark.parametrize("spec", ["step", "Heaviside(x) + x/4"])
def test_infinite_rate_is_derived_once_for_any_phi(spec):
    """phi' with a Dirac mass: E[phi'^2] = oo, so rate = oo, xi = 0 (closed, for any phi)."""
    d = bnmft.derivation(spec)
    assert d["gradient_rate"].expr is sp.oo and d["depth_scale"].expr == 0
    (an,) = bnmft.analyze(d, [8], digits=12)
    assert an.numbers["gradient_rate"].is_infinite and an.numbers["depth_scale"].value == 0


def test_relation_numbers_carry_propagated_digits():
    """xi = 1/log(rate): digits shift by log10|log rate| (lost as the rate approaches 1)."""
    (an,) = bnmft.analyze("linear", [10**6], digits=20)
    rate, xi = an.numbers["gradient_rate"], an.numbers["depth_scale"]
    with mpmath.workdps(50):
        ref = 1 / mpmath.log(mpmath.mpf(10**6 - 2) / (10**6 - 3))
        assert xi.reaches(20) and abs(xi.value - ref) < abs(ref) * mpmath.mpf(10) ** -20
    assert rate.digits >= 35 and xi.digits < rate.digits - 5  # log10(1e-6): six digits lost


def test_report_generate_verify_through_the_api():
    rep = bnmft.report("relu", [8, 32], digits=20, verify_digits=16)
    assert rep.verified and rep.verified_sizes == [8, 32]
    assert set(rep.sources) == {"numpy", "c"} and "relu.c" in rep.sources["c"]
    assert [an.batch_size for an in rep.analyses] == [8, 32]
    files = bnmft.generate("relu", ["numpy"], module="m")
    assert "m.py" in files["numpy"]
    assert all(c.ok for c in bnmft.verify("tanh", [8], 14))


def test_report_verifies_a_sample_of_many_batch_sizes():
    sample = verification_sample(range(4, 100_001))
    assert len(sample) == REPORT_VERIFY_MAX and sample[0] == 4 and sample[-1] == 100_000
    assert verification_sample([8, math.inf, 8, 5]) == [5, 8]
