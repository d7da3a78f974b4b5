"""eps > 0 functions of generated numpy modules (``bnmft codegen ACT --epsilon``): values
against :func:`bnmft.numerics.epsilon.analyze_regularised` (closed Tricomi forms / mpmath
radial quadrature for relu, the float64 route for tanh), broadcasting, eps = 0 against the
module's own eps = 0 functions, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bnmft
from bnmft.cli import main
from bnmft.codegen import epsilon as E
from bnmft.codegen import generate, load_numpy
from bnmft.codegen import quadrature as Q
from bnmft.derive.activation import activation
from bnmft.derive.epsilon import derive_regularised
from bnmft.numerics.epsilon import analyze_regularised

GOLDEN = __import__("pathlib").Path(__file__).parent / "golden" / "quadrature"


@pytest.fixture(scope="module")
def relu_eps():
    """The relu closed-form module with the (unverified) eps > 0 block."""
    act = bnmft.derivation("relu").activation
    base = generate(bnmft.derivation("relu"), lang="numpy", module="relu_eps")["relu_eps.py"]
    forms = E.epsilon_forms(act, "scaled")
    return load_numpy(E.append_block(base, E.render_numpy(act, forms), E.header_line(None)))


@pytest.fixture(scope="module")
def tanh_eps():
    """The tanh quadrature module (the golden's panel width, not re-verified) with the eps > 0
    block."""
    act = activation("tanh")
    gold = load_numpy((GOLDEN / "tanh_q.py").read_text(), "tanh_q")
    plan = Q.QuadraturePlan(gold._PANEL_Z, dict(gold.VERIFIED), tuple(gold.VERIFIED_BATCH_SIZES))
    base = Q.generate_quadrature(act, lang="numpy", module="tanh_eps", plan=plan)["tanh_eps.py"]
    forms = E.epsilon_forms(act, "table")
    return load_numpy(E.append_block(base, E.render_numpy(act, forms), E.header_line(None)))


def _reference(name, B, eps, sw):
    rd = derive_regularised(activation(name))
    res = analyze_regularised(rd, [B], repr(eps), repr(sw))[0]
    return res


def _check(mod, name, points, rtol_digits=12.0):
    arr = np.array(points, dtype=float)
    got = mod.all_eps(arr[:, 0], arr[:, 1], arr[:, 2])
    for i, (B, eps, sw) in enumerate(points):
        res = _reference(name, B, eps, sw)
        assert res.regime == "fixed point"
        for q in E.QUANTITIES:
            num = res.numbers[q]
            need = min(rtol_digits, num.digits) - 0.5
            ref = float(num.value)
            assert abs(got[q][i] - ref) <= 10**-need * abs(ref), (q, B, eps, sw, got[q][i], ref)


def test_relu_against_closed_forms(relu_eps):
    """relu: Tricomi closed forms (B <= 4096) and mpmath radial quadrature (B = 10^6), to
    1e-13 (lambda_G included: centred radial means without cancellation)."""
    _check(relu_eps, "relu", [(4, 1e-3, 1.0), (64, 0.1, 1.5), (1000, 0.05, 1.0),
                              (10**6, 1e-3, 1.0)], rtol_digits=13.5)


def test_tanh_against_float_route(tanh_eps):
    """tanh: the float64 route of numerics/epsilon (its own sphere quadrature and Chebyshev
    table), to 1e-12 or the digits it claims."""
    _check(tanh_eps, "tanh", [(4, 1e-3, 1.0), (8, 0.1, 1.5), (64, 0.5, 1.0)])


@pytest.mark.slow
def test_tanh_large_batch(tanh_eps):
    """At B = 10^6 the O(1/B) c* of tanh agrees to 6e-12 only: the float64 reference's sphere
    moments are the limit there (at rho = 1 its E[phi(z1) phi(z2)] is 1.3e-12 off the mpmath
    value, the module's 1e-16, see test_module_sphere_rule_at_rho_one)."""
    _check(tanh_eps, "tanh", [(1000, 1e-3, 1.0), (10**6, 0.1, 1.5)], rtol_digits=10.5)


def test_module_sphere_rule_at_rho_one(tanh_eps):
    """The sphere rule the table route interpolates, at rho = 1 and B = 10^6, against the
    mpmath eps = 0 quantities (q* = E[phi^2], q* c* = E[phi(z1) phi(z2)] = O(1/B))."""
    import mpmath

    res = bnmft.analyze(bnmft.derivation("tanh"), [10**6], digits=16)[0].numbers
    q, c = res["q_star"].value, res["c_star"].value
    got = tanh_eps._tensor_moments(1e6, 1.0, 0.0, (((0, 2, 0),), ((0, 1, 0), (0, 1, 0))))
    assert abs(got[0] - q) <= 1e-15 * abs(q)
    assert abs(mpmath.mpf(got[1]) - q * c) <= 1e-14 * abs(q * c)


def test_broadcast_shapes(relu_eps):
    B = np.array([[4.0], [64.0]])
    eps = np.array([1e-3, 0.1, 0.5])
    out = relu_eps.all_eps(B, eps, 1.5)
    assert set(out) == set(E.QUANTITIES)
    for v in out.values():
        assert v.shape == (2, 3) and v.dtype == np.float64
    single = relu_eps.q_star_eps(64, 0.1, 1.5)
    assert single.shape == () and float(single) == out["q_star"][1, 1]
    # sigma_w broadcasts too; only eps / sigma_w^2 matters (s* and q* scale with sigma_w^2)
    a = relu_eps.all_eps(8, 0.1, 1.0)
    b = relu_eps.all_eps(8, 0.4, 2.0)
    assert math.isclose(float(b["s_star"]), 4 * float(a["s_star"]), rel_tol=1e-13)
    assert math.isclose(float(b["gradient_rate"]), float(a["gradient_rate"]), rel_tol=1e-13)


@pytest.mark.parametrize("which", ["relu", "tanh"])
def test_eps_zero_is_the_eps_zero_module(relu_eps, tanh_eps, which):
    mod = relu_eps if which == "relu" else tanh_eps
    B = np.array([4.0, 33.0, 1000.0])
    out = mod.all_eps(B, 0.0, 1.5)
    for q in ("c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate", "depth_scale",
              "max_trainable_depth"):
        assert np.array_equal(out[q], getattr(mod, q)(B)), q
    assert np.allclose(out["q_star"], 2.25 * mod.q_star(B), rtol=1e-15)
    # and the eps > 0 route tends to that as eps -> 0 (the backward eigenvalues like
    # sqrt(eps), as in bnmft.numerics.epsilon: 2.5e-7 relative at B = 4, eps = 1e-14)
    tiny = mod.all_eps(B, 1e-13, 1.5)
    for q, rtol in (("q_star", 1e-9), ("c_star", 1e-9), ("lambda_L", 1e-9),
                    ("lambda_M", 1e-9), ("gradient_rate", 1e-5)):
        assert np.allclose(tiny[q], out[q], rtol=rtol), q


def test_no_fixed_point_is_nan(relu_eps):
    """eps / sigma_w^2 = 8: the reference has no nonzero fixed point; the module gives NaN."""
    assert _reference("relu", 8, 2.0, 0.5).regime == "no nonzero fixed point"
    out = relu_eps.all_eps(8, 2.0, 0.5)
    assert all(math.isnan(float(v)) for v in out.values())


@pytest.mark.parametrize("args, message", [
    ((8, -1e-3, 1.0), "eps must be finite and >= 0"),
    ((8, 1e-3, 0.0), "sigma_w must be finite and > 0"),
    ((8, 1e-3, -1.0), "sigma_w must be finite and > 0"),
    ((3, 1e-3, 1.0), "batch sizes must be finite and >= 4"),
    ((8, math.inf, 1.0), "eps must be finite and >= 0"),
])
def test_refusals(relu_eps, args, message):
    with pytest.raises(ValueError, match=message):
        relu_eps.all_eps(*args)


def test_verification_refuses_a_wrong_block(relu_eps):
    """check_values is not a formality: values off by 1e-9 are refused."""
    def off(B, e, w):
        out = relu_eps.all_eps(B, e, w)
        return {k: v * (1 + 1e-9) for k, v in out.items()}

    with pytest.raises(Q.VerificationError, match="agrees with the reference to only"):
        E.check_values(activation("relu"), off, points=((8, 0.1, 1.0),))


@pytest.mark.slow
def test_cli_relu_epsilon(tmp_path, capsys):
    """The command line writes a verified module whose header states the accuracy."""
    assert main(["codegen", "relu", "--lang", "numpy", "--epsilon", "--out", str(tmp_path),
                 "--module", "relu_e"]) == 0
    text = (tmp_path / "relu_e.py").read_text()
    assert "# eps > 0 functions: >= " in text.split('"""')[0]
    mod = load_numpy(text)
    assert min(mod.EPS_VERIFIED.values()) >= 13.5
    assert len(mod.EPS_VERIFIED_POINTS) == len(E.VERIFY_POINTS)
    again = bnmft.pipeline.generate("relu", ["numpy"], module="relu_e", epsilon=True)
    assert again["numpy"]["relu_e.py"] == text  # reproducible byte for byte


# -- C kernels (positive-homogeneous phi) -------------------------------------------------------


@pytest.fixture(scope="module")
def relu_c(private_cache):
    """The relu C kernels with the (unverified) eps > 0 block, compiled."""
    act = bnmft.derivation("relu").activation
    src = generate(bnmft.derivation("relu"), lang="c", module="relu_ce")
    forms = E.epsilon_forms(act, "scaled")
    c_block, h_block = E.render_c(act, forms, "relu_ce")
    sources = {"relu_ce.c": src["relu_ce.c"] + c_block,
               "relu_ce.h": E.insert_header(src["relu_ce.h"], h_block, "eps > 0")}
    return E.load_c_epsilon(sources, "relu_ce"), sources


@pytest.fixture(scope="module")
def alpha15(private_cache):
    """alpha_relu:1.5 with the eps > 0 block: numpy module and C ``all_eps``."""
    deriv = bnmft.derivation("alpha_relu:1.5")
    act = deriv.activation
    forms = E.epsilon_forms(act, "scaled")
    base = generate(deriv, lang="numpy", module="a15")["a15.py"]
    mod = load_numpy(E.append_block(base, E.render_numpy(act, forms), "x"))
    src = generate(deriv, lang="c", module="a15c")
    c_block, h_block = E.render_c(act, forms, "a15c")
    all_eps, _ = E.load_c_epsilon({"a15c.c": src["a15c.c"] + c_block,
                                   "a15c.h": E.insert_header(src["a15c.h"], h_block, "x")},
                                  "a15c")

    class C:
        pass

    c = C()
    c.all_eps = all_eps
    return mod, c


def test_non_integer_degree(alpha15):
    """alpha_relu:1.5: the closed sphere moments need gamma-ratio and 2F1 routines, emitted
    in the block under their own names (numpy and C) next to the module's; against the
    Tricomi closed forms."""
    for m in alpha15:
        _check(m, "alpha_relu:1.5", [(4, 1e-3, 1.0), (64, 0.1, 1.5)], rtol_digits=14.0)


@pytest.mark.slow
def test_non_integer_degree_large_batch(alpha15):
    """At B = 10^6 (mpmath radial quadrature of the closed sphere moments: minutes)."""
    for m in alpha15:
        _check(m, "alpha_relu:1.5", [(10**6, 1e-3, 1.0)], rtol_digits=14.0)


def test_c_relu_against_closed_forms(relu_c):
    (all_eps, singles), _ = relu_c

    class Mod:
        pass

    mod = Mod()
    mod.all_eps = all_eps
    points = [(4, 1e-3, 1.0), (64, 0.1, 1.5), (1000, 0.05, 1.0), (10**6, 1e-3, 1.0)]
    _check(mod, "relu", points, rtol_digits=13.5)
    arr = np.array(points, dtype=float)
    fused = all_eps(arr[:, 0], arr[:, 1], arr[:, 2])
    for q, fn in singles.items():
        assert np.array_equal(fn(arr[:, 0], arr[:, 1], arr[:, 2]), fused[q]), q


def test_c_matches_numpy(relu_c, relu_eps):
    (all_eps, _), _ = relu_c
    B, eps, sw = np.meshgrid([4.0, 5.0, 33.0, 1e5], [1e-6, 1e-2, 0.3], [0.7, 1.0, 2.0])
    c, py = all_eps(B, eps, sw), relu_eps.all_eps(B, eps, sw)
    for q in E.QUANTITIES:
        assert np.allclose(c[q], py[q], rtol=1e-13, atol=0, equal_nan=True), q


def test_c_null_parameters_and_invalid(relu_c, relu_eps):
    (all_eps, singles), _ = relu_c
    B = np.array([4.0, 64.0])
    null = all_eps(B, None, None)  # NULL eps: eps = 0, NULL sigma_w: 1
    for q in E.QUANTITIES:
        assert np.array_equal(null[q], relu_eps.all_eps(B, 0.0, 1.0)[q]), q
    assert np.allclose(all_eps(B, 0.0, 1.5)["q_star"], 2.25 * relu_eps.q_star(B), rtol=1e-15)
    bad = all_eps(np.array([3.0, 8.0, 8.0, 8.0, 8.0]),
                  np.array([1e-3, -1e-3, 1e-3, np.nan, 1e-3]),
                  np.array([1.0, 1.0, 0.0, 1.0, -2.0]))
    for q in E.QUANTITIES:
        assert np.all(np.isnan(bad[q])), q
    assert np.isnan(singles["s_star"](8, 2.0, 0.5)).all()  # no nonzero fixed point


def test_c_compiles_without_warnings(relu_c, tmp_path):
    import subprocess

    from bnmft.codegen.jit import find_compiler

    _, sources = relu_c
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run([*find_compiler(), "-std=c99", "-O2", "-Wall", "-Wextra", "-c",
                           str(tmp_path / "relu_ce.c"), "-o", str(tmp_path / "x.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.fixture(scope="module")
def tanh_c(private_cache):
    """The tanh quadrature C kernels (the golden's panel width) with the eps > 0 block."""
    act = activation("tanh")
    gold = load_numpy((GOLDEN / "tanh_q.py").read_text(), "tanh_q")
    plan = Q.QuadraturePlan(gold._PANEL_Z, dict(gold.VERIFIED), tuple(gold.VERIFIED_BATCH_SIZES))
    src = Q._render_c(act, "tanh_ce", plan)
    c_block, h_block = E.render_c(act, E.epsilon_forms(act, "table"), "tanh_ce")
    sources = {"tanh_ce.c": src["tanh_ce.c"] + c_block,
               "tanh_ce.h": E.insert_header(src["tanh_ce.h"], h_block, "eps > 0")}
    return E.load_c_epsilon(sources, "tanh_ce")


def test_c_tanh_against_float_route_and_numpy(tanh_c, tanh_eps):
    all_eps, singles = tanh_c

    class Mod:
        pass

    mod = Mod()
    mod.all_eps = all_eps
    _check(mod, "tanh", [(4, 1e-3, 1.0), (8, 0.1, 1.5), (64, 0.5, 1.0)])
    B, eps, sw = (np.array(v) for v in ([4.0, 8.0, 64.0, 1e5], [1e-3, 0.1, 0.5, 0.1],
                                         [1.0, 1.5, 1.0, 1.5]))
    c, py = all_eps(B, eps, sw), tanh_eps.all_eps(B, eps, sw)
    for q in E.QUANTITIES:
        # lambda_G: 3e-13 (the two Chebyshev evaluations and divided differences differ)
        assert np.allclose(c[q], py[q], rtol=1e-12, atol=0), q
    assert np.array_equal(singles["gradient_rate"](B, eps, sw), c["gradient_rate"])
    zero = all_eps(B, None, 1.5)  # the C eps = 0 kernel (within 1e-13 of numpy's)
    assert np.allclose(zero["lambda_M"], tanh_eps.lambda_M(B), rtol=1e-13, atol=0)


def test_c_tanh_model_cache_with_interleaved_batch_sizes(tanh_c):
    """The C loop rebuilds the sphere-moment model only where B changes: runs of equal B,
    interleaved B and invalid elements between equal B give the values of one-element calls."""
    all_eps, _ = tanh_c
    B = np.array([8.0, 8.0, 64.0, 8.0, 3.0, 8.0, 64.0, 64.0])
    eps = np.array([0.1, 0.01, 0.1, 0.5, 0.1, 0.1, 0.01, 0.1])
    got = all_eps(B, eps, 1.0)
    for i in range(B.size):
        one = all_eps(B[i:i + 1], eps[i:i + 1], 1.0)
        for q in E.QUANTITIES:
            assert np.array_equal(got[q][i:i + 1], one[q], equal_nan=True), (q, i)
    assert np.all(np.isnan(got["q_star"][4]))  # B = 3: invalid, NaN
    assert got["q_star"][0] == got["q_star"][5]  # same (B, eps) before and after others


@pytest.mark.parametrize("phi", ["step", "Heaviside(x)"])
def test_cli_refuses_unsupported(tmp_path, capsys, phi):
    """A phi' with a Dirac mass has divergent eps > 0 moments: one line, exit status 2,
    before any verification."""
    assert main(["codegen", phi, "--lang", "numpy", "--epsilon", "--out", str(tmp_path),
                 "--module", "s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnmft: error:")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_relu_epsilon_c(tmp_path):
    assert main(["codegen", "relu", "--lang", "c", "--epsilon", "--out", str(tmp_path),
                 "--module", "relu_e"]) == 0
    h = (tmp_path / "relu_e.h").read_text()
    assert " * eps > 0 functions: >= " in h.split("*/")[0]
    assert "void relu_e_all_eps(size_t n, const double *B, const double *eps," in h
