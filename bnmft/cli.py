"""Command line: ``bnmft analyze | derive | codegen | verify | report | gegenbauer |
transition | simulate | tune | kernel | gp`` (and more; ``bnmft --help``).

Bad input (batch size below 4, unknown or unsupported activation, digits out of range,
unwritable output) is one line on stderr and exit status 2. A number that does not reach
the requested digits is not printed: the line says what fell short (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

# no SymPy, numpy or mpmath before a command runs (--help stays quick)
from bnmft.limits import DEFAULT_BATCH_SIZES, MAX_BATCH_SIZES, MAX_DIGITS

EXIT_BAD_INPUT = 2
EXIT_NUMERICAL = 1


class InputError(Exception):
    """Bad input found by the command line: one line, exit status 2, printed as every
    :class:`~bnmft.derive.errors.InvalidInput` the library raises. Not a ``ValueError``:
    argparse would swallow the message of one raised inside an argument's ``type``."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))  # user text may hold line breaks


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and values that start with '-' accepted.

    argparse reads ``--beta -1e-3``, ``--gamma -inf`` or the activation ``-x`` as unknown
    options (only plain negative numbers such as ``-1`` pass). Before parsing, a token that
    starts with one '-' and is no option of this parser is joined to the option before it
    when that option takes a value (``--beta=-1e-3``), otherwise it is the positional
    argument (moved after ``--``).
    """

    #: The parser reads an activation and options (a subcommand), not a subcommand name.
    takes_dash_values = False

    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        raise InputError(message)

    def parse_known_args(self, args=None, namespace=None):
        if self.takes_dash_values and args is not None:
            args = self._dash_values(list(args))
        return super().parse_known_args(args, namespace)

    def _option(self, token: str):
        """The action ``token`` names (exactly, or as the unique prefix argparse accepts)."""
        actions = {s: a for a in self._actions for s in a.option_strings}
        name = token.split("=", 1)[0]
        if name in actions:
            return actions[name]
        found = {a for s, a in actions.items() if name.startswith("--") and s.startswith(name)}
        return found.pop() if len(found) == 1 else None

    def _dash_values(self, args: list[str]) -> list[str]:
        out: list[str] = []
        positional: list[str] = []  # dash tokens that are no option and no option's value
        plain = False  # a positional argument that argparse reads as such
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--":
                return args
            action = self._option(tok) if tok.startswith("-") else None
            if action is not None:
                out.append(tok)
                if action.nargs is None and "=" not in tok and i + 1 < len(args):
                    value = args[i + 1]
                    if _dashed(value) and self._option(value) is None:
                        out[-1] = f"{tok}={value}"
                        i += 1
                    elif not value.startswith("-"):
                        out.append(value)
                        i += 1
            elif _dashed(tok):
                positional.append(tok)
            else:
                plain = True
                out.append(tok)
            i += 1
        if len(positional) == 1 and not plain:
            return [*out, "--", *positional]
        return out + positional  # argparse reports what is left over


def _dashed(token: str) -> bool:
    """Starts with one '-' and is more than '-' (a value argparse would take for an option)."""
    return token.startswith("-") and not token.startswith("--") and token != "-"


# -- argument helpers ----------------------------------------------------------------------


#: One batch size as typed: ASCII digits, optionally a decimal point and an exponent (``1e6``).
_SIZE = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?\Z")


def _ascii(text: str, what: str) -> str:
    """Refuse non-ASCII text: Python reads fullwidth digits as digits (``int('８') == 8``)
    and NFKC-folds identifiers (``ｘ`` would silently become ``x``)."""
    for ch in text:
        if not ch.isascii():
            raise InputError(f"{what} '{text}' contains the non-ASCII character '{ch}' "
                             f"(U+{ord(ch):04X}); type it in ASCII")
    return text


def _batch_sizes(text: str) -> list:
    """``32``, ``8,16,32``, ``8:4096:4`` (inclusive range), ``inf``, ``1e6``."""
    from bnmft.derive import errors

    _ascii(text, "batch size")
    items = text.split(",")
    out: list = []
    for item in items:
        item = item.strip().lower()
        if not item:
            where = "an empty" if len(items) == 1 else "an empty item in"
            raise InputError(f"{where} batch-size list '{text}'")
        if item in ("inf", "oo", "infinity", "+inf"):
            out.append(math.inf)
            continue
        if ":" in item:
            parts = item.split(":")
            if len(parts) not in (2, 3):
                raise InputError(f"bad batch-size range '{item}' (use start:stop[:step])")
            start, stop = _one_size(parts[0], item), _one_size(parts[1], item)
            step = _one_size(parts[2], item) if len(parts) == 3 else 1
            if step < 1 or stop < start:
                raise InputError(f"bad batch-size range '{item}' (need start <= stop, step >= 1)")
            errors.check_batch_size(start)
            errors.check_batch_size(stop)
            count = (stop - start) // step + 1
            if len(out) + count > MAX_BATCH_SIZES:
                raise InputError(f"too many batch sizes ({len(out) + count:,}); "
                                 f"at most {MAX_BATCH_SIZES:,} per call")
            out.extend(range(start, stop + 1, step))
            continue
        out.append(_one_size(item))
    if len(out) > MAX_BATCH_SIZES:
        raise InputError(
            f"too many batch sizes ({len(out):,}); at most {MAX_BATCH_SIZES:,} per call"
        )
    return errors.check_batch_sizes(out)


def _one_size(text: str, item: str | None = None) -> int:
    """One integer of a batch-size list (``1e6`` allowed); ``item``: the range it is in."""
    if text in ("-inf", "-oo", "-infinity"):
        raise InputError(f"batch size must be >= 4 (got {text})")
    if not _SIZE.match(text):
        where = f" in '{item}'" if item is not None and item != text else ""
        raise InputError(f"bad batch size '{text}'{where} (an integer such as 32 or 1e6)")
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"batch size '{text}' is too large; use 'inf' for the limit B -> oo")
    if value != int(value):
        raise InputError(f"batch size must be an integer (got '{text}')")
    return int(value)


def _integer(value: str, what: str) -> int:
    """An ASCII integer (``int`` alone would read fullwidth or Arabic-Indic digits)."""
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        _ascii(value, what)
        raise InputError(f"{what} must be an integer (got '{value}')")
    return int(text)


def _workers_option(value: str) -> int:
    n = _integer(value, "--workers")
    if n < 1:
        raise InputError(f"--workers must be >= 1 (got {n})")
    return n


def _terms(value: str) -> int:
    return _integer(value, "--terms")



def _tolerance(value: str) -> float:
    try:
        t = float(_ascii(value, "--tol"))
    except ValueError:
        raise InputError(f"--tol must be a number (got '{value}')") from None
    if not (1e-14 <= t <= 1e-2):
        raise InputError(f"--tol must be between 1e-14 and 1e-2 (got {value})")
    return t


def _digits(value: str) -> int:
    d = _integer(value, "--digits")
    if not 1 <= d <= MAX_DIGITS:
        raise InputError(f"--digits must be between 1 and {MAX_DIGITS} (got {d})")
    return d


def _module(value: str) -> str:
    """``--module``: checked before any derivation runs (as :func:`generate` checks it)."""
    from bnmft.codegen.prepare import check_module_name

    try:
        return check_module_name(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _activation(args):
    from bnmft.derive.activation import ActivationError, activation

    try:
        return activation(args.activation, gamma=args.gamma, beta=args.beta)
    except ActivationError as err:
        raise InputError(str(err)) from None


def _activations(specs, families=False) -> list:
    """Several activation specs (``export``, ``sheet``), each refused with one line; with
    ``families``, a family of :data:`CODEGEN_FAMILIES` named bare keeps its parameter
    symbolic (``export leaky_relu``: the slope as an argument)."""
    from bnmft.derive.activation import ActivationError, activation, symbolic_activation

    out = []
    for spec in specs:
        try:
            if families and spec.strip() in CODEGEN_FAMILIES:
                out.append(symbolic_activation(spec.strip()))
            else:
                out.append(activation(spec))
        except ActivationError as err:
            raise InputError(str(err)) from None
    return out


def _bs_label(b) -> object:
    return "inf" if b == math.inf else int(b)


def _warn(message: str) -> None:
    print(f"bnmft: warning: {message}", file=sys.stderr)


# -- analyze -----------------------------------------------------------------------------------

_JSON_ORDER = (
    "q_star",
    "c_star",
    "lambda_G",
    "lambda_L",
    "lambda_M",
    "bsb1_stable",
    "gradient_rate",
    "depth_scale",
    "max_trainable_depth",
)


def _analysis_json(an, digits: int, args=None) -> dict:
    """One batch size as JSON; with ``--epsilon`` or ``--sigma-w`` also ``epsilon``,
    ``sigma_w``, ``regime`` and (eps > 0) ``s_star``; null where a number is not available."""
    row: dict = {"activation": an.activation.name, "batch_size": _bs_label(an.batch_size)}
    keys = _JSON_ORDER
    if args is not None and (args.epsilon is not None or args.sigma_w is not None):
        row["epsilon"] = "0" if args.epsilon is None else args.epsilon
        row["sigma_w"] = "1" if args.sigma_w is None else args.sigma_w
        row["regime"] = getattr(an, "regime", "fixed point")
        if "s_star" in an.numbers or row["regime"] != "fixed point":
            keys = ("s_star",) + keys
    for key in keys:
        if key == "bsb1_stable":
            row[key] = an.bsb1_stable
            continue
        num = an.numbers.get(key)
        row[key] = num.text(digits) if num is not None and num.reaches(digits) else None
    return row


def _report_shortfalls(results, digits: int) -> int:
    status = 0
    for an in results:
        for line in an.shortfalls(digits):
            print(f"bnmft: not converged at B={_bs_label(an.batch_size)}: {line}", file=sys.stderr)
            status = EXIT_NUMERICAL
        if an.bsb1_stable is False:
            _warn(f"BSB1 fixed point is not attracting at B={_bs_label(an.batch_size)} "
                  f"({an.stability_note}); quantities are reported at the BSB1 point")
        elif an.bsb1_stable is None and an.stability_note:
            _warn(f"bsb1_stable undetermined at B={_bs_label(an.batch_size)}: {an.stability_note}")
    return status


def cmd_analyze(args) -> int:
    from bnmft import pipeline

    if args.no_batchnorm:
        if args.epsilon is not None:
            raise InputError("--epsilon is batchnorm's eps: it has no meaning with "
                             "--no-batchnorm")
        args.digits = 16 if args.digits is None else args.digits
        return cmd_analyze_vanilla(args)
    if args.sigma_b is not None or args.q0 is not None:
        raise InputError("--sigma-b and --q0 need --no-batchnorm (biases before batchnorm "
                         "drop out, and batchnorm forgets the input length)")
    if args.batch_size is None:
        raise InputError("the following arguments are required: --batch-size "
                         "(or --no-batchnorm)")
    eps, sw = _bn_parameters(args)
    act = _activation(args)
    sizes = _batch_sizes(args.batch_size)
    digits = _default_digits(args, act, eps)
    results = pipeline.analyze(act, sizes, digits, eps, sw)
    status = _report_shortfalls(results, digits)
    _report_regimes(results)
    if args.json:
        rows = [_analysis_json(an, digits, args) for an in results]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return status
    for an in results:
        print(_analysis_header(act, an, args))
        print("\n".join(_number_lines(an, digits)))
    return status


def _bn_parameters(args):
    """``--epsilon`` and ``--sigma-w`` of a batchnorm network as exact numbers (checked
    before any derivation runs)."""
    from bnmft.derive import ParameterError
    from bnmft.numerics import check_parameters

    try:
        return check_parameters("0" if args.epsilon is None else args.epsilon,
                                "1" if args.sigma_w is None else args.sigma_w)
    except ParameterError as err:
        raise InputError(str(err)) from None


def _default_digits(args, act, eps) -> int:
    """``--digits`` or its default: 16, but 12 (float64) for eps > 0 with a phi that is not
    positive-homogeneous, which has no high-precision route yet (said on stderr)."""
    from bnmft.numerics import FLOAT_DIGITS

    if args.digits is not None:
        return args.digits
    if not eps.is_zero and act.homogeneous is None:
        print(f"bnmft: note: eps > 0 with a phi that is not positive-homogeneous: float64 "
              f"route, {FLOAT_DIGITS - 1} digits by default", file=sys.stderr)
        return FLOAT_DIGITS - 1
    return 16


def _analysis_header(act, an, args) -> str:
    head = f"activation {act.name}, B = {_bs_label(an.batch_size)}"
    if args.epsilon is not None:
        head += f", eps = {args.epsilon}"
    if args.sigma_w is not None or args.epsilon is not None:
        head += f", sigma_w = {'1' if args.sigma_w is None else args.sigma_w}"
    return head


def _report_regimes(results) -> None:
    """A dead signal (eps > 0) is a regime: one line on stderr, no numbers, exit 0."""
    for an in results:
        if getattr(an, "regime", "fixed point") != "fixed point":
            print(f"bnmft: note: B={_bs_label(an.batch_size)}: {an.regime}: {an.note}",
                  file=sys.stderr)


def _number_lines(an, digits: int) -> list[str]:
    """One line per quantity: the value to ``digits`` (if achieved) and its route."""
    if getattr(an, "regime", "fixed point") != "fixed point":
        return [f"  {'regime':22s} {an.regime}"]
    lines = []
    keys = (("s_star",) if "s_star" in an.numbers else ()) + _JSON_ORDER
    for key in keys:
        if key == "bsb1_stable":
            lines.append(f"  {key:22s} {an.bsb1_stable}")
            continue
        num = an.numbers[key]
        text = num.text(digits) if num.reaches(digits) else "(not converged)"
        lines.append(f"  {key:22s} {text:>{digits + 8}s}   [{num.route}]")
    return lines


# -- analyze --no-batchnorm (vanilla networks) ------------------------------------------------

_VANILLA_ORDER = ("q_star", "c_star", "chi_1", "chi_q", "chi_c", "xi_q", "xi_c")


def cmd_analyze_vanilla(args) -> int:
    """``analyze ACT --no-batchnorm``: fixed points, slopes and depth scales of the vanilla
    network (``bnmft.pipeline.vanilla``)."""
    from bnmft import pipeline
    from bnmft.derive import ParameterError

    if args.batch_size is not None:
        raise InputError("--batch-size has no meaning with --no-batchnorm")
    act = _activation(args)
    sigma_w = "1" if args.sigma_w is None else args.sigma_w
    sigma_b = "0" if args.sigma_b is None else args.sigma_b
    try:
        res = pipeline.vanilla(act, sigma_w, sigma_b, args.digits,
                               "1" if args.q0 is None else args.q0)
    except ParameterError as err:
        raise InputError(str(err)) from None
    for note in res.notes:
        print(f"bnmft: note: {note}", file=sys.stderr)
    status = 0
    if res.fixed_point != "unbounded":
        for line in res.shortfalls(args.digits):
            print(f"bnmft: not converged: {line}", file=sys.stderr)
            status = EXIT_NUMERICAL

    def shown(num):
        return num.text(args.digits) if num.reaches(args.digits) else None

    if args.json:
        row = {"activation": act.name, "sigma_w": sigma_w, "sigma_b": sigma_b,
               "phase": res.phase, "fixed_point": res.fixed_point}
        row.update({key: shown(res.numbers[key]) for key in _VANILLA_ORDER})
        row["notes"] = list(res.notes)
        print(json.dumps(row, indent=2))
        return status
    print(f"activation {act.name}, no batchnorm, sigma_w = {sigma_w}, sigma_b = {sigma_b}")
    print(f"  {'phase':12s} {res.phase or '-'}")
    print(f"  {'fixed point':12s} {res.fixed_point}")
    for key in _VANILLA_ORDER:
        num = res.numbers[key]
        text = shown(num) or "(none)"
        print(f"  {key:12s} {text:>{args.digits + 8}s}   [{num.route}]")
    return status


# -- derive ------------------------------------------------------------------------------------


def _derive_json(deriv) -> dict:
    out = {}
    for q in deriv.quantities:
        closed = q.expr is not None
        out[q.name] = {
            "sympy": q.sympy_str(),
            "latex": q.latex(),
            "compact": None if q.compact is None else str(q.compact),
            "compact_latex": None if q.compact is None else q.latex(compact=True),
            "moment_form": str(q.moment_form),
            "domain": str(q.domain),
            "parameters": [str(p) for p in q.parameters],
            "provenance": str(q.provenance),
            "closed_form": closed,
        }
    return out


_LATEX_SYMBOLS = {
    "q_star": r"q^*", "c_star": r"c^*", "lambda_G": r"\lambda_G", "lambda_L": r"\lambda_L",
    "lambda_M": r"\lambda_M", "gradient_rate": r"\lambda_{\max}", "depth_scale": r"\xi",
    "max_trainable_depth": r"16\,\xi",
}


def _derive_latex(deriv) -> str:
    import sympy as sp

    lines = [r"\begin{align*}"]
    for q in deriv.quantities:
        body = q.latex(compact=q.compact is not None)
        lines.append(rf"  {_LATEX_SYMBOLS.get(q.name, q.name)} &= {body} \\")
    lines[-1] = lines[-1].removesuffix(r" \\")
    lines.append(r"\end{align*}")
    if deriv.definitions:
        defs = ", ".join(rf"{k} = {sp.latex(v)}" for k, v in deriv.definitions)
        lines.append(rf"where ${defs}$, valid for $B \geq 4$.")
    if deriv.dual_kernel is not None:
        lines.append(r"Dual kernel: $\mathbb{E}[\phi(u)\phi(v)] = "
                     + sp.latex(deriv.dual_kernel) + r"$ for unit Gaussians of correlation $c$.")
    return "\n".join(lines)


def _derive_activation(args):
    """``--symbolic`` (or a family named without its required parameter, ``alpha_relu``)
    keeps the family's parameters as symbols; otherwise as :func:`_activation`."""
    from bnmft.derive.activation import REGISTRY, ActivationError, symbolic_activation

    entry = REGISTRY.get(args.activation)
    needs_value = entry is not None and any(d is None for _, d in entry.params)
    if args.symbolic or needs_value:
        if args.gamma is not None or args.beta is not None:
            raise InputError("--gamma/--beta cannot be combined with symbolic parameters")
        try:
            return symbolic_activation(args.activation)
        except ActivationError as err:
            raise InputError(str(err)) from None
    return _activation(args)


