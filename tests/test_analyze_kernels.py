"""``analyze`` at ``digits <= FLOAT_DIGITS``: the closed forms through float64 kernels.

Against the mpmath route (``float_kernels=False``) and against the closed forms at 40 digits:
the kernels' numbers print the same digits and agree with both to the digits they claim; the
command line prints what it printed before.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
import sympy as sp

import bnmft
from bnmft.cli import main
from bnmft.derive import B as B_SYM
from bnmft.numerics import FLOAT_DIGITS, agreeing_digits, analyze

ACTIVATIONS = ["relu", "leaky_relu:0.2", "alpha_relu:1.5", "Max(x,0)**1.5"]
SIZES = [4, 5, 8, 33, 1000, 10**6, 10**15]
FAST = ("float64", "extended precision")


@functools.cache
def reference(expr: sp.Expr, Bv, dps: int = 40):
    """A closed form at ``B = Bv`` to ``dps`` digits (evaluated at ``dps + 20``)."""
    fn = sp.lambdify(B_SYM, expr, "mpmath")
    with mpmath.workdps(dps + 20):
        return +fn(mpmath.mpf(Bv))


@pytest.mark.parametrize("digits", [12, FLOAT_DIGITS])
@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_kernels_agree_with_the_mpmath_route(spec, digits):
    deriv = bnmft.derivation(spec)
    new = analyze(deriv, SIZES, digits)
    old = analyze(deriv, SIZES, digits, float_kernels=False)
    used = 0
    for a, b in zip(new, old):
        assert a.bsb1_stable == b.bsb1_stable, a.batch_size
        for name, num in a.numbers.items():
            ref = b.numbers[name]
            assert num.reaches(digits) and ref.reaches(digits), (a.batch_size, name)
            assert num.text(digits) == ref.text(digits), (a.batch_size, name)
            if num.note in FAST:
                used += 1
                assert num.route == ref.route == "closed form"
                agree = agreeing_digits(num.value, ref.value)
                assert agree >= num.digits - 0.01, (a.batch_size, name, num, ref)
    # the kernels gave nearly all of the numbers that depend on B
    varying = sum(not deriv[n].expr.is_number for n in old[0].numbers) * len(SIZES)
    assert used >= 0.9 * varying


def _dense_sizes():
    sizes = set(SIZES) | set(range(4, 24)) | set(range(60, 70))  # B/2 around X0 = 32
    sizes |= {int(b) for b in np.geomspace(24, 10**15, 40)}
    return sorted(sizes)


@pytest.mark.parametrize("digits", [12, FLOAT_DIGITS])
@pytest.mark.parametrize("spec", ACTIVATIONS)
def test_claims_never_exceed_agreement_with_40_digits(spec, digits):
    """Float64 and extended-precision values alike (at 13 digits many are the latter)."""
    deriv = bnmft.derivation(spec)
    sizes = _dense_sizes()
    bad = []
    for an in analyze(deriv, sizes, digits):
        for name, num in an.numbers.items():
            if num.note not in FAST:
                continue
            ref = reference(deriv[name].expr, an.batch_size)
            agree = agreeing_digits(num.value, ref)
            if agree < num.digits:
                bad.append(f"B={an.batch_size} {name}: claims {num.digits:.2f}, "
                           f"agrees to {agree:.2f}")
    assert not bad, "\n".join(bad)


def test_no_kernels_beyond_float_digits():
    (an,) = analyze(bnmft.derivation("relu"), [33], FLOAT_DIGITS + 1)
    assert not any(n.note in FAST for n in an.numbers.values())


def test_rewritten_sums_and_limits_are_kept():
    """abs cancels at large B (rewritten kernel); B = inf stays the SymPy limit."""
    deriv = bnmft.derivation("abs")
    sizes = [5, 64, 10**9, 10**15, math.inf]
    new = analyze(deriv, sizes, 12)
    old = analyze(deriv, sizes, 12, float_kernels=False)
    for a, b in zip(new, old):
        for name, num in a.numbers.items():
            assert num.text(12) == b.numbers[name].text(12), (a.batch_size, name)
            assert num.route == b.numbers[name].route
    assert new[-1].numbers == old[-1].numbers


# -- the command line ------------------------------------------------------------------------

#: ``bnmft analyze relu --batch-size 6,8,32 --digits 12`` as printed by the mpmath route.
RELU_12 = """\
activation relu, B = 6
  q_star                       0.500000000000   [closed form]
  c_star                       0.224697563863   [closed form]
  lambda_G                                  0   [closed form]
  lambda_L                     0.667812514262   [closed form]
  lambda_M                     0.481919714166   [closed form]
  bsb1_stable            True
  gradient_rate                 2.00377862444   [closed form]
  depth_scale                   1.43877706425   [closed form]
  max_trainable_depth           23.0204330280   [closed form]
activation relu, B = 8
  q_star                       0.500000000000   [closed form]
  c_star                       0.250134932861   [closed form]
  lambda_G                                  0   [closed form]
  lambda_L                     0.743611058198   [closed form]
  lambda_M                     0.538610740719   [closed form]
  bsb1_stable            True
  gradient_rate                 1.78818997666   [closed form]
  depth_scale                   1.72056650358   [closed form]
  max_trainable_depth           27.5290640572   [closed form]
activation relu, B = 32
  q_star                       0.500000000000   [closed form]
  c_star                       0.302346482176   [closed form]
  lambda_G                                  0   [closed form]
  lambda_L                     0.931048839523   [closed form]
  lambda_M                     0.680695843409   [closed form]
  bsb1_stable            True
  gradient_rate                 1.52195283055   [closed form]
  depth_scale                   2.38098488023   [closed form]
  max_trainable_depth           38.0957580836   [closed form]
"""


def test_cli_output_unchanged(capsys):
    assert main(["analyze", "relu", "--batch-size", "6,8,32", "--digits", "12"]) == 0
    out, _ = capsys.readouterr()
    assert out == RELU_12
    # and it came from the kernels
    an = analyze(bnmft.derivation("relu"), [6, 8, 32], 12)
    assert all(an_.numbers["lambda_L"].note in FAST for an_ in an)
