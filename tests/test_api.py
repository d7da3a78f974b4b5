"""The public Python API: names, subpackages, and the README's example."""

import importlib
import math
import re
from pathlib import Path

import mpmath
import pytest
import sympy as sp

import bnmft
from bnmft.cli import main


def test_subpackages_are_not_shadowed():
    for name in ("bnmft.derive.activation", "bnmft.numerics.sphere", "bnmft.codegen"):
        mod = importlib.import_module(name)
        assert mod.__name__ == name
    import bnmft.derive.bsb1 as bsb1  # attribute access through the package chain
    import bnmft.derive
    import bnmft.numerics

    # no name a stage exports hides one of its modules
    for pkg in (bnmft.derive, bnmft.numerics):
        for mod in ("activation", "derivation", "quantity", "evaluate", "verification", "precision"):
            if hasattr(pkg, mod):
                assert getattr(pkg, mod).__name__ == f"{pkg.__name__}.{mod}", mod

    assert hasattr(bsb1, "moment_forms")


def test_public_api_relu_limit_and_number():
    act = bnmft.activation("relu")
    d = bnmft.derivation(act)
    assert sp.simplify(d.closed["gradient_rate"].limit() - sp.pi / (sp.pi - 1)) == 0
    (an,) = bnmft.analyze(act, [8], digits=25)
    rate = an.numbers["gradient_rate"]
    assert rate.digits >= 25
    # THEORY.md, checked value: ReLU gradient rate at B = 8 (printed to 15 digits)
    assert abs(mpmath.mpf(rate.value) - mpmath.mpf("1.78818997665874")) < 1e-14


def test_readme_python_example_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # the project's own documentation
    rate = namespace["rate"]
    # THEORY.md's ReLU closed form (Thm 8 at alpha = 1) at 60 digits, B = 32: the Number the
    # README shows must carry every digit it claims (an mpf of 51 bits once claimed 45)
    with mpmath.workdps(60):
        c = -1 / mpmath.mpf(31)
        J = (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi
        Jp = (mpmath.pi - mpmath.acos(c)) / mpmath.pi
        ref = (Jp + 31) / (29 * (1 - J)) - 1 / mpmath.mpf(29)
        claimed = min(int(rate.digits), 55)
        assert claimed >= 30
        assert abs(rate.value - ref) <= abs(ref) * mpmath.mpf(10) ** -claimed
        assert rate.text(30) == mpmath.nstr(ref, 30, strip_zeros=False)
    assert namespace["rep"].verified


def test_invalid_input_is_one_documented_value_error():
    assert issubclass(bnmft.InvalidInput, ValueError)
    assert issubclass(bnmft.ActivationError, bnmft.InvalidInput)
    from bnmft.derive.parse import ParseError

    assert issubclass(ParseError, bnmft.InvalidInput)


@pytest.mark.parametrize(
    "spec,sizes,message",
    [
        ("relu", [3], "batch size must be >= 4 (got 3); B < 4 is degenerate"),  # closed form
        ("tanh", [3], "batch size must be >= 4 (got 3); B < 4 is degenerate"),  # Gegenbauer
        ("relu", [8, 2], "batch size must be >= 4 (got 2); B < 4 is degenerate"),
        ("relu", [8.5], "batch size must be an integer (got 8.5)"),
        ("relu", [float("nan")], "batch size must be a number (got nan)"),
        ("relu", [float("-inf")], "batch size must be >= 4 (got -inf); B < 4 is degenerate"),
        ("relu", ["8"], "batch size must be a number (got '8')"),
        ("relu", [True], "batch size must be a number (got True)"),
        ("relu", [], "no batch size given"),
        ("relu", 8, "batch sizes must be a list of numbers (got int)"),
        ("relu", [10**16], "batch size must be <= 10^15 (got 1.000e+16); use 'inf' for the "
                           "limit B -> oo"),
    ],
)
def test_library_refuses_batch_sizes_like_the_cli(capsys, spec, sizes, message):
    act = bnmft.activation(spec)
    with pytest.raises(bnmft.InvalidInput) as err:
        bnmft.analyze(act, sizes)
    assert str(err.value) == message
    if isinstance(sizes, list) and sizes and type(sizes[-1]) is int:
        # the command line says the same words for the same batch sizes
        status = main(["analyze", spec, "--batch-size", ",".join(map(str, sizes))])
        assert status == 2 and capsys.readouterr().err == f"bnmft: error: {message}\n"


def test_library_verify_refuses_like_the_cli(capsys):
    from bnmft.pipeline import verify

    act = bnmft.activation("relu")
    for sizes, message in (([3], "batch size must be >= 4 (got 3); B < 4 is degenerate"),
                           ([8, math.inf], "verify needs finite batch sizes")):
        with pytest.raises(bnmft.InvalidInput) as err:
            verify(act, sizes, digits=10)
        assert str(err.value) == message
        status = main(["verify", "relu", "--digits", "10", "--batch-size",
                       ",".join("inf" if b == math.inf else str(b) for b in sizes)])
        assert status == 2
        assert capsys.readouterr().err == f"bnmft: error: {message}\n"


def test_library_batch_sizes_are_normalised():
    import numpy as np

    act = bnmft.activation("relu")
    an = bnmft.analyze(act, (np.int64(8), 8.0, math.inf), digits=10)
    assert [a.batch_size for a in an] == [8, 8, math.inf]
    assert an[0].numbers["gradient_rate"].value == an[1].numbers["gradient_rate"].value