def _closed_form_lines(deriv, full: bool) -> list[str]:
    """The closed forms (compact where derived) as text, each with its provenance; shared
    sub-expressions named once at the end (:func:`bnmft.present.formula_block`)."""
    from bnmft.derive.bsb1 import QUANTITIES
    from bnmft.present import formula_block, formula_lines

    shown = {name: q.compact if q.compact is not None else q.expr
             for name, q in deriv.closed.items()}
    if full:
        main = {name: "\n".join(formula_lines(name, e, full=True)) for name, e in shown.items()}
        definitions = []
    else:
        refer = {n: "gradient_rate" for n in ("depth_scale", "max_trainable_depth")}
        main, definitions = formula_block(shown, refer=refer, defined=deriv.definitions)
    lines: list[str] = []
    gap = [""] if full else []  # the 2-D forms need air between them
    for name in QUANTITIES:
        if name in deriv.closed:
            q = deriv.closed[name]
            lines += [*gap, main[name], f"  [{q.provenance.theorem}; valid for {q.domain}]"]
        else:
            lines += [f"{name} = {deriv.forms[name]}"]
    if definitions:
        lines += ["", "where"] + [f"  {line}" for line in definitions]
    return lines


def cmd_derive(args) -> int:
    from bnmft.derive.derivation import derive

    act = _derive_activation(args)
    deriv = derive(act)
    if args.json:
        print(json.dumps(_derive_json(deriv), indent=2))
        return 0
    if args.latex:
        print(_derive_latex(deriv))
        return 0
    print(f"activation {act.name}: phi(x) = {act.expr}")
    if not deriv.closed:
        print("no closed forms (phi is not positive-homogeneous); quantities as sphere moments:")
    print("\n" + "\n".join(_closed_form_lines(deriv, args.full)))
    if deriv.definitions:
        print("\nwhere " + "; ".join(f"{k} = {v}" for k, v in deriv.definitions))
    if deriv.dual_kernel is not None:
        print(
            f"\ndual kernel E[phi(u) phi(v)] (unit Gaussians, correlation c) = {deriv.dual_kernel}"
        )
    if "gradient_rate" in deriv.closed:
        print(f"\nlimit B -> oo of gradient_rate: {deriv.closed['gradient_rate'].limit()}")
    return 0


# -- codegen -----------------------------------------------------------------------------------


#: Families whose closed forms codegen prints with their parameter as an array argument
#: when the parameter is not given (``bnmft codegen leaky_relu``, ``bnmft codegen
#: alpha_relu``).
CODEGEN_FAMILIES = ("leaky_relu", "alpha_relu")


def _codegen_activation(args):
    """A family of :data:`CODEGEN_FAMILIES` named without parameters (and without
    --gamma/--beta) keeps them symbolic: the generated functions take them as arguments."""
    from bnmft.derive.activation import ActivationError, symbolic_activation

    if args.activation.strip() in CODEGEN_FAMILIES and args.gamma is None \
            and args.beta is None:
        try:
            return symbolic_activation(args.activation.strip())
        except ActivationError as err:
            raise InputError(str(err)) from None
    return _activation(args)


def cmd_codegen(args) -> int:
    from bnmft import pipeline
    from bnmft.codegen import CodegenError, write_sources

    from bnmft.codegen.quadrature import VerificationError

    deriv = pipeline.derivation(_codegen_activation(args))
    out = Path(args.out)
    try:
        sources = pipeline.generate(deriv, [args.lang], module=args.module,
                                    epsilon=args.epsilon)
        paths = write_sources(sources[args.lang], out)
    except VerificationError as err:
        print(f"bnmft: error: {err}", file=sys.stderr)
        return EXIT_NUMERICAL
    except CodegenError as err:
        raise InputError(str(err)) from None
    except OSError as err:
        raise InputError(f"cannot write to {out}: {err.strerror}") from None
    for p in paths:
        print(p)
    return 0


# -- verify ------------------------------------------------------------------------------------


def _verify_table(checks, digits: int) -> list[str]:
    """The checks as a table. Each column shows at most the digits its number has: the value
    the digits its route was required to reach, the reference the digits it achieved (and
    at most 20); ``agree`` never exceeds what the reference confirms."""
    from bnmft.numerics import decimal_string

    width = min(digits, 20) + 8
    lines = [
        f"{'quantity':20s} {'B':>8s}  {'value':>{width}s}  {'reference':>{width}s}  "
        f"{'agree':>6s} {'need':>5s}  route"
    ]
    for ch in checks:
        shown = min(digits, 20)
        val_digits = max(1, min(shown, math.floor(ch.required)))
        ref_digits = max(1, min(shown, math.floor(min(ch.reference_digits, 10**6))))
        val = decimal_string(ch.value, val_digits) if ch.value is not None else "-"
        ref = decimal_string(ch.reference, ref_digits) if ch.reference is not None else "-"
        agree = "same" if ch.digits == math.inf else f"{ch.digits:.1f}"
        mark = "" if ch.ok else "  FAIL" + (f" ({ch.note})" if ch.note else "")
        lines.append(
            f"{ch.quantity:20s} {ch.batch_size:>8d}  {val:>{width}s}  {ref:>{width}s}  "
            f"{agree:>6s} {ch.required:>5.0f}  {ch.route}{mark}"
        )
    return lines


