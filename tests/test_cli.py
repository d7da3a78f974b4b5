"""The command-line contract: JSON keys, digits, exit codes, one-line errors, files."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import mpmath
import numpy as np
import pytest

from bnmft.cli import main

KEYS = [
    "activation", "batch_size", "q_star", "c_star", "lambda_G", "lambda_L", "lambda_M",
    "bsb1_stable", "gradient_rate", "depth_scale", "max_trainable_depth",
]


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def significant_digits(text: str) -> int:
    mantissa = text.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    return len(mantissa)


def test_analyze_json_single(capsys):
    status, out, err = run(capsys, "analyze", "relu", "--batch-size", "32", "--json")
    assert status == 0 and err == ""
    row = json.loads(out)
    assert list(row) == KEYS
    assert row["batch_size"] == 32 and row["bsb1_stable"] is True
    assert float(row["gradient_rate"]) == pytest.approx(1.52195283055188, rel=1e-14)
    for key in KEYS[2:]:
        if key not in ("bsb1_stable", "lambda_G"):
            assert significant_digits(row[key]) >= 16, key


def test_analyze_json_list_and_digits(capsys):
    status, out, _ = run(capsys, "analyze", "relu", "--batch-size", "6,8", "--digits", "30",
                         "--json")
    rows = json.loads(out)
    assert status == 0 and [r["batch_size"] for r in rows] == [6, 8]
    # THEORY.md's closed forms at 50 digits, rounded to the 30 printed (an earlier version of
    # this test pinned the first 20 printed characters, float64 noise included)
    import mpmath as mp

    with mp.workdps(50):
        def kernel(B):
            c = -1 / (mp.mpf(B) - 1)
            return (mp.sqrt(1 - c * c) + (mp.pi - mp.acos(c)) * c) / mp.pi, (mp.pi - mp.acos(c)) / mp.pi

        J, Jp = kernel(6)
        lam_m = 6 * Jp / (7 * (1 - J))
        J, Jp = kernel(8)
        rate = (Jp + 7) / (5 * (1 - J)) - mp.mpf(1) / 5
        assert rows[0]["lambda_M"] == mp.nstr(lam_m, 30, strip_zeros=False)
        assert rows[1]["gradient_rate"] == mp.nstr(rate, 30, strip_zeros=False)


def test_analyze_linear_and_infinity(capsys):
    status, out, _ = run(capsys, "analyze", "linear", "--batch-size", "8,inf", "--json")
    rows = json.loads(out)
    assert rows[0]["gradient_rate"].startswith("1.200000000000000")  # (B-2)/(B-3)
    assert rows[1]["batch_size"] == "inf" and rows[1]["depth_scale"] == "inf"


def test_non_attracting_bsb1_warns_on_one_line(capsys):
    status, out, err = run(capsys, "analyze", "alpha_relu:2", "--batch-size", "1000", "--json")
    assert status == 0
    assert json.loads(out)["bsb1_stable"] is False
    assert len(err.strip().splitlines()) == 1 and "not attracting" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "relu", "--batch-size", "3"],
        ["analyze", "relu", "--batch-size", "abc"],
        ["analyze", "relu", "--batch-size", "8.5"],
        ["analyze", "nonsense_activation", "--batch-size", "8"],
        ["analyze", "tanh(", "--batch-size", "8"],
        ["analyze", "exp(x**2)", "--batch-size", "8"],
        ["analyze", "5", "--batch-size", "8"],
        ["analyze", "relu", "--batch-size", "8", "--digits", "0"],
        ["analyze", "relu", "--batch-size", "8", "--digits", "1000"],
        ["analyze", "relu"],
        ["frobnicate"],
        ["codegen", "Heaviside(x - 0.5)", "--lang", "numpy", "--out", "x", "--module", "m"],
        ["codegen", "relu", "--lang", "numpy", "--out", "x", "--module", "not-valid"],
        ["verify", "relu", "--batch-size", "2"],
        ["analyze", "relu", "--batch-size", "1e300"],  # beyond 10^15: use inf
        ["analyze", "relu", "--batch-size", "4:1000000000"],  # too many batch sizes
        ["analyze", "relu", "--batch-size", "8:4"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")


def test_gegenbauer_terms_cap(capsys):
    """The documented caps: exit 2 with one line that names the cap, in --help as well."""
    from bnmft.numerics.gegenbauer import MAX_TERMS_CLOSED_FORM, MAX_TERMS_QUADRATURE

    for spec, cap in (("tanh", MAX_TERMS_QUADRATURE), ("relu", MAX_TERMS_CLOSED_FORM)):
        status, out, err = run(capsys, "gegenbauer", spec, "--batch-size", "32",
                               "--terms", str(cap + 1))
        assert status == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")
        assert f"at most {cap} for {spec}" in err
    status, _, err = run(capsys, "gegenbauer", "tanh", "--batch-size", "32", "--terms", "0")
    assert status == 2 and "at least 1" in err
    with pytest.raises(SystemExit):
        main(["gegenbauer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"at most {MAX_TERMS_QUADRATURE}" in text and f"or {MAX_TERMS_CLOSED_FORM}" in text


def test_gegenbauer_many_terms(capsys):
    """300 quadrature coefficients: Parseval's partial sum against q* = E[phi(z1)^2] by direct
    quadrature of the one-coordinate marginal (1 - z^2/(B-1))^((B-4)/2)."""
    status, out, err = run(capsys, "gegenbauer", "tanh", "--batch-size", "32", "--terms", "300",
                           "--json")
    assert status == 0, err
    table = json.loads(out)
    assert [row["k"] for row in table["rows"]] == list(range(300))
    B = 32
    with mpmath.workdps(30):
        R = mpmath.sqrt(B - 1)
        dens = lambda z: (1 - z * z / (B - 1)) ** (mpmath.mpf(B - 4) / 2)  # noqa: E731
        q = mpmath.quad(lambda z: dens(z) * mpmath.tanh(z) ** 2, [-R, 0, R]) / mpmath.quad(
            dens, [-R, 0, R])
        assert abs(mpmath.mpf(table["partial"]["q_star (sum a_k^2)"]) - q) < 1e-19 * q
    # odd a_k decay geometrically here (a_201 ~ 2e-26); even a_k of an odd phi are rounding
    a = [abs(float(row["a_k"])) for row in table["rows"]]
    assert 1e-28 < a[201] < 1e-24 and a[201] < 1e-2 * a[181]
    assert max(a[0::2]) < 1e-30 and a[299] < 1e-30


def marginal_q_star(phi, B: int, dps: int, kinks=()):
    """q* = E[phi(z1)^2] from the one-coordinate marginal, density proportional to
    (1 - z^2/(B-1))^((B-4)/2) on |z| < sqrt(B-1): plain mpmath quadrature on 64 panels
    (and the kinks)."""
    with mpmath.workdps(dps):
        R = mpmath.sqrt(B - 1)
        dens = lambda z: (1 - z * z / (B - 1)) ** (mpmath.mpf(B - 4) / 2)  # noqa: E731
        pts = sorted({-R + 2 * R * j / 64 for j in range(65)} | {mpmath.mpf(k) for k in kinks})
        return mpmath.quad(lambda z: dens(z) * phi(z) ** 2, pts) / mpmath.quad(dens, pts)


@pytest.mark.parametrize(
    "spec, phi, digits, kinks",
    [
        ("tanh", mpmath.tanh, 30, ()),
        # tiny moments: q* ~ 1.7e-14, two-point moments ~ 1e-39 (relative error control)
        pytest.param("tanh(x)**1000", lambda z: mpmath.tanh(z) ** 1000, 16, (),
                     marks=pytest.mark.slow),  # about 50 s
        # kinked, float64 sphere route: q* ~ 4e-7, two-point moments exactly 0
        ("Max(x - 2.5, 0)", lambda z: max(z - mpmath.mpf(5) / 2, 0), 12, (2.5,)),
    ],
)
def test_printed_q_star_against_the_marginal(capsys, spec, phi, digits, kinks):
    status, out, err = run(capsys, "analyze", spec, "--batch-size", "8", "--digits", str(digits),
                           "--json")
    assert status == 0, err
    row = json.loads(out)
    assert all(row[key] is not None for key in KEYS[2:]), row
    assert significant_digits(row["q_star"]) == digits
    ref = marginal_q_star(phi, 8, digits + 15, kinks)
    with mpmath.workdps(digits + 15):
        # printed to `digits` significant digits: at most half a unit in the last place off
        assert abs(mpmath.mpf(row["q_star"]) - ref) <= 5 * mpmath.mpf(10) ** -digits * ref


@pytest.mark.slow
def test_tiny_moments_at_30_digits(capsys):
    """tanh(x)^1000 at B = 8, 30 digits: q* against the marginal, c* (~2.5e-25) against the
    paper's Thm 4 double integral (references.fixed_point; c* is invariant under phi -> s phi,
    and s = 1e20 keeps mpmath's absolute error control relevant)."""
    from bnmft.numerics.references import fixed_point

    status, out, err = run(capsys, "analyze", "tanh(x)**1000", "--batch-size", "8", "--digits",
                           "30", "--json")
    assert status == 0, err
    row = json.loads(out)
    assert all(row[key] is not None for key in KEYS[2:]), row
    ref = marginal_q_star(lambda z: mpmath.tanh(z) ** 1000, 8, 45)
    with mpmath.workdps(45):
        assert abs(mpmath.mpf(row["q_star"]) - ref) <= 5 * mpmath.mpf(10) ** -30 * ref
    s = mpmath.mpf(10) ** 20
    _, c_ref = fixed_point(lambda z: s * mpmath.tanh(z) ** 1000, 8, dps=20)
    with mpmath.workdps(45):
        assert abs(mpmath.mpf(row["c_star"]) - c_ref) <= mpmath.mpf(10) ** -18 * c_ref


