"""``bnmft tune``: the value returned, fed back into ``analyze``, gives ``16 xi = L`` to the
digits claimed, read from the printed output; unreachable targets; monotonicity."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnmft
from bnmft.cli import main
from bnmft.derive.activation import activation


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def significant(text: str) -> int:
    return len(text.split("e")[0].lstrip("-").replace(".", "").lstrip("0"))


def depth_at(spec, vary, value_text, B, gamma=None, beta=None):
    """16 xi from an independent call of analyze at the printed value."""
    if vary == "gamma":
        an = bnmft.analyze(activation(spec, gamma=value_text, beta=beta), [B], 12)[0]
    elif vary == "beta":
        an = bnmft.analyze(activation(spec, gamma=gamma, beta=value_text), [B], 12)[0]
    else:
        an = bnmft.analyze(spec, [B], 12, value_text, "1")[0]
    return float(an.numbers["max_trainable_depth"].value), an.numbers["gradient_rate"]


def check_fed_back(spec, vary, B, target, row):
    value, digits = row["value"], row["digits"]
    assert significant(value) == digits >= 6
    got, rate = depth_at(spec, vary, value, B)
    # the printed value is the root rounded to `digits` digits: 16 xi moves by the
    # elasticity d log(16 xi) / d log v times that rounding, plus the rate's own error
    v = float(value)
    h = 1e-4 * abs(v)
    up, _ = depth_at(spec, vary, repr(v + h), B)
    down, _ = depth_at(spec, vary, repr(v - h), B)
    elasticity = abs((math.log(up) - math.log(down)) / (math.log(v + h) - math.log(v - h)))
    bound = elasticity * 10.0 ** (1 - digits) + 10.0 ** (-min(rate.digits, 13) + 1)
    assert abs(got / target - 1) <= bound, (got, target, bound)
    # the check line printed by tune is this same fed-back value
    assert float(row["max_trainable_depth"]) == pytest.approx(got, rel=1e-11)


def test_gamma_for_tanh_reaches_the_target_depth(capsys):
    status, out, err = run(capsys, "tune", "tanh", "--target-depth", "30", "--vary", "gamma",
                           "--batch-size", "32", "--json")
    assert status == 0, err
    row = json.loads(out)
    assert row["vary"] == "gamma" and row["target_rate"] == f"{math.exp(16 / 30):.15g}"
    check_fed_back("tanh", "gamma", 32, 30.0, row)


def test_beta_for_relu_reaches_the_target_depth_text_output(capsys):
    status, out, err = run(capsys, "tune", "relu", "--target-depth", "60", "--vary", "beta",
                           "--batch-size", "16")
    assert status == 0, err
    head = out.splitlines()[0]
    assert head.startswith("relu, B = 16: beta = ")
    value = head.split("beta = ")[1].split()[0]
    digits = int(head.split("(")[1].split()[0])
    got, _ = depth_at("relu", "beta", value, 16)
    assert significant(value) == digits
    assert abs(got / 60 - 1) < 10.0 ** (2 - digits)
    check = out.splitlines()[1]
    assert f"analyze at beta = {value}" in check


def test_eps_for_tanh_reaches_the_target_depth(capsys):
    status, out, err = run(capsys, "tune", "tanh", "--target-depth", "100", "--vary", "eps",
                           "--batch-size", "16", "--json")
    assert status == 0, err
    check_fed_back("tanh", "eps", 16, 100.0, json.loads(out))


@pytest.mark.slow
def test_eps_for_relu_reaches_the_target_depth(capsys):
    status, out, err = run(capsys, "tune", "relu", "--target-depth", "40", "--vary", "eps",
                           "--batch-size", "16", "--json")
    assert status == 0, err
    check_fed_back("relu", "eps", 16, 40.0, json.loads(out))


def test_target_rate_is_the_same_root_as_its_depth():
    res, check = bnmft.tune("tanh", target_rate=math.exp(16 / 30), vary="gamma", batch_size=32)
    res2, _ = bnmft.tune("tanh", 30, vary="gamma", batch_size=32)
    assert res.text == res2.text
    assert float(check.numbers["gradient_rate"].value) == pytest.approx(math.exp(16 / 30),
                                                                         rel=1e-11)


@pytest.mark.parametrize("argv, message", [
    (["tanh", "--target-depth", "1000", "--vary", "gamma", "--batch-size", "32"],
     "the linear phi has the least rate (B-2)/(B-3) = 1.03448 at B = 32, 16 xi = 471.955"),
    (["relu", "--target-depth", "3", "--vary", "beta", "--batch-size", "16"],
     "no beta in [-4, 4] reaches the target"),
    (["relu", "--target-rate", "0.9", "--vary", "beta"], "--target-rate must be > 1"),
    (["relu", "--target-depth", "-5", "--vary", "beta"], "--target-depth must be a finite"),
    (["relu", "--vary", "beta"], "give exactly one of --target-depth and --target-rate"),
    (["relu", "--target-depth", "5", "--target-rate", "2", "--vary", "beta"], "exactly one"),
    (["relu", "--target-depth", "40", "--vary", "eps", "--epsilon", "0.1"],
     "--epsilon cannot be fixed while eps is varied"),
    (["relu", "--target-depth", "40", "--vary", "alpha"], "invalid choice"),
])
def test_unreachable_and_bad_targets_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = run(capsys, "tune", *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("bnmft: error: ") and message in err


def test_unreachable_message_states_the_linear_bound_exactly(capsys):
    B = 32
    _, _, err = run(capsys, "tune", "tanh", "--target-depth", "1000", "--vary", "gamma",
                    "--batch-size", str(B))
    lin = (B - 2) / (B - 3)
    assert f"16 xi = {16 / math.log(lin):.6g}" in err


def rate(spec, B, gamma=None, beta=None):
    a = activation(spec, gamma=gamma, beta=beta)
    return float(bnmft.analyze(a, [B], 12)[0].numbers["gradient_rate"].value)


@settings(max_examples=6, deadline=None)
@given(g1=st.floats(0.05, 4.0), g2=st.floats(0.05, 4.0))
def test_tanh_rate_grows_with_gamma(g1, g2):
    """More linear tanh(gamma x) (smaller gamma) explodes less (paper Fig 4a)."""
    if abs(g1 - g2) < 1e-3 * max(g1, g2):
        return
    lo, hi = sorted((g1, g2))
    assert rate("tanh", 16, gamma=repr(lo)) < rate("tanh", 16, gamma=repr(hi))


@settings(max_examples=6, deadline=None)
@given(b1=st.floats(-2.0, 2.5), b2=st.floats(-2.0, 2.5))
def test_relu_rate_falls_with_beta(b1, b2):
    """relu(x + beta) gets more linear as beta grows (paper Fig 4b), up to sqrt(B-1)."""
    if abs(b1 - b2) < 1e-3:
        return
    lo, hi = sorted((b1, b2))
    assert rate("relu", 16, beta=repr(lo)) > rate("relu", 16, beta=repr(hi))


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(d1=st.integers(15, 200), d2=st.integers(15, 200))
def test_tuned_gamma_falls_with_the_target_depth(d1, d2):
    """A deeper target needs a more linear tanh: the tuned gamma is monotone in L."""
    if d1 == d2:
        return
    lo, hi = sorted((d1, d2))
    g_lo = bnmft.tune("tanh", lo, vary="gamma", batch_size=16)[0].value
    g_hi = bnmft.tune("tanh", hi, vary="gamma", batch_size=16)[0].value
    assert g_hi < g_lo