def cmd_verify(args) -> int:
    from bnmft import pipeline
    from bnmft.numerics import unavailable_routes

    if args.rigorous:
        return _verify_rigorous(args)
    if args.json:
        raise InputError("--json needs --rigorous (verify prints a table)")
    if args.digits is None:
        args.digits = 30
    eps, sw = _bn_parameters(args)
    act = _activation(args)
    sizes = _batch_sizes(args.batch_size) if args.batch_size else list(DEFAULT_BATCH_SIZES)
    if math.inf in sizes:
        raise InputError("verify needs finite batch sizes")
    if not eps.is_zero:
        return _verify_regularised(act, sizes, args, eps, sw)
    if args.sigma_w is not None:
        raise InputError("--sigma-w needs --epsilon > 0 in verify (at eps = 0 nothing but q* "
                         "depends on it)")
    deriv = pipeline.derivation(act)
    checks = pipeline.verify(deriv, sizes, args.digits)
    for line in _verify_table(checks, args.digits):
        print(line)
    failed = [c for c in checks if not c.ok]
    refs = {c.reference_route for c in checks}
    for route, why in unavailable_routes(deriv).items():
        print(f"not run: {route}: {why}")
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks agree to the required digits "
          f"(references: {'; '.join(sorted(refs))})")
    if failed:
        print(f"bnmft: verification failed for {len(failed)} checks", file=sys.stderr)
        return EXIT_NUMERICAL
    return 0


def _verify_rigorous(args) -> int:
    """``verify --rigorous``: two certified enclosures (Arb balls) of every quantity."""
    from bnmft import pipeline
    from bnmft.numerics.rigorous import ROUTE_NOTES

    if args.epsilon is not None or args.sigma_w is not None:
        raise InputError("--rigorous encloses the eps = 0 quantities; it takes no "
                         + ("--epsilon" if args.epsilon is not None else "--sigma-w"))
    act = _activation(args)
    sizes = _batch_sizes(args.batch_size) if args.batch_size else [4, 8, 32]
    if math.inf in sizes:
        raise InputError("--rigorous needs finite batch sizes")
    digits = 20 if args.digits is None else args.digits
    checks = pipeline.verify_rigorous(act, sizes, digits)
    failed = [c for c in checks if not c.ok]
    if args.json:
        print(json.dumps({"activation": act.name, "digits_requested": digits,
                          "batch_sizes": sizes, "ok": not failed,
                          "checks": [c.as_dict() for c in checks]}, indent=1))
    else:
        for line in _rigorous_table(checks, digits):
            print(line)
        routes = sorted({c.first.route for c in checks} | {c.second.route for c in checks})
        for route in routes:
            if route in ROUTE_NOTES:
                print(f"{route}: {ROUTE_NOTES[route]}")
        print(f"\n{len(checks) - len(failed)} of {len(checks)} quantities: two certified "
              f"enclosures that overlap, each to at least {digits} digits")
    for c in failed:
        for why in c.failures:
            print(f"bnmft: rigorous check failed: {c.quantity} at B = {c.batch_size}: {why}",
                  file=sys.stderr)
    return EXIT_NUMERICAL if failed else 0


def _rigorous_table(checks, digits: int) -> list[str]:
    """One line per route: the enclosure as ``value +- radius`` (the value correctly rounded
    to the certified digits, at most ``digits``; the interval contains the exact value), the
    digits the ball certifies and, on each quantity's second line, whether the balls
    overlap."""
    rows = []
    for c in checks:
        for k, enc in enumerate((c.first, c.second)):
            value, radius = enc.text(digits)
            d = enc.digits
            rows.append((c.quantity if k == 0 else "", str(c.batch_size) if k == 0 else "",
                         enc.route, f"{value} +- {radius}",
                         "exact" if d == math.inf else str(int(d)),
                         ("yes" if c.overlap else "NO") if k == 1 else ""))
    head = ("quantity", "B", "route", "enclosure", "digits", "overlap")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'>' if i in (1, 4) else '<'}{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*head).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _verify_regularised(act, sizes, args, eps, sw) -> int:
    """``verify --epsilon E``: every eps > 0 number against its independent routes."""
    from bnmft import pipeline
    from bnmft.numerics import FLOAT_DIGITS

    digits = args.digits
    if act.homogeneous is None and digits > FLOAT_DIGITS:
        print(f"bnmft: note: eps > 0 with a phi that is not positive-homogeneous: float64 "
              f"route, checked at {FLOAT_DIGITS - 1} digits", file=sys.stderr)
        digits = FLOAT_DIGITS - 1
    checks, notes = pipeline.verify_regularised(act, sizes, digits, eps, sw)
    for line in _verify_table(checks, digits):
        print(line)
    for note in notes:
        print(f"note: {note}")
    failed = [c for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks agree to the required digits")
    if failed:
        print(f"bnmft: verification failed for {len(failed)} checks", file=sys.stderr)
        return EXIT_NUMERICAL
    return 0


# -- report -------------------------------------------------------------------------------------


def _report_text(rep) -> list[str]:
    """The report as Markdown lines: closed forms, numbers, verification summary."""
    from bnmft.present import formula_lines

    deriv, act = rep.derivation, rep.activation
    text: list[str] = []
    say = text.append
    say(f"# bnmft report: {act.name}")
    say("")
    say(f"phi(x) = {act.expr}")
    props = []
    if act.homogeneous is not None:
        props.append(f"positive-homogeneous of degree {act.homogeneous.alpha}")
    props.append("kinks at " + ", ".join(map(str, act.kinks)) if act.kinks else "smooth")
    say("properties: " + "; ".join(props))
    say("")
    say("## Closed forms" if deriv.has_closed_forms else
        "## Definitions (no closed form; sphere moments)")
    for q in deriv.quantities:
        if q.expr is not None:
            shown = q.compact if q.compact is not None else q.expr
            say("\n" + "\n".join(formula_lines(q.name, shown)))
            say(f"  ({q.provenance.theorem}; valid for {q.domain})")
        else:
            say(f"\n{q.name} = {q.moment_form}")
    if deriv.definitions:
        say("\nwhere " + "; ".join(f"{k} = {v}" for k, v in deriv.definitions))
    if "gradient_rate" in deriv.closed:
        say(f"\nB -> oo: gradient_rate -> {deriv['gradient_rate'].limit()}")
    say("")
    say(f"## Numbers ({rep.digits} significant digits)")
    for an in rep.analyses:
        say(f"\nB = {_bs_label(an.batch_size)}")
        text.extend(_number_lines(an, rep.digits))
    say("")
    sizes = ", ".join(map(str, rep.verified_sizes))
    say(f"## Verification (independent references, mpmath; B = {sizes})")
    by_route: dict = {}
    for ch in rep.checks:
        by_route.setdefault(ch.route, []).append(ch)
    for route, chs in by_route.items():
        worst = min(c.digits for c in chs)
        ok = all(c.ok for c in chs)
        say(f"  {route}: {len(chs)} checks, worst agreement "
            f"{'all digits' if worst == math.inf else f'{worst:.1f} digits'}"
            f"{'' if ok else '  FAIL'}")
    for route, why in rep.unavailable.items():
        say(f"  not run: {route}: {why}")
    say("")
    say("## Files")
    return text


def cmd_report(args) -> int:
    from bnmft import pipeline

    act = _activation(args)
    sizes = _batch_sizes(args.batch_size)
    rep = pipeline.report(act, sizes, args.digits, args.verify_digits)
    status = _report_shortfalls(rep.analyses, args.digits)
    if rep.checks and not rep.verified:
        status = EXIT_NUMERICAL
    out = Path(args.out) if args.out else Path("bnmft-output") / pipeline.module_name(act.name)
    text = _report_text(rep)
    try:
        paths = pipeline.write_report_files(rep, out, "\n".join(text) + "\n",
                                            _derive_latex(rep.derivation))
    except OSError as err:
        raise InputError(f"cannot write to {out}: {err.strerror}") from None
    print("\n".join(text))
    print("".join(f"  {p}\n" for p in paths), end="")
    return status


# -- gegenbauer ----------------------------------------------------------------------------------


def cmd_gegenbauer(args) -> int:
    from bnmft.numerics.gegenbauer import MAX_TERMS_CLOSED_FORM, gegenbauer_table, max_terms

    act = _activation(args)
    sizes = _batch_sizes(args.batch_size)
    if len(sizes) != 1 or sizes[0] == math.inf:
        raise InputError("gegenbauer needs one finite batch size")
    if args.terms < 1:
        raise InputError(f"--terms must be at least 1 (got {args.terms})")
    cap = max_terms(act)
    if args.terms > cap:
        why = ("so that the table takes a few seconds" if cap == MAX_TERMS_CLOSED_FORM else
               "its coefficients come from quadrature, whose cost grows like K^2 (closed-form "
               f"coefficients of positive-homogeneous phi: up to {MAX_TERMS_CLOSED_FORM})")
        raise InputError(f"--terms must be at most {cap} for {act.name} (got {args.terms}): "
                         f"{why}")
    table = gegenbauer_table(act, int(sizes[0]), args.terms, dps=args.digits)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
    elif args.latex:
        print(table.to_latex())
    else:
        print(table.to_text())
    return 0


# -- spectrum ------------------------------------------------------------------------------------


def _spectrum_parameters(args) -> dict:
    """``epsilon``, ``sigma_w`` of the maps (exact numbers, checked before any derivation)."""
    eps, sw = _bn_parameters(args)
    return {"epsilon": eps, "sigma_w": sw}


def _spectrum_json(res, digits: int, args=None) -> dict:
    row: dict = {"activation": res.activation.name, "batch_size": res.batch_size,
                 "bsb1_stable": res.bsb1_stable}
    if args is not None and (args.epsilon is not None or args.sigma_w is not None):
        row["epsilon"] = "0" if args.epsilon is None else args.epsilon
        row["sigma_w"] = "1" if args.sigma_w is None else args.sigma_w
        row["regime"] = res.regime
    for direction in ("forward", "backward"):
        row[direction] = [
            {"space": e.space, "dim": e.dim,
             "eigenvalue": e.number.text(digits) if e.number.reaches(digits) else None}
            for e in getattr(res, direction)]
    return row


def _spectrum_lines(res, digits: int) -> list[str]:
    width = max(digits + 8, 12)
    lines = [f"activation {res.activation.name}, B = {res.batch_size}, "
             f"bsb1_stable {res.bsb1_stable}"]
    if res.regime != "fixed point":
        return lines + [f"  regime {res.regime}"]
    lines.append(f"  {'map':9s} {'space':7s} {'dim':>10s}  {'eigenvalue':>{width}s}   route")
    for direction in ("forward", "backward"):
        for e in getattr(res, direction):
            num = e.number
            text = num.text(digits) if num.reaches(digits) else "(not available)"
            route = num.route if num.value is not None else num.note
            lines.append(f"  {direction:9s} {e.space:7s} {e.dim:>10d}  {text:>{width}s}   "
                         f"[{route}]")
    return lines


def cmd_spectrum(args) -> int:
    from bnmft import pipeline

    params = _spectrum_parameters(args)
    act = _activation(args)
    sizes = _batch_sizes(args.batch_size)
    if math.inf in sizes:
        raise InputError("spectrum needs finite batch sizes (the dimensions grow with B)")
    digits = _default_digits(args, act, params["epsilon"])
    results = pipeline.spectrum(act, sizes, digits, **params)
    status = _report_shortfalls(results, digits)
    _report_regimes(results)
    for res in results:
        for line in res.unavailable():
            print(f"bnmft: not available at B={res.batch_size}: {line}", file=sys.stderr)
            status = EXIT_NUMERICAL
    if args.json:
        rows = [_spectrum_json(res, digits, args) for res in results]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    else:
        print("\n\n".join("\n".join(_spectrum_lines(res, digits)) for res in results))
    if args.verify:
        if params["epsilon"].is_zero:
            checks, notes = pipeline.verify_spectrum(act, sizes, digits), []
        else:
            checks, notes = pipeline.verify_regularised(act, sizes, digits, **params)
        if not args.json:
            print()
            print("\n".join(_verify_table(checks, digits)))
        for note in notes:
            print(f"bnmft: note: {note}", file=sys.stderr)
        failed = [c for c in checks if not c.ok]
        print(f"bnmft: spectrum verification: {len(checks) - len(failed)} of {len(checks)} "
              "checks agree to the required digits", file=sys.stderr)
        if failed:
            status = EXIT_NUMERICAL
    return status


# -- export ------------------------------------------------------------------------------------


def cmd_export(args) -> int:
    """``export ACT... --out DIR``: a standalone pip-installable package (numpy + C)."""
    from bnmft import pipeline
    from bnmft.codegen import CodegenError

    from bnmft.codegen.quadrature import VerificationError

    acts = _activations(args.activations, families=True)
    try:
        out = pipeline.export(acts, args.out, args.package, epsilon=args.epsilon)
    except VerificationError as err:
        print(f"bnmft: error: {err}", file=sys.stderr)
        return EXIT_NUMERICAL
    except CodegenError as err:
        raise InputError(str(err)) from None
    except OSError as err:
        raise InputError(f"cannot write {args.out}: {err.strerror}") from None
    print(out)
    return 0


# -- sheet -------------------------------------------------------------------------------------


def cmd_sheet(args) -> int:
    """``sheet ACT... --out FILE``: the formula sheet as .tex, .md or .pdf (atomic write)."""
    from bnmft import sheet

    out = Path(args.out)
    kind = out.suffix.lower()
    if kind not in (".tex", ".md", ".pdf"):
        raise InputError(f"--out must end in .tex, .md or .pdf (got '{args.out}')")
    acts = _activations(args.activations)
    sizes = _batch_sizes(args.batch_size) if args.batch_size else list(sheet.TABLE_BATCH_SIZES)
    built = sheet.build(acts, sizes, args.digits)
    try:
        if kind == ".pdf":
            sheet.compile_pdf(sheet.to_latex(built), out, sheet.markers(built))
        else:
            from bnmft.codegen.files import atomic_write_text

            text = sheet.to_latex(built) if kind == ".tex" else sheet.to_markdown(built)
            atomic_write_text(out, text)
    except sheet.SheetError as err:
        print(f"bnmft: error: {err}", file=sys.stderr)
        return EXIT_NUMERICAL
    except OSError as err:
        raise InputError(f"cannot write {out}: {err.strerror}") from None
    print(out)
    return 0


# -- epsilon-scan --------------------------------------------------------------------------------


def cmd_epsilon_scan(args) -> int:
    from bnmft import pipeline

    _, sw = _bn_parameters(args)
    act = _activation(args)
    sizes = _batch_sizes(args.batch_size)
    if math.inf in sizes:
        raise InputError("epsilon-scan needs finite batch sizes")
    scans = pipeline.epsilon_scan(act, sizes, sw)
    sw_text = "1" if args.sigma_w is None else args.sigma_w

    def shown(num, cap=None):
        if num is None or num.value is None or num.digits < 1:
            return None
        return num.text(max(1, min(math.floor(num.digits), cap or 12)))

    if args.json:
        rows = [{"activation": act.name, "batch_size": sc.batch_size, "sigma_w": sw_text,
                 "eps_signal": shown(sc.eps_signal), "eps_gradient": shown(sc.eps_gradient),
                 "rate_at_signal": shown(sc.rate_at_signal, 6), "notes": sc.notes}
                for sc in scans]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    for sc in scans:
        lo, hi = sc.eps_range
        print(f"activation {act.name}, B = {sc.batch_size}, sigma_w = {sw_text} "
              f"(eps scanned from {lo:.0e} to {hi:.0e})")
        sig = shown(sc.eps_signal)
        print(f"  {'eps_signal':15s} {sig or '(none)':>16s}   nonzero fixed point for eps below "
              "it; the signal dies with depth beyond")
        grad = shown(sc.eps_gradient)
        print(f"  {'eps_gradient':15s} {grad or '(none)':>16s}   gradient_rate = 1 on the "
              "fixed-point branch")
        rate = shown(sc.rate_at_signal, 6)
        if rate is not None:
            print(f"  {'rate_at_signal':15s} {rate:>16s}   gradient_rate just below eps_signal")
        for note in sc.notes:
            print(f"  note: {note}")
    return 0


# -- gp ----------------------------------------------------------------------------------------


def _load_npy(path: str, what: str):
    """One ``.npy`` array (``allow_pickle=False``: object arrays, ragged lists and pickles are
    refused), or one line naming the problem."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"cannot read {what} '{path}': no such file") from None
    except OSError as err:
        raise InputError(f"cannot read {what} '{path}': {err.strerror or err}") from None
    except (ValueError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{what} '{path}' is not a numeric .npy array ({first})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError(f"{what} '{path}' is a .npz archive, not one .npy array")
    return arr


def _npy_out(path: str | None, option: str) -> Path | None:
    """An output path for a .npy file, refused before any work if it cannot be one."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != ".npy":
        raise InputError(f"{option} must end in .npy (got '{path}')")
    if out.is_dir():
        raise InputError(f"{option} '{path}' is a folder")
    return out


def _save_npy(path: Path, array) -> None:
    import io

    import numpy as np

    from bnmft.codegen.files import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err}") from None