def test_derive_json_and_latex(capsys):
    status, out, _ = run(capsys, "derive", "relu", "--json")
    data = json.loads(out)
    assert status == 0 and set(data) == set(KEYS[2:]) - {"bsb1_stable"}
    assert data["lambda_M"]["compact"] == "B*Jp/((1 - J)*(B + 1))"
    assert "acos" in data["c_star"]["sympy"] and "B" in data["c_star"]["sympy"]
    assert data["gradient_rate"]["latex"]
    status, out, _ = run(capsys, "derive", "relu", "--latex")
    assert out.startswith(r"\begin{align*}") and r"\lambda_M" in out


def test_derive_without_closed_form(capsys):
    status, out, _ = run(capsys, "derive", "tanh", "--json")
    data = json.loads(out)
    assert data["q_star"]["closed_form"] is False and "E[phi(z1)^2]" in data["q_star"]["sympy"]


def test_codegen_numpy_and_c(tmp_path, capsys):
    status, out, _ = run(capsys, "codegen", "relu", "--lang", "numpy", "--out", str(tmp_path),
                         "--module", "relu_bn")
    assert status == 0
    spec = importlib.util.spec_from_file_location("relu_bn", tmp_path / "relu_bn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.gradient_rate([8.0])[0] == pytest.approx(1.78818997665874, rel=1e-13)
    status, out, _ = run(capsys, "codegen", "relu", "--lang", "c", "--out", str(tmp_path),
                         "--module", "relu_bn")
    assert status == 0 and (tmp_path / "relu_bn.c").exists() and (tmp_path / "relu_bn.h").exists()


def test_verify_relu_30_digits(capsys):
    status, out, err = run(capsys, "verify", "relu", "--digits", "30")
    assert status == 0, err
    assert "FAIL" not in out
    assert "generated C module" in out and "brute-force Jacobian" in out


def test_report_writes_files(tmp_path, capsys):
    status, out, _ = run(capsys, "report", "relu", "--batch-size", "32", "--out", str(tmp_path),
                         "--verify-digits", "16")
    assert status == 0
    for name in ("relu.py", "relu.c", "relu.h", "formulas.tex", "report.md"):
        assert (tmp_path / name).exists(), name
    assert "## Verification" in out and "1.521952830551880" in out  # 1.52195283055187956...
    assert "\nlambda_M = B*Jp/((1 - J)*(B + 1))\n" in (tmp_path / "report.md").read_text()


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "bnmft", "analyze", "relu", "--batch-size", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_output_into_a_closed_pipe_stops_quietly():
    """``bnmft analyze ... | head -1``: no traceback when the reader goes away."""
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "bnmft", "analyze", "relu", "--batch-size", "4:2000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert first.startswith(b"activation relu")
    assert "Traceback" not in err and proc.returncode == 141


@pytest.mark.parametrize(
    "argv,named",
    [
        (["analyze", "relu", "--batch-size", "8,,16"], "'8,,16'"),
        (["analyze", "relu", "--batch-size", "4,5,6,7,"], "'4,5,6,7,'"),
        (["analyze", "relu", "--batch-size", ","], "','"),
        (["analyze", "relu", "--batch-size", "\uff18"], "'\uff18'"),  # fullwidth 8
        (["analyze", "relu", "--batch-size", "8:\uff11\uff16"], "'\uff11'"),
        (["analyze", "\uff58", "--batch-size", "8"], "'\uff58'"),  # fullwidth x
        (["analyze", "tanh(\uff58)", "--batch-size", "8"], "'\uff58'"),
        (["analyze", "x\u00b2", "--batch-size", "8"], "'\u00b2'"),  # superscript two
        (["analyze", "leaky_relu:\uff10.2", "--batch-size", "8"], "'\uff10'"),
        (["analyze", "relu", "--batch-size", "8", "--digits", "\uff18"], "'\uff18'"),
        (["analyze", "tanh", "--gamma", "\uff12", "--batch-size", "8"], "'\uff12'"),
        (["gegenbauer", "relu", "--batch-size", "8", "--terms", "\uff18"], "'\uff18'"),
        (["analyze", "relu", "--batch-size", "-inf"], "-inf"),
        (["analyze", "relu", "--batch-size", "-4"], "-4"),
        (["analyze", "tanh", "--gamma", "-inf", "--batch-size", "8"], "'-inf'"),
        (["analyze", "relu", "--batch-size", "1_000"], "'1_000'"),
        (["analyze", "relu", "--batch-size", "8:"], "'8:'"),
        (["analyze", "relu", "--batch-size", "1e400"], "'1e400'"),
        (["codegen", "relu", "--lang", "numpy", "--out", "x", "--module", "os"], "'os'"),
        (["codegen", "relu", "--lang", "numpy", "--out", "x", "--module", "json"], "'json'"),
        (["codegen", "relu", "--lang", "c", "--out", "x", "--module", "class"], "'class'"),
        (["codegen", "relu", "--lang", "c", "--out", "x", "--module", "\uff4d"], "'\uff4d'"),
        (["codegen", "relu", "--lang", "c", "--out", "x", "--module", "9lives"], "'9lives'"),
    ],
)
def test_bad_input_names_the_offending_text(capsys, tmp_path, monkeypatch, argv, named):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")
    assert named in err
    assert not list(tmp_path.rglob("*.py")) and not list(tmp_path.rglob("*.c"))


def _json_rows(capsys, *argv):
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    "option_argv,typed",
    [
        (["tanh", "--beta", "-1"], "tanh(x - 1)"),
        (["tanh", "--beta", "-1e-3"], "tanh(x - 1/1000)"),  # argparse alone: an option
        (["tanh", "--gamma", "-2", "--beta", "-0.5"], "tanh(-2*x - 1/2)"),
        (["tanh", "--gamma=-2", "--beta=-0.5"], "tanh(-2*x - 1/2)"),
        (["tanh", "--bet", "-1e-3"], "tanh(x - 1/1000)"),  # abbreviated option
    ],
)
def test_negative_option_values_are_values(capsys, option_argv, typed):
    got = _json_rows(capsys, "analyze", *option_argv, "--batch-size", "8", "--digits", "10")
    want = _json_rows(capsys, "analyze", typed, "--batch-size", "8", "--digits", "10")
    for key in KEYS[2:]:
        assert got[key] == want[key], key


