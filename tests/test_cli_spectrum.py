"""``bnmft spectrum``: JSON shape, dimensions, digits, labelling, exit codes, one-line errors.

Numbers are compared with THEORY.md (relu forward L, M at B = 6; relu and linear gradient
rates) and with ``bnmft analyze`` (the same quantities by the BSB1 derivation).
"""

import json

import pytest

from bnmft.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def by_space(entries):
    return {e["space"]: e for e in entries}


def test_spectrum_json_relu(capsys):
    status, out, err = run(capsys, "spectrum", "relu", "--batch-size", "6", "--digits", "20",
                           "--json")
    assert status == 0 and err == ""
    row = json.loads(out)
    assert list(row) == ["activation", "batch_size", "bsb1_stable", "forward", "backward"]
    assert row["activation"] == "relu" and row["batch_size"] == 6 and row["bsb1_stable"] is True
    for direction in ("forward", "backward"):
        entries = row[direction]
        assert [(e["space"], e["dim"]) for e in entries] == [
            ("kernel", 6), ("G", 1), ("L", 5), ("M", 9)]
        assert sum(e["dim"] for e in entries) == 6 * 7 // 2
        assert all(list(e) == ["space", "dim", "eigenvalue"] for e in entries)
        assert by_space(entries)["kernel"]["eigenvalue"] == "0"
    fw = by_space(row["forward"])
    assert fw["G"]["eigenvalue"] == "0"
    # THEORY.md: lambda_M = 0.481919714166..., lambda_L = 0.667812514262... at B = 6
    assert abs(float(fw["M"]["eigenvalue"]) - 0.481919714166) < 1e-12
    assert abs(float(fw["L"]["eigenvalue"]) - 0.667812514262) < 1e-12
    assert len(fw["L"]["eigenvalue"].replace("0.", "", 1)) == 20


def test_backward_G_is_the_gradient_rate_of_analyze(capsys):
    status, out, _ = run(capsys, "spectrum", "tanh", "--batch-size", "8,32", "--digits", "12",
                         "--json")
    rows = json.loads(out)
    assert status == 0 and [r["batch_size"] for r in rows] == [8, 32]
    status, out, _ = run(capsys, "analyze", "tanh", "--batch-size", "8,32", "--digits", "12",
                         "--json")
    for row, an in zip(rows, json.loads(out)):
        bw, fw = by_space(row["backward"]), by_space(row["forward"])
        assert bw["G"]["eigenvalue"] == an["gradient_rate"]
        assert fw["L"]["eigenvalue"] == an["lambda_L"]
        assert fw["M"]["eigenvalue"] == an["lambda_M"]
        assert row["bsb1_stable"] is an["bsb1_stable"]


def test_linear_rate_and_gamma_option(capsys):
    status, out, _ = run(capsys, "spectrum", "linear", "--batch-size", "8", "--json")
    bw = by_space(json.loads(out)["backward"])
    assert status == 0 and bw["G"]["eigenvalue"] == "1.200000000000000"  # (B-2)/(B-3)
    opts = ["relu", "--gamma", "1.5", "--beta", "0.5", "--batch-size", "8", "--digits", "10",
            "--json"]
    status, out, _ = run(capsys, "spectrum", *opts)
    row = json.loads(out)
    status2, out2, _ = run(capsys, "analyze", *opts)
    an = json.loads(out2)
    assert status == status2 == 0 and row["activation"] == an["activation"]
    assert by_space(row["backward"])["G"]["eigenvalue"] == an["gradient_rate"]


def test_unstable_bsb1_point_warns_and_exits_zero(capsys):
    status, out, err = run(capsys, "spectrum", "alpha_relu:2", "--batch-size", "16",
                           "--digits", "8", "--json")
    row = json.loads(out)
    assert status == 0 and row["bsb1_stable"] is False
    assert float(by_space(row["forward"])["L"]["eigenvalue"]) > 1
    assert err.count("\n") == 1 and "not attracting" in err


def test_text_table(capsys):
    status, out, err = run(capsys, "spectrum", "relu", "--batch-size", "6", "--digits", "10")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "activation relu, B = 6, bsb1_stable True"
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (d, s, str(n)) for d in ("forward", "backward")
        for s, n in (("kernel", 6), ("G", 1), ("L", 5), ("M", 9))]
    assert rows[3][3] == "0.4819197142"


def test_unavailable_eigenvalue_is_null_with_one_line(capsys):
    status, out, err = run(capsys, "spectrum", "step", "--batch-size", "6", "--digits", "8",
                           "--json")
    bw = by_space(json.loads(out)["backward"])
    assert status == 1
    assert bw["G"]["eigenvalue"] == "inf" and bw["M"]["eigenvalue"] is None
    assert err.count("\n") == 1 and "backward_M" in err and "Dirac" in err


def test_verify_option(capsys):
    status, out, err = run(capsys, "spectrum", "relu", "--batch-size", "6", "--digits", "12",
                           "--verify")
    assert status == 0
    assert "brute-force backward operator" in out and "FAIL" not in out
    assert "checks agree" in err


@pytest.mark.parametrize("argv,message", [
    (["--batch-size", "inf"], "finite batch sizes"),
    (["--batch-size", "3"], "B < 4"),
    (["--batch-size", "6", "--digits", "0"], "--digits"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    status, out, err = run(capsys, "spectrum", "relu", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_bad_activation(capsys):
    status, out, err = run(capsys, "spectrum", "exp(x**2)", "--batch-size", "6")
    assert status == 2 and out == "" and err.count("\n") == 1