def _shown(num, cap: int = 12):
    """A summary Number to the digits it achieved (at most ``cap``), or None below one."""
    if num is None or num.value is None or num.digits < 1:
        return None
    return num.text(max(1, min(math.floor(num.digits), cap)))


def _jitter(value: str) -> float:
    from bnmft.numerics.gp import MAX_JITTER

    _ascii(value, "--jitter")
    try:
        j = float(value)
    except ValueError:
        raise InputError(f"--jitter must be a number such as 1e-8 (got '{value}')") from None
    if not 0 <= j <= MAX_JITTER:
        raise InputError(f"--jitter must be from 0 to {MAX_JITTER:g} (got '{value}')")
    return j


def _depth(value: str) -> list[int]:
    """``L`` or a comma list ``1,2,4,8`` (computed in one pass of the deepest)."""
    out = []
    for item in value.split(","):
        d = _integer(item, "--depth")
        if not 1 <= d <= 10**4:
            raise InputError(f"--depth must be from 1 to 10000 (got {d})")
        out.append(d)
    if len(set(out)) != len(out):
        raise InputError(f"--depth lists a depth twice ('{value}')")
    return out


def _kernel_tol(value: str) -> float:
    _ascii(value, "--kernel-tol")
    try:
        t = float(value)
    except ValueError:
        raise InputError(f"--kernel-tol must be a number such as 1e-8 (got '{value}')") from None
    if not 1e-14 <= t <= 1e-2:
        raise InputError(f"--kernel-tol must be from 1e-14 to 1e-2 (got '{value}')")
    return t


def cmd_gp(args) -> int:
    """``gp ACT --train X.npy y.npy --test Xt.npy``: GP regression with the NNGP kernel of a
    deep batchnorm network (``bnmft.pipeline.gp``); the posterior mean to ``--out``."""
    from bnmft import pipeline

    if args.no_batchnorm:
        if args.epsilon is not None:
            raise InputError("--epsilon is batchnorm's eps: it has no meaning with "
                             "--no-batchnorm")
        batch = None
        if args.batch_size is not None:
            raise InputError("--batch-size has no meaning with --no-batchnorm (the vanilla "
                             "kernel does not batch)")
    else:
        if args.sigma_b is not None:
            raise InputError("--sigma-b needs --no-batchnorm (a bias before batchnorm drops "
                             "out)")
        if args.batch_size is None:
            raise InputError("the following arguments are required: --batch-size "
                             "(or --no-batchnorm)")
        batch = _one_size(args.batch_size.strip())
        from bnmft.derive.errors import check_batch_size

        check_batch_size(batch, finite=True)
        _bn_parameters(args)
    act = _activation(args)
    out = _npy_out(args.out, "--out")
    var_out = _npy_out(args.variance_out, "--variance-out")
    X = _load_npy(args.train[0], "training inputs")
    y = _load_npy(args.train[1], "training labels")
    Xt = _load_npy(args.test, "test inputs")
    yt = None if args.test_labels is None else _load_npy(args.test_labels, "test labels")
    if len(args.depth) > 1 and (out is not None or var_out is not None):
        raise InputError("--out and --variance-out need one --depth (several were given)")
    results = pipeline.gp(act, X, y, Xt, batch, args.depth,
                          "0" if args.epsilon is None else args.epsilon,
                          "1" if args.sigma_w is None else args.sigma_w,
                          not args.no_batchnorm,
                          "0" if args.sigma_b is None else args.sigma_b, args.jitter, yt,
                          args.kernel_tol, workers=_workers_option(args.workers),
                          scheduler=args.scheduler)
    status = _gp_shortfalls(results)
    first = results[0].posterior
    if out is not None and first.mean_digits < 1:
        print(f"bnmft: not written: {out} (the posterior mean has no correct digit)",
              file=sys.stderr)
        out = None
    if var_out is not None and first.variance_digits < 1:
        print(f"bnmft: not written: {var_out} (the posterior variance has no correct digit)",
              file=sys.stderr)
        var_out = None
    if out is not None:
        _save_npy(out, results[0].mean)
    if var_out is not None:
        _save_npy(var_out, results[0].variance)
    if args.json:
        rows = [_gp_json(res, out, var_out) for res in results]
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return status
    for res in results:
        print("\n".join(_gp_lines(act, res)))
    for path in (out, var_out):
        if path is not None:
            print(f"  wrote {path}")
    return status


def _gp_shortfalls(results) -> int:
    """One stderr line per posterior quantity without a single correct digit (printed as
    null / "(below 1 digit)"): exit status 1."""
    status = 0
    for res in results:
        post, st = res.posterior, res.settings
        for name, digits in (("posterior mean", post.mean_digits),
                             ("posterior variance", post.variance_digits),
                             ("log_marginal_likelihood", post.lml_digits)):
            if digits < 1:
                hint = ("lower --kernel-tol or raise --jitter"
                        if st["kernel_route"].startswith("Laplace") else "raise --jitter")
                print(f"bnmft: not converged at depth {st['depth']}: {name}: no correct digit "
                      f"(kernel entries to {st['kernel_accuracy']:.1e} relative, jitter "
                      f"{post.jitter:g}); {hint}", file=sys.stderr)
                status = EXIT_NUMERICAL
    return status