def test_activation_starting_with_a_minus_sign(capsys):
    """``-x`` and ``-relu(x)`` are the activation, wherever they stand among the options."""
    neg = _json_rows(capsys, "analyze", "--batch-size", "8", "-x")
    lin = _json_rows(capsys, "analyze", "linear", "--batch-size", "8")
    assert neg["activation"] == "-x"
    assert neg["q_star"] == lin["q_star"] and neg["gradient_rate"] == lin["gradient_rate"]
    neg = _json_rows(capsys, "analyze", "-relu(x)", "--batch-size", "8")
    pos = _json_rows(capsys, "analyze", "relu", "--batch-size", "8")
    # phi -> -phi leaves every quantity of the normalised network unchanged
    assert neg["q_star"] == pos["q_star"] and neg["lambda_M"] == pos["lambda_M"]
    status, _, err = run(capsys, "analyze", "relu", "-x", "--batch-size", "8")
    assert status == 2 and "unrecognized arguments: -x" in err


_LIMITED = r"""
import resource, sys
limit = 1 << 30  # 1 GiB of address space (a normal run peaks near 0.2 GiB)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from bnmft.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "tanh", "--gamma", "1e10", "--batch-size", "8"],
        ["analyze", "tanh(1e10*x)", "--batch-size", "8"],
        ["analyze", "x*tanh(1e10*x)", "--batch-size", "8"],
        ["derive", "tanh", "--gamma", "1e100"],
        ["analyze", "Abs(sin(1e10*x))", "--batch-size", "8"],
        ["analyze", "Max(x**(10**9) - 1, 0)", "--batch-size", "8"],
    ],
)
def test_steep_activations_are_refused_within_memory_and_time(argv):
    """These grew to 24 GB in sp.simplify / solveset and were killed; now one line, exit 2,
    in a process limited to 1 GiB of address space and 120 s."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _LIMITED, *argv], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bnmft: error:")


