"""The formula sheet (bnmft.sheet, ``bnmft sheet``): LaTeX that compiles with a real engine
and typesets every formula, Markdown, and the digits each formula was verified to."""

from __future__ import annotations

import math
import shutil

import pytest
import sympy as sp

from bnmft import sheet
from bnmft.cli import main

HAVE_LATEX = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None


@pytest.fixture(scope="module")
def relu_tanh():
    return sheet.build(["relu", "tanh"], (4, 32, math.inf), digits=10, verify_digits=16)


def test_formulas_read_back_to_the_closed_forms():
    """The named sub-expressions substituted back give the derived closed forms."""
    from bnmft import derivation
    from bnmft.derive.quantity import J, Jp

    deriv = derivation("relu")
    main_, defs = sheet.latex_block(deriv)
    assert dict(main_)["q_star"] == r"\frac{1}{2}"
    assert all(a.startswith("k_") for a, _ in defs)
    # the sheet's compact form is the derivation's compact form (cse is exact)
    forms = sheet._formulas(deriv)
    assert sp.simplify(forms["lambda_M"] - deriv["lambda_M"].compact) == 0
    assert forms["lambda_M"].has(Jp) and forms["c_star"] == J


def test_latex_has_every_formula_and_table(relu_tanh):
    tex = sheet.to_latex(relu_tanh)
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    for m in sheet.markers(relu_tanh):
        assert rf"\typeout{{{m}}}" in tex
    assert r"\lambda_{\max} &=" in tex and "B = \\infty" in tex
    # tanh has no closed form: its quantities appear as sphere-moment definitions
    assert r"\mathbb{E}" in tex.split(r"\section*")[2]


def test_verified_digits_are_real(relu_tanh):
    relu = relu_tanh.entries[0]
    assert relu.verified["q_star"] >= 16 and relu.verified["gradient_rate"] >= 16
    assert relu.verified["lambda_G"] == math.inf  # 0 is exactly 0


def test_markdown(relu_tanh):
    md = sheet.to_markdown(relu_tanh)
    assert md.count("$$ q^* =") == 2 and "| gradient_rate |" in md
    import re

    shown = [int(d) for d in re.findall(r"verified: (\d+) digits", md)]
    assert shown and min(shown) >= 16  # floor of the digits confirmed


@pytest.mark.skipif(not HAVE_LATEX, reason="no LaTeX engine (CI installs latexmk)")
def test_pdf_compiles_and_typesets_every_formula(relu_tanh, tmp_path):
    out = sheet.compile_pdf(sheet.to_latex(relu_tanh), tmp_path / "sheet.pdf",
                            sheet.markers(relu_tanh))
    assert out.read_bytes()[:5] == b"%PDF-"
    log = (tmp_path / "sheet.log").read_text()
    assert all(m in log for m in sheet.markers(relu_tanh))
    assert "! " not in log and not list(tmp_path.glob("*.part"))


@pytest.mark.skipif(not HAVE_LATEX, reason="no LaTeX engine (CI installs latexmk)")
def test_broken_latex_is_reported_not_written(tmp_path):
    with pytest.raises(sheet.SheetError, match="LaTeX failed"):
        sheet.compile_pdf("\\documentclass{article}\\begin{document}$\\frac{1}$"
                          "\\end{document}", tmp_path / "bad.pdf")
    assert not (tmp_path / "bad.pdf").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "relu.tex"
    assert main(["sheet", "relu", "--out", str(out), "--batch-size", "8,inf"]) == 0
    text = out.read_text()
    assert r"$B = 8$ & $B = \infty$" in text
    assert main(["sheet", "relu", "--out", str(tmp_path / "x.docx")]) == 2
    assert "must end in .tex, .md or .pdf" in capsys.readouterr().err
    assert main(["sheet", "not_a_phi(", "--out", str(out)]) == 2