def _gp_json(res, out, var_out) -> dict:
    post = res.posterior
    row = dict(res.settings)
    row["kernel_accuracy"] = f"{res.settings['kernel_accuracy']:.2g}"
    row.update({
        "jitter": f"{post.jitter:.6g}", "noise": f"{post.noise:.6g}",
        "factorisations": post.jitter_tries,
        "log_marginal_likelihood": _shown(_lml_number(post.log_marginal_likelihood,
                                                          post.lml_digits)),
        "mean": {k: _shown(v) for k, v in res.mean_summary.items()},
        "mean_digits": _digits_label(post.mean_digits),
        "variance": {k: _shown(v) for k, v in res.variance_summary.items()},
        "variance_digits": _digits_label(post.variance_digits),
        "variance_clipped": post.variance_clipped,
    })
    if res.mse is not None:
        row["test_mse"] = _shown(res.mse)
    if res.accuracy is not None:
        lo, hi = res.accuracy_bounds
        row.update({"test_accuracy": f"{res.accuracy:.6g}", "test_correct": res.correct,
                    "argmax_uncertain": res.ambiguous,
                    "test_accuracy_bounds": [f"{lo:.6g}", f"{hi:.6g}"]})
    row["out"] = None if out is None else str(out)
    row["variance_out"] = None if var_out is None else str(var_out)
    return row


def _gp_lines(act, res) -> list[str]:
    post, st = res.posterior, res.settings
    net = (f"batchnorm, B = {st['batch_size']}, eps = {st['epsilon']}, "
           f"sigma_w = {st['sigma_w']}" if st["batchnorm"]
           else f"no batchnorm, sigma_w = {st['sigma_w']}, sigma_b = {st['sigma_b']}")
    lml = _shown(_lml_number(post.log_marginal_likelihood, post.lml_digits))
    lines = [f"gp {act.name}, depth {st['depth']}, {net}: {st['n_train']} train, "
             f"{st['n_test']} test, {st['outputs']} output(s)",
             f"  {'kernel':24s} {st['kernel_route']}, entries to {st['kernel_accuracy']:.1e} "
             "relative",
             f"  {'jitter':24s} {post.jitter:.3g} relative (noise {post.noise:.3g}, "
             f"{post.jitter_tries} factorisation(s))",
             f"  {'log_marginal_likelihood':24s} {lml or '(below 1 digit)'}"]
    for name, summ, digits in (("posterior mean", res.mean_summary, post.mean_digits),
                               ("posterior variance", res.variance_summary,
                                post.variance_digits)):
        parts = ", ".join(f"{k} {_shown(v) or '(below 1 digit)'}" for k, v in summ.items())
        lines.append(f"  {name:24s} {parts}   [{_digits_label(digits)} digits]")
    if res.mse is not None:
        lines.append(f"  {'test_mse':24s} {_shown(res.mse) or '(below 1 digit)'}")
    if res.accuracy is not None:
        lo, hi = res.accuracy_bounds
        bounds = f": between {lo:.6g} and {hi:.6g}" if res.ambiguous else ""
        lines.append(f"  {'test_accuracy':24s} {res.accuracy:.6g} ({res.correct}/"
                     f"{st['n_test']}; argmax uncertain for {res.ambiguous}{bounds})")
    return lines


def _lml_number(value: float, digits: float):
    from bnmft.numerics import Number

    return Number(float(value), digits, "Cholesky vs LU")


def _digits_label(digits: float) -> str:
    return "all" if digits == math.inf else f"{math.floor(digits)}"


# -- transition --------------------------------------------------------------------------------


def _bracket(text: str) -> tuple:
    """``a,b`` (numbers or exact expressions, a < b)."""
    from bnmft.derive.parse import ParseError, parse_expression

    parts = [t.strip() for t in str(text).split(",")]
    if len(parts) != 2:
        raise InputError(f"--bracket needs two values a,b (got '{text}')")
    values = []
    for part in parts:
        try:
            v = parse_expression(part)
        except ParseError as err:
            raise InputError(f"bad --bracket value '{part}': {err}") from None
        if v.free_symbols or not v.is_real or not v.is_finite:
            raise InputError(f"--bracket values must be finite real numbers (got '{part}')")
        values.append(v)
    if not values[0] < values[1]:
        raise InputError(f"--bracket needs a < b (got '{text}')")
    return tuple(values)


def _structure_offset(value, offset):
    return offset if offset is not None else 0.08 * max(abs(float(value)), 1.0)


def cmd_transition(args) -> int:
    """``transition``: ``alpha_transition(B)`` (or the transition in ``gamma``/``beta``) per
    batch size; ``--show-structure`` adds the blocks of the iterated covariance map on both
    sides."""
    from bnmft import pipeline
    from bnmft.derive import ActivationError
    from bnmft.numerics import NoSignChange

    sizes = _batch_sizes(args.batch_size)
    if math.inf in sizes:
        raise InputError("transition needs finite batch sizes")
    parameter = args.vary or "alpha"
    bracket = _bracket(args.bracket) if args.bracket else None
    if args.vary is None and args.activation.split(":")[0] != "alpha_relu":
        raise InputError(f"'{args.activation}': the alpha transition is for alpha_relu; give "
                         "--vary gamma or --vary beta for other activations")
    if args.vary is None and (args.gamma is not None or args.beta is not None):
        raise InputError("--gamma/--beta apply with --vary (alpha is varied otherwise)")
    if args.offset is not None and not args.offset > 0:
        raise InputError(f"--offset must be > 0 (got {args.offset})")
    try:
        results = pipeline.transition(args.activation, sizes, args.digits, bracket, args.vary,
                                      args.gamma, args.beta)
    except NoSignChange as err:
        raise InputError(str(err)) from None
    except ActivationError as err:
        raise InputError(str(err)) from None
    status = 0
    rows = []
    for tr in results:
        num = tr.value
        ok = num.reaches(args.digits)
        if not ok:
            print(f"bnmft: not converged at B={tr.batch_size}: {parameter}_transition: "
                  f"{num.note or f'only {num.digits:.1f} digits'}", file=sys.stderr)
            status = EXIT_NUMERICAL
        row = {"batch_size": tr.batch_size,
               f"{parameter}_transition": num.text(args.digits) if ok else None,
               "eigenspace": tr.eigenspace}
        if args.show_structure and num.value is not None:
            offset = _structure_offset(num.value, args.offset)
            row["structure"] = []
            for side, value in (("below", float(num.value) - offset),
                                ("above", float(num.value) + offset)):
                shown = f"{value:.6g}"
                st = pipeline.transition_structure(args.activation, tr.batch_size, parameter,
                                                   shown, args.gamma, args.beta)
                row["structure"].append({"side": side, parameter: shown, **st.to_json()})
                row.setdefault("_text", []).append((side, shown, st))
        rows.append((tr, row))
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "_text"} for _, r in rows],
                         indent=2))
        return status
    for tr, row in rows:
        text = row[f"{parameter}_transition"] or "(not converged)"
        print(f"{args.activation}, B = {tr.batch_size}: {parameter}_transition = {text}   "
              f"[eigenspace {tr.eigenspace}; {tr.value.route}]")
        for side, shown, st in row.get("_text", []):
            print(f"  {side} ({parameter} = {shown}): " + "\n  ".join(st.describe()))
    return status


# -- simulate and tune ---------------------------------------------------------------------------


def _measured_text(mean: float, stderr: float) -> tuple[str, str]:
    """A sampled mean and its standard error, both to the decimal of the error's second
    significant digit (no digit beyond what the sampling resolves)."""
    if not stderr > 0:
        return f"{mean:.12g}", "0"
    decimals = max(0, 1 - math.floor(math.log10(stderr)))
    return f"{mean:.{decimals}f}", f"{stderr:.{decimals}f}"


def _theory_text(m) -> str | None:
    num = getattr(m, "theory_number", None)
    if num is None:
        return None
    return num.text(max(1, math.floor(min(10.0, num.digits))))


def _measurement_json(m, estimator: str | None = None) -> dict:
    if m.mean is None:
        return {"mean": None, "stderr": None, "theory": _theory_text(m), "deviation": None,
                "note": m.note}
    mean, err = _measured_text(m.mean, m.stderr)
    dev = m.deviation
    out = {"mean": mean, "stderr": err, "theory": _theory_text(m),
           "deviation": None if dev is None else round(dev, 2), "layers": m.note}
    if estimator:
        out["estimator"] = estimator
    return out


def _estimate_json(e) -> dict:
    mean, err = _measured_text(e.mean, e.stderr)
    return {"mean": mean, "stderr": err}


def cmd_simulate(args) -> int:
    """``simulate``: sampled finite networks against the theory (``bnmft.simulate``)."""
    from bnmft import pipeline
    from bnmft.progress import progress

    B = _integer(args.batch_size, "--batch-size")
    N, L, S = (_integer(args.width, "--width"), _integer(args.depth, "--depth"),
               _integer(args.samples, "--samples"))
    seed = _integer(args.seed, "--seed")
    burn = None if args.burn_in is None else _integer(args.burn_in, "--burn-in")
    eps, sw = _bn_parameters(args)
    from bnmft.numerics.simulate import check_network

    check_network(B, N, L, S, args.backend, float(eps), float(sw))
    act = _activation(args)
    sim = pipeline.simulate(act, B, N, L, S, seed, eps, sw, backend=args.backend, burn_in=burn,
                            progress=lambda it: progress(it, "networks", total=S))
    status = 0
    for note in sim.theory_notes:
        _warn(note)
    for name, m in sim.measurements().items():
        if m.mean is None:
            print(f"bnmft: not measured: {name}: {m.note}", file=sys.stderr)
            status = EXIT_NUMERICAL
    eps_text = "0" if args.epsilon is None else args.epsilon
    sw_text = "1" if args.sigma_w is None else args.sigma_w
    if args.json:
        row = {"activation": act.name, "batch_size": B, "width": N, "depth": L, "samples": S,
               "seed": seed, "epsilon": eps_text, "sigma_w": sw_text, "backend": sim.backend,
               "burn_in": sim.burn_in}
        for name, m in sim.measurements().items():
            row[name] = _measurement_json(m, sim.estimator if name == "gradient_rate" else None)
        row["layers"] = [{"layer": i + 1, "q": _estimate_json(q), "c": _estimate_json(c),
                          "distance": _estimate_json(d), "gradient_norm": _estimate_json(g)}
                         for i, (q, c, d, g) in enumerate(zip(sim.q, sim.c, sim.distance,
                                                              sim.gradient_norm))]
        print(json.dumps(row, indent=2))
        return status
    print(f"{act.name}, B = {B}, width {N}, depth {L}, {S} networks (seed {seed}, "
          f"{sim.backend}), eps = {eps_text}, sigma_w = {sw_text}")
    print(f"  {'quantity':15s} {'measured':>24s} {'theory':>14s} {'(meas-theory)/stderr':>22s}")
    for name, m in sim.measurements().items():
        theory = _theory_text(m) or "-"
        if m.mean is None:
            print(f"  {name:15s} {'(not measured)':>24s} {theory:>14s}")
            continue
        mean, err = _measured_text(m.mean, m.stderr)
        dev = "-" if m.deviation is None else f"{m.deviation:+.2f}"
        print(f"  {name:15s} {mean + ' +- ' + err:>24s} {theory:>14s} {dev:>22s}   "
              f"[{m.note}]")
    print(f"  gradient_rate: {sim.estimator}")
    print(f"  {'layer':>5s} {'q':>20s} {'c':>20s} {'distance to BSB1':>20s} "
          f"{'|delta|^2/|delta_L|^2':>26s}")
    for i, (q, c, d, g) in enumerate(zip(sim.q, sim.c, sim.distance, sim.gradient_norm)):
        cells = [" +- ".join(_measured_text(e.mean, e.stderr)) for e in (q, c, d, g)]
        print(f"  {i + 1:5d} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>20s} {cells[3]:>26s}")
    return status


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(_ascii(str(text), what))
    except ValueError:
        raise InputError(f"{what} must be a number (got '{text}')") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a finite number > 0 (got '{text}')")
    return value