def test_homogeneity_test_of_a_steep_tanh_is_bounded():
    """The symbolic homogeneity test itself (before any other check) on tanh(10^10 x), which
    sp.simplify expanded without bound: answered (not homogeneous) within the same limits."""
    code = _LIMITED.split("from bnmft.cli")[0] + (
        "import sympy as sp\n"
        "from bnmft.derive.activation import _homogeneity\n"
        "from bnmft.derive.symbols import x\n"
        "for e in (sp.tanh(10**10*x), x*sp.tanh(10**10*x), sp.tanh(10**100*x)):\n"
        "    assert _homogeneity(e) is None, e\n"
        "print('ok')\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr[-2000:]


def _subcommands():
    import argparse

    from bnmft.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_every_option_of_every_command_has_help():
    import argparse

    parser, commands = _subcommands()
    assert set(commands) == {"analyze", "derive", "codegen", "verify", "gegenbauer", "report",
                             "spectrum", "transition", "epsilon-scan", "sheet", "export",
                             "simulate", "tune", "kernel", "gp"}
    for name, sub in {"bnmft": parser, **commands}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            text = action.help or ""
            assert text.strip() and text != argparse.SUPPRESS, (name, action.dest)
            if action.option_strings and action.nargs is None and action.dest != "help":
                # options that take a value state their default, or that they are required
                assert "default" in text or "required" in text, (name, action.dest, text)
        assert sub.epilog and "examples:" in sub.epilog, name


def test_help_examples_parse_and_ranges_match_the_code():
    import shlex

    from bnmft.derive.errors import MAX_BATCH_SIZE, MIN_BATCH_SIZE
    from bnmft.numerics.precision import MAX_DIGITS

    parser, commands = _subcommands()
    for name, sub in commands.items():
        examples = [line.strip() for line in sub.epilog.splitlines()[1:]]
        assert examples, name
        for line in examples:
            argv = shlex.split(line)
            assert argv[:2] == ["bnmft", name], line
            parser.parse_args(argv[1:])  # InputError if an example went stale
        text = sub.format_help()
        assert f"1 to {MAX_DIGITS}" in text or "--digits" not in text, name
    exponent = len(str(MAX_BATCH_SIZE)) - 1
    assert 10**exponent == MAX_BATCH_SIZE
    help_text = commands["analyze"].format_help()
    assert f"from {MIN_BATCH_SIZE} to 10^{exponent}" in help_text and "inf" in help_text


def test_readme_states_the_batch_size_range_of_the_cli():
    from pathlib import Path

    from bnmft.derive.errors import MAX_BATCH_SIZE

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    exponent = len(str(MAX_BATCH_SIZE)) - 1
    assert f"4 to 10^{exponent}" in " ".join(readme.split())
    stated = {int(e) for e in re.findall(r"\b4 to 10\^(\d+)", " ".join(readme.split()))}
    assert stated == {exponent}


def test_help_exits_zero_and_prints_usage(capsys):
    for name in ("analyze", "derive", "codegen", "verify", "gegenbauer", "report"):
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: bnmft {name}") and "examples:" in out


@pytest.mark.parametrize("command", [["analyze"], ["verify"], ["spectrum"], ["report"],
                                     ["simulate", "--depth", "2", "--samples", "2"]])
def test_phi_vanishing_on_the_sphere_is_refused(capsys, command):
    """relu(x/2 - 1) is 0 for x <= 2, and at B = 4 the batchnorm output has |z| <= sqrt(3):
    every layer outputs 0, there is no BSB1 point; one line naming the first valid B."""
    status, out, err = run(capsys, command[0], "relu", "--gamma", "1/2", "--beta", "-1",
                           "--batch-size", "4", *command[1:])
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bnmft: error:")
    assert "no BSB1 point" in err and "use B >= 6" in err


def test_phi_vanishing_near_zero_but_not_on_the_sphere(capsys):
    """At B = 6 (|z| <= sqrt(5)) relu(x/2 - 1) is nonzero only for z > 2, and two coordinates
    cannot both exceed 2 (z1^2 + z2^2 <= B = 6): c* = 0 exactly; q* against sampling the
    sphere (centred, normalised Gaussians)."""
    status, out, err = run(capsys, "analyze", "relu", "--gamma", "1/2", "--beta", "-1",
                           "--batch-size", "6", "--digits", "10", "--json")
    assert status == 0
    row = json.loads(out)
    assert row["c_star"] == "0"
    rng = np.random.default_rng(5)
    g = rng.standard_normal((400_000, 6))
    g -= g.mean(axis=1, keepdims=True)
    z = math.sqrt(6) * g / np.linalg.norm(g, axis=1, keepdims=True)
    f2 = np.maximum(z[:, 0] / 2 - 1, 0) ** 2
    se = f2.std() / math.sqrt(len(f2))
    assert abs(float(row["q_star"]) - f2.mean()) < 5 * se
    assert significant_digits(row["q_star"]) == 10


@pytest.mark.parametrize("spec", ["Abs(x - 0.3)**0.5 * x", "Abs(x + 0.4)**0.3"])
def test_analyze_refuses_phi_whose_needed_moments_are_infinite(spec, capsys):
    """phi' ~ |x - k|^e with 2e <= -1 at a kink: E[phi'^2] (the gradient rate's moments) does
    not exist; one line and exit 2, before any quadrature."""
    assert main(["analyze", spec, "--batch-size", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is infinite" in err[0] and "phi'" in err[0]


def test_analyze_shifted_power_kink_with_unbounded_derivative(capsys):
    """Max(x - 0.2, 0)**0.75: phi' is 0 left of the kink and 0.75 t^(-1/4) right of it, so
    E[phi'^2] is finite. q*, c* against the tanh-sinh reference in the paper's angles, the
    gradient rate against Monte Carlo of the network's backward map (5 standard errors)."""
    import bnmft
    from bnmft.derive.activation import activation
    from bnmft.numerics import montecarlo as MC
    from bnmft.numerics import references as R

    assert main(["analyze", "Max(x - 0.2, 0)**0.75", "--batch-size", "8", "--digits",
                 "12"]) == 0
    assert "gradient_rate" in capsys.readouterr().out
    (res,) = bnmft.analyze("Max(x - 0.2, 0)**0.75", [8], digits=14)
    k = mpmath.mpf(1) / 5
    q, c = R.fixed_point(lambda u: (u - k) ** 0.75 if u > k else mpmath.mpf(0), 8, dps=15,
                         kinks=[k])
    for name, ref in (("q_star", q), ("c_star", c)):
        assert res.numbers[name].digits >= 14
        assert abs(res.numbers[name].value - ref) <= 1e-13 * abs(ref), name
    est = MC.network_gradient_rate(activation("Max(x - 0.2, 0)**0.75"), 8, samples=100_000)
    assert abs(float(res.numbers["gradient_rate"].value) - est.mean) < 5 * est.stderr


def test_analyze_refuses_a_shifted_power_kink_with_infinite_moment(capsys):
    """Max(x - 0.2, 0)**0.25: phi' ~ |x - 0.2|^(-3/4) on the right, E[phi'^2] diverges; the
    message names that moment (the flat left side, phi' = 0, is no reason to refuse)."""
    assert main(["analyze", "Max(x - 0.2, 0)**0.25", "--batch-size", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "E[phi'^2 ...] is infinite" in err[0]
    assert "|x - 0.2|^-0.75" in err[0] and "right side" in err[0]


def test_analyze_accepts_an_integrable_power_kink(capsys):
    """phi' ~ |x + 1/2|^(1/2): every needed moment is finite, the numbers are printed."""
    assert main(["analyze", "Max(x + 0.5, 0)**1.5", "--batch-size", "8", "--digits",
                 "12"]) == 0
    assert "gradient_rate" in capsys.readouterr().out
