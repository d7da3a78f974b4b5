"""Sampled finite networks (``bnmft simulate``) against the theory and against themselves.

The theory (``bnmft analyze``, the N -> oo limit) is the reference for the measured rates;
the network's backward step is checked against the explicit batchnorm Jacobian of
``numerics/montecarlo.py`` and against finite differences of the forward step; sigma_w
invariance at eps = 0 is an exact property of the sampled networks (hypothesis).
"""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnmft
import bnmft.pipeline
from bnmft.cli import main
from bnmft.numerics import simulate as sm
from bnmft.numerics.montecarlo import layer_jacobian


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def check_printed(entry, theory_number, max_sigmas):
    """A printed measurement: mean and stderr to the same decimals, the stderr to two
    significant digits, the theory as analyze prints it, and agreement within max_sigmas."""
    mean, err = entry["mean"], entry["stderr"]
    assert decimals(mean) == decimals(err)
    assert len(err.replace(".", "").lstrip("0")) == 2
    digits = len(entry["theory"].replace(".", "").lstrip("-").lstrip("0"))
    assert entry["theory"] == theory_number.text(digits)
    dev = (float(mean) - float(theory_number.value)) / float(err)
    assert abs(dev) < max_sigmas, entry
    # the printed deviation is that of the unrounded mean and stderr
    assert entry["deviation"] == pytest.approx(dev, abs=0.05 + 0.06 * abs(dev))


def test_relu_b16_agrees_with_theory_through_the_cli(capsys):
    """The headline case: ReLU, B = 16, N = 512, L = 30, 8 networks."""
    status, out, err = run(capsys, "simulate", "relu", "--batch-size", "16", "--width", "512",
                           "--depth", "30", "--samples", "8", "--seed", "3", "--json")
    assert status == 0, err
    row = json.loads(out)
    theory = bnmft.analyze("relu", [16], 12)[0].numbers
    check_printed(row["gradient_rate"], theory["gradient_rate"], 3.0)
    # forward rates: linear response of the projections on L and M eigenvectors
    check_printed(row["forward_rate_L"], theory["lambda_L"], 3.5)
    check_printed(row["forward_rate_M"], theory["lambda_M"], 3.5)
    assert row["gradient_rate"]["estimator"].startswith("geometric mean")
    layers = row["layers"]
    assert [r["layer"] for r in layers] == list(range(1, 31))
    # the gradient norm relative to the output grows like rate^(L - l)
    g = [float(r["gradient_norm"]["mean"]) for r in layers]
    assert g[-1] == 1.0
    rate = float(theory["gradient_rate"].value)
    assert g[5] / g[24] == pytest.approx(rate**19, rel=0.25)
    # the batch covariance sits at the BSB1 point up to the finite-width noise
    assert all(float(r["distance"]["mean"]) < 4 / math.sqrt(512) * 4 for r in layers[5:])
    # relu: E q = sigma_w^2 / 2 exactly at any width (sign symmetry of the weights' rows)
    assert abs(float(row["q_star"]["mean"]) - 0.5) < 5 * float(row["q_star"]["stderr"]) + 1e-3


@pytest.mark.parametrize("spec, B", [("tanh", 8), ("log(1 + exp(2*x))", 12)])
def test_tanh_and_a_typed_phi_agree_with_theory(spec, B):
    sim = bnmft.simulate(spec, B, width=256, depth=20, samples=8, seed=11)
    theory = bnmft.analyze(spec, [B], 12)[0].numbers
    g = sim.gradient_rate
    assert g.theory == float(theory["gradient_rate"].value)
    assert abs(g.deviation) < 3.0, (g.mean, g.stderr, g.theory)
    # q* and c*: O(1/N) finite-width bias allowed on top of the sampling error
    for name in ("q_star", "c_star"):
        m = getattr(sim, name)
        assert abs(m.mean - m.theory) < 3 * m.stderr + 2.0 / 256 * abs(m.theory) + 1e-3, name


