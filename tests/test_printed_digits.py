"""Every digit bnmft prints, against independent 60-digit references (tests/references.py).

The CLI runs in-process; its text and JSON outputs are parsed, and each printed decimal must be
the reference correctly rounded to the number of significant digits printed (one ulp of the
last digit is tolerated only where the reference lies within 1e-3 ulp of a rounding boundary).
Covered: ``analyze`` (text and ``--json``), ``verify``, ``report``, the LaTeX table of
``gegenbauer``, and the API's claim ``Number.digits``. A ``null`` / ``(not converged)`` is a
failure for closed-form routes and for quadrature routes at ``--digits <= 30``; above that it
must at least be announced on stderr with exit status 1.

Default run: closed-form routes at every ``--digits`` and batch size, quadrature routes at a
few (B, digits) pairs; the rest is ``slow``.
"""

from __future__ import annotations

import json
import math
import re

import mpmath
import pytest
from references import (
    QUANTITIES,
    WORK,
    digit_mismatch,
    gegenbauer_reference,
    reference,
)

from bnmft.cli import main

CLOSED = ["relu", "leaky_relu", "leaky_relu:0.2", "alpha_relu:1.5", "linear"]
QUADRATURE = ["tanh", "gelu", "relu(x + 0.5)", "Max(x, 0) + 0.1*tanh(x)"]
#: 12 and 13: closed forms through the float64 kernels (the rest through mpmath)
DIGITS = [12, 13, 16, 25, 30, 50]
SIZES = [5, 8, 33, 512, 10**6]
#: Quadrature routes in the default run: (activation, B, digits).
QUADRATURE_DEFAULT = {("tanh", 8, 30), ("relu(x + 0.5)", 5, 16)}


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def tier(digits) -> int:
    """Reference digits needed to judge ``digits`` digits (and the rounding margin)."""
    return 40 if digits <= 35 else 60


def slow_unless(default: bool):
    return () if default else (pytest.mark.slow,)


# -- parsers --------------------------------------------------------------------------------------

_NUMBER_LINE = re.compile(r"^  (\w+)\s+(\(not converged\)|\S+)\s+\[(.*)\]$")


def parse_number_lines(lines) -> dict:
    """``{quantity: printed text or None}`` from ``analyze``/``report`` number lines."""
    out = {}
    for line in lines:
        m = _NUMBER_LINE.match(line)
        if m:
            out[m.group(1)] = None if m.group(2) == "(not converged)" else m.group(2)
        elif line.startswith("  bsb1_stable"):
            out["bsb1_stable"] = line.split()[1]
    return out


def parse_analyze_text(out: str) -> dict:
    """``{B: {quantity: text}}`` from ``bnmft analyze`` without ``--json``."""
    blocks = re.split(r"^activation .*, B = (\S+)$", out, flags=re.M)
    return {_size(b): parse_number_lines(body.splitlines())
            for b, body in zip(blocks[1::2], blocks[2::2])}


def parse_analyze_json(out: str) -> dict:
    rows = json.loads(out)
    rows = rows if isinstance(rows, list) else [rows]
    return {_size(r["batch_size"]): r for r in rows}


def parse_report(out: str) -> dict:
    """``{B: {quantity: text}}`` from the "Numbers" section of ``bnmft report``."""
    section = out.split("## Numbers", 1)[1].split("## Verification", 1)[0]
    blocks = re.split(r"^B = (\S+)$", section, flags=re.M)
    return {_size(b): parse_number_lines(body.splitlines())
            for b, body in zip(blocks[1::2], blocks[2::2])}


def parse_verify(out: str) -> list[dict]:
    """The rows of ``bnmft verify``'s table."""
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 6)
        if len(parts) < 7 or not parts[1].isdigit():
            continue
        rows.append({"quantity": parts[0], "B": int(parts[1]), "value": parts[2],
                     "reference": parts[3], "need": float(parts[5]), "route": parts[6]})
    return rows


def parse_gegenbauer_latex(out: str):
    """Rows ``(k, a_k, c_k, c_k a_k^2, thm9 term)`` and the ``% name: value`` summary lines."""
    rows, summary = [], {}
    for line in out.splitlines():
        if line.startswith("%"):
            name, _, value = line[1:].strip().partition(": ")
            summary[name] = value.strip()
        elif re.match(r"^\d+ & ", line):
            rows.append([c.strip() for c in line.removesuffix(r"\\").split("&")][:5])
    return rows, summary


