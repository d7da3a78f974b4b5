"""A formula sheet for papers: every closed form of one or more activations with its
provenance, validity domain, the digits it was verified to, the definitions it uses and a
table of numbers, as LaTeX (a standalone article), Markdown or a compiled PDF.

Formulas are printed with SymPy's LaTeX printer in their compact form where one was derived
(``J(c)``, ``J'(c)``, ``c = -1/(B-1)``); sub-expressions shared by the formulas of one
activation are named once (``k_1, k_2, ...``, by ``sympy.cse``) so that the equations stay
readable. Quantities without a closed form are given by their definition in sphere moments.
Each displayed formula is followed by a ``\\typeout`` marker, so that a compiled log shows
that every formula was typeset.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import sympy as sp

#: Batch sizes of the numeric table (``inf``: the limit ``B -> oo``).
TABLE_BATCH_SIZES = (4, 8, 32, 1024, math.inf)
#: Batch sizes and digits of the verification behind "verified to".
VERIFY_BATCH_SIZES = (6, 32)
VERIFY_DIGITS = 20
#: Sub-expressions at most this long (in LaTeX characters) stay inline.
_INLINE = 24

_SYMBOLS = {
    "q_star": r"q^*", "c_star": r"c^*", "lambda_G": r"\lambda_G", "lambda_L": r"\lambda_L",
    "lambda_M": r"\lambda_M", "gradient_rate": r"\lambda_{\max}", "depth_scale": r"\xi",
    "max_trainable_depth": r"L_{\max}",
}


class SheetError(RuntimeError):
    """The LaTeX engine is missing or did not compile the sheet (message: the log's error)."""


@dataclass
class Entry:
    """One activation on the sheet."""

    derivation: object
    analyses: list
    verified: dict = field(default_factory=dict)  # quantity -> digits confirmed (min over B)


@dataclass
class Sheet:
    entries: list
    batch_sizes: tuple
    digits: int
    verify_digits: int


def build(acts, batch_sizes=TABLE_BATCH_SIZES, digits: int = 12,
          verify_digits: int = VERIFY_DIGITS, verify_batch_sizes=VERIFY_BATCH_SIZES) -> Sheet:
    """Derive, evaluate and verify each activation (``bnmft.pipeline``)."""
    from bnmft import pipeline

    entries = []
    for act in acts:
        deriv = pipeline.derivation(act)
        analyses = pipeline.analyze(deriv, list(batch_sizes), digits)
        checks = pipeline.verify(deriv, list(verify_batch_sizes), verify_digits)
        # the formula's value is confirmed to the best agreement at each B, and to the least
        # of those over B (float64 modules are checked too, to fewer digits)
        best: dict = {}
        for ch in checks:
            key = (ch.quantity, ch.batch_size)
            best[key] = max(best.get(key, 0.0), ch.digits)
        verified: dict = {}
        for (name, _), d in best.items():
            verified[name] = min(verified.get(name, math.inf), d)
        entries.append(Entry(deriv, analyses, verified))
    return Sheet(entries, tuple(batch_sizes), digits, verify_digits)


# -- LaTeX ----------------------------------------------------------------------------------


def _formulas(deriv) -> dict[str, sp.Expr]:
    """The presented form of each primary quantity: compact closed form, closed form, or the
    definition in sphere moments (a relation is shown in the names it refers to)."""
    out = {}
    for q in deriv.quantities:
        if q.relation is not None:
            out[q.name] = q.relation.subs({s: sp.Symbol(_SYMBOLS.get(str(s), str(s)))
                                           for s in q.relation.free_symbols})
        elif q.expr is not None:
            out[q.name] = q.compact if q.compact is not None else q.expr
        else:
            names = {mo.symbol: sp.Symbol(mo.latex()) for mo in q.moments}
            out[q.name] = q.moment_form.xreplace(names)
    return out


@cache
def latex_block(deriv) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``([(name, latex)], [(k_i, latex)])``: the formulas with shared sub-expressions named
    (only those whose LaTeX is longer than a few symbols)."""
    from bnmft.derive.quantity import _LATEX_NAMES as names

    forms = _formulas(deriv)
    primary = [n for n in forms if deriv[n].relation is None]
    exprs = [forms[n] for n in primary]
    fresh = sp.numbered_symbols("k_")
    reps, reduced = sp.cse(exprs, symbols=fresh, optimizations="basic")
    keep, inline = [], {}
    for sym, sub in reps:
        sub = sub.xreplace(inline)
        if len(sp.latex(sub, symbol_names=names)) <= _INLINE:
            inline[sym] = sub
        else:
            keep.append((sym, sub))
    # renumber the kept names k_1, k_2, ... in order
    rename = {sym: sp.Symbol(f"k_{{{i}}}") for i, (sym, _) in enumerate(keep, start=1)}
    defs = [(sp.latex(rename[s], symbol_names=names),
             sp.latex(sub.xreplace(inline).xreplace(rename), symbol_names=names))
            for s, sub in keep]
    main = []
    reduced_by = dict(zip(primary, reduced))
    for n in forms:
        expr = reduced_by[n].xreplace(inline).xreplace(rename) if n in reduced_by else forms[n]
        main.append((n, sp.latex(expr, symbol_names=names)))
    return main, defs


def _prose(text: str) -> str:
    """Provenance text for LaTeX: escaped, arrows as arrows."""
    return _escape(text).replace("->", r"$\to$")


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#",
                "^": r"\^{}", "$": r"\$", "{": r"\{", "}": r"\}"}


def _escape(text: str) -> str:
    """Plain text for LaTeX: every special character escaped (one pass, so that escapes are
    not escaped again)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _number(an, name, digits) -> str:
    num = an.numbers.get(name)
    if num is None or not num.reaches(digits):
        return "--"
    return num.text(digits)


def _bs(b) -> str:
    return r"\infty" if b == math.inf else str(int(b))


def to_latex(sheet: Sheet) -> str:
    """The sheet as a standalone LaTeX article (amsmath only)."""
    out = [r"\documentclass[10pt]{article}",
           r"\usepackage[margin=2cm,landscape]{geometry}",
           r"\usepackage{amsmath,amssymb}",
           r"\allowdisplaybreaks",
           r"\title{Mean-field theory of batch normalization: formula sheet}",
           r"\date{}",
           r"\begin{document}",
           r"\maketitle",
           r"Closed forms derived by bnmft from the ingredients of Yang et al., "
           r"\emph{A Mean Field Theory of Batch Normalization} (ICLR 2019): sphere moments of "
           r"the BSB1 fixed point, the ultrasymmetric forward and backward operators and, "
           r"for positive-homogeneous $\phi$, the Laplace method. Every formula holds for "
           r"batch sizes $B \geq 4$; ``verified'' gives the digits on which each agrees with "
           r"an independent mpmath quadrature of its defining integral at "
           + ", ".join(f"$B = {b}$" for b in VERIFY_BATCH_SIZES) + "."]
    for k, entry in enumerate(sheet.entries):
        deriv = entry.derivation
        act = deriv.activation
        out.append(rf"\section*{{$\phi(x) = {sp.latex(act.expr)}$ \quad "
                   rf"(\texttt{{{_escape(act.name)}}})}}")
        main, defs = latex_block(deriv)
        for name, body in main:
            q = deriv[name]
            out.append(r"\begin{align*}")
            out.append(rf"  {_SYMBOLS.get(name, name)} &= {body}")
            out.append(r"\end{align*}")
            out.append(rf"\typeout{{bnmft-formula:{k}:{name}}}")
            ver = entry.verified.get(name)
            shown = ("exact" if ver == math.inf else f"{math.floor(ver)} digits" if ver is not None
                     else "not checked")
            out.append(r"{\small " + _prose(str(q.provenance)) + "; valid for "
                       + ("$" + sp.latex(q.domain) + "$" if q.domain is not None else "all B")
                       + f"; verified: {_escape(shown)}.}}")
            out.append("")
        if defs or deriv.definitions:
            out.append(r"\noindent where")
            out.append(r"\begin{align*}")
            rows = [rf"  {sp.latex(sp.Symbol(n))} &= {sp.latex(v)}" for n, v in
                    deriv.definitions]
            rows.append(r"  c &= -\frac{1}{B - 1}")
            rows += [rf"  {a} &= {b}" for a, b in defs]
            out.append(" \\\\\n".join(rows))
            out.append(r"\end{align*}")
            out.append(rf"\typeout{{bnmft-formula:{k}:definitions}}")
        cols = "l" + "r" * len(sheet.batch_sizes)
        out.append(r"\begin{center}\small")
        out.append(rf"\begin{{tabular}}{{{cols}}}")
        out.append(" & ".join(["quantity"] + [f"$B = {_bs(b)}$" for b in sheet.batch_sizes])
                   + r" \\ \hline")
        for name, _ in main:
            cells = [_number(an, name, sheet.digits) for an in entry.analyses]
            out.append(" & ".join([f"${_SYMBOLS.get(name, name)}$"] + cells) + r" \\")
        out.append(r"\end{tabular}")
        out.append(r"\end{center}")
        out.append(rf"\typeout{{bnmft-formula:{k}:table}}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def markers(sheet: Sheet) -> list[str]:
    """The ``\\typeout`` markers a complete compilation writes to its log."""
    out = []
    for k, entry in enumerate(sheet.entries):
        main, defs = latex_block(entry.derivation)
        out += [f"bnmft-formula:{k}:{name}" for name, _ in main]
        if defs or entry.derivation.definitions:
            out.append(f"bnmft-formula:{k}:definitions")
        out.append(f"bnmft-formula:{k}:table")
    return out


def to_markdown(sheet: Sheet) -> str:
    """The sheet as Markdown with ``$$ ... $$`` displays (GitHub / Jupyter render them)."""
    out = ["# Mean-field theory of batch normalization: formula sheet", ""]
    for entry in sheet.entries:
        deriv = entry.derivation
        out += [f"## phi(x) = {deriv.activation.expr}  (`{deriv.activation.name}`)", ""]
        main, defs = latex_block(deriv)
        for name, body in main:
            q = deriv[name]
            ver = entry.verified.get(name)
            shown = ("exact" if ver == math.inf else f"{math.floor(ver)} digits" if ver is not None
                     else "not checked")
            out += [f"$$ {_SYMBOLS.get(name, name)} = {body} $$", "",
                    f"*{q.provenance}; valid for {q.domain}; verified: {shown}.*", ""]
        if defs or deriv.definitions:
            out.append("where")
            out.append("")
            for n, v in deriv.definitions:
                out.append(f"$$ {sp.latex(sp.Symbol(n))} = {sp.latex(v)} $$")
            out.append(r"$$ c = -\frac{1}{B - 1} $$")
            out += [f"$$ {a} = {b} $$" for a, b in defs]
            out.append("")
        out.append("| quantity | " + " | ".join(f"B = {_bs(b).replace(chr(92) + 'infty', 'inf')}"
                                                for b in sheet.batch_sizes) + " |")
        out.append("|---|" + "---:|" * len(sheet.batch_sizes))
        for name, _ in main:
            cells = [_number(an, name, sheet.digits) for an in entry.analyses]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


# -- PDF ------------------------------------------------------------------------------------


def compile_pdf(tex: str, out: Path, expected_markers=()) -> Path:
    """Compile ``tex`` with ``latexmk -pdf`` in a scratch folder and move the PDF to ``out``
    atomically; :class:`SheetError` if no engine is installed, the run fails, or a marker in
    ``expected_markers`` is missing from the log (a formula was not typeset)."""
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        raise SheetError("no LaTeX engine: install latexmk and pdflatex (Debian: "
                         "texlive-latex-base, texlive-latex-recommended, latexmk)")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="bnmft-sheet-") as tmp:
        src = Path(tmp) / "sheet.tex"
        src.write_text(tex)
        run = subprocess.run(["latexmk", "-pdf", "-halt-on-error", "-interaction=nonstopmode",
                              "-file-line-error", "sheet.tex"], cwd=tmp, capture_output=True,
                             text=True, timeout=300)
        log = (Path(tmp) / "sheet.log")
        text = log.read_text(errors="replace") if log.exists() else run.stdout
        errors = [line for line in text.splitlines() if line.startswith("!")
                  or ":" in line and "error" in line.lower() and "sheet.tex:" in line]
        if run.returncode != 0 or errors:
            raise SheetError("LaTeX failed: " + (errors[0] if errors else
                                                 run.stdout.strip().splitlines()[-1]))
        missing = [m for m in expected_markers if m not in text]
        if missing:
            raise SheetError(f"LaTeX log lacks {len(missing)} formula marker(s), first "
                             f"{missing[0]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        shutil.copyfile(Path(tmp) / "sheet.pdf", part)
        part.replace(out)
        from bnmft.codegen.files import atomic_write_text

        atomic_write_text(out.with_suffix(".log"), text)
    return out