def test_eps_and_sigma_w_against_the_regularised_theory():
    sim = bnmft.simulate("relu", 8, width=256, depth=20, samples=8, seed=5, epsilon="0.05",
                         sigma_w="1.3")
    theory = bnmft.analyze("relu", [8], 12, "0.05", "1.3")[0].numbers
    assert sim.gradient_rate.theory == float(theory["gradient_rate"].value)
    assert abs(sim.gradient_rate.deviation) < 3.0
    assert abs(sim.q_star.mean - sim.q_star.theory) < 0.02 * sim.q_star.theory


def test_backward_step_is_the_transpose_of_the_batchnorm_jacobian():
    rng = np.random.default_rng(0)
    act = bnmft.activation("gelu")
    bk = sm.backend("numpy")
    N, B, eps = 7, 6, 0.1
    W = rng.standard_normal((N, N)) / math.sqrt(N)
    x = rng.standard_normal((N, B))
    delta = rng.standard_normal((N, B))
    _, y, sb = sm.layer_forward(bk, W, x, eps, act.numpy)
    got = sm.layer_backward(bk, W, delta, y, sb, act.numpy_derivative)
    J = layer_jacobian(act, W @ x, eps)  # J[n, c, a] = d x'_c / d h_a, built explicitly
    want = np.einsum("nca,nc->na", J, W.T @ delta)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # and against central differences of the forward step: d<delta, x'(h)>/dh
    h0 = W @ x
    fd = np.zeros_like(h0)
    step = 1e-6
    for n in range(N):
        for a in range(B):
            hp, hm = h0.copy(), h0.copy()
            hp[n, a] += step
            hm[n, a] -= step
            fp = sm.layer_forward(bk, np.eye(N), hp, eps, act.numpy)[0]
            fm = sm.layer_forward(bk, np.eye(N), hm, eps, act.numpy)[0]
            fd[n, a] = np.sum((W.T @ delta) * (fp - fm)) / (2 * step)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


@settings(max_examples=8, deadline=None)
@given(sigma_w=st.floats(0.2, 5.0), spec=st.sampled_from(["relu", "tanh", "sin(x) + x/2"]))
def test_eps0_is_scale_invariant_in_sigma_w(sigma_w, spec):
    """At eps = 0 batchnorm removes the weights' scale: with the same seed, sigma_w multiplies
    the weights only, so q scales by sigma_w^2 and c, distances and gradients are unchanged."""
    a = bnmft.simulate(spec, 5, width=24, depth=6, samples=2, seed=7, theory=False)
    b = bnmft.simulate(spec, 5, width=24, depth=6, samples=2, seed=7, sigma_w=repr(sigma_w),
                       theory=False)
    for ea, eb in zip(a.q, b.q):
        assert eb.mean == pytest.approx(sigma_w**2 * ea.mean, rel=1e-9)
    for name in ("c", "distance", "gradient_norm"):
        for ea, eb in zip(getattr(a, name), getattr(b, name)):
            assert eb.mean == pytest.approx(ea.mean, rel=1e-8, abs=1e-12)
    assert b.gradient_rate.mean == pytest.approx(a.gradient_rate.mean, rel=1e-9)


def test_seeded_runs_repeat_and_seeds_differ():
    a = bnmft.simulate("relu", 6, width=32, depth=8, samples=3, seed=1, theory=False)
    b = bnmft.simulate("relu", 6, width=32, depth=8, samples=3, seed=1, theory=False)
    c = bnmft.simulate("relu", 6, width=32, depth=8, samples=3, seed=2, theory=False)
    assert a.gradient_rate.mean == b.gradient_rate.mean
    assert a.gradient_rate.mean != c.gradient_rate.mean


def test_text_output_prints_what_was_measured(capsys):
    status, out, err = run(capsys, "simulate", "tanh", "--batch-size", "8", "--width", "64",
                           "--depth", "10", "--samples", "3")
    lines = out.splitlines()
    assert lines[0].startswith("tanh, B = 8, width 64, depth 10, 3 networks")
    (grad,) = [ln for ln in lines if ln.strip().startswith("gradient_rate ")]
    mean, _, err_text = grad.split()[1:4]
    assert decimals(mean) == decimals(err_text)
    assert sum(1 for ln in lines if re.match(r"\s+\d+\s", ln)) == 10
    # a measurement that could not be made is named on stderr, never printed as a number
    for ln in err.splitlines():
        assert ln.startswith("bnmft: not measured: ")
    assert status == (1 if err else 0)