def _size(label):
    return math.inf if label == "inf" else int(label)


# -- the check ------------------------------------------------------------------------------------


def mismatches(printed: dict, spec: str, digits: int, status: int, err: str) -> list[str]:
    """Every printed quantity of every batch size that is not the correctly rounded reference
    (or is a ``null`` the route may not print)."""
    closed_route = spec in CLOSED
    bad = []
    for B, row in printed.items():
        ref = reference(spec, B, tier(digits))
        for name in QUANTITIES:
            if name not in ref:
                continue  # no independent reference (see references.py)
            text = row[name]
            where = f"B={B} {name}"
            if text is None:
                announced = status == 1 and re.search(
                    rf"not converged at B={B}: {name}\b", err) is not None
                if closed_route or digits <= 30 or not announced:
                    bad.append(f"{where}: printed null (announced: {announced})")
                continue
            problem = digit_mismatch(text, ref[name], digits)
            if problem:
                bad.append(f"{where}: {problem}")
        if "lambda_L" in ref and row.get("bsb1_stable") is not None:
            stable = max(ref["lambda_L"], ref["lambda_M"]) < 1
            if str(row["bsb1_stable"]) != str(stable):
                bad.append(f"B={B} bsb1_stable: printed {row['bsb1_stable']}, expected {stable}")
    return bad


def assert_all_digits(printed, spec, digits, status, err):
    assert printed, "nothing parsed from the output"
    bad = mismatches(printed, spec, digits, status, err)
    assert not bad, f"{len(bad)} wrong printed numbers:\n" + "\n".join(bad)


# -- analyze --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("digits", DIGITS)
@pytest.mark.parametrize("spec", CLOSED)
def test_analyze_closed_forms(capsys, spec, digits, fmt):
    sizes = ",".join(map(str, SIZES))
    argv = ["analyze", spec, "--batch-size", sizes, "--digits", digits]
    status, out, err = run(capsys, *argv, *(["--json"] if fmt == "json" else []))
    printed = parse_analyze_json(out) if fmt == "json" else parse_analyze_text(out)
    assert sorted(printed) == SIZES
    assert_all_digits(printed, spec, digits, status, err)


QUADRATURE_CASES = [
    pytest.param(spec, B, d, marks=slow_unless((spec, B, d) in QUADRATURE_DEFAULT))
    for spec in QUADRATURE for B in SIZES for d in DIGITS
]


@pytest.mark.parametrize("spec, B, digits", QUADRATURE_CASES)
def test_analyze_quadrature_routes(capsys, spec, B, digits):
    """``--json``, and the text output too up to 30 digits (both print through the same
    formatting; a second 50-digit quadrature would double the slowest cases)."""
    argv = ["analyze", spec, "--batch-size", B, "--digits", digits]
    status, out, err = run(capsys, *argv, "--json")
    assert_all_digits(parse_analyze_json(out), spec, digits, status, err)
    if digits <= 30:
        status, out, err = run(capsys, *argv)
        assert_all_digits(parse_analyze_text(out), spec, digits, status, err)


# -- report ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, sizes, digits", [
    ("relu", [8, 33], 30),
    ("leaky_relu:0.2", [5, 10**6], 25),
    pytest.param("tanh", [8], 30, marks=pytest.mark.slow),
])
def test_report_numbers(capsys, tmp_path, spec, sizes, digits):
    status, out, err = run(capsys, "report", spec, "--batch-size", ",".join(map(str, sizes)),
                           "--digits", digits, "--out", tmp_path / "out")
    printed = parse_report(out)
    assert sorted(printed) == sizes
    assert_all_digits(printed, spec, digits, status, err)


