"""Start-up: the parser, ``--help`` and ``--version`` import no SymPy, scipy, numpy or
mpmath (checked in a fresh interpreter, not timed)."""

import argparse
import re
import subprocess
import sys

import pytest

from bnmft.cli import build_parser, main

HEAVY = "print(sorted(m for m in ('sympy', 'scipy', 'numpy', 'mpmath') if m in sys.modules))"

COMMANDS = {"analyze", "derive", "codegen", "verify", "gegenbauer", "spectrum", "report",
            "epsilon-scan", "transition", "sheet", "export", "simulate", "tune", "kernel", "gp"}


def _fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()[-1]


def test_build_parser_imports_no_heavy_module():
    assert _fresh(f"import sys, bnmft.cli; bnmft.cli.build_parser(); {HEAVY}") == "[]"


def test_help_and_version_import_no_heavy_module():
    calls = [["--help"], ["--version"]] + [[name, "--help"] for name in sorted(COMMANDS)]
    code = (
        "import contextlib, io, sys\n"
        "from bnmft.cli import main\n"
        f"for argv in {calls!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as stop:\n"
        "            assert stop.code == 0, argv\n"
        f"{HEAVY}\n"
    )
    assert _fresh(code) == "[]"


def test_help_lists_every_command(capsys):
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == COMMANDS
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    listed = set(re.findall(r"^    (\S+)", capsys.readouterr().out, flags=re.M))
    assert listed == COMMANDS