def cmd_tune(args) -> int:
    """``tune``: the gamma, beta or eps at which 16 xi reaches a target (``bnmft.tune``)."""
    from bnmft import pipeline

    if (args.target_depth is None) == (args.target_rate is None):
        raise InputError("give exactly one of --target-depth and --target-rate")
    depth = None if args.target_depth is None else _positive_float(args.target_depth,
                                                                   "--target-depth")
    rate = None if args.target_rate is None else _positive_float(args.target_rate,
                                                                 "--target-rate")
    if rate is not None and not rate > 1:
        raise InputError(f"--target-rate must be > 1 (got '{args.target_rate}'); gradients "
                         "explode in every batchnorm network at a fixed point with eps = 0")
    if args.vary == "eps" and args.epsilon is not None:
        raise InputError("--epsilon cannot be fixed while eps is varied")
    B = _integer(args.batch_size, "--batch-size")
    eps, sw = _bn_parameters(args)
    _activation(args)  # a bad activation is refused before the scan
    res, check = pipeline.tune(args.activation, depth, args.vary, B, sw, eps, args.gamma,
                               args.beta, rate)
    num_depth = check.numbers.get("max_trainable_depth")
    num_rate = check.numbers.get("gradient_rate")

    def shown(num):
        if num is None or num.value is None or num.digits < 1:
            return None
        return num.text(max(1, math.floor(min(12.0, num.digits))))

    digits = max(1, math.floor(res.digits))
    if args.json:
        row = {"activation": check.activation.name, "batch_size": B, "vary": args.vary,
               "value": res.text, "digits": digits,
               "target_depth": args.target_depth, "target_rate": f"{res.target_rate:.15g}",
               "max_trainable_depth": shown(num_depth), "gradient_rate": shown(num_rate),
               "sigma_w": "1" if args.sigma_w is None else args.sigma_w,
               "bracket": [f"{v:.6g}" for v in res.bracket], "evaluations": res.evaluations,
               "notes": res.notes}
        if args.vary != "eps":
            row["epsilon"] = "0" if args.epsilon is None else args.epsilon
        print(json.dumps(row, indent=2))
        return 0
    target = (f"16 xi = {args.target_depth}" if depth is not None
              else f"gradient_rate = {args.target_rate}")
    print(f"{args.activation}, B = {B}: {args.vary} = {res.text}   ({digits} digits; target "
          f"{target}, gradient_rate {res.target_rate:.15g})")
    print(f"  check (analyze at {args.vary} = {res.text}): max_trainable_depth = "
          f"{shown(num_depth)}, gradient_rate = {shown(num_rate)}")
    print(f"  bracket [{res.bracket[0]:.6g}, {res.bracket[1]:.6g}], {res.evaluations} "
          "evaluations of the theory")
    for note in res.notes:
        print(f"  note: {note}")
    return 0


# -- main ---------------------------------------------------------------------------------------


_BATCH_HELP = (
    "batch size B: an integer from 4 to 10^15 (1e6 notation allowed) or inf (the limit "
    "B -> oo); a comma list such as 8,16,32; an inclusive range start:stop[:step] such as "
    "8:4096:8; at most 10^6 sizes per call"
)
_ACTIVATION_HELP = (
    "a registered name (relu, leaky_relu:0.2, alpha_relu:1.5, linear, abs, step, tanh, erf, "
    "sigmoid, sin, gelu, swish, silu, softplus, elu, selu) or an ASCII expression in x such as "
    "'tanh(2*x) + 0.1' or 'Max(x, 0)**1.5'"
)



# -- kernel --------------------------------------------------------------------------------------