def test_shallow_network_names_what_it_cannot_measure(capsys):
    status, out, err = run(capsys, "simulate", "relu", "--batch-size", "8", "--width", "16",
                           "--depth", "1", "--samples", "2", "--json")
    row = json.loads(out)
    assert status == 1
    assert row["gradient_rate"]["mean"] is None
    assert "bnmft: not measured: gradient_rate: depth 1 leaves no layer ratio" in err


@pytest.mark.parametrize("args, message", [
    (["--width", "1"], "width must be >= 2 (got 1)"),
    (["--depth", "0"], "depth must be >= 1 (got 0)"),
    (["--samples", "1"], "samples must be >= 2 (got 1)"),
    (["--backend", "jax"], "unknown backend 'jax' (use numpy or torch)"),
    (["--batch-size", "3"], "batch size must be >= 4 (got 3)"),
    (["--width", "8.5"], "--width must be an integer (got '8.5')"),
    (["--epsilon", "-1"], "eps"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    argv = ["simulate", "relu", "--batch-size", "8", *args]
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("bnmft: error: ") and message in err


@pytest.mark.skipif(not sm.torch_available(), reason="PyTorch not installed")
def test_torch_backend_computes_the_same_network():
    import torch as th

    rng = np.random.default_rng(4)
    act = bnmft.activation("tanh")
    N, B = 9, 5
    W, x, d = rng.standard_normal((N, N)), rng.standard_normal((N, B)), rng.standard_normal((N, B))
    np_bk, th_bk = sm.backend("numpy"), sm.backend("torch")
    xn, yn, sn = sm.layer_forward(np_bk, W, x, 0.01, act.numpy)
    xt, yt, st_ = sm.layer_forward(th_bk, th.from_numpy(W), th.from_numpy(x), 0.01, act.numpy)
    np.testing.assert_allclose(xt.numpy(), xn, rtol=1e-13, atol=1e-15)
    gn = sm.layer_backward(np_bk, W, d, yn, sn, act.numpy_derivative)
    gt = sm.layer_backward(th_bk, th.from_numpy(W), th.from_numpy(d), yt, st_,
                           act.numpy_derivative)
    np.testing.assert_allclose(gt.numpy(), gn, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not sm.torch_available(), reason="PyTorch not installed")
def test_torch_backend_prints_what_numpy_prints(capsys):
    """Both backends draw the same normals (numpy's Generator) and compute the same networks:
    the printed JSON agrees digit for digit, theory comparison included."""
    import torch as th

    threads = th.get_num_threads()
    rows = {}
    for name in ("numpy", "torch"):
        status, out, err = run(capsys, "simulate", "relu", "--batch-size", "8", "--width", "96",
                               "--depth", "14", "--samples", "4", "--seed", "9", "--backend",
                               name, "--json")
        rows[name] = json.loads(out)
        assert rows[name].pop("backend") == name
    assert rows["torch"] == rows["numpy"]
    assert th.get_num_threads() == threads  # the backend restores the caller's setting


@pytest.mark.slow
def test_finite_width_bias_of_c_star_is_order_one_over_n():
    """relu, B = 16: c* of the finite network is biased low by a constant / N (README table):
    N (mean - theory) agrees between N = 128 and 512 and is resolved away from 0."""
    bias = bnmft.pipeline.width_bias("relu", 16, widths=(128, 512), depth=30, samples=16,
                                     seed=21)
    (b1, e1), (b2, e2) = (bias[n]["c_star"] for n in (128, 512))
    scaled = [(128 * b1, 128 * e1), (512 * b2, 512 * e2)]
    for value, err in scaled:
        assert value < -5 * err  # resolved, and negative
    (v1, s1), (v2, s2) = scaled
    assert abs(v1 - v2) < 3 * math.hypot(s1, s2)