# -- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, B, digits", [
    ("relu", 8, 30),
    ("leaky_relu:0.2", 33, 25),
    pytest.param("alpha_relu:1.5", 512, 30, marks=pytest.mark.slow),
    pytest.param("tanh", 8, 30, marks=pytest.mark.slow),
    pytest.param("relu(x + 0.5)", 33, 20, marks=pytest.mark.slow),
])
def test_verify_columns(capsys, spec, B, digits):
    """The reference column is the correctly rounded reference at the digits shown; so is the
    value column where the route is required to have them, and else it agrees to ``need``."""
    _status, out, _err = run(capsys, "verify", spec, "--batch-size", B, "--digits", digits)
    rows = parse_verify(out)
    assert rows, out
    ref = reference(spec, B, tier(digits))
    bad = []
    for row in rows:
        name = row["quantity"]
        if name not in ref:
            continue
        where = f"{name} [{row['route']}]"
        problem = digit_mismatch(row["reference"], ref[name])
        if problem:
            bad.append(f"{where} reference column: {problem}")
        shown = len(row["value"].lstrip("-").replace(".", "").lstrip("0"))
        if row["value"] == "-":
            bad.append(f"{where}: no value")
        elif row["need"] >= shown or ref[name] == 0:
            problem = digit_mismatch(row["value"], ref[name])
            if problem:
                bad.append(f"{where} value column: {problem}")
        else:  # a float64 route shown with more digits than it is asked to have
            with mpmath.workdps(WORK):
                off = abs(mpmath.mpf(row["value"]) - ref[name]) / abs(ref[name])
            if off > mpmath.mpf(10) ** -row["need"]:
                bad.append(f"{where} value column: {row['value']} off by {mpmath.nstr(off, 3)}")
    assert not bad, f"{len(bad)} wrong columns:\n" + "\n".join(bad)


# -- gegenbauer --latex ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, B, K, digits", [
    ("relu", 8, 12, 20),
    ("tanh", 8, 10, 30),
    pytest.param("alpha_relu:1.5", 33, 8, 25, marks=pytest.mark.slow),
    pytest.param("relu(x + 0.5)", 33, 8, 25, marks=pytest.mark.slow),
])
def test_gegenbauer_latex_table(capsys, spec, B, K, digits):
    status, out, _ = run(capsys, "gegenbauer", spec, "--batch-size", B, "--terms", K,
                         "--digits", digits, "--latex")
    assert status == 0
    rows, summary = parse_gegenbauer_latex(out)
    ref = gegenbauer_reference(spec, B, K, tier(digits))
    assert [int(r[0]) for r in rows] == list(range(K))
    zero = mpmath.mpf(10) ** -(tier(digits) - 5) * ref["scale"]
    bad = []
    for cells, want in zip(rows, ref["rows"]):
        for text, key in zip(cells[1:], ("a_k", "c_k", "c_ak2", "thm9_term")):
            problem = digit_mismatch(text, want[key], zero_below=zero)
            if problem:
                bad.append(f"k={want['k']} {key}: {problem}")
    for name, want in ref["partial"].items():
        text = summary[name]
        problem = digit_mismatch(text, want, digits)
        if problem:
            bad.append(f"partial {name}: {problem}")
    total = summary["gradient rate (Thm 9)"].split()[0]
    problem = digit_mismatch(total, ref["rate"])
    if problem:
        bad.append(f"total rate: {problem}")
    assert not bad, f"{len(bad)} wrong table entries:\n" + "\n".join(bad)


# -- the API's claim ------------------------------------------------------------------------------

# quadrature routes claim about 40 digits at digits=30: judged by the 60-digit tier (slow)
API_CASES = [pytest.param(spec, B) for spec in CLOSED for B in SIZES] + [
    pytest.param(spec, B, marks=pytest.mark.slow) for spec in QUADRATURE for B in SIZES
]


@pytest.mark.parametrize("spec, B", API_CASES)
def test_api_claimed_digits_are_correct(spec, B):
    """``analyze(act, [B], digits=30)[0].numbers[name]`` agrees with the reference to the
    ``.digits`` it claims (at least the 30 asked for; ``inf``: exact)."""
    import bnmft

    (an,) = bnmft.analyze(bnmft.activation(spec), [B], digits=30)
    bad = []
    for name in QUANTITIES:
        num = an.numbers[name]
        if num.value is None:
            bad.append(f"{name}: no value ({num.note})")
            continue
        # closed forms (and the alpha_relu series) are exact to WORK digits
        claim = min(num.digits, WORK - 5 if spec in CLOSED else 58)
        ref = reference(spec, B, tier(claim))
        if name not in ref:
            continue
        with mpmath.workdps(WORK):
            value = mpmath.mpf(num.value)
            off = abs(value - ref[name])
            scale = abs(ref[name]) if ref[name] else 1
            if num.digits < 30 or off > scale * mpmath.mpf(10) ** -claim:
                bad.append(f"{name}: claims {num.digits} digits [{num.route}], "
                           f"relative error {mpmath.nstr(off / scale, 3)}")
    assert not bad, "\n".join(bad)