def _load_inputs(path: str):
    """``X`` from a ``.npy`` file (numeric, no pickles); unreadable or ragged files are bad
    input (one line, exit 2)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"inputs file '{path}' does not exist or is not a file")
    try:
        X = np.load(p, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise InputError(f"inputs file '{path}' is not a numeric .npy array (a pickle, a "
                             "ragged or object array, or another format); save a numeric "
                             "n x d array with numpy.save") from None
        raise InputError(f"inputs file '{path}' is not a .npy array: {err}") from None
    except (OSError, EOFError) as err:
        raise InputError(f"cannot read inputs file '{path}': {err}") from None
    if not isinstance(X, np.ndarray):
        raise InputError(f"inputs file '{path}' is not a single .npy array")
    return X


def _float_option(text, what: str, positive: bool):
    """A finite number for ``--epsilon`` (>= 0), ``--sigma-w`` (> 0), ``--sigma-b`` (>= 0),
    through the same exact parser as the other commands (``1e-3``, ``sqrt(2)``)."""
    from bnmft.derive import ParameterError, vanilla_parameter

    try:
        value = vanilla_parameter(text, what, positive=positive)
    except ParameterError as err:
        raise InputError(str(err)) from None
    if value.is_negative or not value.is_finite:
        raise InputError(f"{what} must be a finite number >= 0 (got {value})")
    return float(value)


def _kernel_number(value: float, error: float):
    from bnmft.numerics.precision import Number, digits_from_error

    return Number(float(value), min(15.0, digits_from_error(value, error)), "kernel")


def _kernel_summary(res, B, nb: int) -> list:
    """``(name, Number)`` rows: diagonal min/mean/max, within-batch and cross-batch means."""
    import numpy as np

    K, E = res.matrix, res.error
    n = K.shape[0]
    d, de = np.diag(K), np.diag(E)
    rows = [("diagonal min", d.min(), de[np.argmin(d)]), ("diagonal mean", d.mean(), de.mean()),
            ("diagonal max", d.max(), de[np.argmax(d)])]
    if B is not None and B > 1:
        batch = np.arange(n) // B
        same = (batch[:, None] == batch[None, :]) & ~np.eye(n, dtype=bool)
        rows.append(("within-batch off-diagonal mean", K[same].mean(), E[same].mean()))
        if nb > 1:
            other = batch[:, None] != batch[None, :]
            rows.append(("cross-batch mean", K[other].mean(), E[other].mean()))
    else:
        off = ~np.eye(n, dtype=bool)
        if n > 1:
            rows.append(("off-diagonal mean", K[off].mean(), E[off].mean()))
    return [(name, _kernel_number(v, e)) for name, v, e in rows]


def _rounded(value: float, error: float) -> float:
    """``value`` rounded to the significant digits its error bound leaves (JSON output)."""
    num = _kernel_number(value, error)
    return float(num.text(max(1, math.floor(num.digits)))) if num.digits >= 1 else None


def cmd_kernel(args) -> int:
    """``kernel ACT --inputs X.npy --batch-size B``: the depth-L kernel (``bnmft.kernel``)."""
    import numpy as np

    from bnmft import pipeline

    act = _activation(args)
    X = _load_inputs(args.inputs)
    if args.depth < 1:
        raise InputError(f"--depth must be >= 1 (got {args.depth})")
    bn = not args.no_batchnorm
    if bn and args.batch_size is None:
        raise InputError("--batch-size is required (unless --no-batchnorm)")
    if not bn and (args.epsilon is not None):
        raise InputError("--epsilon has no meaning with --no-batchnorm")
    if bn and args.sigma_b is not None:
        raise InputError("--sigma-b needs --no-batchnorm (batchnorm removes the bias)")
    eps = _float_option("0" if args.epsilon is None else args.epsilon, "eps", False)
    sw = _float_option("1" if args.sigma_w is None else args.sigma_w, "sigma_w", True)
    sb = _float_option("0" if args.sigma_b is None else args.sigma_b, "sigma_b", False)
    B = None
    if args.batch_size is not None:
        B = _integer(args.batch_size, "batch size")
    out = None
    if args.out is not None:
        out = Path(args.out)
        if out.suffix != ".npy":
            raise InputError(f"--out must name a .npy file (got '{args.out}')")
        if out.is_dir():
            raise InputError(f"--out '{args.out}' is a folder")
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise InputError(f"cannot write '{args.out}': its folder does not exist or is "
                             "not writable")
    if args.tol is None:
        hom = act.homogeneous is not None and float(act.homogeneous.alpha) > 0
        args.tol = 1e-10 if (hom or not bn) else 1e-2
    res = pipeline.kernel(act, X, B if bn else None, args.depth, eps, sw, bn, sb,
                          tol=args.tol, scheduler=args.scheduler,
                          workers=_workers_option(args.workers))
    n = res.matrix.shape[0]
    nb = n // B if (bn and B) else 1
    status = 0
    if not res.accuracy <= args.tol:
        print(f"bnmft: not converged: the kernel reached a relative accuracy of "
              f"{res.accuracy:.1e}, not --tol {args.tol:g} ({res.route})", file=sys.stderr)
        status = EXIT_NUMERICAL
    if out is not None:
        import io

        from bnmft.codegen.files import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(res.matrix, dtype=np.float64), allow_pickle=False)
        atomic_write_bytes(out, buf.getvalue())
    head = {"activation": act.name, "n": n, "batch_size": B if bn else None,
            "depth": args.depth, "batchnorm": bn, "epsilon": eps if bn else None,
            "sigma_w": sw, "sigma_b": sb if not bn else None, "route": res.route,
            "accuracy": float(f"{res.accuracy:.2e}")}
    if args.json:
        row = dict(head)
        if out is not None:
            row["out"] = str(out)
        else:
            row["matrix"] = [[_rounded(v, e) for v, e in zip(rv, re_)]
                             for rv, re_ in zip(res.matrix.tolist(), res.error.tolist())]
        print(json.dumps(row, indent=1))
        return status
    net = (f"batch size {B}, eps = {eps:g}, sigma_w = {sw:g}" if bn
           else f"no batchnorm, sigma_w = {sw:g}, sigma_b = {sb:g}")
    print(f"activation {act.name}, {n} inputs, depth {args.depth}, {net}")
    print(f"  {'route':31s} {res.route}")
    print(f"  {'accuracy':31s} {res.accuracy:.1e} (largest error / sqrt(K_ii K_jj))")
    for name, num in _kernel_summary(res, B if bn else None, nb):
        text = num.text(max(1, math.floor(num.digits))) if num.digits >= 1 else "(none)"
        print(f"  {name:31s} {text}")
    if out is not None:
        print(f"  {'written':31s} {out} ({n} x {n} float64)")
    return status


def _size_label(b: int) -> str:
    """``1000`` or ``1e6``, as a batch size may be typed."""
    return str(b) if b < 10**4 else f"{b:.0e}".replace("e+0", "e").replace("e+", "e")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _network_options(a) -> None:
    """The network's parameters: batchnorm's ``eps``, ``sigma_w``, and ``--no-batchnorm``
    with the vanilla parameters."""
    _bn_options(a)
    v = a.add_argument_group("vanilla network (no batchnorm)")
    v.add_argument("--no-batchnorm", action="store_true",
                   help="the baseline without batchnorm: q*, c*, chi_1, xi_q, xi_c, phase")
    v.add_argument("--sigma-b", default=None,
                   help="bias standard deviation (biases N(0, sigma_b^2)); default 0")
    v.add_argument("--q0", default=None,
                   help="input length q0 the length map is iterated from (default 1)")


def _bn_options(a) -> None:
    """``--epsilon`` and ``--sigma-w`` of the batchnorm network."""
    a.add_argument("--epsilon", default=None, metavar="E",
                   help="batchnorm's eps, y = (h - mean h)/sqrt(var h + eps): a number or "
                        "exact expression >= 0 such as 1e-3 or 1/10 (default 0, the "
                        "scale-free theory)")
    a.add_argument("--sigma-w", default=None, metavar="W",
                   help="weight standard deviation, weights N(0, sigma_w^2/N): a number or "
                        "exact expression > 0 such as 1.5 or sqrt(2) (default 1); with "
                        "batchnorm only eps/sigma_w^2 matters, and at eps = 0 only q* "
                        "(times sigma_w^2)")


def build_parser() -> argparse.ArgumentParser:
    from bnmft import __version__

    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(
        prog="bnmft", formatter_class=raw,
        description="Mean-field theory of batch-normalized networks (Yang et al., ICLR 2019).",
        epilog=_examples("bnmft analyze relu --batch-size 32",
                         "bnmft derive relu --latex",
                         "bnmft <command> --help   (options of one command)"),
    )
    p.add_argument("--version", action="version", version=f"bnmft {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser,
                           metavar="command", help="one of the commands below")

    def command(name, help_, *examples):
        return sub.add_parser(name, help=help_, description=help_ + ".", formatter_class=raw,
                              epilog=_examples(*examples))

    def common(sp_, batch=True, digits=16, batch_default=None, batch_help=_BATCH_HELP):
        sp_.takes_dash_values = True
        sp_.add_argument("activation", help=_ACTIVATION_HELP)
        sp_.add_argument("--gamma", default=None, metavar="GAMMA",
                         help="use phi(gamma*x + beta): gamma a nonzero real number or "
                              "expression such as 2, -0.5 or pi/2 (default 1); smooth "
                              "nonlinearities must not change over widths below 1/1000")
        sp_.add_argument("--beta", default=None, metavar="BETA",
                         help="use phi(gamma*x + beta): beta a real number or expression "
                              "such as 0.1 or -1e-3 (default 0)")
        if batch:
            default = ("required" if batch_default is None
                       else "default " + ",".join(map(_size_label, batch_default)))
            sp_.add_argument("--batch-size", required=batch_default is None, metavar="B",
                             help=f"{batch_help} ({default})")
        if digits or digits is None:
            shown = (f"default {digits}" if digits else "default 16; 12 for eps > 0 with a "
                     "phi that is not positive-homogeneous (float64 route)")
            sp_.add_argument("--digits", type=_digits, default=digits, metavar="D",
                             help=f"significant digits, 1 to {MAX_DIGITS} ({shown})")
        quiet(sp_)

    def quiet(sp_):
        sp_.add_argument("--quiet", action="store_true",
                         help="no progress bars on stderr (bars appear only on a terminal, "
                              "for work that takes more than a few seconds; default: shown)")

    def several(sp_):
        """Commands over several activations (``export``, ``sheet``)."""
        sp_.takes_dash_values = True
        sp_.add_argument("activations", nargs="+", metavar="activation", help=_ACTIVATION_HELP)
        quiet(sp_)

    a = command("analyze", "numbers for every BSB1 quantity",
                "bnmft analyze relu --batch-size 6,8,32 --digits 30 --json",
                "bnmft analyze 'tanh(2*x) + 0.1' --batch-size 8:4096:8 --digits 12",
                "bnmft analyze tanh --gamma 0.5 --beta -0.1 --batch-size inf",
                "bnmft analyze relu --batch-size 32 --epsilon 1e-3 --sigma-w 1.2")
    common(a, digits=None)
    a.add_argument("--json", action="store_true",
                   help="print JSON: one object per batch size (a list for several), numbers "
                        "as decimal strings, null where the digits were not reached "
                        "(default: text)")
    for action in a._actions:  # --no-batchnorm needs no batch size
        if action.dest == "batch_size":
            action.required = False
            action.help = action.help.replace("(required)", "(required unless --no-batchnorm)")
    _network_options(a)
    a.set_defaults(func=cmd_analyze)

    d = command("derive", "closed forms in B (or the moment definitions)",
                "bnmft derive relu", "bnmft derive alpha_relu --full",
                "bnmft derive leaky_relu --symbolic --latex")
    common(d, batch=False, digits=0)
    g = d.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print every quantity as JSON: SymPy and LaTeX text, compact form, "
                        "domain, provenance (default: text)")
    g.add_argument("--latex", action="store_true",
                   help="print a LaTeX align* block (default: text)")
    d.add_argument("--full", action="store_true",
                   help="text: print each closed form in full (SymPy's 2-D pretty form) "
                        "rather than in named sub-expressions, one line each (default off)")
    d.add_argument("--symbolic", action="store_true",
                   help="keep a family's parameters (alpha, slope) as symbols (default off; "
                        "on for a family named without its parameter, such as alpha_relu)")
    d.set_defaults(func=cmd_derive)

    c = command("codegen", "generate a numpy module or C kernels (closed forms, or sphere "
                "quadrature verified against mpmath for any other activation; leaky_relu or "
                "alpha_relu named without a parameter: slope or alpha as an array argument)",
                "bnmft codegen relu --lang numpy --out gen --module relu_bn",
                "bnmft codegen leaky_relu:0.2 --lang c --out gen --module leaky",
                "bnmft codegen alpha_relu --lang numpy --out gen --module relu_alpha",
                "bnmft codegen tanh --lang c --out gen --module tanh_bn")
    common(c, batch=False, digits=0)
    c.add_argument("--lang", choices=["numpy", "c"], required=True,
                   help="numpy (writes MODULE.py) or c (MODULE.c and MODULE.h) (required)")
    c.add_argument("--out", required=True, metavar="DIR",
                   help="output folder, created if missing (required)")
    c.add_argument("--module", required=True, type=_module, metavar="MODULE",
                   help="module name: ASCII letters, digits and _, not starting with a digit, "
                        "at most 63 characters; no Python or C keyword and no standard-library "
                        "module such as os (required)")
    c.add_argument("--epsilon", action="store_true",
                   help="also generate NAME_eps(B, eps, sigma_w) functions for batchnorm with "
                        "eps > 0, verified against bnmft's eps > 0 analysis (adds 10-60 s; "
                        "default off)")
    c.set_defaults(func=cmd_codegen)

    v = command("verify", "compare every route with independent references",
                "bnmft verify relu --digits 30", "bnmft verify tanh --batch-size 5,40",
                "bnmft verify relu --epsilon 1e-2 --batch-size 6,64 --digits 25",
                "bnmft verify tanh --rigorous --batch-size 4,8,32 --json")
    common(v, digits=30, batch_default=DEFAULT_BATCH_SIZES,
           batch_help=_BATCH_HELP.replace(" or inf (the limit B -> oo)", ", finite"))
    _bn_options(v)
    for action in v._actions:  # --rigorous has its own defaults
        if action.dest == "digits":
            action.default = None
            action.help = action.help.replace("(default 30)", "(default 30; 20 with --rigorous)")
        if action.dest == "batch_size":
            action.help = action.help[:-1] + "; 4,8,32 with --rigorous)"
    v.add_argument("--rigorous", action="store_true",
                   help="certified enclosures in Arb ball arithmetic (eps = 0): per quantity two "
                        "balls by different routes (closed form and rigorous sphere integrals; "
                        "two integral routes for smooth phi), their overlap and the digits each "
                        "certifies; batch sizes up to 1000 (smooth phi) or 10^9 (default: off)")
    v.add_argument("--json", action="store_true",
                   help="with --rigorous: print JSON (default: text)")
    v.set_defaults(func=cmd_verify)

    gg = command("gegenbauer", "Gegenbauer coefficients a_k, c_k and the Thm 9 sums",
                 "bnmft gegenbauer tanh --batch-size 32 --terms 12 --json")
    common(gg, digits=20, batch_help="one batch size B: an integer from 4 to 10^15 (1e6 "
                                     "notation allowed)")
    gg.add_argument("--terms", type=_terms, required=True, metavar="K",
                    help="number of coefficients K: at most 500 (coefficients by quadrature, "
                         "cost ~K^2) or 20000 (positive-homogeneous phi, closed-form "
                         "coefficients), so that a table takes a few seconds (required)")
    gx = gg.add_mutually_exclusive_group()
    gx.add_argument("--json", action="store_true", help="print JSON (default: text)")
    gx.add_argument("--latex", action="store_true", help="print a LaTeX table (default: text)")
    gg.set_defaults(func=cmd_gegenbauer)

    spc = command("spectrum", "forward and backward eigenvalues at the BSB1 point (space, "
                  "dimension, eigenvalue)",
                  "bnmft spectrum relu --batch-size 8 --digits 20 --json",
                  "bnmft spectrum tanh --batch-size 8 --verify",
                  "bnmft spectrum relu --batch-size 8 --epsilon 0.01 --sigma-w 1.5")
    common(spc, digits=None)
    _bn_options(spc)
    spc.add_argument("--json", action="store_true",
                     help="one JSON object per batch size (a list for several); default: text")
    spc.add_argument("--verify", action="store_true",
                     help="also check every eigenvalue against independent references "
                          "(default: off)")
    spc.set_defaults(func=cmd_spectrum)

    r = command("report", "closed forms, numbers, verification and generated files",
                "bnmft report relu --batch-size 32",
                "bnmft report tanh --batch-size 8,inf --out tanh-report")
    common(r)
    r.add_argument("--verify-digits", type=_digits, default=20, metavar="D",
                   help=f"digits the verification compares, 1 to {MAX_DIGITS} (default 20)")
    r.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default bnmft-output/<activation>)")
    r.set_defaults(func=cmd_report)

    ex = command("export", "a standalone pip-installable package of the generated numpy and "
                 "C modules (needs numpy only), with formulas and verified digits",
                 "bnmft export relu leaky_relu:0.2 --out relu-pkg",
                 "bnmft export relu --out pkg --package relu_bn")
    several(ex)
    ex.add_argument("--out", required=True, metavar="DIR",
                    help="package folder, written as a whole; an earlier export there is "
                         "replaced (required)")
    ex.add_argument("--package", default="bnmft_generated", type=_module, metavar="NAME",
                    help="import name of the package (default bnmft_generated)")
    ex.add_argument("--epsilon", action="store_true",
                    help="also export NAME_eps(B, eps, sigma_w) functions for batchnorm with "
                         "eps > 0 (as codegen --epsilon; adds 10-60 s per activation; default "
                         "off)")
    ex.set_defaults(func=cmd_export)

    sh = command("sheet", "a formula sheet for papers: closed forms with provenance, domain, "
                 "verified digits, definitions and a table of numbers",
                 "bnmft sheet relu leaky_relu:0.2 --out relu.tex",
                 "bnmft sheet relu tanh --out sheet.pdf --batch-size 4,32,inf")
    several(sh)
    sh.add_argument("--out", required=True, metavar="FILE",
                    help="output file: .tex (standalone LaTeX), .md (Markdown) or .pdf "
                         "(compiled with latexmk/pdflatex) (required)")
    sh.add_argument("--batch-size", default=None, metavar="B",
                    help=f"{_BATCH_HELP} for the table of numbers (default 4,8,32,1024,inf)")
    sh.add_argument("--digits", type=_digits, default=12, metavar="D",
                    help=f"digits in the table, 1 to {MAX_DIGITS} (default 12)")
    sh.set_defaults(func=cmd_sheet)

    es = command("epsilon-scan", "where, as eps grows, the signal dies (eps_signal) and the "
                 "gradients stop exploding (eps_gradient), paper Fig 4c,d",
                 "bnmft epsilon-scan tanh --batch-size 8",
                 "bnmft epsilon-scan relu --batch-size 8,32 --sigma-w 1.5 --json")
    common(es, digits=0)
    es.add_argument("--sigma-w", default=None, metavar="W",
                    help="weight standard deviation (default 1); only eps/sigma_w^2 matters")
    es.add_argument("--json", action="store_true", help="print JSON (default: text)")
    es.set_defaults(func=cmd_epsilon_scan, epsilon=None)

    gpp = command("gp", "GP regression with the NNGP kernel of a deep batchnorm network: "
                  "posterior mean and variance at test inputs",
                  "bnmft gp relu --train X.npy y.npy --test Xt.npy --batch-size 8 --depth 3 "
                  "--out mean.npy",
                  "bnmft gp tanh --train X.npy y.npy --test Xt.npy --test-labels yt.npy "
                  "--batch-size 16 --depth 5 --epsilon 1e-3 --json",
                  "bnmft gp relu --train X.npy y.npy --test Xt.npy --no-batchnorm --depth 3")
    gpp.takes_dash_values = True
    gpp.add_argument("activation", help=_ACTIVATION_HELP)
    gpp.add_argument("--gamma", default=None, metavar="GAMMA",
                     help="use phi(gamma*x + beta) (default 1)")
    gpp.add_argument("--beta", default=None, metavar="BETA",
                     help="use phi(gamma*x + beta) (default 0)")
    gpp.add_argument("--train", nargs=2, required=True, metavar=("X.npy", "y.npy"),
                     help="training inputs (n x d float .npy; consecutive rows form the "
                          "batches) and labels (n or n x k; e.g. centred one-hot) (required)")
    gpp.add_argument("--test", required=True, metavar="Xt.npy",
                     help="test inputs (n_test x d), batched like the training inputs in "
                          "consecutive rows of their own: a test point's prediction depends "
                          "on its batch-mates, so n_test must be a multiple of B (a short "
                          "batch is refused, not padded) (required)")
    gpp.add_argument("--test-labels", default=None, metavar="yt.npy",
                     help="test labels (n_test rows, as y): adds the test MSE and, for k >= 2 "
                          "columns, the argmax accuracy (default: none)")
    gpp.add_argument("--batch-size", default=None, metavar="B",
                     help="batch size B, an integer from 4 to 10^15, dividing n and n_test "
                          "(required unless --no-batchnorm)")
    gpp.add_argument("--depth", type=_depth, default=[1], metavar="L",
                     help="number of layers L of the network whose kernel is the prior, 1 to "
                          "10000, or a comma list such as 1,2,4,8 (one pass of the deepest; "
                          "one result each) (default 1)")
    gpp.add_argument("--kernel-tol", type=_kernel_tol, default=None, metavar="T",
                     help="accuracy asked of each entry of the deepest kernel, relative to "
                          "its scale (each layer to T / depth), 1e-14 to 1e-2 (default 1e-10); "
                          "the posterior's digits account for it")
    _bn_options(gpp)
    gpp.add_argument("--no-batchnorm", action="store_true",
                     help="the vanilla NNGP kernel (no batchnorm; no batches) instead")
    gpp.add_argument("--sigma-b", default=None,
                     help="bias standard deviation of the vanilla network (default 0; with "
                          "--no-batchnorm only)")
    gpp.add_argument("--jitter", type=_jitter, default=None, metavar="J",
                     help="regulariser: J * mean(diag K) is added to the train kernel's "
                          "diagonal, raised by factors of 10 only if Cholesky fails (the "
                          "value used is printed); 0 to 0.1 (default 1e-10)")
    gpp.add_argument("--out", default=None, metavar="MEAN.npy",
                     help="write the posterior mean (n_test x k float64) here, atomically "
                          "(default: not written)")
    gpp.add_argument("--variance-out", default=None, metavar="VAR.npy",
                     help="write the posterior variance (n_test float64) here, atomically "
                          "(default: not written)")
    gpp.add_argument("--json", action="store_true",
                     help="print JSON: settings, jitter used, log marginal likelihood, "
                          "mean/variance summaries, test metrics (default: text)")
    _scale_out_options(gpp)
    quiet(gpp)
    gpp.set_defaults(func=cmd_gp)

    t = command("transition", "where the BSB1 point stops attracting (alpha_relu: "
                "alpha_transition(B); any phi: the gamma or beta of phi(gamma x + beta))",
                "bnmft transition alpha_relu --batch-size 8,16,32 --digits 20",
                "bnmft transition tanh --vary gamma --batch-size 8 --json")
    common(t)
    t.add_argument("--vary", choices=["gamma", "beta"], default=None,
                   help="vary gamma or beta of phi(gamma x + beta) instead of alpha "
                        "(default: alpha of alpha_relu)")
    t.add_argument("--bracket", default=None, metavar="A,B",
                   help="search interval a,b (default 1,10 for alpha; negative values such "
                        "as -1,0 are accepted)")
    t.add_argument("--show-structure", action="store_true",
                   help="iterate the covariance map on both sides and report its blocks "
                        "(default: off)")
    t.add_argument("--offset", type=float, default=None, metavar="DELTA",
                   help="distance from the transition for --show-structure "
                        "(default 8%% of the value, at least 0.08)")
    t.add_argument("--json", action="store_true",
                   help="print JSON: a list of {batch_size, alpha_transition, eigenspace} "
                        "(default: text)")
    t.set_defaults(func=cmd_transition)

    sim = command("simulate", "finite networks of width N against the theory: batch covariance "
                  "per layer, forward rates, gradient norms and the gradient explosion rate "
                  "with standard errors over sampled networks",
                  "bnmft simulate relu --batch-size 16 --width 512 --depth 30 --samples 8",
                  "bnmft simulate tanh --batch-size 8 --epsilon 1e-3 --sigma-w 1.2 --json",
                  "bnmft simulate relu --batch-size 16 --backend torch")
    common(sim, batch=False, digits=0)
    sim.add_argument("--batch-size", required=True, metavar="B",
                     help="batch size B, an integer >= 4 (required)")
    sim.add_argument("--width", default="512", metavar="N",
                     help="width N of every layer, an integer >= 2 (default 512)")
    sim.add_argument("--depth", default="30", metavar="L",
                     help="number of layers L, an integer >= 1 (default 30)")
    sim.add_argument("--samples", default="8", metavar="S",
                     help="independently sampled networks S, an integer >= 2 (default 8)")
    sim.add_argument("--seed", default="0", metavar="SEED",
                     help="seed of numpy's SeedSequence (default 0)")
    sim.add_argument("--burn-in", default=None, metavar="K",
                     help="layers dropped at each end of the gradient-rate estimate and at the "
                          "input for q*, c* (default min(5, (L-2)//3))")
    sim.add_argument("--backend", default="numpy", metavar="NAME",
                     help="numpy (float64) or torch (float64 on the CPU, needs PyTorch) "
                          "(default numpy)")
    _bn_options(sim)
    sim.add_argument("--json", action="store_true", help="print JSON (default: text)")
    sim.set_defaults(func=cmd_simulate)

    tu = command("tune", "the gamma, beta or eps at which the predicted maximum trainable "
                 "depth 16 xi reaches a target (or the gradient rate a target rate)",
                 "bnmft tune tanh --target-depth 30 --vary gamma",
                 "bnmft tune relu --target-depth 60 --vary beta --batch-size 16 --json",
                 "bnmft tune tanh --target-rate 1.2 --vary eps --batch-size 8")
    common(tu, batch=False, digits=0)
    tg = tu.add_argument_group("target (one of)")
    tg.add_argument("--target-depth", default=None, metavar="L",
                    help="16 xi = L, a number > 0 (this or --target-rate is required)")
    tg.add_argument("--target-rate", default=None, metavar="R",
                    help="gradient_rate = R, a number > 1 (this or --target-depth is "
                         "required)")
    tu.add_argument("--vary", required=True, choices=["gamma", "beta", "eps"],
                    help="the parameter to tune: gamma or beta of phi(gamma x + beta) "
                         "(scanned over [1e-3, 10] and [-4, 4]) or batchnorm's eps (over "
                         "[1e-6, 100] sigma_w^2) (required)")
    tu.add_argument("--batch-size", default="32", metavar="B",
                    help="batch size B, an integer from 4 to 10^15 (default 32)")
    _bn_options(tu)
    tu.add_argument("--json", action="store_true", help="print JSON (default: text)")
    tu.set_defaults(func=cmd_tune)

    kk = command("kernel", "the depth-L kernel of a wide BN network on a data set",
                 "bnmft kernel relu --inputs X.npy --batch-size 10 --depth 10 --out K.npy",
                 "bnmft kernel tanh --inputs X.npy --batch-size 8 --epsilon 1e-3 --json",
                 "bnmft kernel relu --inputs X.npy --no-batchnorm --sigma-w 1.4 --sigma-b 0.1")
    kk.takes_dash_values = True
    kk.add_argument("activation", help=_ACTIVATION_HELP)
    kk.add_argument("--inputs", required=True, metavar="X.npy",
                    help="n x d float array (.npy, no pickles); consecutive rows of "
                         "--batch-size form the batches (required)")
    kk.add_argument("--batch-size", default=None, metavar="B",
                    help="inputs per batch, an integer >= 4 dividing n (required unless "
                         "--no-batchnorm)")
    kk.add_argument("--depth", type=lambda v: _integer(v, "depth"), default=1, metavar="L",
                    help="number of layers, >= 1 (default 1)")
    _bn_options(kk)
    kk.add_argument("--no-batchnorm", action="store_true",
                    help="the vanilla NNGP kernel of the same network (default off)")
    kk.add_argument("--sigma-b", default=None, metavar="S",
                    help="bias standard deviation with --no-batchnorm (default 0)")
    kk.add_argument("--tol", type=_tolerance, default=None, metavar="T",
                    help="accuracy asked of each entry relative to sqrt(K_ii K_jj), per "
                         "layer, 1e-14 to 1e-2 (default 1e-10; 1e-2 with batchnorm and a "
                         "phi that is not positive-homogeneous: sampled sphere route)")
    kk.add_argument("--out", default=None, metavar="K.npy",
                    help="write the n x n float64 kernel there (atomically) (default: print "
                         "a summary)")
    kk.add_argument("--json", action="store_true",
                    help="print JSON: the parameters, route, accuracy and the matrix (each "
                         "entry rounded to its digits) or the --out path (default: text)")
    _scale_out_options(kk)
    quiet(kk)
    kk.set_defaults(func=cmd_kernel, gamma=None, beta=None)
    return p


def _scale_out_options(parser) -> None:
    """``--scheduler`` and ``--workers`` of the kernel's block pairs (kernel and gp)."""
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (tcp://host:port): the cross-batch blocks "
                             "of each layer run there (needs bnmft[dask]; default: this "
                             "process)")
    parser.add_argument("--workers", default="1", metavar="N",
                        help="local worker processes for the cross-batch blocks (default 1)")


def _refused(err: Exception) -> int:
    print(f"bnmft: error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from bnmft.progress import set_enabled

        set_enabled(not getattr(args, "quiet", False))
        return args.func(args)
    except InputError as err:
        return _refused(err)
    except ValueError as err:  # the library's refusals: InvalidInput (ActivationError, ...)
        from bnmft.derive.errors import InvalidInput

        if not isinstance(err, InvalidInput):
            raise
        return _refused(err)
    except ArithmeticError as err:  # a route that did not converge: say which, print no number
        print(f"bnmft: numerical failure: {err}", file=sys.stderr)
        return EXIT_NUMERICAL
    except KeyboardInterrupt:
        print("bnmft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
